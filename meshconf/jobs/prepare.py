"""`meshconf prepare`: classifier tables from ED arrays, with the original's filters and labels, seeded splits."""

from __future__ import annotations


from ..classifier import data as D
from ..errors import MeshconfError

DEFAULT_TRAIN_SETS = ("3dpw_train", "3dpw_occ_train")


def add_arguments(parser) -> None:
    parser.add_argument("--data", required=True, help="folder of <set>_{sp_op,sp_gt,conf}.npy arrays")
    parser.add_argument("--sets", nargs="+", default=list(DEFAULT_TRAIN_SETS),
                        help="training sets (prefixes). The original also used Human3.6M arrays, which are not "
                             "public (default: %(default)s)")
    parser.add_argument("--out", required=True, help="output folder for the prepared tables")
    parser.add_argument("--seed", type=int, default=0, help="seed of the train/validation split (default: %(default)s)")
    parser.add_argument("--val-fraction", type=float, default=0.2,
                        help="share of each source held out for validation (default: %(default)s)")
    parser.add_argument("--drop-nonfinite", action="store_true",
                        help="leave out rows with NaN/inf ED, SE or confidence (default: refuse such arrays)")
    parser.add_argument("--split", choices=("blocks", "frames"), default="blocks",
                        help="blocks: leak-free (contiguous runs of --block frames, --purge frames dropped around "
                             "each validation block, clean and occluded copies of a frame on the same side); frames: "
                             "the original's frame-level split, which the shipped v1 estimators were trained on "
                             "(default: %(default)s)")
    parser.add_argument("--block", type=int, default=1000,
                        help="with --split blocks: rows per block (default: %(default)s)")
    parser.add_argument("--folds", type=int, default=5,
                        help="block folds for cross-validation (fold 0 = the validation blocks); v2 is fitted, "
                             "combined and calibrated on them (default: %(default)s)")
    parser.add_argument("--purge", type=int, default=50,
                        help="with --split blocks: train rows dropped on each side of a validation block "
                             "(default: %(default)s)")


def run(args) -> int:
    if not 0 < args.val_fraction < 1:
        raise MeshconfError(f"--val-fraction must be between 0 and 1, got {args.val_fraction}")
    sets = [D.load_set(args.data, name, drop_nonfinite=args.drop_nonfinite) for name in args.sets]
    if args.block < 1 or args.purge < 0:
        raise MeshconfError("--block must be at least 1 and --purge at least 0")
    if args.folds < 2:
        raise MeshconfError(f"--folds must be at least 2, got {args.folds}")
    block, purge = (args.block, args.purge) if args.split == "blocks" else (1, 0)
    prep = D.prepare(sets, seed=args.seed, val_fraction=args.val_fraction, block=block, purge=purge,
                     folds=args.folds)
    D.save_prepared(prep, args.out)
    for name, c in prep.counts.items():
        print(f"  {name}: {c['rows']} rows, original filters keep {c['original_filter_kept']}; "
              f"split {c['train']} train / {c['val']} val")
    print(f"wrote {args.out}: train.npz, val.npz, pool.npz ({args.folds} folds), all_train.csv, all_val.csv, "
          f"prepared.json (seed {args.seed})")
    return 0
