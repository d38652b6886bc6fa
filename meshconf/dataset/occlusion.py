"""Occluder geometry and filling: pure functions on arrays.

The original painted its occluder into the ImageNet-normalised tensor with one number for all three channels, so
black could not be expressed and the value meant a different grey per channel. Here a fill is an RGB colour in
0-255 (float, not rounded), and the original's normalised values convert exactly to the colour they produced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import constants as C
from ..errors import MeshconfError

NAMED_FILLS = {"black": (0.0, 0.0, 0.0), "white": (255.0, 255.0, 255.0),
               "mean": tuple(255.0 * m for m in C.IMG_NORM_MEAN)}  # ImageNet mean grey = the original's pixel 0


@dataclass(frozen=True)
class Grid:
    """Sliding windows over a res x res crop, row-major: window i has top-left (row_i, col_i), clipped at res."""

    res: int
    size: int
    stride: int

    @property
    def per_axis(self) -> int:
        """The original's count: ceil((res - size) / stride + 1) (11 for 224, 40, 20)."""
        return math.ceil((self.res - self.size) / self.stride + 1)

    @property
    def windows(self) -> np.ndarray:
        """(n*n, 4) int rows [y0, x0, y1, x1], y1/x1 exclusive and clipped at res."""
        starts = np.arange(self.per_axis) * self.stride
        y0, x0 = np.meshgrid(starts, starts, indexing="ij")
        y0, x0 = y0.ravel(), x0.ravel()
        return np.stack([y0, x0, np.minimum(y0 + self.size, self.res), np.minimum(x0 + self.size, self.res)], 1)

    def __post_init__(self):
        if not (0 < self.size <= self.res) or self.stride <= 0:
            raise MeshconfError(f"occluder size must be in 1..{self.res} and stride positive "
                                f"(got size {self.size}, stride {self.stride})")


def parse_fill(text: str | None = None, normalised: float | None = None) -> tuple[float, float, float]:
    """An RGB fill from a name (black, white, mean), 'R,G,B', or the original's normalised value v (the colour it
    painted: (v * std + mean) * 255 per channel, values outside 0-255 kept as the original did)."""
    if normalised is not None:
        return tuple(float((normalised * s + m) * 255) for m, s in zip(C.IMG_NORM_MEAN, C.IMG_NORM_STD))
    text = (text or "mean").strip().lower()
    if text in NAMED_FILLS:
        return NAMED_FILLS[text]
    try:
        rgb = tuple(float(v) for v in text.split(","))
    except ValueError:
        rgb = ()
    if len(rgb) != 3 or not all(0 <= v <= 255 for v in rgb):
        raise MeshconfError(f"--fill must be black, white, mean or R,G,B in 0-255, got {text!r}")
    return rgb


def occluded_copies(crop_rgb: np.ndarray, windows: np.ndarray, fill) -> np.ndarray:
    """(W,H,W,3) float32 copies of the crop (0-255), window i filled with `fill` in copy i."""
    crop = np.asarray(crop_rgb, dtype=np.float32)
    out = np.repeat(crop[None], len(windows), axis=0)
    colour = np.asarray(fill, dtype=np.float32)
    for i, (y0, x0, y1, x1) in enumerate(np.asarray(windows)):
        out[i, y0:y1, x0:x1] = colour
    return out


def joint_window(center_xy, size: int, res: int = C.IMG_RES) -> np.ndarray:
    """The original's joint occluder: top-left max(joint - size/2, 0) truncated to int, clipped at res."""
    x0 = int(max(center_xy[0] - size / 2, 0))
    y0 = int(max(center_xy[1] - size / 2, 0))
    return np.array([y0, x0, min(y0 + size, res), min(x0 + size, res)])
