"""Threads under contention: the shipped estimator's `predict` with 1 and 2 torch threads, with OpenMP's default
(spinning) and passive waiting, alone and beside a busy neighbour (processes spinning on every core), each in a fresh
process so the OpenMP settings take effect; interleaved rounds. The original structure is the one torch default:
every core's thread, OpenMP spinning; meshconf's jobs wait passively (`runtime.passive_openmp`).

    python benchmarks/threads.py [--rows 10000] [--rounds 2] [--json benchmarks/results/threads.json]
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO / "benchmarks"))
from memory import cpu_name  # noqa: E402

CHILD = r"""
import os, sys, time
sys.path.insert(0, {repo!r})
import numpy as np, torch
from meshconf.classifier import data as D, load
threads = int(sys.argv[1]); rows = int(sys.argv[2]); mode = sys.argv[3]
s = D.load_set({arrays!r}, "3dpw_test", log=lambda *a: None)
ed, conf = s.ed[:rows], s.conf[:rows]
estimator = load("default")
torch.set_num_threads(threads)
start = time.perf_counter(); estimator.predict(ed, conf); seconds = time.perf_counter() - start
print(seconds)
"""


def spin_neighbours(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def run(config: dict, rows: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    if config["wait"] == "passive":
        env["OMP_WAIT_POLICY"] = "PASSIVE"
    elif config["wait"].startswith("spin"):  # libgomp's spin count before a waiting thread sleeps
        env["GOMP_SPINCOUNT"] = config["wait"][4:]
    code = CHILD.format(repo=str(REPO), arrays=str(SHARED / "data" / "meshconfidence" / "sp_op" / "3dpw"))
    done = subprocess.run([sys.executable, "-c", code, str(config["threads"]), str(rows), config["mode"]], env=env,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return float(done.stdout.split()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "threads.json"))
    args = parser.parse_args(argv)
    cores = os.cpu_count() or 1
    configs = [dict(name=f"original structure: {cores} threads, OpenMP spinning", threads=cores, wait="default",
                    mode="plain"),
               dict(name="1 thread", threads=1, wait="default", mode="plain"),
               dict(name=f"{cores} threads, spin count 10,000", threads=cores, wait="spin10000", mode="plain"),
               dict(name=f"meshconf: {cores} threads, OpenMP passive", threads=cores, wait="passive", mode="plain")]
    times = {(c["name"], busy): [] for c in configs for busy in (False, True)}
    for _ in range(args.rounds):
        for busy in (False, True):
            neighbours = spin_neighbours(cores) if busy else []
            try:
                time.sleep(0.5 if busy else 0)
                for c in configs:
                    times[(c["name"], busy)].append(run(c, args.rows))
            finally:
                for p in neighbours:
                    p.kill()
                    p.wait()
    print(f"CPU: {cpu_name()}; {cores} cores; default estimator predict on {args.rows} 3DPW rows; "
          f"busy = {cores} processes spinning beside it; medians of {args.rounds} interleaved rounds")
    print(f"{'configuration':52} {'alone s':>8} {'busy s':>8}")
    rows = []
    for c in configs:
        alone, busy = (statistics.median(times[(c['name'], b)]) for b in (False, True))
        rows.append(dict(name=c["name"], threads=c["threads"], wait=c["wait"], mode=c["mode"], alone_s=alone,
                         busy_s=busy, alone_all=times[(c["name"], False)], busy_all=times[(c["name"], True)]))
        print(f"{c['name']:52} {alone:8.2f} {busy:8.2f}")
    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(dict(benchmark="threads", cpu=cpu_name(), cores=cores, rows=args.rows,
                                   rounds=args.rounds, results=rows), indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
