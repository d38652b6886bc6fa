"""`meshconf qualitative --dataset 3dpw --img_number N`: predicted against ground-truth confidence for one dataset
image, from the ED arrays `meshconf extract` wrote for that dataset.

    meshconf qualitative --dataset 3dpw --img_number 285 --annotations 3dpw_test.npz --images data/3DPW/imageFiles \
        --arrays sp_op/3dpw --name 3dpw_test

Row N of the annotation file is the image. Its ED, SE and OpenPose confidence are found through the arrays' manifest
(image name and box centre), not by position: arrays made from another file or order are caught instead of showing
another image's numbers. `--by-position` accepts arrays without a manifest (the original's files) when the row
counts agree. SPIN runs on the crop for the mesh; OpenPose is not run (the ED row already holds its answer).

Writes the original's five pictures, `<ds>_img_<N>_{orig, mesh_confidence_pred, mesh_confidence_gt,
wj_confidence_pred, wj_confidence_gt}.png` (RGB, real colours), plus `<ds>_img_<N>_panel.png` (all of them with
colour bars and the per-joint estimated and true errors) and `<ds>_img_<N>_report.json`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .. import constants as C
from ..classifier.data import row_is_accurate
from ..errors import MeshconfError
from ..files.fileio import write_json
from ..sp_op.arrays import ArrayRow, find_row
from ..engine.options import (add_model_options, check_accept_precision, check_model_options, check_render_res,
    model_choice)
from ..files.imageio import write_image

DATASETS = ("3dpw", "3doh", "h36m_p1")
PX = C.NORM_UNIT_PX


def add_arguments(parser) -> None:
    parser.add_argument("--dataset", choices=DATASETS, default="h36m_p1", help="dataset name (names the files) (default: %(default)s)")
    parser.add_argument("--img_number", "--img-number", dest="img_number", type=int, default=0,
                        help="row of the annotation file (default: %(default)s)")
    parser.add_argument("--annotations", required=True, help="annotation .npz (meshconf annotate)")
    parser.add_argument("--images", required=True, help="image root the annotation's imgname paths are relative to")
    parser.add_argument("--arrays", required=True, help="folder with <name>_sp_op/_sp_gt/_conf.npy (meshconf extract)")
    parser.add_argument("--name", help="array name prefix (default: <dataset>_test)")
    parser.add_argument("--by-position", action="store_true",
                        help="arrays without a manifest: take row N (only when the row counts agree)")
    parser.add_argument("--estimator", default="default", help="default, original, or a .safetensors file")
    parser.add_argument("--accept-precision", type=float,
                        help="say whether the mesh passes the estimator's operating point for this precision of "
                             "accepted meshes (e.g. 0.9)")
    parser.add_argument("--renderer", default="auto", choices=("auto", "software", "pyrender"),
                        help="pyrender (OpenGL offscreen) or the built-in software renderer (default: %(default)s)")
    parser.add_argument("--render-res", type=int, default=448, help="render size in px (default: %(default)s)")
    add_model_options(parser, 1, "crops per forward pass (one image here)")
    parser.add_argument("--out", default="qualitative", help="output folder (default: %(default)s)")


@dataclass
class _Estimate:
    """One image's estimate, in the shape `figures.part_scores` reads."""

    joint_error: np.ndarray | None
    worst_joint_prob: np.ndarray


def painted(vertices, faces, cam_t, crop_rgb, values14, segmentation, vmin, vmax, res, backend):
    from ..demo import render

    vertex_rgb = render.vertex_colours(values14, segmentation, len(vertices), vmin, vmax)
    return render.render(vertices, faces, cam_t, crop_rgb, vertex_rgb=vertex_rgb, res=res, backend=backend)[0]


