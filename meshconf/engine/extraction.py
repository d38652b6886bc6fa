"""Extraction over an annotated dataset: per row the ED, SE and OpenPose confidence (and optionally the signals),
resumable in chunks, sharded over torchrun ranks, merged into the arrays `prepare`, `evaluate`, `calibrate` and
`qualitative` read (the `meshconf extract` job is the command line over `extract`).

The occluded variant puts an occluder on one ground-truth joint per row, drawn from (seed, row index) only, so
batching and restarts never change which.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from functools import partial

import numpy as np
import torch

from .. import constants as C
from .. import geometry
from ..accel import call_padded
from ..constants import VERSION
from ..dataset.crops import collate, skip_rows
from ..dataset.occlusion import NAMED_FILLS, joint_window
from ..errors import MeshconfError
from ..files.chunks import ChunkStore, collect, model_settings, run_chunked, shard
from ..files.fileio import npy_bytes, sha256_bytes, write_atomic, write_json
from ..runtime import host_map, host_workers
from ..sp_op import ed as sp_op
from ..sp_op.arrays import CORE, array_path
from ..sp_op.signals import NUM_SIGNALS, SIGNAL_COLUMNS, crop_signals
from .runner import Stages, default_depth, pipelined


def occlusion_joint(seed: int, index: int, joints_px: np.ndarray) -> int:
    """The occluded J14 joint of one row: uniform over its known joints, from (seed, row index) only."""
    known = np.flatnonzero(np.isfinite(joints_px).all(1))
    if not known.size:
        return -1
    return int(np.random.default_rng([seed, index]).choice(known))


def se_row(keypoints_49: np.ndarray, gt_j14: np.ndarray, anchor: np.ndarray) -> np.ndarray:
    """SE per joint: SPIN's SE-map joints shifted by (anchor - SPIN spine) against ground truth, normalised units."""
    kp = np.asarray(keypoints_49, dtype=np.float32)
    shifted = (kp + (np.asarray(anchor, np.float32) - kp[C.SPIN_SPINE]))[list(C.SPIN_TO_J14_SE)]
    d = sp_op.normalize(shifted) - sp_op.normalize(np.asarray(gt_j14, np.float32))
    return np.sqrt((d * d).sum(-1))


def _spin_j14(spin, smpl, x, steps=None) -> torch.Tensor:
    """SPIN's projected (B, 49, 2) joints of a normalised batch, through `run` (eager), recording `steps`."""
    out = spin.run(x, steps)
    return geometry.project_spin_joints(smpl(out.rotmat, out.betas).joints, out.camera)


@dataclass
class LaunchedBatch:
    """One batch's device work, queued: SPIN's projected joints (a tensor on the device), the mirrored crops'
    joints and iteration steps with signals, OpenPose's maps (see `detect_launch`)."""

    batch: dict
    keypoints: torch.Tensor
    occluded: np.ndarray
    detections: object
    flipped: torch.Tensor | None = None
    steps: list | None = None


def launch_batch(spin, smpl, body, batch: dict, occlude: bool, seed: int, occ_size: int,
                 batch_size: int | None = None, signals: bool = False) -> LaunchedBatch:
    """The networks for one batch of `AnnotatedCrops` items (see `collate`), queued on the device."""
    from ..openpose import detect_launch
    from ..openpose.preprocess import bgr_from_rgb

    crops = batch["crop"].astype(np.float32)
    occluded = np.full(len(crops), -1)
    if occlude:
        fill = np.asarray(NAMED_FILLS["mean"], dtype=np.float32)
        for k, index in enumerate(batch["index"]):
            joint = occlusion_joint(seed, int(index), batch["joints2d"][k])
            if joint >= 0:
                y0, x0, y1, x1 = joint_window(batch["joints2d"][k][joint], occ_size)
                crops[k, y0:y1, x0:x1] = fill
                occluded[k] = joint
    device = next(spin.parameters()).device
    steps: list = []
    flipped = None
    with torch.inference_mode():
        x = geometry.normalize_crop(crops, device).contiguous(memory_format=torch.channels_last)
        if signals:  # eager, recording the iteration steps; the mirrored crop for the flip disagreement
            keypoints = _spin_j14(spin, smpl, x, steps)
            flipped = _spin_j14(spin, smpl, torch.flip(x, dims=[3]))
        else:
            rotmat, betas, camera = call_padded(spin, x, batch_size or len(x))
            keypoints = geometry.project_spin_joints(smpl(rotmat, betas).joints, camera)
    detections = detect_launch(body, [bgr_from_rgb(c) for c in crops],
                               batch_size=batch_size or len(crops))
    return LaunchedBatch(batch, keypoints, occluded, detections, flipped, steps if signals else None)


