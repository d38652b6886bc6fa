"""SPIN's regressor: ResNet-50 features + a 3-step iterative regressor of SMPL pose (6D), shape and camera.

`load_spin(path)` reads SPIN's `model_checkpoint.pt` (or a bare / `module.`-prefixed state_dict) safely and
strictly. The module's `state_dict()` has exactly the checkpoint's keys, so the same files load unchanged.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
from torch import nn

from .. import constants as C
from ..geometry import rot6d_to_rotmat
from .checkpoint import check_state_dict, load_checked, read_torch_file, unwrap_state_dict
from .resnet import ResNet50Backbone

NPOSE = C.NUM_SMPL_JOINTS * 6
FEATURES = 2048
N_ITER = 3


@dataclass
class HMROutput:
    rotmat: torch.Tensor  # (B, 24, 3, 3)
    betas: torch.Tensor  # (B, 10)
    camera: torch.Tensor  # (B, 3) = [s, tx, ty]
    pose6d: torch.Tensor  # (B, 144), the regressor state before the 6D -> matrix conversion
    features: torch.Tensor  # (B, 2048)


class HMR(ResNet50Backbone):
    """SPIN's HMR. Linear layers of the regressor have no nonlinearity between them (as published)."""

    def __init__(self):
        super().__init__()
        # Filled from the checkpoint, where they equal smpl_mean_params.npz; they come first in state_dict order.
        self.register_buffer("init_pose", torch.zeros(1, NPOSE))
        self.register_buffer("init_shape", torch.zeros(1, C.NUM_BETAS))
        self.register_buffer("init_cam", torch.zeros(1, 3))
        self.fc1 = nn.Linear(FEATURES + NPOSE + C.NUM_BETAS + 3, 1024)
        self.drop1 = nn.Dropout()
        self.fc2 = nn.Linear(1024, 1024)
        self.drop2 = nn.Dropout()
        self.decpose = nn.Linear(1024, NPOSE)
        self.decshape = nn.Linear(1024, C.NUM_BETAS)
        self.deccam = nn.Linear(1024, 3)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 2048) float32 features; the backbone runs in its own dtype (float32, or bfloat16 when loaded so)."""
        x = x.to(self.conv1.weight.dtype)
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.avgpool(x).flatten(1).float()

    def regress(self, xf: torch.Tensor, n_iter: int = N_ITER, steps: list | None = None):
        """Iterative error feedback from the mean pose. `steps`, a list, receives per iteration the (B, 3) norms of
        the pose, shape and camera updates (a signal of how settled the fit is)."""
        batch = xf.shape[0]
        pose = self.init_pose.expand(batch, -1)
        shape = self.init_shape.expand(batch, -1)
        cam = self.init_cam.expand(batch, -1)
        for _ in range(n_iter):
            xc = self.drop2(self.fc2(self.drop1(self.fc1(torch.cat([xf, pose, shape, cam], 1)))))
            d_pose, d_shape, d_cam = self.decpose(xc), self.decshape(xc), self.deccam(xc)
            if steps is not None:
                steps.append(torch.stack([d.norm(dim=1) for d in (d_pose, d_shape, d_cam)], 1))
            pose, shape, cam = d_pose + pose, d_shape + shape, d_cam + cam
        return pose, shape, cam

    def run(self, x: torch.Tensor, steps: list | None = None) -> HMROutput:
        xf = self.features(x)
        pose, shape, cam = self.regress(xf, steps=steps)
        rotmat = rot6d_to_rotmat(pose).view(x.shape[0], C.NUM_SMPL_JOINTS, 3, 3)
        return HMROutput(rotmat=rotmat, betas=shape, camera=cam, pose6d=pose, features=xf)

    def forward(self, x: torch.Tensor):
        """Normalised RGB batch (B, 3, 224, 224) -> (rotmat (B, 24, 3, 3), betas (B, 10), camera (B, 3))."""
        out = self.run(x)
        return out.rotmat, out.betas, out.camera


def to_precision(model: HMR, precision: str) -> HMR:
    """bfloat16 for the ResNet-50 backbone (channels-last, where oneDNN and cuDNN are fastest); the iterative
    regressor stays float32: it is cheap, and its three residual steps would accumulate bfloat16 rounding."""
    from ..runtime import torch_dtype

    dtype = torch_dtype(precision)
    if dtype == torch.float32:
        return model
    model = model.to(dtype).to(memory_format=torch.channels_last)
    for name in ("fc1", "fc2", "decpose", "decshape", "deccam"):
        getattr(model, name).float()
    for name in ("init_pose", "init_shape", "init_cam"):
        setattr(model, name, getattr(model, name).float())
    return model


def load_spin(path, device="cpu", precision: str = "float32", compile: bool = False) -> HMR:
    """Load SPIN's regressor from `model_checkpoint.pt` (or a state_dict file), in eval mode, on `device`.
    `precision="bfloat16"` runs the backbone in bfloat16 (see `to_precision`); outputs are float32 either way.
    `compile=True` folds the BatchNorms into the convolutions and compiles the network with frozen weights
    (`meshconf.accel`): same outputs to float rounding, faster forwards after a compilation per input shape."""
    from ..runtime import torch_dtype

    torch_dtype(precision)  # one-line error for an unknown precision, before reading the file

    def read_and_check() -> dict:
        what = "SPIN checkpoint"
        hint = "Get it with `meshconf fetch` (SPIN's model_checkpoint.pt) or pass its path."
        state = unwrap_state_dict(read_torch_file(path, what, hint), path, what)
        # BatchNorm step counters are unused in eval mode and absent from some older checkpoints.
        check_state_dict(state, _SHAPES, path, "SPIN regressor (HMR)",
                         optional=lambda k: k.endswith("num_batches_tracked"))
        return state

    state = load_checked(path, "spin", read_and_check, _SHAPES)
    with torch.device("meta"):  # no random initialisation of weights that the file replaces at once
        model = HMR()
    missing = [k for k in _SHAPES if k not in state]  # only optional step counters can be missing here
    model.load_state_dict(state, strict=False, assign=True)
    for key in missing:
        module, name = key.rsplit(".", 1)
        model.get_submodule(module).register_buffer(name, torch.tensor(0, dtype=torch.long))
    model.checkpoint_path = os.fspath(path)
    model = model.to(device).eval()
    if compile:
        from ..accel import compile_network
        from .resnet import fold_batchnorm

        return compile_network(to_precision(fold_batchnorm(model, copy=False), precision))
    return to_precision(model, precision)


with torch.device("meta"):  # key -> shape of SPIN's checkpoint['model'], without allocating the weights
    _SHAPES = {k: tuple(v.shape) for k, v in HMR().state_dict().items()}
