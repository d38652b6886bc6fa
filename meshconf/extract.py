"""`meshconf extract`: ED, SE and OpenPose confidence arrays for an annotated dataset, plain or occluded.

    meshconf extract --annotations 3dpw_test.npz --images 3DPW/imageFiles --out sp_op/3dpw --name 3dpw_test [--occlude]

Writes `<name>_sp_op.npy` (ED), `<name>_sp_gt.npy` (SE) and `<name>_conf.npy`, float64 (N,14) in the annotation
file's row order: the layout `meshconf prepare/evaluate` read. Also writes `<name>_manifest.json`. SPIN and OpenPose
run in batches with their weights loaded once. Work is written in chunks, atomically; a restart skips finished rows,
and the merged result equals an uninterrupted run. The occluded variant puts a 40 px square of ImageNet-mean grey (the
original's pixel 0) on one ground-truth joint per image. The joint is drawn per row from (seed, row index), so
batching and restarts do not change it.

ED follows REFERENCE.md F.3 with the ground-truth spine as anchor. SE compares SPIN's SE-map joints, shifted the
same way, with the ground-truth J14 joints. Dataset readers that write the annotation file are not built yet.
"""

from __future__ import annotations

import glob
import io
import json
import os
import sys

import numpy as np
import torch

from . import __version__, assets, geometry, sp_op
from . import constants as C
from .errors import MeshconfError
from .imageio import write_atomic
from .sensitivity.occlusion import NAMED_FILLS, joint_window


def add_arguments(parser) -> None:
    parser.add_argument("--annotations", required=True, help="annotation .npz (meshconf.dataset.annotations)")
    parser.add_argument("--images", required=True, help="image root the annotation's imgname paths are relative to")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--name", required=True, help="array name prefix, e.g. 3dpw_test or 3dpw_occ_test")
    parser.add_argument("--occlude", action="store_true", help="occlude one ground-truth joint per image")
    parser.add_argument("--occ-size", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--data-dir")
    parser.add_argument("--checkpoint")
    parser.add_argument("--threads", type=int, default=0)


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


def process_batch(spin, smpl, body, batch: dict, occlude: bool, seed: int, occ_size: int) -> dict:
    """Arrays for one batch of `AnnotatedCrops` items (see `collate`)."""
    from .openpose import detect_batch

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
    with torch.inference_mode():
        rotmat, betas, camera = spin(geometry.normalize_crop(crops).to(device))
        keypoints = geometry.project_spin_joints(smpl(rotmat, betas).joints, camera).cpu().numpy()
    detections = detect_batch(body, [np.ascontiguousarray(c[:, :, ::-1]) for c in crops], batch_size=len(crops))
    ed, se, conf = [], [], []
    for k, (candidate, subset) in enumerate(detections):
        anchor = batch["spine2d"][k]
        result = sp_op.relative_ed(keypoints[k], candidate, subset, anchor=anchor)
        ed.append(result.ed)
        conf.append(result.conf)
        se.append(se_row(keypoints[k], batch["joints2d"][k], anchor))
    return {"index": batch["index"], "ed": np.asarray(ed, np.float64), "se": np.asarray(se, np.float64),
            "conf": np.asarray(conf, np.float64), "occluded_joint": occluded}


def _chunks_dir(out: str, name: str) -> str:
    return os.path.join(out, f".{name}_chunks")


def done_rows(out: str, name: str) -> set[int]:
    rows = set()
    for path in glob.glob(os.path.join(_chunks_dir(out, name), "chunk_*.npz")):
        with np.load(path) as npz:
            rows.update(int(i) for i in npz["index"])
    return rows


def extract(spin, smpl, body, dataset, out: str, name: str, batch_size: int = 16, occlude: bool = False,
            seed: int = 0, occ_size: int = 40, max_batches: int | None = None, progress: bool = True) -> bool:
    """Process the rows not done yet; merge when all are. Returns whether the arrays were written."""
    from tqdm import tqdm

    from .dataset.crops import collate

    chunks = _chunks_dir(out, name)
    os.makedirs(chunks, exist_ok=True)
    todo = [i for i in range(len(dataset)) if i not in done_rows(out, name)]
    batches = [todo[s:s + batch_size] for s in range(0, len(todo), batch_size)][:max_batches]
    with tqdm(total=len(dataset), initial=len(dataset) - len(todo), desc=name, unit="img",
              disable=not progress) as bar:
        for rows in batches:
            arrays = process_batch(spin, smpl, body, collate([dataset[i] for i in rows]), occlude, seed, occ_size)
            buffer = io.BytesIO()
            np.savez(buffer, **arrays)
            write_atomic(os.path.join(chunks, f"chunk_{rows[0]:09d}.npz"), buffer.getvalue())
            bar.update(len(rows))
    if len(done_rows(out, name)) < len(dataset):
        return False
    parts = {k: [] for k in ("index", "ed", "se", "conf")}
    for path in sorted(glob.glob(os.path.join(chunks, "chunk_*.npz"))):
        with np.load(path) as npz:
            for key in parts:
                parts[key].append(npz[key])
    order = np.argsort(np.concatenate(parts["index"]), kind="stable")
    for key, suffix in (("ed", "sp_op"), ("se", "sp_gt"), ("conf", "conf")):
        buffer = io.BytesIO()
        np.save(buffer, np.concatenate(parts[key])[order])
        write_atomic(os.path.join(out, f"{name}_{suffix}.npy"), buffer.getvalue())
    return True


def run(args) -> int:
    from .dataset import AnnotatedCrops
    from .models import load_smpl, load_spin
    from .openpose import load_body

    if args.threads:
        torch.set_num_threads(args.threads)
    dataset = AnnotatedCrops(args.annotations, args.images)
    names = [n for n in ("spin_checkpoint", "smpl_neutral", "J_regressor_extra", "openpose_body")
             if not (args.checkpoint and n == "spin_checkpoint")]
    paths = assets.require_all(names, args.data_dir)
    checkpoint = args.checkpoint or paths["spin_checkpoint"]
    spin = load_spin(checkpoint)
    smpl = load_smpl(paths["smpl_neutral"], paths["J_regressor_extra"])
    body = load_body(paths["openpose_body"])
    if not extract(spin, smpl, body, dataset, args.out, args.name, args.batch_size, args.occlude, args.seed,
                   args.occ_size):
        raise MeshconfError("extraction stopped before every row was done; run the same command again to resume")
    manifest = {"name": args.name, "rows": len(dataset), "annotations": os.path.abspath(args.annotations),
                "dataset": dataset.annotations.dataset, "images": os.path.abspath(args.images),
                "weights": {"spin": os.path.abspath(checkpoint), "openpose": paths["openpose_body"],
                            "smpl": paths["smpl_neutral"]},
                "occluded": args.occlude, "occ_size": args.occ_size, "seed": args.seed,
                "meshconf_version": __version__, "ed_definition": "REFERENCE.md F.3 (ground-truth spine anchor)"}
    write_atomic(os.path.join(args.out, f"{args.name}_manifest.json"), json.dumps(manifest, indent=1).encode())
    print(f"wrote {args.out}/{args.name}_{{sp_op,sp_gt,conf}}.npy ({len(dataset)} rows) and the manifest")
    return 0


def main(argv=None) -> int:
    from .cli import job_main
    return job_main("extract", argv)


if __name__ == "__main__":
    sys.exit(main())
