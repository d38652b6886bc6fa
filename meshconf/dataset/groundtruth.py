"""Ground-truth 3D joints for annotated dataset rows (library code shared by the sensitivity jobs).

`GroundTruth3D(annotations, models)(rows)` gives (B, 14, 3) metres: the annotation file's `joints3d` when present
(Human3.6M), else the rows' SMPL parameters through the row's gendered SMPL model and the Human3.6M regressor, as
the original computed 3DPW's ground truth (the neutral model stands in where a gendered one is missing, with a
note), else None (the reference is then a model's own unoccluded prediction).
"""

from __future__ import annotations

import numpy as np
import torch

from .. import constants as C


def gender_key(value) -> str:
    text = str(value).strip().lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(text, "neutral")


def smpl_joints3d(smpl, regressor_h36m: torch.Tensor, pose: np.ndarray, betas: np.ndarray) -> np.ndarray:
    """(B,14,3) metres from SMPL parameters (axis-angle pose (B,72), betas (B,10)) through the Human3.6M
    regressor, on the SMPL layer's device."""
    device = next(iter(smpl.buffers())).device
    with torch.inference_mode():
        vertices = smpl.forward_axis_angle(torch.as_tensor(pose, dtype=torch.float32, device=device),
                                           torch.as_tensor(betas, dtype=torch.float32, device=device)).vertices
        joints = torch.einsum("jv,bvc->bjc", regressor_h36m.to(vertices), vertices)
    return joints[:, list(C.H36M_TO_J14)].double().cpu().numpy()


class GroundTruth3D:
    def __init__(self, annotations, models):
        extra = annotations.extra
        self.joints3d = extra.get("joints3d")
        self.params = (extra["pose"], extra["betas"]) if {"pose", "betas"} <= set(extra) else None
        self.gender = extra.get("gender")
        self.models = models
        self.noted: set[str] = set()

    @property
    def description(self) -> str:
        if self.joints3d is not None:
            return "ground truth (annotated 3D joints)"
        if self.params is not None:
            return "ground truth (SMPL parameters)"
        return "unoccluded prediction"

    def _smpl(self, gender: str):
        smpl, stand_in = self.models.smpl_for(gender)
        if stand_in and gender not in self.noted:
            self.noted.add(gender)
            print(f"note: no SMPL {gender} model in the data folder; its ground truth uses the neutral model")
        return smpl

    def __call__(self, index: np.ndarray):
        if self.joints3d is not None:
            return np.asarray(self.joints3d[index], dtype=np.float64)
        if self.params is None:
            return None
        out = np.empty((len(index), 14, 3))
        genders = np.array([gender_key(self.gender[i]) if self.gender is not None else "neutral" for i in index])
        for gender in np.unique(genders):
            rows = genders == gender
            out[rows] = smpl_joints3d(self._smpl(str(gender)), self.models.regressor_h36m,
                                      self.params[0][index[rows]], self.params[1][index[rows]])
        return out
