"""3DOH50K reader: `images/` + `annots.json` as the dataset's owners publish them -> annotation file.

`annots.json` maps an image key (the file `images/<key>.jpg`) to its person: `bbox` ([[x1, y1], [x2, y2]]),
`pose` ([[72 axis-angle]]), `betas` ([[10]]) and `smpl_joints_2d` (24 x 2, image px, SMPL joint order). The box rule
is the original preprocessor's: centre of the box, scale 1.2 x its larger side / 200. Ground truth: the 2D SMPL
joints mapped to J14, with SMPL joint 6 (spine2) as the spine. Rows follow the keys in sorted order, which is the
order of the published `3doh50k_test.npz`.
"""

from __future__ import annotations

import os

import numpy as np

from .. import constants as C
from ..errors import MeshconfError
from ..files.fileio import parse_json
from .annotations import Annotations

BOX_RESCALE = 1.2


def _entry(key: str, value: dict, path: str) -> dict:
    try:
        box = np.asarray(value["bbox"], dtype=np.float64).reshape(4)
        joints = np.asarray(value["smpl_joints_2d"], dtype=np.float64).reshape(-1, 24, 2)[0]
        pose = np.asarray(value["pose"], dtype=np.float64).reshape(-1, 72)[0]
        betas = np.asarray(value["betas"], dtype=np.float64).reshape(-1, 10)[0]
    except (KeyError, ValueError, TypeError) as exc:
        raise MeshconfError(f"{path}: entry {key!r} lacks a usable bbox/smpl_joints_2d/pose/betas ({exc})") from None
    lo, hi = box[:2], box[2:]
    return dict(imgname=f"{key}.jpg", center=(lo + hi) / 2,
                scale=BOX_RESCALE * float((hi - lo).max()) / C.BOX_SCALE_PX,
                joints2d=joints[list(C.SMPL24_TO_J14)], spine2d=joints[C.SMPL24_SPINE], pose=pose, betas=betas)


def read_3doh(root) -> Annotations:
    """Annotations for `root/annots.json`; image names are relative to `root/images`."""
    path = os.path.join(os.fspath(root), "annots.json")
    try:
        with open(path) as fh:
            annots = parse_json(fh)
    except FileNotFoundError:
        raise MeshconfError(f"no {path}; expected the dataset's own layout (images/, annots.json)") from None
    except (OSError, ValueError) as exc:
        raise MeshconfError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(annots, dict) or not annots:
        raise MeshconfError(f"{path}: expected an object mapping image keys to annotations")
    rows = [_entry(key, annots[key], path) for key in sorted(annots)]

    return Annotations.from_rows(rows, "3doh_test")
