"""Learning curve of `meshconf calibrate` on 3DPW: how many labelled rows of a domain make the promises hold.

    python benchmarks/calibration.py          # needs ../shared (or $MESHCONF_SHARED) with the 3DPW arrays

For each source (3dpw_occ_test, 3dpw_test: rows the shipped estimator was not trained on), calibrate the shipped
estimator on its first N rows (N = 100 ... 10000) and judge on the second half of the source (rows from 17,757 + a
50-row purge gap on: other sequences than the calibration rows). Reported: 90% bound coverage (overall and worst
joint), median bound, ECE, the 90%-precision operating point's precision, and the uncalibrated estimator on the same
rows. Table plus JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import sys
import time

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from memory import cpu_name  # noqa: E402

from meshconf import constants as C  # noqa: E402
from meshconf.classifier import data as D  # noqa: E402
from meshconf.classifier.calibration import acceptance_report, bound_report  # noqa: E402
from meshconf.classifier.domain import PURGE, calibrate_to  # noqa: E402
from meshconf.classifier.metrics import expected_calibration_error  # noqa: E402
from meshconf.classifier.models import load  # noqa: E402


def judge(estimator, s: D.EDSet) -> dict:
    pred = estimator.predict(s.ed, s.conf)
    label = D.mesh_label(s.se)
    bounds = bound_report(pred.joint_error_bound, s.se, C.NORM_UNIT_PX)
    point = [p for p in acceptance_report(pred.p_accurate, label, estimator.operating_points)
             if abs(p["target_precision"] - 0.9) < 1e-9]
    return {"coverage": bounds["coverage"], "worst_joint": min(bounds["coverage_per_joint"]),
            "worst_joint_name": C.J14_NAMES[int(np.argmin(bounds["coverage_per_joint"]))],
            "bound_px_median": bounds["bound_px_median"],
            "ece": expected_calibration_error(pred.p_accurate, label)[0],
            "precision_at_90": point[0]["precision"] if point else None,
            "acceptance_at_90": point[0]["acceptance"] if point else None}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,300,1000,3000,10000")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "calibration.json"))
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_name()}; {os.cpu_count()} cores")
    folder = SHARED / "data" / "meshconfidence" / "sp_op" / "3dpw"
    base = load("default")
    rows = []
    for name in ("3dpw_occ_test", "3dpw_test"):
        s = D.load_set(folder, name)
        half = len(s) // 2
        held = s.subset(np.arange(half + PURGE, len(s)))
        rows.append(dict(source=name, rows=0, mode="-", recalibration="-", **judge(base, held)))
        for n in (int(x) for x in args.sizes.split(",")):
            start = time.perf_counter()
            for widen_only in (True, False):
                result = calibrate_to(base, [s.subset(np.arange(n), name)], widen_only=widen_only,
                                      log=lambda *_: None)
                rows.append(dict(source=name, rows=n, mode="widen only" if widen_only else "replace",
                                 recalibration=result.estimator.metadata["recalibration"]["method"],
                                 seconds=round(time.perf_counter() - start, 2), **judge(result.estimator, held)))
                print(rows[-1], flush=True)
    print("\n| source | calibration rows | mode | P map | coverage | worst joint | median bound px | ECE | "
          "precision at 90% |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        precision = "-" if r["precision_at_90"] is None else f"{r['precision_at_90']:.1%}"
        print(f"| {r['source']} | {r['rows'] or 'none (shipped)'} | {r['mode']} | {r['recalibration']} | "
              f"{r['coverage']:.1%} | {r['worst_joint']:.1%} "
              f"({r['worst_joint_name']}) | {r['bound_px_median']:.1f} | {r['ece']:.3f} | {precision} |")
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.json).write_text(json.dumps({"benchmark": "calibration", "cpu": cpu_name(), "rows": rows},
                                                  indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
