"""Structural checks of downloaded or user-supplied model files (used by `fetch` and `doctor`)."""

from __future__ import annotations

import os
import zipfile

import numpy as np

from .. import constants as C
from ..errors import MeshconfError


def _npy(path, shape) -> None:
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MeshconfError(f"{path} is not a readable .npy ({exc})") from None
    if arr.shape != shape:
        raise MeshconfError(f"{path} has shape {arr.shape}, expected {shape}")


def check_asset(name: str, path) -> None:
    """Raise `MeshconfError` if the file at `path` is not a usable `name` asset."""
    path = os.fspath(path)
    if name == "spin_checkpoint":
        from ..models.hmr import load_spin
        load_spin(path)
    elif name == "openpose_body":
        from ..openpose.network import load_body
        load_body(path)
    elif name == "smpl_mean_params":
        try:
            with np.load(path, allow_pickle=False) as npz:
                shapes = {k: npz[k].shape for k in npz.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            raise MeshconfError(f"{path} is not a readable .npz ({exc})") from None
        if shapes.get("pose") != (144,) or shapes.get("shape") != (10,) or shapes.get("cam") != (3,):
            raise MeshconfError(f"{path} lacks pose (144,), shape (10,), cam (3,): {shapes}")
    elif name == "J_regressor_extra":
        _npy(path, (C.NUM_EXTRA_JOINTS, C.NUM_SMPL_VERTICES))
    elif name == "J_regressor_h36m":
        _npy(path, (17, C.NUM_SMPL_VERTICES))
    elif name.startswith("smpl_"):
        from ..models.smpl_file import read_smpl_file
        read_smpl_file(path)
    elif name == "part_segmentation":
        from ..demo.render import read_segmentation
        read_segmentation(path)
