"""Sliding-occluder sensitivity of SPIN and OpenPose on one crop: every occluded copy goes through the models in
batches, and the per-window, per-joint error is returned as a typed result.

SPIN's error is 3D, in millimetres, per J14 joint from the Human3.6M regressor (as the original): root-aligned at
the hip midpoint (MPJPE), Procrustes-aligned per window (PA-MPJPE), and the original's unaligned number for
comparison. OpenPose's error is 2D, in crop pixels. Without ground truth, the reference is the model's own
prediction on the unoccluded crop, so the maps show how much each window *changes* the output.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from .. import constants as C
from .. import geometry, sp_op
from ..dataset.occlusion import Grid, occluded_copies

MM = 1000.0


@dataclass
class GridResult:
    model: str  # "spin" or "openpose"
    grid: Grid
    errors: np.ndarray  # (windows, 14): mm for SPIN (root-aligned), px for OpenPose; NaN = joint not found
    unit: str
    reference: str  # "unoccluded prediction" or "ground truth"
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def heatmap(self) -> np.ndarray:
        """(n, n, 14) errors on the window grid."""
        n = self.grid.per_axis
        return self.errors.reshape(n, n, C.NUM_J14)

    @property
    def mean(self) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.nanmean(self.errors, axis=1)

    @property
    def worst_window(self) -> int:
        mean = np.where(np.isfinite(self.mean), self.mean, -np.inf)
        return int(np.argmax(mean))


def procrustes(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Batched similarity alignment of pred (B,J,3) onto target (B,J,3) (rotation, scale, translation)."""
    mu_p, mu_t = pred.mean(1, keepdims=True), target.mean(1, keepdims=True)
    p, t = pred - mu_p, target - mu_t
    u, s, vt = np.linalg.svd(np.einsum("bji,bjk->bik", p, t))
    d = np.sign(np.linalg.det(np.einsum("bij,bjk->bik", u, vt)))
    fix = np.ones_like(s)
    fix[:, -1] = d
    rotation = np.einsum("bij,bj,bjk->bik", u, fix, vt)
    scale = (s * fix).sum(1) / np.maximum((p * p).sum((1, 2)), 1e-12)
    return scale[:, None, None] * np.einsum("bji,bik->bjk", p, rotation) + mu_t


def pelvis(j14: np.ndarray) -> np.ndarray:
    return (j14[..., C.J14_R_HIP, :] + j14[..., C.J14_L_HIP, :])[..., None, :] / 2


def spin_j14(spin, smpl, regressor_h36m: torch.Tensor, crops_rgb: np.ndarray, batch: int | None = None) -> np.ndarray:
    """(B,14,3) metres: SPIN's mesh through the Human3.6M regressor, in J14 order (float crops 0-255). `batch`:
    the batch size a compiled SPIN runs (shorter inputs are padded to it)."""
    return spin_j14_queued(spin, smpl, regressor_h36m, crops_rgb, batch).double().cpu().numpy()


def spin_j14_queued(spin, smpl, regressor_h36m: torch.Tensor, crops_rgb: np.ndarray,
                    batch: int | None = None) -> torch.Tensor:
    """`spin_j14` left on the model's device (nothing waits for it: the pipelined runner's launch stage)."""
    from ..accel import call_padded

    device = next(spin.parameters()).device
    with torch.inference_mode():
        x = geometry.normalize_crop(crops_rgb, device).contiguous(memory_format=torch.channels_last)
        rotmat, betas, _ = call_padded(spin, x, batch or len(x))
        vertices = smpl(rotmat, betas).vertices
        joints = torch.einsum("jv,bvc->bjc", regressor_h36m.to(vertices), vertices)
    return joints[:, list(C.H36M_TO_J14)]


def _batches(n: int, batch_size: int, desc: str, progress: bool):
    from tqdm import tqdm

    starts = range(0, n, batch_size)
    return tqdm(starts, desc=desc, unit="batch", disable=None if progress else True, leave=False)


