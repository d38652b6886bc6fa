"""`meshconf extract`: ED, SE and OpenPose confidence arrays for an annotated dataset, plain or occluded.

    meshconf extract --annotations 3dpw_test.npz --images 3DPW/imageFiles --out sp_op/3dpw --name 3dpw_test [--occlude]

Writes `<name>_sp_op.npy` (ED), `<name>_sp_gt.npy` (SE) and `<name>_conf.npy`, float64 (N,14) in the annotation
file's row order: the layout `meshconf prepare/evaluate` read. Also writes `<name>_manifest.json` (dataset, weights
with their SHA-256, seed, code version, and each row's image name and box centre).

Several GPUs or machines: `torchrun --nproc_per_node 4 -m meshconf extract ...` (or `torchrun ... $(which meshconf)
extract ...`) shards the rows across processes; rank 0 writes the same arrays a single process would. SPIN and OpenPose
run in batches with their weights loaded once. Work is written in chunks, atomically; a restart skips finished rows,
and the merged result equals an uninterrupted run. The occluded variant puts a 40 px square of ImageNet-mean grey (the
original's pixel 0) on one ground-truth joint per image. The joint is drawn per row from (seed, row index), so
batching and restarts do not change it.

ED follows REFERENCE.md F.3 with the ground-truth spine as anchor. SE compares SPIN's SE-map joints, shifted the
same way, with the ground-truth J14 joints. `meshconf annotate` writes the annotation file.
"""

from __future__ import annotations

import os

from ..engine.extraction import extract
from ..engine.options import ModelOptions, add_model_options, check_model_options, model_choice
from ..engine.runner import default_workers
from ..errors import MeshconfError
from ..files.chunks import distributed, finish


def add_arguments(parser) -> None:
    parser.add_argument("--annotations", required=True, help="annotation .npz (meshconf.dataset.annotations)")
    parser.add_argument("--images", required=True, help="image root the annotation's imgname paths are relative to")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--name", required=True, help="array name prefix, e.g. 3dpw_test or 3dpw_occ_test")
    parser.add_argument("--occlude", action="store_true", help="occlude one ground-truth joint per image")
    parser.add_argument("--occ-size", type=int, default=40, help="occluder side in crop px (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=0,
                        help="with --occlude: which joint each row occludes is drawn from (seed, row) "
                             "(default: %(default)s)")
    parser.add_argument("--signals", action="store_true",
                        help="also write <name>_signals.npy: per-crop signals beyond ED (SPIN's iteration steps, "
                             "flip disagreement, OpenPose peak ambiguity and limb scores, crowding, box size, border "
                             "joints, signed offsets; meshconf.sp_op.signals). Costs a second SPIN pass (the mirrored crop)")
    add_model_options(parser, 16, "crops per forward pass", gpu_batch=128)
    parser.add_argument("--workers", type=int, default=None,
                        help="image-reading processes (default: none on the CPU, reading in the main process; half "
                             "the cores, at most 8, on a GPU)")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first annotation row whose box cannot be cropped (default: skip such rows: "
                             "NaN in the arrays, each named with its reason on stderr and in the manifest)")


def run(args) -> int:
    from ..engine.bundle import load_models
    from ..dataset import AnnotatedCrops

    check_model_options(args)
    for option, value, least in (("--occ-size", args.occ_size, 1), ("--workers", args.workers or 0, 0)):
        if value < least:
            raise MeshconfError(f"{option} must be at least {least}, got {value}")
    dataset = AnnotatedCrops(args.annotations, args.images)  # a bad annotation file is reported before loading
    rank, world = distributed()
    models = load_models({"spin", "smpl", "body"}, fixed_shapes=True, **model_choice(args, len(dataset)))
    info = {"annotations": os.path.abspath(args.annotations), "images": os.path.abspath(args.images),
            "weights": models.describe()["files"], "device": str(models.device), "precision": models.precision,
            "tf32": models.tf32, "compiled": sorted(models.compiled), "occluded": args.occlude,
            "occ_size": args.occ_size, "seed": args.seed,
            "processes": world}
    batch = ModelOptions.from_args(args).batch_for(models.device)
    if not extract(models.spin, models.smpl, models.body, dataset, args.out, args.name, batch,
                   args.occlude, args.seed, args.occ_size, progress=rank == 0 and not args.no_progress,
                   rank=rank, world=world,
                   workers=default_workers(models.device) if args.workers is None else args.workers,
                   models=models.settings(), info=info, signals=args.signals,
                   strict=args.strict):
        raise MeshconfError("extraction stopped before every row was done; run the same command again to resume")
    finish(world)
    if rank == 0:
        label = "" if models.precision == "float32" else f" ({models.precision})"
        print(f"wrote {args.out}/{args.name}_{{sp_op,sp_gt,conf}}.npy ({len(dataset)} rows{label}) and the manifest")
    return 0
