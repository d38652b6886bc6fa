"""`meshconf train`: train the original recipe and/or meshconf's estimator on prepared tables.

Writes `<name>.safetensors` (weights + normalisation + metadata), `curves_<name>.png` and `metrics_<name>.json`;
for v2 also `oof_default.npz`, the out-of-fold predictions its combination and calibration were fitted on.

Reproducible across machines: SGD over 20-60 epochs amplifies the last bit of every matrix product, and MKL (torch's
CPU BLAS) picks other kernels, with other summation orders, on Intel and AMD CPUs: the same command gave weights
differing by up to 7 on two machines. So training runs MKL's conditional numerical reproducibility mode
(`MKL_CBWR=COMPATIBLE,STRICT`: one code path on every x86 CPU, results independent of the thread count) and a fixed
thread count (`--threads`, default 2), both recorded in the metadata. It costs about 2x in matrix products, which
are a small part of training these small networks.
"""

from __future__ import annotations

import os

import torch

from ..classifier import data as D
from ..classifier import metrics as M
from ..classifier import plots
from ..classifier.models import SHIPPED, weights_digest
from ..errors import MeshconfError
from ..files.fileio import write_json
from ..classifier.training import stack_with_trees, train_meshconfnet, train_original
from ..classifier.v2 import save_out_of_fold, train_v2

REPRODUCIBLE_THREADS = 2
MKL_MODE = "COMPATIBLE,STRICT"


def reproducible_numerics(threads: int) -> dict:
    """Fix what decides the bits of training: MKL's code path (read by MKL at its first call, so this runs before
    any matrix product of the process; a value the user set is kept) and the thread count."""
    os.environ.setdefault("MKL_CBWR", MKL_MODE)
    torch.set_num_threads(threads)
    return {"mkl_cbwr": os.environ["MKL_CBWR"], "threads": threads, "torch": torch.__version__}


def add_arguments(parser) -> None:
    parser.add_argument("--prepared", required=True, help="folder written by `meshconf prepare`")
    parser.add_argument("--model", choices=["default", "original", "both", "v1"], default="both",
                        help="which estimator to train: meshconf's v2 (default), the original recipe, both, or the "
                             "v1, meshconf's first estimator (default: %(default)s)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--seed", type=int, default=0, help="training seed (default: %(default)s)")
    parser.add_argument("--threads", type=int, default=REPRODUCIBLE_THREADS,
                        help="torch CPU threads; results depend on it, so it is fixed (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--replace-shipped", action="store_true",
                        help="allow --out to be the package's shipped weights folder (maintainers)")


def run(args) -> int:
    shipped = os.path.realpath(os.path.join(os.path.dirname(__file__), "weights"))
    if os.path.realpath(args.out) == shipped and not args.replace_shipped:
        raise MeshconfError(f"--out {args.out} is the installed package's own weights folder; train into a new "
                            f"folder and pass --estimator <file>, or add --replace-shipped to overwrite them")
    if args.threads < 1:
        raise MeshconfError(f"--threads must be at least 1, got {args.threads}")
    had_mode = "MKL_CBWR" in os.environ
    try:
        return _train(args)
    finally:
        if not had_mode:  # MKL read it at its first call; child processes of a longer-lived caller must not inherit it
            os.environ.pop("MKL_CBWR", None)


def _train(args) -> int:
    from threadpoolctl import threadpool_limits

    numerics = reproducible_numerics(args.threads)
    prep = D.load_prepared(args.prepared)
    os.makedirs(args.out, exist_ok=True)
    todo = ["original", "default"] if args.model == "both" else [args.model]
    progress = not args.no_progress
    for name in todo:
        with threadpool_limits(args.threads):  # scikit-learn's OpenMP trees: the same thread count every time
            if name == "default":  # v2: fitted, combined and calibrated out of fold (meshconf.classifier.v2)
                oof: dict = {}
                estimator, histories, val_metrics = train_v2(prep, seed=args.seed, progress=progress, keep=oof)
                save_out_of_fold(os.path.join(args.out, "oof_default.npz"), oof["parts"], oof["rows"])
                estimator.metadata["calibration_split"] = prep.split or {"block": 1, "purge": 0}
            else:
                estimator, histories = (train_original if name == "original" else train_meshconfnet)(
                    prep, seed=args.seed, progress=progress)
                if name == "v1":  # per-joint trees stacked with the network (meshconf.classifier.trees)
                    estimator = stack_with_trees(estimator, prep, seed=args.seed, progress=progress)
                val = prep.original("val") if name == "original" else prep.sane("val")
                # Bounds and operating points from the validation split, which fitted no network or tree weight
                # (only temperatures and the 3-number stack); leak-free when prepared with --split blocks.
                estimator.calibrate(val.ed, val.conf, val.se)
                estimator.metadata["calibration_split"] = prep.split or {"block": 1, "purge": 0}
                val_metrics = M.evaluate(estimator.predict(val.ed, val.conf), val)
        estimator.metadata.update(training_data=sorted(prep.counts), split_counts=prep.counts, numerics=numerics,
                                  prepared_seed=prep.seed, validation_metrics={
                                      k: v for k, v in val_metrics.items() if not isinstance(v, (list, dict))})
        weights = os.path.join(args.out, SHIPPED[name])
        estimator.save(weights)
        plots.training_curves(histories, os.path.join(args.out, f"curves_{name}.png"))
        write_json(os.path.join(args.out, f"metrics_{name}.json"),
                   {"metadata": estimator.metadata, "weights_sha256": weights_digest(weights),
                    "history": [h.__dict__ for h in histories]})
        where = "out-of-fold" if name == "default" else "validation"
        print(f"{name}: {where} MC accuracy {val_metrics['mc_accuracy']:.3f}, AUROC {val_metrics['mc_auroc']:.3f}, "
              f"WJC top-1 {val_metrics['wj_top1']:.3f}, top-3 {val_metrics['wj_top3']:.3f} -> {weights}")
    return 0
