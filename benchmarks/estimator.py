"""Estimator benchmark: `load(name).predict` on 3DPW test (35,515 rows) for the shipped estimators, interleaved call
by call in one run, with the share v2's trees take. Target (issue 17): under 5 s for 35,515 rows on two cores.

v2's trees are perfect trees of depth 4-5 evaluated level by level for every (row, tree) pair at once
(`meshconf.classifier.forest`); v1's 2,800 trees of depth up to 19 are walked node by node and stay slow.

    python benchmarks/estimator.py [--rows 35515] [--repeats 3] [--json benchmarks/results/estimator.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import sys
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))

from meshconf.classifier import data as D  # noqa: E402
from meshconf.classifier import load  # noqa: E402
from meshconf.classifier.forest import forest_features  # noqa: E402

sys.path.insert(0, str(REPO / "benchmarks"))
from memory import cpu_name  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=35515)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "estimator.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    s = D.load_set(SHARED / "data" / "meshconfidence" / "sp_op" / "3dpw", "3dpw_test")
    ed, conf = s.ed[:args.rows], s.conf[:args.rows]
    t_ed, t_conf = torch.from_numpy(ed.astype(np.float32)), torch.from_numpy(conf.astype(np.float32))
    estimators = {name: load(name) for name in ("default", "v1", "original")}
    times = {f"{name} predict": [] for name in estimators}
    times["default: its 29 tree models alone"] = []
    v2 = estimators["default"].net
    forests = (v2.error, v2.joint_bad, v2.mesh)
    for _ in range(args.repeats):  # interleaved, so host noise affects every variant alike
        for name, est in estimators.items():
            start = time.perf_counter()
            est.predict(ed, conf)
            times[f"{name} predict"].append(time.perf_counter() - start)
        start = time.perf_counter()
        with torch.no_grad():
            x = forest_features(t_ed, t_conf)
            for forest in forests:
                forest(x)
        times["default: its 29 tree models alone"].append(time.perf_counter() - start)
    shapes = [forest.shape for forest in forests]
    n_trees = sum(m * t for m, t, _ in shapes)
    print(f"CPU: {cpu_name()}; {os.cpu_count()} cores, torch threads {torch.get_num_threads()}; {len(ed)} rows; "
          f"default: {n_trees} trees (models x trees x depth: {shapes}); v1: {estimators['v1'].net.trees.roots.numel()}"
          f" trees of depth up to {int(estimators['v1'].net.trees.depth)}")
    print(f"{'measurement':42} {'median s':>9} {'min':>7} {'max':>7} {'n':>3}")
    rows = []
    for name, t in times.items():
        rows.append(dict(name=name, median_s=statistics.median(t), min_s=min(t), max_s=max(t), n=len(t)))
        print(f"{name:42} {statistics.median(t):9.2f} {min(t):7.2f} {max(t):7.2f} {len(t):3d}")
    met = statistics.median(times["default predict"]) < 5
    print(f"target 35,515 rows < 5 s for the default estimator: {'met' if met else 'missed'}")
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(benchmark="estimator", cpu=cpu_name(), rows=len(ed), results=rows,
                                   default_forests=shapes, target_s=5.0, target_met=met), indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
