"""Deterministic "recipe" weights (golden/README.md §3) for tests and benchmarks.

Nobody here has the published weights, so the goldens were computed with these. They are written to files in the
real on-disk formats and loaded back through the same loaders as the real files.
"""

from __future__ import annotations

import math
import re
import zlib
from collections.abc import Mapping

import numpy as np
import torch

_HMR_BN3 = re.compile(r"layer\d\.\d+\.bn3\.weight")
_HMR_GAIN = {"decpose.weight": 0.05, "decshape.weight": 0.05, "deccam.weight": 0.01}


def _generator(seed: int, key: str) -> torch.Generator:
    g = torch.Generator(device="cpu")
    g.manual_seed(seed + zlib.crc32(key.encode("utf-8")))
    return g


def recipe_state_dict(shapes: Mapping[str, tuple], seed: int = 0, family: str = "plain",
                      dtypes: Mapping[str, torch.dtype] | None = None, mean_params=None,
                      seed_prefix: str = "") -> dict[str, torch.Tensor]:
    """Tensors for every key of `shapes`; `family` is "hmr" for SPIN's adjustments, anything else for plain.

    `seed_prefix` is prepended to a key for seeding only (the classifiers are seeded as `classifier_mesh.fc1...`).
    """
    dtypes = dict(dtypes or {})
    bn_prefixes = {k[: -len(".running_mean")] for k in shapes if k.endswith(".running_mean")}
    out = {}
    for key, shape in shapes.items():
        shape = tuple(shape)
        g = _generator(seed, seed_prefix + key)

        def randn():
            return torch.randn(shape, generator=g, dtype=torch.float32)

        if dtypes.get(key) == torch.int64 or key.endswith("num_batches_tracked"):
            out[key] = torch.zeros(shape, dtype=torch.int64)
            continue
        if family == "hmr" and key in ("init_pose", "init_shape", "init_cam"):
            if mean_params is None:
                raise ValueError("HMR recipe needs smpl_mean_params (pose, shape, cam)")
            name = {"init_pose": "pose", "init_shape": "shape", "init_cam": "cam"}[key]
            out[key] = torch.as_tensor(np.asarray(mean_params[name], dtype=np.float32)).reshape(1, -1)
            continue
        prefix, _, param = key.rpartition(".")
        if prefix in bn_prefixes and param in ("weight", "bias", "running_mean", "running_var"):
            if param == "weight":
                c = 0.25 if family == "hmr" and _HMR_BN3.fullmatch(key) else 1.0
                out[key] = c * (1.0 + 0.1 * randn())
            elif param == "bias" or param == "running_mean":
                out[key] = 0.1 * randn()
            else:
                out[key] = 1.0 + 0.1 * torch.rand(shape, generator=g, dtype=torch.float32)
            continue
        if param == "weight" and len(shape) >= 2:
            gain = _HMR_GAIN.get(key, 1.0) if family == "hmr" else 1.0
            fan_in = math.prod(shape[1:])
            out[key] = randn() * (gain * math.sqrt(2.0 / fan_in))
            continue
        if param == "bias":
            out[key] = 0.01 * randn()
            continue
        raise ValueError(f"no recipe rule for key {key} {shape}")
    return out


def hmr_recipe(seed: int = 0, mean_params=None) -> dict[str, torch.Tensor]:
    """SPIN checkpoint['model'] with recipe weights; `mean_params` = smpl_mean_params.npz contents."""
    from .hmr import HMR

    reference = HMR().state_dict()
    return recipe_state_dict({k: tuple(v.shape) for k, v in reference.items()}, seed, "hmr",
                             dtypes={k: v.dtype for k, v in reference.items()}, mean_params=mean_params)


def write_spin_checkpoint(path, seed: int = 0, mean_params=None) -> None:
    """A file in SPIN's checkpoint format: {"model": state_dict, ...}."""
    torch.save({"model": hmr_recipe(seed, mean_params), "epoch": 0}, path)


def openpose_recipe(seed: int = 0) -> dict[str, torch.Tensor]:
    """`body_pose_model.pth` contents with recipe weights, seeded by the FILE keys as the goldens were."""
    from ..openpose.network import file_shapes

    return recipe_state_dict(file_shapes(), seed, "plain")


def write_openpose_weights(path, seed: int = 0) -> None:
    """A file in `body_pose_model.pth`'s format: a flat {file_key: tensor} dict."""
    torch.save(openpose_recipe(seed), path)
