"""Sensitivity pictures: the per-joint heatmaps and the mean-error overlay with the worst window marked.

Crops are RGB and shown as RGB (the original showed BGR as RGB); colour bars carry the real unit."""

from __future__ import annotations

import cv2
import numpy as np

from .. import constants as C
from ..demo.figures import pyplot_module, figure_to_rgb


def _upsample(grid_values: np.ndarray, res: int) -> np.ndarray:
    values = np.nan_to_num(grid_values.astype(np.float32), nan=0.0)
    return cv2.resize(values, (res, res), interpolation=cv2.INTER_CUBIC)


def joint_figure(crop_rgb: np.ndarray, result) -> np.ndarray:
    """2 x 7 panels: each joint's error over the window grid on the crop, one colour scale for all joints."""
    plt = pyplot_module()
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
    return figure_to_rgb(fig)


def _label(result) -> str:
    what = "root-aligned 3D error" if result.model == "spin" else "2D error"
    return f"{what} ({result.unit})"


def mean_figure(crop_rgb: np.ndarray, result) -> np.ndarray:
    """Mean error over joints per window on the crop, the worst window outlined."""
    plt = pyplot_module()
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
    return figure_to_rgb(fig)


# ---------------------------------------------------------------------------------------------- dataset analysis
def template_figure(values14, vertices, faces, cam_t, segmentation, label: str, title: str,
                    res: int = 960) -> np.ndarray:
    """The template body, each part coloured by the dataset's mean error when that part's joint(s) were occluded."""
    from ..demo import render
    from ..demo.figures import with_colorbar

    values = np.asarray(values14, dtype=np.float64)
    finite = values[np.isfinite(values)]
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    vertex_rgb = render.vertex_colours(values, segmentation, len(vertices), vmin, vmax)
    image, _ = render.render(vertices, faces, cam_t, np.zeros((res, res, 3), np.uint8), vertex_rgb=vertex_rgb)
    return with_colorbar(image, label, vmin, vmax, title)


def summary_figure(rows, matrix: np.ndarray, model: str, unit: str, reference: str) -> np.ndarray:
    """Left: mean error per occluded joint, with the same images unoccluded. Right: which joints suffer
    (mean error of each measured joint, rows = occluded joint)."""
    plt = pyplot_module()
    fig, (bars, grid) = plt.subplots(1, 2, figsize=(17, 6.2), layout="constrained",
                                     gridspec_kw={"width_ratios": [1.25, 1]})
    x = np.arange(len(rows))
    bars.bar(x - 0.2, [r.mean_error for r in rows], 0.4, label="occluded", color="tab:red")
    bars.bar(x + 0.2, [r.unoccluded for r in rows], 0.4, label="same images, unoccluded", color="tab:gray")
    bars.set_xticks(x, [r.joint for r in rows], rotation=45, ha="right")
    bars.set_ylabel(f"mean error over the 14 joints ({unit})")
    bars.set_title(f"{model}: occluding one joint at a time (n = {max(r.images for r in rows)} images, "
                   f"reference: {reference})", fontsize=10)
    bars.legend()
    shown = grid.imshow(matrix, cmap="jet")
    grid.set_xticks(x, [r.joint for r in rows], rotation=90)
    grid.set_yticks(x, [r.joint for r in rows])
    grid.set_xlabel("measured joint")
    grid.set_ylabel("occluded joint")
    grid.set_title("mean error of each joint", fontsize=10)
    fig.colorbar(shown, ax=grid, fraction=0.046, label=unit)
    return figure_to_rgb(fig)


def examples_figure(variants: np.ndarray, occluded: np.ndarray) -> np.ndarray:
    """One image's 15 variants (unoccluded first), to check where the occluders landed."""
    plt = pyplot_module()
    fig, axes = plt.subplots(3, 5, figsize=(12.5, 7.8), layout="constrained")
    for i, ax in enumerate(axes.ravel()):
        ax.imshow(np.clip(variants[i], 0, 255).astype(np.uint8))
        name = "unoccluded" if i == 0 else C.J14_NAMES[i - 1] + ("" if occluded[i - 1] else " (not occluded)")
        ax.set_title(name, fontsize=9)
        ax.axis("off")
    return figure_to_rgb(fig)