def finish_batch(launched: LaunchedBatch, workers: int | None = None) -> dict:
    """The arrays of a launched batch: decoding, ED, SE and confidence per row (and the (B, S) signals). The rows'
    ED and SE are computed in `workers` processes (default `runtime.host_workers`: some on a GPU host, none on the
    CPU); the numbers are the same either way."""
    from ..openpose import detect_finish

    batch, signals = launched.batch, launched.steps is not None
    keypoints = launched.keypoints.cpu().numpy()
    flipped = launched.flipped.cpu().numpy() if signals else None
    spin_finite = np.isfinite(keypoints).all(axis=(1, 2))
    detections = detect_finish(launched.detections, full=signals)
    ed, se, conf, rows = [], [], [], []
    step_norms = torch.stack(launched.steps, 1).float().cpu().numpy() if signals else None  # (B, 3 iterations, 3)
    jobs = [(keypoints[k], *((found.candidate, found.subset) if signals else found), batch["spine2d"][k],
             batch["joints2d"][k]) for k, found in enumerate(detections)]
    workers = host_workers(launched.keypoints.device) if workers is None else workers
    for k, (found, (result, se_k)) in enumerate(zip(detections, host_map(_row_errors, jobs, workers))):
        ed.append(result.ed)
        conf.append(result.conf)
        se.append(se_k)
        if signals:
            j14 = C.SPIN_TO_J14_ED
            rows.append(crop_signals(step_norms[k], keypoints[k][list(j14)], flipped[k][list(j14)], found,
                                     result.person, float(batch["box_px"][k]), result.spin_points,
                                     result.op_points, result.conf))
    out = {"index": batch["index"], "ed": np.asarray(ed, np.float64), "se": np.asarray(se, np.float64),
           "conf": np.asarray(conf, np.float64), "occluded_joint": launched.occluded,
           "spin_finite": spin_finite | np.asarray(batch.get("skipped", False))}
    if signals:
        out["signals"] = np.asarray(rows, np.float64).reshape(len(keypoints), NUM_SIGNALS)
    return out


def _row_errors(job) -> tuple:
    """(RelativeED, SE) of one row: module-level, so worker processes can run it."""
    keypoints, candidate, subset, anchor, joints = job
    return sp_op.relative_ed(keypoints, candidate, subset, anchor=anchor), se_row(keypoints, joints, anchor)


def process_batch(spin, smpl, body, batch: dict, occlude: bool, seed: int, occ_size: int,
                  batch_size: int | None = None, signals: bool = False) -> dict:
    """Arrays for one batch of `AnnotatedCrops` items (see `collate`); with `signals`, also the (B, S) signals."""
    return finish_batch(launch_batch(spin, smpl, body, batch, occlude, seed, occ_size, batch_size, signals))


def _store(out: str, name: str) -> ChunkStore:
    return ChunkStore(os.path.join(out, f".{name}_chunks"))


KEYS = ("ed", "se", "conf", "occluded_joint", "spin_finite", "skipped")


