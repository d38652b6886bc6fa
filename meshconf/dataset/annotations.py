"""The annotation file every dataset reader writes: a plain `.npz` (no pickles), one row per person crop.

    imgname   (N,)      str    image path relative to the dataset's image root
    center    (N,2)     float  SPIN box centre, original image px
    scale     (N,)      float  SPIN box scale (box side / 200 px)
    joints2d  (N,14,2)  float  ground-truth joints in meshconf's J14 order, original image px (NaN = unknown)
    spine2d   (N,2)     float  ground-truth spine (the relative-ED anchor), original image px
    optional: pose (N,72) axis-angle, root in the camera frame; betas (N,10); gender (N,) str ('m'/'f');
              joints3d (N,14,3) metres, pelvis-centred; camera_intrinsics (N,3,3) and camera_extrinsics (N,3,4)
              (world -> image px); box_source (how boxes were made); dataset (0-d str)

Row order is the dataset's own order, so extracted arrays can be traced back to images.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass, field

import numpy as np

from .. import constants as C
from ..errors import MeshconfError
from ..files.imageio import write_atomic

REQUIRED = {"imgname": 1, "center": 2, "scale": 1, "joints2d": 3, "spine2d": 2}


@dataclass
class Annotations:
    imgname: np.ndarray
    center: np.ndarray
    scale: np.ndarray
    joints2d: np.ndarray
    spine2d: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    dataset: str = ""

    def __len__(self) -> int:
        return len(self.imgname)

    def fingerprint(self) -> str:
        """A short hash of the whole file's content (every array: names, boxes, 2D and 3D joints, extras, the
        dataset name): a resumed run on an annotation file that differs in anything is refused."""
        import hashlib

        digest = hashlib.sha256("\n".join(map(str, self.imgname)).encode())
        arrays = {"center": self.center, "scale": self.scale, "joints2d": self.joints2d, "spine2d": self.spine2d,
                  **self.extra}
        for name in sorted(arrays):
            value = np.asarray(arrays[name])
            digest.update(f"|{name}|{value.dtype.str}|{value.shape}|".encode())
            if value.dtype.kind in "US":
                digest.update("\n".join(map(str, value.ravel())).encode())
            else:
                digest.update(np.ascontiguousarray(value).tobytes())
        digest.update(f"|dataset|{self.dataset}".encode())
        return digest.hexdigest()[:16]

    @classmethod
    def from_rows(cls, rows: list[dict], dataset: str, **extra) -> "Annotations":
        """Stack per-row dicts (the required fields plus any optional ones) into one annotation set; `extra`
        adds whole-file arrays."""
        stacked = {key: np.stack([np.asarray(r[key]) for r in rows]) for key in rows[0]}
        required = [stacked.pop(key) for key in REQUIRED]
        return cls(*required, {**stacked, **extra}, dataset=dataset)


def save_annotations(path, a: Annotations) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, imgname=np.asarray(a.imgname, dtype=str), center=a.center, scale=a.scale,
                        joints2d=a.joints2d, spine2d=a.spine2d, dataset=np.array(a.dataset), **a.extra)
    write_atomic(path, buffer.getvalue())


def load_annotations(path) -> Annotations:
    path = os.fspath(path)
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except FileNotFoundError:
        raise MeshconfError(f"{path}: no such annotation file; write one with `meshconf annotate`") from None
    except Exception as exc:  # zipfile, zlib, EOF and format errors: all mean a truncated or foreign file
        raise MeshconfError(f"{path}: not a readable annotation file, truncated or corrupt "
                            f"({type(exc).__name__}: {exc}); write it again with `meshconf annotate`") from None
    missing = [k for k in REQUIRED if k not in arrays]
    if missing:
        raise MeshconfError(f"{path}: annotation file lacks {', '.join(missing)} (see meshconf.dataset.annotations)")
    names = arrays["imgname"]
    if names.ndim != 1 or names.dtype.kind not in "US":
        raise MeshconfError(f"{path}: imgname must be a 1-D array of image names, got {names.dtype} of shape "
                            f"{names.shape}; write the file again with `meshconf annotate`")
    n = len(names)
    shapes = {"center": (n, 2), "scale": (n,), "joints2d": (n, C.NUM_J14, 2), "spine2d": (n, 2)}
    for key, shape in shapes.items():
        if arrays[key].shape != shape:
            raise MeshconfError(f"{path}: {key} has shape {arrays[key].shape}, expected {shape}")
        if arrays[key].dtype.kind not in "fiu":
            raise MeshconfError(f"{path}: {key} holds {arrays[key].dtype} values, not numbers; write the file again "
                                f"with `meshconf annotate`")
    extra = {k: v for k, v in arrays.items() if k not in REQUIRED and k != "dataset"}
    return Annotations(arrays["imgname"], arrays["center"].astype(np.float64), arrays["scale"].astype(np.float64),
                       arrays["joints2d"].astype(np.float64), arrays["spine2d"].astype(np.float64), extra,
                       str(arrays.get("dataset", "")))