def panel(ds: str, n: int, pictures: dict, found: ArrayRow, prediction, label: str, vmin: float, vmax: float,
          gt_range: tuple[float, float]) -> np.ndarray:
    from ..demo.figures import pyplot_module, figure_to_rgb

    plt = pyplot_module()
    fig, axes = plt.subplots(1, 6, figsize=(27, 4.8), gridspec_kw={"width_ratios": [1, 1, 1, 1.15, 1.15, 1.4]},
                             layout="constrained")
    p = float(prediction.p_accurate[0])
    titles = ["crop", f"predicted: P(accurate) = {p:.2f}",
              f"ground truth: {'accurate' if row_is_accurate(found.se) else 'inaccurate'} "
              f"(max SE {found.se.max() * PX:.1f} px)", f"predicted per part ({label})", "true per part (SE, px)"]
    keys = ["orig", "mesh_confidence_pred", "mesh_confidence_gt", "wj_confidence_pred", "wj_confidence_gt"]
    for ax, key, title in zip(axes, keys, titles):
        shown = ax.imshow(pictures[key])
        ax.set_title(title, fontsize=10)
        ax.axis("off")
        if key.startswith("wj"):
            lo, hi = (vmin, vmax) if key.endswith("pred") else gt_range
            shown = ax.imshow(pictures[key], cmap="jet", vmin=lo, vmax=hi)
            shown.set_data(pictures[key])
            fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    ax = axes[5]
    y = np.arange(C.NUM_J14)
    ax.barh(y - 0.2, found.se * PX, 0.4, color="tab:gray", label="true SE")
    ax.barh(y + 0.2, found.ed * PX, 0.4, color="tab:blue", label="ED")
    if prediction.joint_error is not None:
        ax.plot(prediction.joint_error[0] * PX, y, "o", color="tab:red", ms=5, label="estimated error")
    ax.axvline(C.ACCURATE_SE_THRESHOLD * PX, color="k", lw=0.8, ls="--")
    ax.set_yticks(y, C.J14_NAMES, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("crop px (dashed: the 11.2 px accuracy line)")
    ax.legend(fontsize=7)
    fig.suptitle(f"{ds} image {n}", fontsize=11)
    return figure_to_rgb(fig)


def run(args) -> int:
    import cv2
    import torch

    from .. import geometry
    from ..demo import render
    from ..engine.bundle import load_models, require_files
    from ..dataset import AnnotatedCrops
    from ..demo.figures import part_scores

    check_model_options(args)
    check_render_res(args.render_res)
    check_accept_precision(args.accept_precision)
    data = AnnotatedCrops(args.annotations, args.images)
    n = args.img_number
    if not 0 <= n < len(data):
        raise MeshconfError(f"--img_number must be in 0..{len(data) - 1} for {args.annotations}, got {n}")
    name = args.name or f"{args.dataset}_test"
    a = data.annotations
    found = find_row(args.arrays, name, a.imgname[n], a.center[n], n, len(data), args.by_position)
    parts = {"spin", "smpl", "estimator", "segmentation"}
    require_files(parts, args.data_dir, args.checkpoint, args.offline)
    models = load_models(parts, estimator=args.estimator, **model_choice(args))
    smpl, segmentation, estimator = models.smpl, models.segmentation, models.estimator
    crop = data[n]["crop"]
    network_input = crop
    if found.occluded_joint >= 0:  # the arrays were made with this joint covered: run and show the same crop
        from ..dataset.occlusion import NAMED_FILLS, joint_window

        y0, x0, y1, x1 = joint_window(data[n]["joints2d"][found.occluded_joint], found.occ_size)
        network_input = crop.astype(np.float32)  # as `extract` filled it (the exact grey, not rounded)
        network_input[y0:y1, x0:x1] = np.asarray(NAMED_FILLS["mean"], dtype=np.float32)
        crop = np.round(network_input).astype(np.uint8)
    with torch.inference_mode():
        rotmat, betas, camera = models.spin(geometry.normalize_crop(network_input[None], models.device))
        vertices = smpl(rotmat, betas).vertices[0].double().cpu().numpy()
    cam_t = geometry.camera_translation(camera)[0].double().cpu().numpy()
    prediction = estimator.predict(found.ed[None], found.conf[None])
    acceptance = {}
    if args.accept_precision is not None:
        passes, threshold = estimator.accepts(float(prediction.p_accurate[0]), args.accept_precision)
        acceptance = {"accepted": passes, "acceptance": {"target_precision": args.accept_precision,
                                                         "threshold": threshold}}

    estimate = _Estimate(None if prediction.joint_error is None else prediction.joint_error[0],
                         prediction.worst_joint_prob[0])
    _, label, vmin, vmax = part_scores(estimate, segmentation)
    # the same values part_scores coloured: estimated error in px, or the worst-joint probability
    pred_values = estimate.worst_joint_prob if estimate.joint_error is None else estimate.joint_error * PX
    se_px = found.se * PX
    gt_range = (0.0, max(30.0, float(np.nanmax(se_px)) if np.isfinite(se_px).any() else 30.0))
    res, backend = args.render_res, args.renderer
    accurate_pred = bool(prediction.p_accurate[0] > 0.5)
    accurate_gt = row_is_accurate(found.se)

    def mc(accurate):
        return render.render(vertices, smpl.faces, cam_t, crop, colour=render.GOOD_RGB if accurate else render.BAD_RGB,
                             res=res, backend=backend)[0]

    pictures = {
        "orig": cv2.resize(crop, (res, res), interpolation=cv2.INTER_LINEAR),
        "mesh_confidence_pred": mc(accurate_pred),
        "mesh_confidence_gt": mc(accurate_gt),
        "wj_confidence_pred": painted(vertices, smpl.faces, cam_t, crop, pred_values, segmentation, vmin, vmax, res,
                                      backend),
        "wj_confidence_gt": painted(vertices, smpl.faces, cam_t, crop, se_px, segmentation, *gt_range, res, backend),
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"{args.dataset}_img_{n}")
    for key, picture in pictures.items():
        write_image(f"{stem}_{key}.png", picture[:, :, ::-1])
    write_image(f"{stem}_panel.png",
                panel(args.dataset, n, pictures, found, prediction, label, vmin, vmax, gt_range)[:, :, ::-1])
    report = {"dataset": args.dataset, "img_number": n, "imgname": str(a.imgname[n]),
              "center": [float(v) for v in a.center[n]], "array_row": found.row, "matched_by": found.matched_by,
              "ed_px": (found.ed * PX).tolist(), "se_px": se_px.tolist(), "conf": found.conf.tolist(),
              "p_accurate": float(prediction.p_accurate[0]), "accurate_predicted": accurate_pred,
              "accurate_ground_truth": accurate_gt,
              "worst_joint_predicted": C.J14_NAMES[int(np.argmax(prediction.worst_joint_prob[0]))],
              "worst_joint_ground_truth": C.J14_NAMES[int(np.nanargmax(found.se))] if np.isfinite(found.se).any()
              else None,
              "estimated_error_px": None if prediction.joint_error is None else (prediction.joint_error[0] * PX).tolist(),
              "error_bound_px": None if prediction.joint_error_bound is None
              else (prediction.joint_error_bound[0] * PX).tolist(),
              "bound_coverage": estimator.bound_coverage, **acceptance,
              "occluded_joint": C.J14_NAMES[found.occluded_joint] if found.occluded_joint >= 0 else None,
              "estimator": args.estimator, "renderer": render.resolve_backend(args.renderer),
              "device": str(models.device), "precision": models.precision,
              "tf32": models.tf32}
    write_json(f"{stem}_report.json", report)
    from ..demo.pages import gallery

    base = os.path.basename(stem)
    gallery(args.out, f"meshconf qualitative: {args.dataset} image {n}",
            [(f"{base}_panel.png", "panel: predicted and ground-truth confidence, per-joint numbers")] +
            [(f"{base}_{key}.png", key.replace("_", " ")) for key in pictures],
            note=f"{a.imgname[n]}; P(accurate) {report['p_accurate']:.2f}; report: {base}_report.json",
            name=f"{base}.html")
    print(f"{args.dataset} image {n} ({a.imgname[n]}, array row {found.row} by {found.matched_by}): "
          f"P(accurate) {report['p_accurate']:.2f}, ground truth {'accurate' if accurate_gt else 'inaccurate'}; "
          f"worst joint predicted {report['worst_joint_predicted']}, true {report['worst_joint_ground_truth']}"
          + (f"; {'accepted' if acceptance['accepted'] else 'not accepted'} at precision {args.accept_precision:g} "
             f"(threshold {acceptance['acceptance']['threshold']:.3f})" if acceptance else "")
          + f" -> {stem}_*.png")
    return 0
