"""Human3.6M (S9, S11) as its owners publish it -> extracted frames and an annotation file.

Layout under the root: `S9/Videos/<Action>.<camera>.mp4`, `S9/MyPoseFeatures/D2_Positions/<Action>.<camera>.cdf`,
`.../D3_Positions_mono/<Action>.<camera>.cdf` and, optionally, `S9/MySegmentsMat/ground_truth_bb/<Action>.<camera>.mat`
(likewise for S11). The pose files are NASA CDF, read with `cdflib` (pure Python, no C library to build); the box
files are MATLAB v7.3 (HDF5), read with `h5py`.

Every 5th frame (frame k with k % 5 == 0) is kept, named `<S>_<Action>.<camera>_<k+1:06d>.jpg` with spaces turned
into underscores: the names of the published `h36m_valid_protocol1` file, paired with pose row k (SPIN's own
preprocessor read one frame before its loop and so paired each name with the next video frame). `_ALL` sequences
are skipped; protocol 2 keeps camera 60457274 only.

Ground truth per row: the 32 pose-file joints put into the 24-joint superset with SPIN's maps, J14 in image px
(jaw as head) with the superset spine; 3D J14 in metres, centred on the pelvis (`joints3d`). The box is SPIN's:
the ground-truth person mask's extent, scale 0.9 x its larger side / 200. Without the mask files the box comes from
the 2D joints (scale 1.2 x larger side / 200, as for 3DPW), and the file says so (`box_source`).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from .. import constants as C
from ..errors import MeshconfError
from .annotations import Annotations

SUBJECTS = ("S9", "S11")
EVERY = 5
MASK_RESCALE = 0.9
JOINT_BOX_RESCALE = 1.2


def sequence_name(subject: str, stem: str) -> str:
    return f"{subject}_{stem.replace(' ', '_')}"


def frame_name(subject: str, stem: str, frame: int) -> str:
    return f"{sequence_name(subject, stem)}_{frame + 1:06d}.jpg"


def _cdf_pose(path: str, width: int) -> np.ndarray:
    import cdflib

    try:
        pose = np.asarray(cdflib.CDF(path).varget("Pose"), dtype=np.float64)
    except Exception as exc:  # noqa: BLE001 - cdflib raises many kinds; one clear line for the user
        raise MeshconfError(f"{path}: not a readable Human3.6M pose file ({type(exc).__name__}: {exc})") from None
    pose = pose.reshape(-1, pose.shape[-1])
    if pose.shape[1] != width:
        raise MeshconfError(f"{path}: Pose has {pose.shape[1]} values per frame, expected {width}")
    return pose


def to_superset(points32: np.ndarray) -> np.ndarray:
    """(..., 32, D) pose-file joints -> (..., 24, D) superset (unused rows NaN)."""
    out = np.full(points32.shape[:-2] + (24, points32.shape[-1]), np.nan)
    out[..., list(C.H36M32_TO_SUPERSET), :] = points32[..., list(C.H36M32_PICK), :]
    return out


def mask_boxes(path: str, frames) -> np.ndarray | None:
    """(len(frames), 4) x0, y0, x1, y1 of the ground-truth mask per frame (SPIN's rule), None when the file is
    absent. Frames without a mask pixel get NaN."""
    if not os.path.isfile(path):
        return None
    import h5py

    try:
        with h5py.File(path, "r") as fh:
            refs = fh["Masks"]
            boxes = []
            for k in frames:
                mask = np.asarray(fh[refs[k, 0]]).T
                ys, xs = np.nonzero(mask == 1)
                boxes.append([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1] if len(xs) else [np.nan] * 4)
    except (OSError, KeyError, ValueError, IndexError) as exc:
        raise MeshconfError(f"{path}: not a readable Human3.6M box file ({type(exc).__name__}: {exc})") from None
    return np.asarray(boxes, dtype=np.float64)


def _sequences(root: str, subjects, protocol: int):
    for subject in subjects:
        for d2 in sorted(glob.glob(os.path.join(root, subject, "MyPoseFeatures", "D2_Positions", "*.cdf"))):
            stem = os.path.basename(d2)[:-4]
            camera = stem.rsplit(".", 1)[-1]
            if "_ALL" in stem or (protocol == 2 and camera != C.H36M_EVAL_CAMERA):
                continue
            yield subject, stem, d2


def read_h36m(root, protocol: int = 1, subjects=SUBJECTS, every: int = EVERY) -> Annotations:
    """Annotations for the test subjects; image names are relative to the extracted frames folder."""
    root = os.fspath(root)
    if protocol not in (1, 2):
        raise MeshconfError(f"Human3.6M protocol must be 1 or 2, got {protocol}")
    rows, box_sources = [], set()
    for subject, stem, d2_path in _sequences(root, subjects, protocol):
        d3_path = os.path.join(root, subject, "MyPoseFeatures", "D3_Positions_mono", f"{stem}.cdf")
        if not os.path.isfile(d3_path):
            raise MeshconfError(f"{d3_path} is missing (each D2_Positions file needs its D3_Positions_mono file)")
        d2 = _cdf_pose(d2_path, 64).reshape(-1, 32, 2)
        d3 = _cdf_pose(d3_path, 96).reshape(-1, 32, 3)
        frames = np.arange(0, min(len(d2), len(d3)), every)
        boxes = mask_boxes(os.path.join(root, subject, "MySegmentsMat", "ground_truth_bb", f"{stem}.mat"), frames)
        px, metres = to_superset(d2[frames]), to_superset(d3[frames] / 1000.0)
        metres = metres - metres[:, C.H36M32_TO_SUPERSET[0]][:, None]  # centred on the pelvis, as SPIN's `S`
        if boxes is None:
            seen = d2[frames]
            boxes = np.concatenate([seen.min(1), seen.max(1)], 1)
            rescale, source = JOINT_BOX_RESCALE, "2d joints"
        else:
            rescale, source = MASK_RESCALE, "mask"
        box_sources.add(source)
        for i, k in enumerate(frames):
            if not np.isfinite(boxes[i]).all():
                continue
            lo, hi = boxes[i, :2], boxes[i, 2:]
            rows.append(dict(imgname=frame_name(subject, stem, int(k)), center=(lo + hi) / 2,
                             scale=rescale * float((hi - lo).max()) / C.BOX_SCALE_PX,
                             joints2d=px[i, list(C.H36M_S2D_TO_J14)], spine2d=px[i, C.H36M_S2D_SPINE],
                             joints3d=metres[i, list(C.J24_TO_J14)]))
    if not rows:
        raise MeshconfError(f"no Human3.6M pose files under {root}/{{{','.join(subjects)}}}/MyPoseFeatures/"
                            "D2_Positions; expected the dataset's own layout")

    return Annotations.from_rows(rows, f"h36m_p{protocol}", box_source=np.array(sorted(box_sources)))


def extract_frames(root, out=None, subjects=SUBJECTS, every: int = EVERY, protocol: int = 1,
                   progress: bool = True) -> int:
    """Write every `every`-th frame of each test video to `out` (default `root/images`) under the names
    `read_h36m` uses. Existing frames are kept (a restart continues); files are written atomically; the source
    videos are not touched. Returns the number of frames written."""
    import cv2
    from tqdm import tqdm

    from ..files.imageio import write_image

    root = os.fspath(root)
    out = os.fspath(out) if out else os.path.join(root, "images")
    videos = []
    for subject in subjects:
        for path in sorted(glob.glob(os.path.join(root, subject, "Videos", "*.mp4"))):
            stem = os.path.basename(path)[:-4]
            camera = stem.rsplit(".", 1)[-1]
            if "_ALL" not in stem and (protocol == 1 or camera == C.H36M_EVAL_CAMERA):
                videos.append((subject, stem, path))
    if not videos:
        raise MeshconfError(f"no videos under {root}/{{{','.join(subjects)}}}/Videos; expected the dataset's layout")
    os.makedirs(out, exist_ok=True)
    written = 0
    for subject, stem, path in tqdm(videos, desc="H36M frames", unit="video", disable=None if progress else True):
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise MeshconfError(f"{path}: cannot open the video (corrupt, or OpenCV lacks its codec)")
        frame = 0
        try:
            while True:
                if frame % every:
                    if not capture.grab():  # skip without decoding to an image
                        break
                else:
                    ok, image = capture.read()
                    if not ok:
                        break
                    target = os.path.join(out, frame_name(subject, stem, frame))
                    if not os.path.isfile(target):
                        write_image(target, image)
                        written += 1
                frame += 1
        finally:
            capture.release()
    return written
