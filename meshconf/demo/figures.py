"""Pictures of one analysed crop: the two mesh renders, the per-part render with its colour bar, a panel with
both models' keypoints, and an overview of a whole image. Headless (matplotlib's Agg backend)."""

from __future__ import annotations

import io

import cv2
import numpy as np

from .. import constants as C
from . import render

LIMBS_J14 = ((0, 1), (1, 2), (2, 3), (3, 4), (4, 5), (6, 7), (7, 8), (8, 12), (9, 12), (9, 10), (10, 11),
             (12, 13), (2, 8), (3, 9))


def pyplot_module():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def figure_to_rgb(fig) -> np.ndarray:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    pyplot_module().close(fig)
    return cv2.imdecode(np.frombuffer(buffer.getvalue(), np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]


def joint_scores(analysis) -> tuple[np.ndarray, str, float, float]:
    """The per-joint values to paint, their label and colour range: the estimated error in px when the estimator
    predicts it, else the worst-joint probability."""
    if analysis.joint_error is not None:
        values = np.asarray(analysis.joint_error) * C.NORM_UNIT_PX
        return values, "estimated joint error (px)", 0.0, max(30.0, float(np.max(values)))
    values = np.asarray(analysis.worst_joint_prob)
    return values, "worst-joint probability", 0.0, max(0.2, float(np.max(values)))


def part_scores(analysis, segmentation) -> tuple[dict[str, float], str, float, float]:
    """Per-part values (`joint_scores` averaged over each part's joints), their label and colour range."""
    values, label, vmin, vmax = joint_scores(analysis)
    return render.part_values(values, segmentation), label, vmin, vmax


def mesh_colours(analysis, segmentation) -> tuple[np.ndarray, dict, str, float, float]:
    """(per-vertex RGB in 0-1, per-part values, label, vmin, vmax)."""
    values, label, vmin, vmax = joint_scores(analysis)
    vertex_rgb = render.vertex_colours(values, segmentation, len(analysis.vertices), vmin, vmax)
    return vertex_rgb, render.part_values(values, segmentation), label, vmin, vmax


def renders(analysis, segmentation, faces, res: int, backend: str = "software"):
    vertex_rgb, parts, label, vmin, vmax = mesh_colours(analysis, segmentation)
    colour = render.GOOD_RGB if analysis.accurate else render.BAD_RGB
    mc, _ = render.render(analysis.vertices, faces, analysis.cam_t, analysis.crop_rgb, colour=colour, res=res,
                          backend=backend)
    per_part, _ = render.render(analysis.vertices, faces, analysis.cam_t, analysis.crop_rgb, vertex_rgb=vertex_rgb,
                                res=res, backend=backend)
    return mc, per_part, vertex_rgb, parts, label, vmin, vmax


def with_colorbar(image_rgb: np.ndarray, label: str, vmin: float, vmax: float, title: str = "") -> np.ndarray:
    plt = pyplot_module()
    fig, ax = plt.subplots(figsize=(5.2, 4.6))
    shown = ax.imshow(image_rgb, cmap="jet", vmin=vmin, vmax=vmax)
    shown.set_data(image_rgb)  # the picture is already coloured; the mappable only drives the colour bar
    ax.axis("off")
    if title:
        ax.set_title(title, fontsize=10)
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label=label)
    return figure_to_rgb(fig)


def keypoint_panel(analysis, mc_rgb, per_part_rgb, label, vmin, vmax) -> np.ndarray:
    """Crop with SPIN's (green) and OpenPose's (red, aligned as ED sees them) joints, both renders, ED per joint."""
    plt = pyplot_module()
    fig, axes = plt.subplots(1, 4, figsize=(18, 4.4), gridspec_kw={"width_ratios": [1, 1, 1, 1.3]},
                             layout="constrained")
    ax = axes[0]
    ax.imshow(analysis.crop_rgb)
    spin = analysis.spin_keypoints_2d[list(C.SPIN_TO_J14_ED)]
    op = analysis.relative.op_points + (spin[0] - analysis.relative.spin_points[0])  # undo the anchor shift
    for a, b in LIMBS_J14:
        ax.plot(spin[[a, b], 0], spin[[a, b], 1], "-", color="lime", lw=1.5)
        if not (analysis.relative.missing[a] or analysis.relative.missing[b]):
            ax.plot(op[[a, b], 0], op[[a, b], 1], "-", color="red", lw=1.5)
    present = ~analysis.relative.missing
    ax.scatter(spin[:, 0], spin[:, 1], s=12, c="lime", label="SPIN")
    ax.scatter(op[present, 0], op[present, 1], s=12, c="red", label="OpenPose (spine-aligned)")
    ax.set_xlim(0, C.IMG_RES), ax.set_ylim(C.IMG_RES, 0), ax.axis("off")
    ax.legend(loc="lower left", fontsize=7)
    ax.set_title("keypoints", fontsize=10)
    axes[1].imshow(mc_rgb), axes[1].axis("off")
    axes[1].set_title(f"mesh classifier: P(accurate) = {analysis.p_accurate:.2f}", fontsize=10)
    shown = axes[2].imshow(per_part_rgb, cmap="jet", vmin=vmin, vmax=vmax)
    shown.set_data(per_part_rgb)
    axes[2].axis("off"), axes[2].set_title("per part", fontsize=10)
    fig.colorbar(shown, ax=axes[2], fraction=0.046, pad=0.04, label=label)
    ed_px = analysis.ed * C.NORM_UNIT_PX
    colours = ["grey" if m else "tab:blue" for m in analysis.relative.missing]
    axes[3].barh(range(C.NUM_J14), ed_px, color=colours)
    if analysis.joint_error is not None:
        axes[3].plot(analysis.joint_error * C.NORM_UNIT_PX, range(C.NUM_J14), "o", color="tab:red", ms=4,
                     label="estimated error")
        axes[3].legend(fontsize=7)
    axes[3].set_yticks(range(C.NUM_J14), C.J14_NAMES, fontsize=8)
    axes[3].invert_yaxis()
    axes[3].set_xlabel("ED (px; grey = not detected by OpenPose)")
    return figure_to_rgb(fig)


OVERVIEW_MAX_SIDE = 1600  # px: enough to look at, and a 16-megapixel PNG would take seconds to write


def overview(image_bgr: np.ndarray, boxes, analyses) -> np.ndarray:
    """The whole image (at most OVERVIEW_MAX_SIDE px) with each person's box, coloured by P(accurate), numbered."""
    f = min(1.0, OVERVIEW_MAX_SIDE / max(image_bgr.shape[:2]))
    out = image_bgr.copy() if f == 1.0 else cv2.resize(image_bgr, None, fx=f, fy=f, interpolation=cv2.INTER_AREA)
    thickness = max(2, round(max(out.shape[:2]) / 400))
    for k, (box, analysis) in enumerate(zip(boxes, analyses)):
        ul, br = (np.asarray(corner, dtype=np.float64) * f for corner in box.corners())
        p = analysis.p_accurate
        if not np.isfinite(p) or analysis.problem:  # no usable estimate: grey, and say so
            colour, p = (160, 160, 160), float("nan")
        else:
            colour = (int(80 * p), int(200 * p), int(220 * (1 - p)))  # BGR: red (inaccurate) to green (accurate)
        cv2.rectangle(out, tuple(int(v) for v in ul), tuple(int(v) for v in br), colour, thickness)
        cv2.putText(out, f"#{k} P(acc)={p:.2f}", (int(ul[0]) + 4, int(ul[1]) + 8 * thickness + 6),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.3 * thickness, colour, max(1, thickness // 2), cv2.LINE_AA)
    return out
