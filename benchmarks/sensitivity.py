"""Sensitivity benchmark: seconds per analysed image for SPIN and OpenPose, meshconf against the original's
structure, measured in the same run.

- image analysis (121 windows of 40 px, stride 20): batched against one window at a time;
- dataset analysis (each of the 14 joints occluded): meshconf's one pass with all 15 variants of an image in one
  batch (14 occluded + the unoccluded baseline) against the original's 14 passes (the models reloaded per pass, SPIN
  in batches of 16, OpenPose one image at a time).

    python benchmarks/sensitivity.py [--quick] [--dataset-images 4] [--json benchmarks/results/sensitivity.json]

Recipe weights (through the real loaders), the synthetic SMPL model and the 3DOH demo crop from ../shared.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from meshconf.models import load_smpl, load_spin  # noqa: E402
from meshconf.models.resnet import fold_batchnorm  # noqa: E402
from meshconf.openpose import detect, load_body  # noqa: E402
from meshconf.models.recipe import write_openpose_weights, write_spin_checkpoint  # noqa: E402
from meshconf.runtime import keep_freed_memory  # noqa: E402
from meshconf.sensitivity import Grid, occluded_copies, openpose_sensitivity, parse_fill, spin_sensitivity  # noqa
from meshconf.sensitivity.image import spin_j14  # noqa: E402


def original_spin_loop(spin, smpl, regressor, crop, grid, fill):
    """The original's structure: one occluded copy at a time through the unfused HMR (batch 1), SMPL, regressor."""
    for copy in occluded_copies(crop, grid.windows, fill):
        spin_j14(spin, smpl, regressor, copy[None])


def original_openpose_loop(body, crop, grid, fill):
    for copy in occluded_copies(crop, grid.windows, fill):
        detect(body, np.ascontiguousarray(copy[:, :, ::-1]))


def original_dataset_passes(ckpt, smpl_path, regressor, body_path, data, fill, batch_size=16):
    """The original's SPIN_/OP_sensitivity_analysis: for each joint a full pass, everything reloaded."""
    from meshconf.dataset.crops import collate
    from meshconf.dataset.occlusion import joint_window

    for k in range(14):
        spin = load_spin(ckpt) if ckpt else None
        smpl = load_smpl(*smpl_path) if ckpt else None
        body = load_body(body_path) if body_path else None
        for start in range(0, len(data), batch_size):
            batch = collate([data[i] for i in range(start, min(start + batch_size, len(data)))])
            crops = batch["crop"].astype(np.float32)
            for b in range(len(crops)):
                y0, x0, y1, x1 = joint_window(batch["joints2d"][b, k], 40)
                crops[b, y0:y1, x0:x1] = fill
            if spin is not None:
                spin_j14(spin, smpl, regressor, crops)
            if body is not None:
                for crop in crops:
                    detect(body, np.ascontiguousarray(crop[:, :, ::-1]))


