"""Hundreds of seeded mutations of SMPL, estimator, annotation and checkpoint files, each read through the loader
the jobs use, in a fresh process under an address-space limit: every mutant loads or is refused with a one-line
error (MeshconfError), never a traceback, never a signal, and memory stays bounded."""

import json
import os
import pathlib
import subprocess
import sys

import pytest

HERE = pathlib.Path(__file__).parent
MEMORY_LIMIT_GB = 12  # address space of the fuzzing process: torch alone reserves a few GiB of it
RSS_BOUND_MB = 3000


@pytest.mark.slow
def test_mutated_files_load_or_are_refused_never_crash(tmp_path, shared, tiny_dataset, spin_checkpoint):
    weights = HERE.parent / "meshconf" / "classifier" / "weights"
    annotations, _ = tiny_dataset
    specs = [f"smpl={shared / 'golden' / 'smpl_synthetic' / 'SMPL_NEUTRAL.pkl'}:60",
             f"estimator={weights / 'meshconf_v2.safetensors'}:80",
             f"estimator={weights / 'original.safetensors'}:40",
             f"annotations={annotations}:120",
             f"checkpoint={spin_checkpoint}:30"]
    out = tmp_path / "report.json"
    env = {**os.environ, "FUZZ_MEMORY_LIMIT_GB": str(MEMORY_LIMIT_GB), "OMP_NUM_THREADS": "1",
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([sys.executable, str(HERE / "fuzz_driver.py"), "0", str(out), *specs], env=env,
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"the fuzzing process ended with {done.returncode}: {done.stderr[-3000:]}"
    report = json.loads(out.read_text())
    assert not report["tracebacks"], json.dumps(report["tracebacks"][:5], indent=1)
    outcomes = report["outcomes"]
    assert sum(outcomes.values()) == 330
    for kind in ("smpl", "estimator", "annotations", "checkpoint"):
        assert outcomes.get(f"{kind}:refused", 0) > 0, outcomes  # the mutations reach the checks
    assert report["max_rss_mb"] < RSS_BOUND_MB, report["max_rss_mb"]
