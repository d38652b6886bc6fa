"""OpenPose benchmark: network forward, decoding and detection, against the original's numbers on this machine class.

    python benchmarks/openpose.py [--quick] [--json benchmarks/results/openpose.json]

Uses the seed-0 recipe weights (written to a temporary file and loaded through `load_body`, like the real file)
and images/maps from ../shared (or $MESHCONF_SHARED). Prints a table and writes JSON. Timings are warm, repeated,
in-process: median, min and max. "orig" is the original code's median from shared/PERF-REFERENCE.md.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import platform
import statistics
import sys
import tempfile
import time

import cv2
import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from meshconf.openpose import decode_full, detect_batch, forward, load_body, preprocess  # noqa: E402
from meshconf.openpose.synthetic import synthetic_maps  # noqa: E402
from meshconf.models.recipe import write_openpose_weights  # noqa: E402
from meshconf.runtime import keep_freed_memory  # noqa: E402

FLOOR_GFLOPS = 238.0  # best fp32 conv throughput measured on this machine class (PERF-REFERENCE.md §5)
GMAC = {(184, 184): 33.98, (184, 248): 45.80}  # OpenPose body network, per image (PERF-REFERENCE.md §5)


def timed(fn, repeats: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        out.append(time.perf_counter() - start)
    return out


def peak_rss_mib() -> float:
    from meshconf.runtime import peak_rss_mb

    return peak_rss_mb()


class Table:
    def __init__(self):
        self.rows = []

    def add(self, name, seconds, per=1, unit="ms", orig=None, target=None, note=""):
        scale = {"ms": 1e3, "s": 1.0}[unit] / per
        values = [s * scale for s in seconds]
        row = dict(name=name, median=statistics.median(values), min=min(values), max=max(values), n=len(values),
                   unit=unit, orig=orig, target=target, note=note, peak_rss_mib=round(peak_rss_mib()))
        if target is not None:
            row["meets_target"] = row["median"] <= target
        self.rows.append(row)
        self.print_row(row)
        return row

    @staticmethod
    def header():
        print(f"{'measurement':58} {'median':>9} {'min':>9} {'max':>9} {'n':>3} {'unit':6} {'orig':>8} "
              f"{'target':>7} {'RSS MiB':>8}  note")

    @staticmethod
    def print_row(r):
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        print(f"{r['name']:58} {r['median']:9.1f} {r['min']:9.1f} {r['max']:9.1f} {r['n']:3d} {r['unit']:6} "
              f"{fmt(r['orig']):>8} {fmt(r['target']):>7} {r['peak_rss_mib']:8d}  {r['note']}", flush=True)


def keypoint_agreement(reference: list, other: list, tol_px: float = 1.0) -> dict:
    """How many reference peaks have a peak of the same id position within `tol_px` in `other`, and equal people
    counts, over a list of (candidate, subset) pairs."""
    matched = total = same_people = 0
    for (c_ref, s_ref), (c_oth, s_oth) in zip(reference, other):
        c_ref, c_oth = c_ref.reshape(-1, 4), c_oth.reshape(-1, 4)
        total += len(c_ref)
        if len(c_ref) and len(c_oth):
            d = np.abs(c_ref[:, None, :2] - c_oth[None, :, :2]).max(2)
            matched += int((d.min(1) <= tol_px).sum())
        same_people += int(len(s_ref) == len(s_oth))
    return dict(peaks=total, peaks_matched_within_1px=matched, fraction=matched / max(total, 1),
                images_with_same_people_count=same_people, images=len(reference))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats, no batch-64 row")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "openpose.json"))
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if not (SHARED / "golden").is_dir():
        print(f"needs the shared goldens at {SHARED} (set MESHCONF_SHARED)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    tuned = keep_freed_memory()
    reps = 3 if args.quick else 10

    demo = np.load(SHARED / "golden" / "ed_demo_golden.npz")
    crop = demo["op_img"]  # the demo's float BGR 224x224 OpenPose input
    photo = cv2.imread(str(SHARED / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"))
    big = cv2.resize(photo, (640, 480), interpolation=cv2.INTER_CUBIC)  # uint8 BGR 640x480
    rng = np.random.default_rng(0)
    two_people_640 = synthetic_maps(rng, (480, 640), n_people=2)
    table = Table()
    Table.header()

    with tempfile.TemporaryDirectory() as tmp:
        weights = pathlib.Path(tmp) / "body_pose_model.pth"
        write_openpose_weights(weights, 0)
        load_times = timed(lambda: load_body(weights, args.device), 3, warmup=0)
        table.add("load_body (200 MB .pth, strict checks)", load_times, orig=419)
        model = load_body(weights, args.device)
        model_bf16 = load_body(weights, args.device, precision="bfloat16")

    # ---- network forward
    x_crop, geo_crop = preprocess(crop)
    x_big, geo_big = preprocess(big)
    for name, x, orig in (("net forward 1x3x184x184 (224 demo crop), fp32", x_crop, 322),
                          ("net forward 1x3x184x248 (640x480 image), fp32", x_big, 500)):
        row = table.add(name, timed(lambda x=x: forward(model, x), reps), orig=orig)
        floor_ms = 2 * GMAC[x.shape[2:]] / FLOOR_GFLOPS * 1e3
        row["floor_ms"], row["vs_floor"] = floor_ms, row["median"] / floor_ms
        print(f"{'':58}   fp32 arithmetic floor {floor_ms:.0f} ms -> {row['vs_floor']:.2f}x the floor")
    table.add("net forward 1x3x184x184, bfloat16 (optional)", timed(lambda: forward(model_bf16, x_crop), reps),
              orig=322)
    for batch in (16,) if args.quick else (16, 64):
        xb = np.repeat(x_crop, batch, axis=0)
        table.add(f"net forward batch {batch}, per image, fp32", timed(lambda xb=xb: forward(model, xb),
                                                                       1 if batch == 64 else 2,
                                                                       warmup=0 if batch == 64 else 1),
                  per=batch, orig=322)

    # ---- decoding from given maps
    cases = [("decode A1: 2 people, 224x224 (golden maps)", "openpose_decode_A1.npz", 46.4, 15.0),
             ("decode A2: 224x320, 5 fragments (golden maps)", "openpose_decode_A2.npz", 76.8, None),
             ("decode 1 person, 224x224 (ed_demo maps)", "ed_demo_golden.npz", 40.5, None)]
    for name, file, orig, target in cases:
        g = np.load(SHARED / "golden" / file)
        paf, heat = g["net_paf"], g["net_heatmap"]
        hw = tuple(g["image_hw"]) if "image_hw" in g.files else (224, 224)
        table.add(name, timed(lambda paf=paf, heat=heat, hw=hw: decode_full(paf, heat, hw), reps * 5, warmup=3),
                  orig=orig, target=target)
    paf, heat = two_people_640
    n_cand = len(decode_full(paf, heat, (480, 640)).candidate)
    table.add("decode 2 people, 640x480 (synthetic maps)", timed(lambda: decode_full(paf, heat, (480, 640)),
                                                                 reps * 5, warmup=3),
              orig=312, target=60.0, note=f"{n_cand} candidates")

    # ---- detect beyond the network, recipe weights (hundreds of spurious peaks: a crowded-image stress case)
    for name, image, orig, target in (("detect minus forward, 224 demo crop, recipe weights", crop, 1369, 100.0),
                                      ("detect minus forward, 640x480, recipe weights", big, 4448, None)):
        net_input, geo = preprocess(image)
        paf, heat = forward(model, net_input)
        decoded = decode_full(paf, heat, geo.image_hw)

        def post(image=image, paf=paf, heat=heat, geo=geo):
            preprocess(image)
            decode_full(paf, heat, geo.image_hw)

        table.add(name, timed(post, reps), orig=orig, target=target,
                  note=f"{len(decoded.candidate)} candidates, {len(decoded.subset)} people")

    # ---- whole detection, batched
    for batch in (1, 16) if args.quick else (1, 16, 64):
        images = [crop] * batch
        seconds = timed(lambda images=images: detect_batch(model, images, batch_size=batch),
                        reps if batch == 1 else 1, warmup=1 if batch < 64 else 0)
        table.add(f"detect_batch, batch {batch}, per image (224 demo crop)", seconds, per=batch, orig=1723,
                  note="recipe weights")

    # ---- bfloat16 agreement (recipe weights: a stress case, not the published weights' behaviour)
    photos = [crop, photo, big, photo[:, :170], cv2.flip(photo, 1)]
    fp32 = detect_batch(model, photos, batch_size=1)
    bf16 = detect_batch(model_bf16, photos, batch_size=1)
    agreement = keypoint_agreement(fp32, bf16)
    print(f"bfloat16 vs float32 keypoints (recipe weights, {len(photos)} images): "
          f"{agreement['peaks_matched_within_1px']}/{agreement['peaks']} peaks within 1 px "
          f"({100 * agreement['fraction']:.1f}%), same people count in "
          f"{agreement['images_with_same_people_count']}/{agreement['images']} images")

    if args.device.startswith("cuda"):
        images = [crop] * 64
        seconds = timed(lambda: detect_batch(model, images, batch_size=64), 3)
        row = table.add("GPU detect_batch batch 64, per image", seconds, per=64, note="target >= 300 crops/s")
        row["crops_per_s"] = 1e3 / row["median"]

    result = dict(benchmark="openpose", machine=platform.processor() or platform.machine(), threads=args.threads,
                  device=args.device, torch=torch.__version__, keep_freed_memory=tuned, quick=args.quick,
                  rows=table.rows, bfloat16_agreement=agreement, peak_rss_mib=round(peak_rss_mib()))
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(out)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