def spin_sensitivity(spin, smpl, regressor_h36m, crop_rgb, grid: Grid, fill, batch_size: int = 16,
                     gt_j14_m: np.ndarray | None = None, progress: bool = False) -> GridResult:
    crops = occluded_copies(crop_rgb, grid.windows, fill)
    pred = np.concatenate([spin_j14(spin, smpl, regressor_h36m, crops[s:s + batch_size], batch_size)
                           for s in _batches(len(crops), batch_size, "SPIN windows", progress)])
    if gt_j14_m is None:
        reference = spin_j14(spin, smpl, regressor_h36m, np.asarray(crop_rgb, dtype=np.float32)[None])[0]
        source = "unoccluded prediction"
    else:
        reference, source = np.asarray(gt_j14_m, dtype=np.float64), "ground truth"
    target = np.broadcast_to(reference, pred.shape)
    aligned = np.linalg.norm((pred - pelvis(pred)) - (target - pelvis(target)), axis=-1) * MM
    pa = np.linalg.norm(procrustes(pred, np.ascontiguousarray(target)) - target, axis=-1) * MM
    unaligned = np.linalg.norm(pred - target, axis=-1) * MM
    return GridResult("spin", grid, aligned, "mm", source,
                      {"pa_mpjpe": pa.mean(1), "pa_per_joint": pa, "unaligned": unaligned})


def op_points(candidate, subset, reference_px) -> tuple[np.ndarray, bool]:
    """(14,2) px of the person closest to `reference_px` (missing joints NaN), and whether anyone was found."""
    person = sp_op.select_person(reference_px, candidate, subset)
    if person < 0:
        return np.full((C.NUM_J14, 2), np.nan), False
    points, conf = sp_op.person_points(candidate, np.asarray(subset).reshape(-1, 20)[person], (np.nan, np.nan))
    points = points.astype(np.float64)
    points[conf <= 0] = np.nan
    return points, True


def closest_points(job) -> np.ndarray:
    """(14,2) px of the person closest to a (14,2) px reference, from (candidate, subset, reference); a reference
    joint that is unknown (NaN) chooses with the crop centre. Module-level, so worker processes can run it."""
    candidate, subset, reference = job
    return op_points(candidate, subset, np.where(np.isnan(reference), C.IMG_RES / 2, reference))[0]


def openpose_sensitivity(body, crop_rgb, grid: Grid, fill, batch_size: int = 16,
                         gt_j14_px: np.ndarray | None = None, progress: bool = False,
                         depth: int | None = None, workers: int | None = None) -> GridResult:
    """OpenPose's error per window. `depth`: batches decoding while the next one's forward runs (see
    `engine.runner`); `workers`: processes choosing each window's person (default `runtime.host_workers`). The
    errors are the same for every choice."""
    from ..engine.runner import Stages, default_depth, pipelined
    from ..openpose import detect_batch, detect_finish, detect_launch, people
    from ..openpose.preprocess import bgr_from_rgb
    from ..runtime import host_map, host_workers

    crops = occluded_copies(crop_rgb, grid.windows, fill)
    bgr = [bgr_from_rgb(c) for c in crops]
    if gt_j14_px is None:
        # The unoccluded detection's strongest person is the reference.
        candidate, subset = detect_batch(body, [np.ascontiguousarray(np.asarray(crop_rgb, np.float32)[:, :, ::-1])])[0]
        found = people(candidate, subset)
        if not found:
            reference = np.full((C.NUM_J14, 2), np.nan)
        else:
            best = max(found, key=lambda p: p.total_score)
            reference = best.to_j14()[:, :2]
        source = "unoccluded prediction"
    else:
        reference, source = np.asarray(gt_j14_px, dtype=np.float64), "ground truth"
    detections = []
    # a batch of windows decodes on a worker while the next one's forward runs (on a GPU; see `engine.runner`)
    stages = Stages(lambda s: detect_launch(body, bgr[s:s + batch_size], batch_size=batch_size), detect_finish)
    device = next(body.parameters()).device
    depth = default_depth(device) if depth is None else depth
    for _, found in pipelined(_batches(len(bgr), batch_size, "OpenPose windows", progress), stages, depth,
                              device):
        detections += found
    workers = host_workers(device) if workers is None else workers
    points = np.asarray(host_map(closest_points, [(*found, reference) for found in detections], workers),
                        dtype=np.float64).reshape(len(bgr), C.NUM_J14, 2)
    errors = np.linalg.norm(points - reference, axis=2)
    return GridResult("openpose", grid, errors, "px", source, {"detected": np.isfinite(points[:, :, 0])})