def extract(spin, smpl, body, dataset, out: str, name: str, batch_size: int = 16, occlude: bool = False,
            seed: int = 0, occ_size: int = 40, max_batches: int | None = None, progress: bool = True,
            rank: int = 0, world: int = 1, workers: int = 0, models: dict | None = None,
            info: dict | None = None, signals: bool = False, strict: bool = False, depth: int | None = None) -> bool:
    """Process the rows not done yet; merge when all are. Returns whether the arrays were written.

    `models` (see `chunks.model_settings`: the model files' SHA-256, numerics, precision, device class) is bound
    into the chunk folder with the options, so a resumed run can never mix results of other weights. `info` goes
    into the manifest, which is written last, with the SHA-256 of every array.

    With `world` > 1 (torchrun), rank r takes rows r, r + world, ...; each rank keeps its own chunks (a shared
    folder is not needed) and rank 0 gathers the finished shards and writes the arrays in the dataset's order.
    A row's result depends only on the row (and the seed), so any world size gives the same arrays.

    `depth` (default: `runner.default_depth`, 1) is how many batches decode on a worker thread while the next
    batch's networks run (see `runner.pipelined`); the arrays are the same for every depth."""
    store = _store(out, name)
    device = next(spin.parameters()).device
    with store.lock(rank):
        store.bind({"annotations": dataset.annotations.fingerprint(), "occlude": occlude,
                    "seed": seed if occlude else None, "occ_size": occ_size if occlude else None,
                    **({"signals": list(SIGNAL_COLUMNS)} if signals else {}),
                    "models": models or model_settings({}, device=str(device))})
        rows = shard(len(dataset), rank, world)

        def launch(batch):
            check_strict(batch, strict)
            return launch_batch(spin, smpl, body, batch, occlude, seed, occ_size, batch_size, signals)

        stages = Stages(launch, lambda launched: skip_rows(finish_batch(launched), launched.batch))
        depth = default_depth(device) if depth is None else depth
        finished = run_chunked(dataset, store, stages, batch_size,
                               name if world == 1 else f"{name} [{rank}/{world}]", collate, max_batches, progress,
                               rows=rows, workers=workers,
                               stream=partial(pipelined, stages=stages, depth=depth, device=device))
        complete, merged = collect(store, KEYS + (("signals",) if signals else ()), rows, finished, rank, world)
        if merged is None:  # unfinished somewhere, or a rank other than 0 (rank 0 writes)
            return complete
        bad = np.flatnonzero(~merged["spin_finite"].astype(bool))
        if len(bad):
            raise MeshconfError(f"SPIN produced non-finite outputs for {len(bad)} of {len(merged['index'])} rows "
                                f"(first: row {int(merged['index'][bad[0]])}); no arrays were written. Check the "
                                f"checkpoint (--checkpoint)")
        skipped = report_skipped(dataset, merged)
        write_outputs(out, name, merged, dataset, occlude, {**(info or {}), "models": models,
                                                            "skipped_rows": skipped}, signals)
    return True


def check_strict(batch: dict, strict: bool) -> None:
    """With --strict, the first row whose box cannot be cropped stops the job, in one line."""
    if strict and np.asarray(batch.get("skipped", False)).any():
        k = int(np.flatnonzero(batch["skipped"])[0])
        raise MeshconfError(f"annotation row {int(batch['index'][k])}: {batch['problem'][k]}; stopped (--strict). "
                            f"Without --strict such rows are skipped and named")


def report_skipped(dataset, merged: dict, log=None) -> list:
    """[[row, reason], ...] of the rows left as NaN, each also printed in one line."""
    rows = [int(r) for r in merged["index"][merged["skipped"].astype(bool)]] if "skipped" in merged else []
    out = []
    for row in rows:
        image = dataset[row]  # reads the image again for the reason: only skipped rows, rare
        reason = image.get("problem") or "skipped"
        out.append([row, reason])
        print(f"note: annotation row {row} ({dataset.annotations.imgname[row]}): {reason}; skipped (NaN in the "
              f"arrays)", file=log or sys.stderr)
    return out


def write_outputs(out: str, name: str, merged: dict, dataset, occlude: bool, info: dict,
                  signals: bool = False) -> None:
    """The arrays, then the manifest naming each with its SHA-256. First an incomplete manifest replaces the old
    one: a crash or a full disk in between leaves a set every reader refuses, never one that vouches for a mix."""
    manifest_path = array_path(out, name, "manifest")
    write_json(manifest_path, {"name": name, "complete": False,
                               "note": "being written; if this stays, the run stopped mid-write: run it again"})
    files = {}
    arrays = [(key, merged[key]) for key in CORE] + \
        ([("occluded_joint", merged["occluded_joint"].astype(np.int64))] if occlude else []) + \
        ([("signals", merged["signals"].astype(np.float64))] if signals else [])
    for key, array in arrays:
        data = npy_bytes(array)
        path = array_path(out, name, key)
        write_atomic(path, data)
        files[os.path.basename(path)] = sha256_bytes(data)
    if signals:
        info = {**info, "signal_columns": list(SIGNAL_COLUMNS)}
    manifest = {"name": name, "complete": True, "rows": len(dataset), "dataset": dataset.annotations.dataset,
                "meshconf_version": VERSION, "files": files,
                "ed_definition": "spine-aligned ED with the ground-truth spine as anchor (README, 'ED')",
                **info, "row_keys": row_keys(dataset.annotations)}
    write_json(manifest_path, manifest)


def row_keys(annotations) -> list:
    """What identifies a row independently of its position: image name and box centre (3DPW has two people in
    some images). `meshconf qualitative` finds an image's ED row through these."""
    return [[str(n), round(float(c[0]), 2), round(float(c[1]), 2)]
            for n, c in zip(annotations.imgname, annotations.center)]
