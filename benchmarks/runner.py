"""Serial against pipelined (`meshconf.engine.runner`) on this machine: `extract` end to end, interleaved rounds.

    python benchmarks/runner.py [--device cpu] [--crops 48] [--batch 16] [--rounds 3] [--json ...]

Each round runs every variant once on a fresh output folder (host noise hits all variants alike): depth 0 (serial:
the networks, then decoding, then the next batch) and depth 1 (the next batch's networks while this one decodes),
each with the per-crop decoder and the batched one; the original structure (SPIN batches of 16, OpenPose one image
at a time, decoded by pytorch-openpose's decoder or meshconf's) once per round beside them. Recipe weights, one real photo at random boxes.
Table (median, min, max crops/s) plus JSON. Decides whether the CPU default (serial) should change.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import statistics
import sys
import tempfile

import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from gpu import dataset, original_rows, timed  # noqa: E402
from memory import cpu_name, data_dir, write_result  # noqa: E402

import meshconf.openpose.detect as detect_module  # noqa: E402
from meshconf.engine.bundle import load_models  # noqa: E402
from meshconf.engine.extraction import extract  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="float32")
    parser.add_argument("--crops", type=int, default=48)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--original-crops", type=int, default=16)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "runner.json"))
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_name()}; {os.cpu_count()} cores; device: {args.device}; {args.precision}; torch "
          f"{torch.__version__}; {args.crops} crops, batch {args.batch}, {args.rounds} interleaved rounds", flush=True)
    variants = {f"extract, decode {where}, {'pipelined' if depth else 'serial'}": (on_device, depth)
                for depth in (0, 1) for where, on_device in (("per crop", False), ("batched", True))}
    originals = ("original structure, pytorch-openpose's decoder", "original structure, meshconf's decoder")
    rates: dict[str, list[float]] = {name: [] for name in [*originals, *variants]}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        root = data_dir(tmp)
        data = dataset(tmp, args.crops)
        models = load_models({"spin", "smpl", "body"}, root, device=args.device, precision=args.precision,
                             fixed_shapes=True)
        for round_ in range(args.rounds + 1):  # round 0 warms every path up, untimed
            for name, (on_device, depth) in variants.items():
                detect_module.DECODE_ON_DEVICE = on_device
                out = tmp / f"r{round_}_{on_device}_{depth}"
                seconds = timed(models.device, lambda: extract(
                    models.spin, models.smpl, models.body, data, str(out), "w", batch_size=args.batch,
                    progress=False, models=models.settings(), depth=depth))
                if round_:
                    rates[name].append(args.crops / seconds)
            detect_module.DECODE_ON_DEVICE = None
            if round_ and args.original_crops:
                for name, row in zip(originals, original_rows(models, data, args.original_crops, args.precision)):
                    rates[name].append(row["crops_per_s"])
            print(f"round {round_} done", flush=True)
    rows = [dict(variant=name, median=round(statistics.median(v), 2), min=round(min(v), 2), max=round(max(v), 2),
                 n=len(v), ratio_to_serial=round(statistics.median(v) / statistics.median(
                     rates["extract, decode per crop, serial"]), 3)) for name, v in rates.items() if v]
    width = max(len(r["variant"]) for r in rows)
    print(f"\n| {'variant'.ljust(width)} | crops/s median | min | max | x serial per-crop |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant'].ljust(width)} | {r['median']} | {r['min']} | {r['max']} | {r['ratio_to_serial']} |")
    result = dict(benchmark="runner", cpu=cpu_name(), cores=os.cpu_count(), device=args.device,
                  precision=args.precision, torch=torch.__version__, crops=args.crops, batch=args.batch, rows=rows)
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
