"""What both sensitivity jobs (`image`, `dataset`) share: their options, which models each analysis needs, and the
arrays file they write."""

from __future__ import annotations

import io

import numpy as np

from ..files.fileio import json_bytes, write_atomic
from ..engine.options import ModelOptions, add_model_options


def add_common(p, batch_help: str, batch_default: int, gpu_batch: int | None = None) -> None:
    p.add_argument("--model", choices=("spin", "openpose", "both"), default="both",
                   help="which network to analyse (default: %(default)s)")
    p.add_argument("--occ-size", type=int, default=40, help="occluder side in crop px (default: %(default)s)")
    p.add_argument("--fill", default="mean", help="black, white, mean (ImageNet grey, the original's 0) or R,G,B "
                   "(default: %(default)s)")
    p.add_argument("--pixel-normalised", type=float, help="the original's --pixel value (normalised space); "
                   "overrides --fill")
    add_model_options(p, batch_default, batch_help, gpu_batch=gpu_batch)


PARTS = {"spin": {"spin", "smpl", "regressor_h36m"}, "openpose": {"body"}}


def parts(todo) -> set[str]:
    return set().union(*(PARTS[m] for m in todo))


def load(todo, options: ModelOptions, fixed_shapes: bool = False, items: int | None = None):
    """The networks for `todo` through the one model layer (folded SPIN, the device and precision options);
    `items`: occluded crops each network will run (for `--compile auto`)."""
    from ..engine.bundle import load_models

    return load_models(parts(todo), fixed_shapes=fixed_shapes, **options.choice(items))


def save_npz(path, arrays: dict, info: dict) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays, info=np.array(json_bytes(info).decode()))
    write_atomic(path, buffer.getvalue())
