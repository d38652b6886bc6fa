"""Short GPU throughput runs for the prepared GPU check (`benchmarks/gpu_check.sh`): `extract` crops/s and
`sensitivity dataset` windows/s on CUDA (fp32 with TF32 off, and bfloat16), recipe weights, a synthetic dataset of
256 rows. Device time is synchronised before each clock read. Writes a small JSON."""

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

from meshconf.engine.bundle import load_models  # noqa: E402
from meshconf.dataset import AnnotatedCrops, Annotations  # noqa: E402
from meshconf.engine.extraction import extract  # noqa: E402
from meshconf.runtime import synchronize  # noqa: E402


def data_dir(tmp: pathlib.Path) -> pathlib.Path:
    sys.path.insert(0, str(REPO / "benchmarks"))
    import memory

    return memory.data_dir(tmp)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=256)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "gpu_check.json"))
    parser.add_argument("--tests-log")
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        root = data_dir(tmp)
        shutil.copy(SHARED / "data" / "meshconfidence" / "examples" / "im1010.jpg", tmp / "b.jpg")
        rng = np.random.default_rng(0)
        n = args.rows
        center = np.array([150.0, 160.0]) + rng.uniform(-15, 15, (n, 2))
        joints = center[:, None] + rng.uniform(-60, 60, (n, 14, 2))
        dataset = AnnotatedCrops(Annotations(np.array(["b.jpg"] * n), center, rng.uniform(0.9, 1.2, n), joints,
                                             center.copy(), dataset="gpu"), tmp)
        for precision in ("float32", "bfloat16"):
            models = load_models({"spin", "smpl", "body"}, root, device="cuda", precision=precision,
                                 fixed_shapes=True)
            for batch in (64, 128):
                out = tmp / f"x_{precision}_{batch}"
                extract(models.spin, models.smpl, models.body, dataset, str(out), "w", batch_size=batch,
                        progress=False, max_batches=1, models=models.settings())  # warm-up batch
                synchronize(models.device)
                start = time.perf_counter()
                extract(models.spin, models.smpl, models.body, dataset, str(out), "w", batch_size=batch,
                        progress=False, models=models.settings())
                synchronize(models.device)
                seconds = time.perf_counter() - start
                timed = n - batch
                rows.append(dict(job="extract", precision=precision, batch=batch, crops=timed,
                                 crops_per_s=round(timed / seconds, 1)))
                print(rows[-1], flush=True)
    result = dict(benchmark="gpu_check", device=torch.cuda.get_device_name(0), torch=torch.__version__,
                  tf32=False, rows=rows,
                  tests_log=pathlib.Path(args.tests_log).read_text()[-2000:] if args.tests_log else None)
    pathlib.Path(args.json).write_text(json.dumps(result, indent=1))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
