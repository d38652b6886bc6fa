"""3DPW reader: `sequenceFiles/<split>/*.pkl` + `imageFiles/` as the dataset's owners publish them -> annotation file.

Per sequence and person, every frame whose camera pose is valid becomes a row (SPIN's pw3d.py rule): the box
comes from the person's 2D keypoints (`poses2d`, confidence > 0), centre of their extent, scale 1.2 x max side / 200.
SMPL pose: the root orientation is turned into the camera frame, as SPIN's preprocessor did. Ground truth: the 24
SMPL joints (`jointPositions`, world metres) through the frame's camera (`cam_poses`,
`cam_intrinsics`) to image px, mapped to J14, with SMPL joint 6 (spine2) as the spine. The sequence pickles are
Python 2 pickles of numpy arrays; they are read with the restricted unpickler (nothing in them is executed).
"""

from __future__ import annotations

import glob
import os

import numpy as np

from .. import constants as C
from ..errors import MeshconfError
from ..models.smpl_file import RestrictedUnpickler
from .annotations import Annotations

BOX_RESCALE = 1.2


def read_sequence(path) -> dict:
    try:
        with open(path, "rb") as fh:
            return RestrictedUnpickler(fh, encoding="latin1").load()
    except Exception as exc:  # noqa: BLE001 - any unreadable or hostile file is one clear error
        raise MeshconfError(f"{path}: not a readable 3DPW sequence file ({type(exc).__name__}: {exc})") from None


def project(points_world: np.ndarray, extrinsics: np.ndarray, intrinsics: np.ndarray) -> np.ndarray:
    """(J,3) world metres -> (J,2) image px with K [R|t] (double precision, divided by depth)."""
    camera = points_world @ extrinsics[:3, :3].T + extrinsics[:3, 3]
    pixels = camera @ intrinsics.T
    return pixels[:, :2] / pixels[:, 2:3]


def camera_root(root_axis_angle: np.ndarray, camera_rotation: np.ndarray) -> np.ndarray:
    """The body's root orientation in the camera frame (SPIN's pw3d.py: R_cam @ R_root), as axis-angle."""
    import cv2

    rotation = camera_rotation @ cv2.Rodrigues(np.asarray(root_axis_angle, dtype=np.float64).reshape(3, 1))[0]
    return cv2.Rodrigues(rotation)[0].ravel()


def sequence_rows(seq: dict) -> list[dict]:
    name = str(seq["sequence"])
    rows = []
    intrinsics = np.asarray(seq["cam_intrinsics"], dtype=np.float64)
    for person in range(len(seq["poses"])):
        valid = np.asarray(seq["campose_valid"][person]).astype(bool)
        for frame in np.flatnonzero(valid):
            keypoints = np.asarray(seq["poses2d"][person][frame], dtype=np.float64).T  # (18,3)
            seen = keypoints[keypoints[:, 2] > 0, :2]
            if len(seen) < 2:
                continue
            lo, hi = seen.min(0), seen.max(0)
            joints = np.asarray(seq["jointPositions"][person][frame], dtype=np.float64).reshape(24, 3)
            px = project(joints, np.asarray(seq["cam_poses"][frame], dtype=np.float64), intrinsics)
            pose = np.asarray(seq["poses"][person][frame], dtype=np.float64)[:72].copy()
            pose[:3] = camera_root(pose[:3], np.asarray(seq["cam_poses"][frame], dtype=np.float64)[:3, :3])
            rows.append(dict(
                imgname=os.path.join(name, f"image_{frame:05d}.jpg"), center=(lo + hi) / 2,
                scale=BOX_RESCALE * float((hi - lo).max()) / C.BOX_SCALE_PX,
                joints2d=px[list(C.SMPL24_TO_J14)], spine2d=px[C.SMPL24_SPINE],
                pose=pose, camera_intrinsics=intrinsics,
                camera_extrinsics=np.asarray(seq["cam_poses"][frame], dtype=np.float64)[:3, :4],
                betas=np.asarray(seq["betas"][person], dtype=np.float64)[:10],
                gender=str(seq["genders"][person])))
    return rows


def read_3dpw(root, split: str = "test") -> Annotations:
    """Annotations for `root/sequenceFiles/<split>/*.pkl`; image names are relative to `root/imageFiles`."""
    files = sorted(glob.glob(os.path.join(os.fspath(root), "sequenceFiles", split, "*.pkl")))
    if not files:
        raise MeshconfError(f"no 3DPW sequence files in {os.path.join(os.fspath(root), 'sequenceFiles', split)}; "
                            "expected the dataset's own layout (imageFiles/, sequenceFiles/{train,validation,test}/)")
    rows = [row for path in files for row in sequence_rows(read_sequence(path))]
    if not rows:
        raise MeshconfError(f"3DPW {split}: no frame with a valid camera pose")

    return Annotations.from_rows(rows, f"3dpw_{split}")
