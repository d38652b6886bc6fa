"""Sensitivity pictures: the per-joint heatmaps and the mean-error overlay with the worst window marked.

Crops are RGB and shown as RGB (the original showed BGR as RGB); colour bars carry the real unit."""

from __future__ import annotations

import cv2
import numpy as np

from .. import constants as C
from ..figures import _pyplot, _to_rgb


def _upsample(grid_values: np.ndarray, res: int) -> np.ndarray:
    values = np.nan_to_num(grid_values.astype(np.float32), nan=0.0)
    return cv2.resize(values, (res, res), interpolation=cv2.INTER_CUBIC)


def joint_figure(crop_rgb: np.ndarray, result) -> np.ndarray:
    """2 x 7 panels: each joint's error over the window grid on the crop, one colour scale for all joints."""
    plt = _pyplot()
    heat = result.heatmap
    vmax = float(np.nanmax(heat)) if np.isfinite(heat).any() else 1.0
    fig, axes = plt.subplots(2, 7, figsize=(21, 6.6), layout="constrained")
    for j, ax in enumerate(axes.ravel()):
        ax.imshow(crop_rgb.astype(np.uint8))
        shown = ax.imshow(_upsample(heat[:, :, j], crop_rgb.shape[0]), cmap="jet", alpha=0.4, vmin=0, vmax=vmax)
        values = heat[:, :, j]
        finite = values[np.isfinite(values)]
        span = f"{finite.min():.1f}-{finite.max():.1f} {result.unit}" if finite.size else "not detected"
        ax.set_title(f"{C.J14_NAMES[j]}\n{span}", fontsize=10)
        ax.axis("off")
    fig.colorbar(shown, ax=axes, fraction=0.02, label=_label(result))
    fig.suptitle(f"{result.model}: error per joint when each window is occluded (reference: {result.reference})")
    return _to_rgb(fig)


def _label(result) -> str:
    what = "root-aligned 3D error" if result.model == "spin" else "2D error"
    return f"{what} ({result.unit})"


def mean_figure(crop_rgb: np.ndarray, result) -> np.ndarray:
    """Mean error over joints per window on the crop, the worst window outlined."""
    plt = _pyplot()
    res = crop_rgb.shape[0]
    n = result.grid.per_axis
    fig, ax = plt.subplots(figsize=(6.4, 5.4), layout="constrained")
    ax.imshow(crop_rgb.astype(np.uint8))
    mean = result.mean.reshape(n, n)
    shown = ax.imshow(_upsample(mean, res), cmap="jet", alpha=0.5)
    y0, x0, y1, x1 = result.grid.windows[result.worst_window]
    ax.add_patch(plt.Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False, edgecolor="red", linewidth=2))
    ax.axis("off")
    finite = result.mean[np.isfinite(result.mean)]
    if finite.size:
        ax.set_title(f"{result.model}: mean {_label(result)}\nmin {finite.min():.1f}, max {finite.max():.1f} "
                     f"{result.unit} (red: worst window)", fontsize=10)
    fig.colorbar(shown, ax=ax, fraction=0.046, label=f"mean {_label(result)}")
    return _to_rgb(fig)
