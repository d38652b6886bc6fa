"""The confidence pipeline on person crops: SPIN + SMPL, OpenPose on the same crop, ED, the error estimator.

`analyse_crops()` takes the models `meshconf.engine.bundle.load_models` loaded and runs a list of 224x224 crops through the models in batches and returns one typed
`CropAnalysis` per crop. Person boxes for a whole image come from OpenPose (`boxes_from_people`, SPIN's rule).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch

from .. import constants as C
from .bundle import Models
from .. import geometry, sp_op
from ..errors import MeshconfError

OPENPOSE_BOX_MIN_SCORE = 0.2  # SPIN's bbox_from_openpose: keypoints above this confidence
OPENPOSE_BOX_RESCALE = 1.2  # ... and the box enlarged by 20%


@dataclass(frozen=True)
class Box:
    """A person box in SPIN's convention: centre (px) and scale (box side / 200 px)."""

    center: tuple[float, float]
    scale: float
    source: str  # "cropped", "bbox", "openpose"

    def corners(self) -> tuple[np.ndarray, np.ndarray]:
        return geometry.crop_box(self.center, self.scale)


def _number(value) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def box_from_xywh(x: float, y: float, w: float, h: float) -> Box:
    """SPIN's rule for a detector box: centre of the box, scale 1.2 x max(w, h) / 200."""
    if w <= 0 or h <= 0:
        raise MeshconfError(f"--bbox needs a positive width and height, got {w}x{h}")
    return Box((x + w / 2, y + h / 2), OPENPOSE_BOX_RESCALE * max(w, h) / C.BOX_SCALE_PX, "bbox")


def boxes_from_people(candidate, subset, max_people: int | None = None) -> list[Box]:
    """One box per OpenPose person (SPIN's `bbox_from_openpose`: mean of the keypoints above 0.2 as centre, their
    largest extent x 1.2 as size), strongest people first."""
    from ..openpose import people

    found = []
    for person in people(candidate, subset):
        valid = person.present & (person.keypoints[:, 2] > OPENPOSE_BOX_MIN_SCORE)
        points = person.keypoints[valid, :2]
        if len(points) < 2:
            continue
        size = float((points.max(0) - points.min(0)).max())
        if size < 4:
            continue
        found.append((person.total_score, Box(tuple(points.mean(0)), OPENPOSE_BOX_RESCALE * size / C.BOX_SCALE_PX,
                                              "openpose")))
    found.sort(key=lambda item: -item[0])
    return [box for _, box in found[:max_people]]


@dataclass
class CropAnalysis:
    """Everything the pipeline knows about one person crop."""

    crop_rgb: np.ndarray  # (224,224,3) uint8
    vertices: np.ndarray  # (6890,3) SMPL vertices, SPIN camera frame
    cam_t: np.ndarray  # (3,)
    spin_keypoints_2d: np.ndarray  # (49,2) crop px
    candidate: np.ndarray
    subset: np.ndarray
    relative: sp_op.RelativeED
    ed_legacy: np.ndarray  # (14,) the original demo's ED
    legacy: bool  # whether the estimator saw the legacy ED
    p_accurate: float
    worst_joint_prob: np.ndarray  # (14,)
    joint_error: np.ndarray | None  # (14,) normalised units
    timings: dict[str, float] = field(default_factory=dict)
    problem: str | None = None  # set when the models produced no usable output
    joint_error_bound: np.ndarray | None = None  # (14,) upper bound at the estimator's bound_coverage
    rotmat: np.ndarray | None = None  # (24,3,3) SMPL joint rotations (global orientation first), SPIN's frame
    betas: np.ndarray | None = None  # (10,) SMPL shape
    camera: np.ndarray | None = None  # (3,) SPIN's weak-perspective camera [s, tx, ty] of the crop

    @property
    def ed(self) -> np.ndarray:
        return self.ed_legacy if self.legacy else self.relative.ed

    @property
    def worst_joint(self) -> str:
        """The J14 joint the estimator finds most likely to be the worst."""
        return C.J14_NAMES[int(np.argmax(self.worst_joint_prob))]

    def __repr__(self) -> str:  # the arrays (a 6890-vertex mesh, the crop) would make it 400,000 characters
        if self.problem:
            return f"CropAnalysis(problem={self.problem!r})"
        return (f"CropAnalysis(p_accurate={self.p_accurate:.3f}, worst_joint={self.worst_joint!r}, "
                f"ed_px_max={float(np.nanmax(self.ed)) * C.NORM_UNIT_PX:.1f}, people_detected={len(self.subset)})")

    def to_dict(self) -> dict:
        """The numbers of this analysis as plain JSON-ready values (ED and errors in px; no mesh, no image)."""
        px = C.NORM_UNIT_PX
        out = {"p_accurate": float(self.p_accurate), "accurate": bool(self.accurate), "problem": self.problem,
               "joints": list(C.J14_NAMES), "ed_px": [_number(v * px) for v in self.ed],
               "openpose_confidence": [_number(v) for v in self.conf],
               "worst_joint_prob": [float(v) for v in self.worst_joint_prob],
               "worst_joint": self.worst_joint,
               "spin_camera_translation": [float(v) for v in self.cam_t]}
        if self.joint_error is not None:
            out["joint_error_px"] = [_number(v * px) for v in self.joint_error]
        if self.joint_error_bound is not None:
            out["joint_error_bound_px"] = [_number(v * px) for v in self.joint_error_bound]
        return out

    @property
    def conf(self) -> np.ndarray:
        return self.relative.conf

    @property
    def accurate(self) -> bool:
        return self.p_accurate > 0.5


