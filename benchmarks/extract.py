"""Extraction benchmark: seconds per image for `meshconf extract` at batch 1, 16 and 64, against the original's loop
structure (SPIN in batches of 16, OpenPose one image at a time with pytorch-openpose's own decoder, its weights
reloaded every batch), in one run. The original code itself takes about 1.5 s per image here (PERF-REFERENCE.md).

    python benchmarks/extract.py [--images 32] [--json benchmarks/results/extract.json]

Recipe weights through the real loaders, the synthetic SMPL model, and a synthetic annotated dataset (the 3DOH demo
photo and the im1010 example with jittered boxes). The floor is the networks' fp32 arithmetic (PERF-REFERENCE.md:
about 0.32 s per image for OpenPose + SPIN on this CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from meshconf import geometry  # noqa: E402
from meshconf.dataset import AnnotatedCrops, Annotations  # noqa: E402
from meshconf.dataset.crops import collate  # noqa: E402
from meshconf.engine.extraction import extract  # noqa: E402
from meshconf.models import load_smpl, load_spin  # noqa: E402
from meshconf.models.resnet import fold_batchnorm  # noqa: E402
from meshconf.openpose import detect, load_body  # noqa: E402
from meshconf.models.recipe import write_openpose_weights, write_spin_checkpoint  # noqa: E402
from meshconf.runtime import keep_freed_memory  # noqa: E402

sys.path.insert(0, str(REPO / "tests"))
import reference_body  # noqa: E402  (the literal transcription of pytorch-openpose's decoder)

FLOOR_S = 0.32


def original_structure(spin, smpl, body_path, dataset, batch_size=16, original_decoder=True):
    """SPIN per batch of 16; a fresh OpenPose (weights reloaded) per batch; OpenPose one image at a time.

    With `original_decoder`, each image goes through pytorch-openpose's own preprocessing and decoding, transcribed
    loop for loop (tests/reference_body.py, the test oracle), as the original code ran it. Without, through
    meshconf's decoder, which isolates what the loop structure alone costs."""
    from meshconf.openpose.detect import forward

    for start in range(0, len(dataset), batch_size):
        batch = collate([dataset[i] for i in range(start, min(start + batch_size, len(dataset)))])
        with torch.inference_mode():
            rotmat, betas, camera = spin(geometry.normalize_crop(batch["crop"]))
            geometry.project_spin_joints(smpl(rotmat, betas).joints, camera)
        body = load_body(body_path)
        for crop in batch["crop"]:
            image = np.ascontiguousarray(crop[:, :, ::-1].astype(np.float32))
            if original_decoder:
                net_input, _ = reference_body.preprocess(image)
                paf, heatmap = forward(body, net_input)
                reference_body.decode(paf, heatmap, image.shape[:2])
            else:
                detect(body, image)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "extract.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    keep_freed_memory()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        shutil.copy(SHARED / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png", tmp / "a.png")
        shutil.copy(SHARED / "data" / "meshconfidence" / "examples" / "im1010.jpg", tmp / "b.jpg")
        rng = np.random.default_rng(0)
        n = args.images
        names = np.array(["a.png", "b.jpg"] * (n // 2 + 1))[:n]
        center = np.array([112.0, 112.0]) + rng.uniform(-15, 15, (n, 2))
        scale = rng.uniform(0.9, 1.2, n)
        joints = center[:, None] + rng.uniform(-60, 60, (n, 14, 2))
        dataset = AnnotatedCrops(Annotations(names, center, scale, joints, center.copy(), dataset="bench"), tmp)
        ckpt, body_path = tmp / "model_checkpoint.pt", tmp / "body_pose_model.pth"
        write_spin_checkpoint(ckpt, 0, dict(np.load(SHARED / "data" / "spin" / "smpl_mean_params.npz")))
        write_openpose_weights(body_path, 0)
        spin, body = load_spin(ckpt), load_body(body_path)
        smpl = load_smpl(SHARED / "golden" / "smpl_synthetic", SHARED / "data" / "spin" / "J_regressor_extra.npy")
        folded = fold_batchnorm(spin)  # as `meshconf extract` runs it
        cases = [(f"meshconf extract, batch {b}", lambda b=b, k=k: extract(folded, smpl, body, dataset,
                                                                            str(tmp / f"out{k}"), "bench",
                                                                            batch_size=b, progress=False))
                 for k, b in enumerate((1, 16, 64))]
        cases.append(("original structure, meshconf's decoder",
                      lambda: original_structure(spin, smpl, body_path, dataset, original_decoder=False)))
        cases.append(("original structure (SPIN b16, OpenPose b1 + its decoder, reload per batch)",
                      lambda: original_structure(spin, smpl, body_path, dataset)))
        print(f"{'measurement':76} {'s/image':>8} {'x floor':>8}")
        for name, fn in cases:
            start = time.perf_counter()
            fn()
            per = (time.perf_counter() - start) / n
            rows.append(dict(name=name, seconds_per_image=per, times_floor=per / FLOOR_S))
            print(f"{name:76} {per:8.3f} {per / FLOOR_S:8.2f}", flush=True)
    base = rows[-1]["seconds_per_image"]
    for row in rows[:-1]:
        row["speedup_vs_original_structure"] = base / row["seconds_per_image"]
        print(f"{row['name']:76} {row['speedup_vs_original_structure']:8.2f}x faster than the original structure")
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".tmp").write_text(json.dumps(dict(benchmark="extract", images=n, threads=2, rows=rows), indent=1))
    out.with_suffix(".tmp").replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
