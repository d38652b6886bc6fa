"""`meshconf calibrate`: refit an estimator's bounds, P(accurate) map and operating points on your labelled rows.

    meshconf calibrate --data mydata/ --model default --out mine.safetensors
    meshconf demo --estimator mine.safetensors ...

The trees and networks are not touched; see `meshconf.classifier.domain` for the recipe and its held-out check.
"""

from __future__ import annotations

import os

from ..classifier import data as D
from ..classifier.domain import calibrate_to, drift, format_split_report, min_rows
from ..classifier.models import SHIPPED, load, shipped_path, weights_digest
from ..errors import MeshconfError
from ..files.fileio import sha256_file, write_json


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder of <set>_{sp_op,sp_gt,conf}.npy arrays (as extract "
                        "writes them); each set is one source, its rows in frame order")
    parser.add_argument("--sets", nargs="+", help="sets to calibrate on (default: every set in --data)")
    parser.add_argument("--threads", type=int, help="CPU threads for the estimators (default: torch's choice)")
    parser.add_argument("--model", default="default",
                        help="the estimator to calibrate: a shipped name (default, v1, original) or a .safetensors "
                             "file (default: %(default)s)")
    parser.add_argument("--out", required=True, help="the calibrated estimator file to write (.safetensors); use it "
                        "with --estimator in every job")
    parser.add_argument("--coverage", type=float, default=0.9,
                        help="per-joint coverage of the error bounds (default: %(default)s)")
    parser.add_argument("--replace", action="store_true",
                        help="replace the estimator's bounds and thresholds with the ones fitted on your rows, even "
                             "where they are less cautious (default: per joint and per target the more cautious of "
                             "the two; use --replace only with a large sample that represents your whole domain)")
    parser.add_argument("--drop-nonfinite", action="store_true",
                        help="leave out rows with NaN/inf ED, SE or confidence (default: refuse such arrays)")


def run(args) -> int:
    from ..runtime import set_threads

    set_threads(args.threads)
    if not args.out.endswith(".safetensors"):
        raise MeshconfError(f"--out {args.out}: name a .safetensors file (e.g. mine.safetensors)")
    parent = os.path.dirname(os.path.abspath(args.out))
    if not os.path.isdir(parent):
        raise MeshconfError(f"--out {args.out}: the folder {parent} does not exist; create it first")
    if not os.path.isdir(args.data):
        raise MeshconfError(f"--data {args.data} is not a folder of <set>_sp_op.npy arrays")
    names = args.sets or D.find_sets(args.data)
    if not names:
        raise MeshconfError(f"no sets in {args.data} (files <set>_sp_op.npy, <set>_conf.npy, <set>_sp_gt.npy)")
    if not 0.5 <= args.coverage < 1:
        raise MeshconfError(f"--coverage must be in [0.5, 1), got {args.coverage}")
    sets = [D.load_set(args.data, n, drop_nonfinite=args.drop_nonfinite) for n in names]
    estimator = load(args.model)
    if not estimator.predicts_joint_error:
        print(f"note: the {args.model} estimator predicts no per-joint errors: only P(accurate) and the operating "
              f"points are calibrated")
    base_path = shipped_path(args.model) if args.model in SHIPPED else args.model
    for s in sets:
        print(drift(s.ed, s.conf).line(s.name))
    result = calibrate_to(estimator, sets, args.coverage, base_name=args.model,
                          base_sha256=sha256_file(base_path), widen_only=not args.replace)
    result.estimator.metadata["calibration"]["base_weights_sha256"] = weights_digest(base_path)
    for line in format_split_report(result.split, args.coverage):
        print(line)
    result.estimator.save(args.out)
    write_json(args.out[: -len(".safetensors")] + ".calibration.json", result.estimator.metadata["calibration"])
    rows = sum(len(s) for s in sets)
    print(f"calibrated on {rows} rows of {len(sets)} source(s) (at least {min_rows(args.coverage)} per source and "
          f"joint needed for {args.coverage:.0%} bounds); wrote {args.out}; use it with --estimator {args.out}")
    return 0
