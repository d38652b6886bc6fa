"""Sensitivity benchmark: seconds per analysed image (121 windows of 40 px, stride 20) for SPIN and OpenPose,
meshconf's batched analysis against the original's one-window-at-a-time structure, measured in the same run.

    python benchmarks/sensitivity.py [--quick] [--json benchmarks/results/sensitivity.json]

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

from meshconf import geometry  # noqa: E402
from meshconf.models import load_smpl, load_spin  # noqa: E402
from meshconf.models.resnet import fold_batchnorm  # noqa: E402
from meshconf.openpose import detect, load_body  # noqa: E402
from meshconf.recipe import write_openpose_weights, write_spin_checkpoint  # noqa: E402
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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="SPIN only")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "sensitivity.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    keep_freed_memory()
    image = cv2.imread(str(SHARED / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"))
    crop = image[:, :, ::-1].copy()
    grid, fill = Grid(224, 40, 20), parse_fill("mean")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = pathlib.Path(tmp) / "model_checkpoint.pt"
        write_spin_checkpoint(ckpt, 0, dict(np.load(SHARED / "data" / "spin" / "smpl_mean_params.npz")))
        spin = load_spin(ckpt)
        body = None
        if not args.quick:
            weights = pathlib.Path(tmp) / "body_pose_model.pth"
            write_openpose_weights(weights, 0)
            body = load_body(weights)
    smpl = load_smpl(SHARED / "golden" / "smpl_synthetic", SHARED / "data" / "spin" / "J_regressor_extra.npy")
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
    print(f"{'measurement':55} {'s/image':>8} {'ms/window':>10}")
    for name, fn in cases:
        fn()  # warm
        start = time.perf_counter()
        fn()
        seconds = time.perf_counter() - start
        rows.append(dict(name=name, seconds_per_image=seconds, ms_per_window=1e3 * seconds / len(grid.windows)))
        print(f"{name:55} {seconds:8.2f} {rows[-1]['ms_per_window']:10.1f}", flush=True)
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".tmp").write_text(json.dumps(dict(benchmark="sensitivity", windows=len(grid.windows),
                                                       threads=2, rows=rows), indent=1))
    out.with_suffix(".tmp").replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