def _op_input(crop_rgb: np.ndarray) -> np.ndarray:
    """The demo's OpenPose input: BGR float32 0-255 from the /255 crop tensor."""
    from ..openpose.preprocess import bgr_from_rgb

    return bgr_from_rgb((crop_rgb.astype(np.float32) / np.float32(255)) * np.float32(255))


def analyse_crops(models: Models, crops_rgb: list[np.ndarray], legacy_ed: bool = False,
                  batch_size: int = 16, depth: int | None = None, workers: int | None = None) -> list[CropAnalysis]:
    """SPIN, SMPL, OpenPose, ED and the estimator for 224x224 RGB uint8 crops, batched. `depth` (default 1, see
    `runner.default_depth`): batches finishing on a worker while the next launches (`runner.pipelined`);
    `workers`: processes computing the crops' ED (default `runtime.host_workers`: some on a GPU host, none on the
    CPU). The results are the same for every choice."""
    from ..runtime import host_workers
    from .runner import Stages, default_depth, pipelined

    device = next(models.spin.parameters()).device
    workers = host_workers(device) if workers is None else workers
    batches = [crops_rgb[start: start + batch_size] for start in range(0, len(crops_rgb), batch_size)]
    stages = Stages(lambda crops: _launch(models, crops, batch_size),
                    lambda launched: _finish(models, launched, legacy_ed, workers))
    depth = default_depth(device) if depth is None else depth
    return [analysis for _, analyses in pipelined(batches, stages, depth, device) for analysis in analyses]


@dataclass
class _Launched:
    """One batch's device work, queued: SMPL's output, SPIN's camera, OpenPose's maps (`detect_launch`)."""

    crops: list
    smpl_out: object
    rotmat: torch.Tensor
    betas: torch.Tensor
    camera: torch.Tensor
    detections: object
    timings: dict


def _launch(models: Models, crops: list, batch_size: int) -> _Launched:
    from ..openpose import detect_launch

    t0 = time.perf_counter()
    with torch.inference_mode():
        device = next(models.spin.parameters()).device
        rotmat, betas, camera = models.spin(geometry.normalize_crop(np.stack(crops), device))
        t1 = time.perf_counter()
        out = models.smpl(rotmat, betas)
    t2 = time.perf_counter()
    detections = detect_launch(models.body, [_op_input(c) for c in crops], batch_size=batch_size)
    t3 = time.perf_counter()
    per = len(crops) / 1e3
    return _Launched(crops, out, rotmat, betas, camera, detections,
                     {"spin_ms": (t1 - t0) / per, "smpl_projection_ms": (t2 - t1) / per,
                      "openpose_ms": (t3 - t2) / per})


def _crop_eds(job) -> tuple:
    """(RelativeED, the original demo's ED) of one crop: module-level, so worker processes can run it."""
    keypoints, candidate, subset = job
    return sp_op.relative_ed(keypoints, candidate, subset), sp_op.demo_ed(keypoints, candidate, subset)


def _finish(models: Models, launched: _Launched, legacy_ed: bool, workers: int = 0) -> list[CropAnalysis]:
    from ..openpose import detect_finish
    from ..runtime import host_map

    t0 = time.perf_counter()
    crops, out, camera = launched.crops, launched.smpl_out, launched.camera
    keypoints = geometry.project_spin_joints(out.joints, camera).cpu().numpy()
    cam_t = geometry.camera_translation(camera).cpu().numpy()
    vertices = out.vertices.cpu().numpy()
    smpl_params = [t.float().cpu().numpy().astype(np.float64) for t in (launched.rotmat, launched.betas, camera)]
    t1 = time.perf_counter()
    detections = detect_finish(launched.detections)
    t2 = time.perf_counter()
    problems = [None] * len(crops)
    for k in range(len(crops)):
        if not (np.isfinite(keypoints[k]).all() and np.isfinite(vertices[k]).all()):
            problems[k] = "SPIN produced non-finite outputs for this crop"
            keypoints[k] = np.nan_to_num(keypoints[k])
    eds = host_map(_crop_eds, [(keypoints[k], *detections[k]) for k in range(len(crops))], workers)
    partial = [(crop, vertices[k], cam_t[k], keypoints[k], *detections[k], *eds[k], problems[k])
               for k, crop in enumerate(crops)]
    ed = np.stack([p[7] if legacy_ed else p[6].ed for p in partial]).astype(np.float64)
    conf = np.stack([p[6].conf for p in partial]).astype(np.float64)
    prediction = models.estimator.predict(ed, conf)
    t3 = time.perf_counter()
    per = len(crops) / 1e3
    timings = dict(launched.timings)
    timings["smpl_projection_ms"] += (t1 - t0) / per  # the projection and the copies to the host
    timings["openpose_ms"] += (t2 - t1) / per  # the forward's launch and the decoding
    timings["ed_estimator_ms"] = (t3 - t2) / per
    results = []
    for k, (crop, verts, t, kp, candidate, subset, relative, legacy, problem) in enumerate(partial):
        joint_error = None if prediction.joint_error is None else prediction.joint_error[k]
        if problem is None and not np.isfinite(conf[k]).all():
            problem = "OpenPose produced non-finite confidences for this crop (damaged OpenPose weights?)"
        elif problem is None and not (np.isfinite(prediction.p_accurate[k])
                                      and np.isfinite(prediction.worst_joint_prob[k]).all()):
            problem = "the estimator produced non-finite outputs for this crop (damaged estimator weights?)"
        results.append(CropAnalysis(crop, verts, t, kp, candidate, subset, relative, legacy, legacy_ed,
                                    float(prediction.p_accurate[k]), prediction.worst_joint_prob[k],
                                    joint_error, dict(timings), problem,
                                    None if prediction.joint_error_bound is None
                                    else prediction.joint_error_bound[k],
                                    *(p[k] for p in smpl_params)))
    return results