def dataset_cases(tmp, ckpt, body_path, smpl_paths, regressor, n, quick):
    from meshconf.dataset import AnnotatedCrops, Annotations
    from meshconf.dataset.crops import collate
    from meshconf.sensitivity import dataset as ds

    import shutil
    shutil.copy(SHARED / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png", tmp / "a.png")
    shutil.copy(SHARED / "data" / "meshconfidence" / "examples" / "im1010.jpg", tmp / "b.jpg")
    rng = np.random.default_rng(0)
    names = np.array(["a.png", "b.jpg"] * (n // 2 + 1))[:n]
    center = np.array([112.0, 112.0]) + rng.uniform(-15, 15, (n, 2))
    joints = center[:, None] + rng.uniform(-60, 60, (n, 14, 2))
    data = AnnotatedCrops(Annotations(names, center, rng.uniform(0.9, 1.2, n), joints, center.copy()), tmp)
    fill = parse_fill("mean")
    spin = fold_batchnorm(load_spin(ckpt))
    smpl = load_smpl(*smpl_paths)

    def ours_spin(batch_images=4):
        for s in range(0, n, batch_images):
            batch = collate([data[i] for i in range(s, min(s + batch_images, n))])
            v, _ = ds.joint_variants(batch["crop"], batch["joints2d"], 40, fill)
            ds.spin_variant_errors(spin, smpl, regressor, v, None)

    cases = [("dataset, SPIN, meshconf (15 variants/image, one pass)", ours_spin),
             ("dataset, SPIN, original structure (14 passes)",
              lambda: original_dataset_passes(ckpt, smpl_paths, regressor, None, data, fill))]
    if not quick:
        body = load_body(body_path)

        def ours_openpose(batch_images=4):
            for s in range(0, n, batch_images):
                batch = collate([data[i] for i in range(s, min(s + batch_images, n))])
                v, _ = ds.joint_variants(batch["crop"], batch["joints2d"], 40, fill)
                ds.openpose_variant_errors(body, v, batch["joints2d"])

        cases += [("dataset, OpenPose, meshconf (15 variants/image, one pass)", ours_openpose),
                  ("dataset, OpenPose, original structure (14 passes)",
                   lambda: original_dataset_passes(None, None, None, body_path, data, fill))]
    return cases


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="SPIN only")
    parser.add_argument("--dataset-images", type=int, default=4, help="images for the dataset analysis (0: skip)")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "sensitivity.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    keep_freed_memory()
    image = cv2.imread(str(SHARED / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"))
    crop = image[:, :, ::-1].copy()
    grid, fill = Grid(224, 40, 20), parse_fill("mean")
    rows = []
    tmp_dir = tempfile.TemporaryDirectory()
    tmp = pathlib.Path(tmp_dir.name)
    ckpt = tmp / "model_checkpoint.pt"
    write_spin_checkpoint(ckpt, 0, dict(np.load(SHARED / "data" / "spin" / "smpl_mean_params.npz")))
    spin = load_spin(ckpt)
    body = None
    weights = tmp / "body_pose_model.pth"
    if not args.quick:
        write_openpose_weights(weights, 0)
        body = load_body(weights)
    smpl_paths = (SHARED / "golden" / "smpl_synthetic", SHARED / "data" / "spin" / "J_regressor_extra.npy")
    smpl = load_smpl(*smpl_paths)
    regressor = torch.from_numpy(np.load(SHARED / "data" / "spin" / "J_regressor_h36m.npy")).float()
    folded = fold_batchnorm(spin)
    cases = [("SPIN, meshconf (folded BN, channels-last, batch 8)",
              lambda: spin_sensitivity(folded, smpl, regressor, crop, grid, fill, batch_size=8)),
             ("SPIN, original structure (one window at a time)",
              lambda: original_spin_loop(spin, smpl, regressor, crop, grid, fill))]
    if body is not None:
        cases += [("OpenPose, meshconf (batch 8)", lambda: openpose_sensitivity(body, crop, grid, fill, batch_size=8)),
                  ("OpenPose, original structure (one window at a time)",
                   lambda: original_openpose_loop(body, crop, grid, fill))]
    print(f"{'measurement':60} {'s/image':>8} {'ms/window':>10}")
    for name, fn in cases:
        fn()  # warm
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        rows.append(dict(name=name, seconds_per_image=seconds, ms_per_window=1e3 * seconds / len(grid.windows)))
        print(f"{name:60} {seconds:8.2f} {rows[-1]['ms_per_window']:10.1f}", flush=True)
    n = args.dataset_images
    if n:
        for name, fn in dataset_cases(tmp, ckpt, weights, smpl_paths, regressor, n, args.quick):
            start = time.perf_counter()
            fn()
            seconds = (time.perf_counter() - start) / n
            rows.append(dict(name=name, seconds_per_image=seconds, images=n))
            print(f"{name:60} {seconds:8.2f} {'':>10}", flush=True)
    tmp_dir.cleanup()
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".tmp").write_text(json.dumps(dict(benchmark="sensitivity", windows=len(grid.windows),
                                                       threads=2, rows=rows), indent=1))
    out.with_suffix(".tmp").replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
