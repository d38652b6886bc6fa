"""What the demo writes for an analysed image, for the CLI and Python alike (`MeshConfidence.save`).

    <folder>/index.html, overview.png, report.json       the image: one box per person, the results page
    <folder>/person<k>/crop.png, mc.png, parts.png,       each person: the crop, both renders, the keypoint panel,
                      panel.png, mesh.ply, mesh.glb,      the coloured mesh (glTF axes: y up) and the numbers
                      report.json

report.json follows `meshconf/data/report.schema.json` (its `schema_version` is REPORT_SCHEMA_VERSION). A folder is
written whole and then swapped in, so a rerun never leaves a previous run's person folders behind.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import numpy as np

from .. import constants as C
from .. import geometry
from ..demo import figures
from ..demo.pages import write_demo_page
from ..demo.render import resolve_backend
from ..files.fileio import commit_folder, staging_folder, write_json
from ..files.imageio import write_image
from ..files.meshio import write_glb, write_ply


@dataclass(frozen=True)
class OutputOptions:
    """How the pictures are drawn and what the report states (the demo's --render-res, --renderer,
    --accept-precision, --estimator)."""
    render_res: int = 448
    renderer: str = "auto"
    accept_precision: float | None = None
    estimator: str = "default"


# report.json's layout (meshconf/data/report.schema.json); raised when a field changes meaning or type
REPORT_SCHEMA_VERSION = 2


def person_report(analysis, box, parts, label, render_ms, image_wh) -> dict:
    names = C.J14_NAMES
    ed_px = analysis.ed * C.NORM_UNIT_PX
    side = float(box.scale * C.BOX_SCALE_PX)
    report = {
        "schema_version": REPORT_SCHEMA_VERSION,
        "box": {"center_px": [float(v) for v in box.center], "scale": float(box.scale),
                "side_px": side, "source": box.source},
        "p_accurate": analysis.p_accurate,
        "accurate": analysis.accurate,
        "worst_joint": names[int(np.argmax(analysis.worst_joint_prob))],
        "worst_joint_prob": dict(zip(names, map(float, analysis.worst_joint_prob))),
        "ed_px": dict(zip(names, map(float, ed_px))),
        "ed_definition": "legacy (subset[0], no alignment)" if analysis.legacy else "spine-aligned (training)",
        "openpose_confidence": dict(zip(names, map(float, analysis.conf))),
        "missing_joints": [n for n, m in zip(names, analysis.relative.missing) if m],
        "openpose_person": analysis.relative.person,
        "openpose_people_in_crop": int(len(analysis.subset)),
        "part_scores": {"unit": label, "values": {k: float(v) for k, v in parts.items()}},
        "timings_ms": {**{k: round(v, 2) for k, v in analysis.timings.items()}, "render_ms": round(render_ms, 2)},
    }
    if analysis.joint_error is not None:
        report["estimated_joint_error_px"] = dict(zip(names, map(float, analysis.joint_error * C.NORM_UNIT_PX)))
    if analysis.joint_error_bound is not None:
        report["joint_error_bound_px"] = dict(zip(names, map(float, analysis.joint_error_bound * C.NORM_UNIT_PX)))
    if analysis.rotmat is not None and not analysis.problem:
        translation, focal = geometry.full_image_camera(analysis.camera, box.center, side, image_wh)
        report["smpl"] = {"rotmat": analysis.rotmat.tolist(), "betas": analysis.betas.tolist(),
                          "frame": "SPIN's camera frame: x right, y down, z forward; rotmat[0] is the global "
                                   "orientation, rotmat[1:] the 23 body joints (SMPL order)"}
        report["camera"] = {"weak_perspective": analysis.camera.tolist(),
                            "crop_translation": [float(v) for v in analysis.cam_t],
                            "crop_focal_length_px": C.FOCAL_LENGTH, "crop_size_px": C.IMG_RES,
                            "full_image_translation": translation.tolist(), "full_image_focal_length_px": focal,
                            "full_image_principal_point_px": [image_wh[0] / 2, image_wh[1] / 2]}
    if analysis.problem:
        report["problem"] = analysis.problem
    return report


def _acceptance(report: dict, analysis, models, options: OutputOptions) -> None:
    """With `accept_precision`: whether this mesh passes the estimator's operating point for that precision."""
    if options.accept_precision is None:
        return
    passes, threshold = models.estimator.accepts(analysis.p_accurate, options.accept_precision)
    report["accepted"] = bool(not analysis.problem and passes)
    report["acceptance"] = {"target_precision": options.accept_precision, "threshold": threshold}


def write_person(folder: str, analysis, box, models, options: OutputOptions, image_wh=(C.IMG_RES, C.IMG_RES)) -> dict:
    """One person's folder: crop.png, mc.png, parts.png, panel.png, mesh.ply, mesh.glb and report.json."""

    os.makedirs(folder, exist_ok=True)
    write_image(os.path.join(folder, "crop.png"), analysis.crop_rgb[:, :, ::-1])
    if analysis.problem:
        report = person_report(analysis, box, {}, "", 0.0, image_wh)
        _acceptance(report, analysis, models, options)
        write_json(os.path.join(folder, "report.json"), report)
        return report
    start = time.perf_counter()
    faces = models.smpl.faces
    mc, per_part, vertex_rgb, parts, label, vmin, vmax = figures.renders(analysis, models.segmentation, faces,
                                                                         options.render_res, options.renderer)
    render_ms = (time.perf_counter() - start) * 1e3
    write_image(os.path.join(folder, "mc.png"), mc[:, :, ::-1])
    write_image(os.path.join(folder, "parts.png"),
                figures.with_colorbar(per_part, label, vmin, vmax)[:, :, ::-1])
    write_image(os.path.join(folder, "panel.png"),
                figures.keypoint_panel(analysis, mc, per_part, label, vmin, vmax)[:, :, ::-1])
    # SPIN's camera frame has y down and z forward; glTF and most viewers want y up.
    upright = analysis.vertices * np.array([1.0, -1.0, -1.0])
    write_ply(os.path.join(folder, "mesh.ply"), upright, faces, vertex_rgb)
    write_glb(os.path.join(folder, "mesh.glb"), upright, faces, vertex_rgb)
    report = person_report(analysis, box, parts, label, render_ms, image_wh)
    _acceptance(report, analysis, models, options)
    write_json(os.path.join(folder, "report.json"), report)
    return report


def write_image_result(folder: str, image_bgr: np.ndarray, result, models, options: OutputOptions,
                       name: str | None = None) -> dict:
    """Every output of one analysed image (an `ImageResult`) into `folder`; returns its report (`name`: the input
    as the report states it, by default the result's)."""
    final, folder = folder, staging_folder(folder)  # written whole, then swapped in
    people = [write_person(os.path.join(folder, f"person{k}"), person.analysis, person.box, models, options,
                           result.image_size) for k, person in enumerate(result.people)]
    report = {"schema_version": REPORT_SCHEMA_VERSION, "input": name or result.name, "image_size": list(result.image_size),
              "people": people,
              "person_detection_ms": result.person_detection_ms, "models": models.paths,
              "estimator": options.estimator, "device": str(models.device), "precision": models.precision,
              "tf32": models.tf32, "renderer": resolve_backend(options.renderer)}
    if not result.people:
        report["message"] = "no person found"
    write_image(os.path.join(folder, "overview.png"), figures.overview(image_bgr, result.boxes, result.analyses))
    write_json(os.path.join(folder, "report.json"), report)
    write_demo_page(folder, report)
    commit_folder(folder, final)
    return report
