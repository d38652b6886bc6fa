"""SPIN's SMPL layer: smplx's SMPL plus 9 regressed joints, re-ordered to SPIN's 49 joints.

The model file is read by `smpl_file.read_smpl_file` (no chumpy, no code execution) and handed to smplx as its
data struct, so smplx's linear blend skinning does the math.
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .. import constants as C
from ..errors import MeshconfError
from .smpl_file import SMPLData, read_smpl_file


@dataclass
class SMPLOutput:
    vertices: torch.Tensor  # (B, 6890, 3)
    joints: torch.Tensor  # (B, 49, 3), SPIN's joint order (constants.SPIN_JOINT_NAMES)
    smplx_joints: torch.Tensor  # (B, 45, 3), smplx's joints before the extra regressor and re-ordering


def resolve_smpl_path(model, gender: str = "neutral") -> str:
    """A `.pkl`/`.npz` file, or a folder holding `SMPL_{GENDER}.pkl|npz` (or a `smpl/` folder that does)."""
    model = os.fspath(model)
    gender = gender.lower()
    if gender not in C.GENDERS:
        raise MeshconfError(f"gender must be one of {', '.join(C.GENDERS)}, got '{gender}'")
    if not os.path.isdir(model):
        return model
    for folder in (model, os.path.join(model, "smpl")):
        for ext in ("pkl", "npz"):
            candidate = os.path.join(folder, f"SMPL_{gender.upper()}.{ext}")
            if os.path.isfile(candidate):
                return candidate
    raise MeshconfError(f"no SMPL_{gender.upper()}.pkl or .npz in {model}. Register at https://smpl.is.tue.mpg.de, "
                        f"download the SMPL model and place it there (see `meshconf doctor`)")


def load_regressor(regressor, what: str) -> np.ndarray:
    """A (J, 6890) joint regressor from a .npy path or an array, checked; one line when it is not one."""
    if isinstance(regressor, (str, os.PathLike)):
        path = os.fspath(regressor)
        if not os.path.isfile(path):
            raise MeshconfError(f"{what} not found: {path}. Get it with `meshconf fetch` (part of SPIN's data)")
        try:
            regressor = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise MeshconfError(f"cannot read {what} {path} (truncated or not a .npy?): {exc}") from None
    regressor = np.asarray(regressor)
    if regressor.ndim != 2 or regressor.shape[1] != C.NUM_SMPL_VERTICES:
        raise MeshconfError(f"{what} must have shape (J, {C.NUM_SMPL_VERTICES}), got {regressor.shape}")
    return regressor


class SPINSMPL(nn.Module):
    """Call with rotation matrices (B, 24, 3, 3) and betas (B, 10) -> `SMPLOutput` with SPIN's 49 joints."""

    def __init__(self, data: SMPLData, joint_regressor_extra: np.ndarray, gender: str = "neutral",
                 source: str = ""):
        super().__init__()
        import smplx  # heavy import, only where a model is built
        from smplx.utils import Struct

        if joint_regressor_extra.shape[0] != C.NUM_EXTRA_JOINTS:
            raise MeshconfError(f"J_regressor_extra must have {C.NUM_EXTRA_JOINTS} rows (SPIN's file), "
                                f"got {joint_regressor_extra.shape[0]}")
        # smplx prints a warning for every 10-beta SMPL model (all of them); keep the console clean.
        with contextlib.redirect_stdout(io.StringIO()):
            self.body = smplx.SMPL(source or "SMPL", data_struct=Struct(**data.as_dict()), gender=gender,
                                   batch_size=1, create_transl=False)
        self.register_buffer("J_regressor_extra", torch.tensor(joint_regressor_extra, dtype=torch.float32))
        self.register_buffer("joint_map", torch.tensor(C.SPIN_JOINT_MAP, dtype=torch.long), persistent=False)
        self.source = source

    @property
    def faces(self) -> np.ndarray:
        return self.body.faces

    def _finish(self, out) -> SMPLOutput:
        extra = torch.einsum("bik,ji->bjk", out.vertices, self.J_regressor_extra)
        joints = torch.cat([out.joints, extra], dim=1)[:, self.joint_map]
        return SMPLOutput(vertices=out.vertices, joints=joints, smplx_joints=out.joints)

    def forward(self, rotmat: torch.Tensor, betas: torch.Tensor) -> SMPLOutput:
        out = self.body(betas=betas, body_pose=rotmat[:, 1:], global_orient=rotmat[:, :1], pose2rot=False)
        return self._finish(out)

    def forward_axis_angle(self, pose: torch.Tensor, betas: torch.Tensor) -> SMPLOutput:
        """Axis-angle pose (B, 72) through smplx's own Rodrigues (`pose2rot=True`)."""
        out = self.body(betas=betas, body_pose=pose[:, 3:], global_orient=pose[:, :3], pose2rot=True)
        return self._finish(out)


def load_smpl(model, joint_regressor_extra, gender: str = "neutral", device="cpu") -> SPINSMPL:
    """SPIN's SMPL layer from an SMPL `.pkl`/`.npz` (or a folder of them) and `J_regressor_extra.npy`."""
    path = resolve_smpl_path(model, gender)
    data = read_smpl_file(path)
    regressor = load_regressor(joint_regressor_extra, "J_regressor_extra")
    return SPINSMPL(data, regressor, gender=gender.lower(), source=path).to(device).eval()
