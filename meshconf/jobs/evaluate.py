"""`meshconf evaluate`: estimators and baselines on ED arrays; a paper-shaped table, JSON and plots."""

from __future__ import annotations

import math
import os

from .. import constants as C
from ..classifier import data as D
from ..classifier import metrics as M
from ..classifier import plots
from ..classifier.models import load
from ..errors import MeshconfError
from ..files.fileio import write_json

COLUMNS = (("N", "n", "{:d}"), ("MC acc", "mc_accuracy", "{:.1%}"), ("AUROC", "mc_auroc", "{:.3f}"),
           ("AUPRC(inacc)", "mc_auprc_inaccurate", "{:.3f}"), ("ECE", "mc_ece", "{:.3f}"),
           ("WJ top1", "wj_top1", "{:.1%}"), ("WJ top3", "wj_top3", "{:.1%}"),
           ("top1|inacc", "wj_top1_inaccurate", "{:.1%}"), ("top3|inacc", "wj_top3_inaccurate", "{:.1%}"),
           ("r(err)", "joint_pearson_r_mean", "{:.3f}"), ("AURC", "aurc", "{:.3f}"),
           ("bound cov", "bound_coverage", "{:.1%}"), ("worst joint", "bound_coverage_worst_joint", "{:.1%}"),
           ("bound px", "bound_px_median", "{:.1f}"))


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder of <set>_{sp_op,sp_gt,conf}.npy arrays")
    parser.add_argument("--threads", type=int, help="CPU threads for the estimators (default: torch's choice)")
    parser.add_argument("--sets", nargs="+", help="test sets (default: every set whose name contains 'test')")
    parser.add_argument("--model", nargs="+", default=["default", "original"],
                        help="shipped estimators (default, original) or .safetensors files")
    parser.add_argument("--train-sets", nargs="*", help="sets the line-fit baseline is fitted on "
                        "(default: every set whose name contains 'train'; none: no baselines)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--drop-nonfinite", action="store_true",
                        help="leave out rows with NaN/inf ED, SE or confidence (default: refuse such arrays)")
    parser.add_argument("--out", default="meshconf-evaluation", help="output folder (default: %(default)s)")


def format_table(title: str, rows: dict) -> str:
    names = list(rows)
    width = max(len(n) for n in names + ["set"])
    head = f"{'set':{width}s} " + " ".join(f"{c[0]:>12s}" for c in COLUMNS)
    lines = [title, head, "-" * len(head)]
    for name in names:
        cells = []
        for _, key, fmt in COLUMNS:
            v = rows[name].get(key)
            cells.append(f"{'-' if v is None or (isinstance(v, float) and math.isnan(v)) else fmt.format(v):>12s}")
        lines.append(f"{name:{width}s} " + " ".join(cells))
    return "\n".join(lines)


def run(args) -> int:
    from ..runtime import set_threads

    set_threads(args.threads)
    set_names = args.sets or [s for s in D.find_sets(args.data) if "test" in s]
    if not set_names:
        raise MeshconfError(f"no test sets in {args.data} (files <set>_sp_op.npy with 'test' in the name); "
                            f"name them with --sets")
    sets = {name: D.load_set(args.data, name, drop_nonfinite=args.drop_nonfinite) for name in set_names}
    missing_gt = [n for n, s in sets.items() if s.se is None]
    if missing_gt:
        raise MeshconfError(f"no ground truth (_sp_gt.npy) for {', '.join(missing_gt)}: cannot evaluate")
    from ..classifier.domain import drift

    for n, s in sets.items():
        print(drift(s.ed, s.conf).line(n))
    results = {}
    from tqdm import tqdm

    with tqdm(total=len(args.model) * len(sets), desc="evaluate", unit="set",
              disable=True if args.no_progress else None) as bar:
        for spec in args.model:
            estimator = load(spec)
            label = spec if spec in ("default", "original") else os.path.basename(spec)
            results[label] = {}
            for n, s in sets.items():  # one step per (estimator, set): the default estimator's trees take a while
                bar.set_postfix_str(f"{label} on {n}")
                signals = s.signals if estimator.needs_signals else None
                results[label][n] = M.evaluate(estimator.predict(s.ed, s.conf, signals=signals), s,
                                               estimator.operating_points)
                bar.update(1)
    train_names = args.train_sets if args.train_sets is not None else [s for s in D.find_sets(args.data)
                                                                       if "train" in s]
    baseline_results = {}
    if train_names:
        train = D.concat([D.load_set(args.data, n, drop_nonfinite=args.drop_nonfinite) for n in train_names],
                         "train")
        for n, s in sets.items():
            for b, pred in M.baselines(s, train).items():
                baseline_results.setdefault(b, {})[n] = M.evaluate(pred, s)
    os.makedirs(args.out, exist_ok=True)
    for label, rows in list(results.items()) + list(baseline_results.items()):
        kind = "baseline" if label in baseline_results else "estimator"
        print(format_table(f"\n{kind}: {label}", rows))
    if train_names:
        print(f"\nbaselines fitted on: {', '.join(train_names)}")
    summary = {"data": os.path.abspath(args.data), "sets": set_names, "estimators": results,
               "baselines": baseline_results, "baseline_training_sets": train_names}
    write_json(os.path.join(args.out, "results.json"), summary)
    for label, rows in results.items():
        for n, r in rows.items():
            for point in r.get("operating_points", []):
                print(f"{label} on {n}: accept P(accurate) >= {point['threshold']:.3f} (target precision "
                      f"{point['target_precision']:.0%}): precision {point['precision'] or 0:.1%}, acceptance "
                      f"{point['acceptance']:.1%}")
    for label, rows in results.items():
        for n, r in rows.items():
            bins = r["reliability"]
            cells = ", ".join(f"{k / 10:.1f}-{(k + 1) / 10:.1f}: {c:.2f}/{f:.2f} n={m}" for k, (c, f, m) in
                              enumerate(zip(bins["confidence"], bins["frequency"], bins["count"])) if m)
            print(f"{label} on {n}: ECE {r['mc_ece']:.3f}; per bin (mean P(accurate)/share accurate, rows): {cells}")
            if "bounds" in r:
                b = r["bounds"]
                per_joint = b["coverage_per_joint"]
                joints = ", ".join(f"{name} {c:.1%}" for name, c in zip(C.J14_NAMES, per_joint))
                low, high = min(range(14), key=per_joint.__getitem__), max(range(14), key=per_joint.__getitem__)
                print(f"{label} on {n}: bounds cover {b['coverage']:.1%} of joints (mean {b['bound_px_mean']:.1f} px, "
                      f"median {b['bound_px_median']:.1f} px); per joint min {C.J14_NAMES[low]} {per_joint[low]:.1%}, "
                      f"max {C.J14_NAMES[high]} {per_joint[high]:.1%}; each: {joints}")
    plots.reliability(results, os.path.join(args.out, "reliability.png"))
    plots.risk_coverage(results, os.path.join(args.out, "risk_coverage.png"))
    plots.joint_correlation(results, os.path.join(args.out, "joint_correlation.png"))
    print(f"\nwrote {args.out}/results.json, reliability.png, joint_correlation.png, risk_coverage.png")
    return 0
