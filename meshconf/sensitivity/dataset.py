"""Joint-targeted occlusion over a dataset: every image is seen unoccluded and with each of its 14 ground-truth
joints covered in turn, all 15 variants in the same batch (the original made 14 passes over the data).

Per image the result is a (15, 14) error table: row 0 unoccluded, row 1 + k with joint k occluded; columns are the
14 measured joints. SPIN's error is 3D (mm, root-aligned at the hip midpoint, plus PA-MPJPE), against ground-truth
3D joints when the dataset has them, else against SPIN's own unoccluded prediction. OpenPose's error is 2D (crop px)
against the ground-truth 2D joints, NaN where the chosen person lacks the joint or nobody was found.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from .. import constants as C
from .image import MM, closest_points, pelvis, procrustes, spin_j14_queued
from ..dataset.occlusion import joint_window

VARIANTS = 1 + C.NUM_J14  # unoccluded, then one per occluded joint


def joint_variants(crops_rgb: np.ndarray, joints2d_px: np.ndarray, occ_size: int, fill) -> tuple[np.ndarray,
                                                                                                 np.ndarray]:
    """(B,15,H,W,3) float32 copies (variant 0 unoccluded, 1 + k with the original's square on joint k) and a
    (B,14) mask of the variants that really are occluded: the joint is known and its window meets the crop."""
    crops = np.asarray(crops_rgb, dtype=np.float32)
    out = np.repeat(crops[:, None], VARIANTS, axis=1)
    occluded = np.zeros((len(crops), C.NUM_J14), dtype=bool)
    colour = np.asarray(fill, dtype=np.float32)
    res = crops.shape[1]
    for b in range(len(crops)):
        for k in range(C.NUM_J14):
            joint = joints2d_px[b, k]
            if not np.isfinite(joint).all():
                continue
            y0, x0, y1, x1 = joint_window(joint, occ_size, res)
            if y1 > y0 and x1 > x0:
                out[b, 1 + k, y0:y1, x0:x1] = colour
                occluded[b, k] = True
    return out, occluded


def spin_variant_errors(spin, smpl, regressor_h36m, variants: np.ndarray, reference_m: np.ndarray | None,
                        batch_size: int = 8) -> dict[str, np.ndarray]:
    """Errors (B,15,14) in mm: `mpjpe` root-aligned, `pa` Procrustes-aligned. `reference_m` (B,14,3) is the ground
    truth; None uses each image's unoccluded prediction."""
    return spin_variant_finish(spin_variant_launch(spin, smpl, regressor_h36m, variants, batch_size), reference_m)


def spin_variant_launch(spin, smpl, regressor_h36m, variants: np.ndarray, batch_size: int = 8) -> list:
    """The forward passes of `spin_variant_errors`, queued on the device: (B,15,...) crops -> tensors to finish."""
    flat = variants.reshape(-1, *variants.shape[2:])
    return [spin_j14_queued(spin, smpl, regressor_h36m, flat[s:s + batch_size], batch_size)
            for s in range(0, len(flat), batch_size)]


def spin_variant_finish(launched: list, reference_m: np.ndarray | None) -> dict[str, np.ndarray]:
    """`spin_variant_errors` from launched forward passes."""
    pred = np.concatenate([t.double().cpu().numpy() for t in launched]).reshape(-1, VARIANTS, C.NUM_J14, 3)
    target = pred[:, :1] if reference_m is None else np.asarray(reference_m, dtype=np.float64)[:, None]
    target = np.ascontiguousarray(np.broadcast_to(target, pred.shape))
    mpjpe = np.linalg.norm((pred - pelvis(pred)) - (target - pelvis(target)), axis=-1) * MM
    pa = np.linalg.norm(procrustes(pred.reshape(-1, C.NUM_J14, 3), target.reshape(-1, C.NUM_J14, 3))
                        - target.reshape(-1, C.NUM_J14, 3), axis=-1).reshape(mpjpe.shape) * MM
    return {"mpjpe": mpjpe, "pa": pa}


def openpose_variant_errors(body, variants: np.ndarray, gt_px: np.ndarray, batch_size: int = 8) -> dict:
    """Errors (B,15,14) in crop px against the ground truth; the person is the one closest to the ground truth
    (unknown joints choose with the crop centre)."""
    return openpose_variant_finish(openpose_variant_launch(body, variants, batch_size), gt_px)


def openpose_variant_launch(body, variants: np.ndarray, batch_size: int = 8):
    """The forward passes of `openpose_variant_errors`, queued on the device (see `detect_launch`)."""
    from ..openpose import detect_launch
    from ..openpose.preprocess import bgr_from_rgb

    flat = variants.reshape(-1, *variants.shape[2:])
    return detect_launch(body, [bgr_from_rgb(c) for c in flat], batch_size=batch_size)


def openpose_variant_finish(launched, gt_px: np.ndarray, workers: int | None = None) -> dict:
    """`openpose_variant_errors` from launched forward passes: decoding, the person, the errors. The people are
    chosen in `workers` processes (default `runtime.host_workers`: some on a GPU host, none on the CPU); the
    numbers are the same either way."""
    from ..openpose import detect_finish
    from ..runtime import host_map, host_workers

    detections = detect_finish(launched)
    b = len(detections) // VARIANTS
    references = [np.asarray(gt_px[i // VARIANTS], dtype=np.float64) for i in range(len(detections))]
    workers = host_workers(launched.device) if workers is None else workers
    points = host_map(closest_points, [(*found, reference) for found, reference in zip(detections, references)],
                      workers)
    errors = [np.linalg.norm(p - reference, axis=1) for p, reference in zip(points, references)]
    return {"px": np.asarray(errors, dtype=np.float64).reshape(b, VARIANTS, C.NUM_J14)}


@dataclass
class JointSummary:
    """Dataset means per occluded joint (rows of the table)."""

    joint: str
    images: int  # images where this joint was known and occluded
    mean_error: float  # mean over images of the mean over measured joints, occluded
    unoccluded: float  # the same images without the occluder
    increase: float
    error_at_joint: float  # the occluded joint's own error
    detected: float  # fraction of measured joints found, occluded (OpenPose; 1 for SPIN)
    detected_unoccluded: float  # the same images without the occluder


def summarise(errors: np.ndarray, occluded: np.ndarray) -> list[JointSummary]:
    """errors (N,15,14), occluded (N,14) -> one `JointSummary` per occluded joint. Missing joints (NaN) are left
    out of each image's mean and counted in `detected`."""
    rows = []
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a joint never occluded gives NaN, reported as such
        for k in range(C.NUM_J14):
            chosen = occluded[:, k]
            hit, base = errors[chosen, 1 + k], errors[chosen, 0]
            per_image, per_image_base = np.nanmean(hit, 1), np.nanmean(base, 1)
            both = np.isfinite(per_image) & np.isfinite(per_image_base)
            mean, unocc = float(np.mean(per_image[both])), float(np.mean(per_image_base[both]))
            rows.append(JointSummary(C.J14_NAMES[k], int(chosen.sum()), mean, unocc, mean - unocc,
                                     float(np.nanmean(hit[:, k])), float(np.isfinite(hit).mean()),
                                     float(np.isfinite(base).mean())))
    return rows


def occlusion_matrix(errors: np.ndarray, occluded: np.ndarray) -> np.ndarray:
    """(14 occluded, 14 measured) mean error over the images where that joint was occluded."""
    out = np.full((C.NUM_J14, C.NUM_J14), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for k in range(C.NUM_J14):
            out[k] = np.nanmean(errors[occluded[:, k], 1 + k], 0)
    return out


def table(rows: list[JointSummary]) -> list[dict]:
    return [asdict(r) for r in rows]


def template_pose() -> tuple[torch.Tensor, torch.Tensor]:
    """The original's template body: zero body pose, only the root rotated upright for the camera (diag(1,-1,-1);
    the original's in-place write also flipped every joint on the CPU), and its betas. Returns rotmat (1,24,3,3)
    and betas (1,10). The camera is fitted to the mesh (`render.fit_translation`), so any body model fits the
    picture."""
    rotmat = torch.eye(3).repeat(1, C.NUM_SMPL_JOINTS, 1, 1)
    rotmat[0, 0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    betas = torch.tensor([[0.5, 1, 0.5, 1, 0, 0, -0.3, 0.3, 0.2, -0.2]])
    return rotmat, betas
