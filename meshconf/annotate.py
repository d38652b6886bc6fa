"""`meshconf annotate 3dpw --root DIR --split test --out 3dpw_test.npz`: a dataset, as published, to the
annotation file `meshconf extract` reads (meshconf.dataset.annotations). 3DPW is supported; 3DOH50K and Human3.6M
readers are not built yet."""

from __future__ import annotations

import sys

from .dataset import save_annotations


def add_arguments(parser) -> None:
    parser.add_argument("dataset", choices=["3dpw"], help="dataset format")
    parser.add_argument("--root", required=True, help="dataset folder (3DPW: holds imageFiles/ and sequenceFiles/)")
    parser.add_argument("--split", default="test", help="3DPW: train, validation or test (default: %(default)s)")
    parser.add_argument("--out", required=True, help="annotation file to write (.npz)")


def run(args) -> int:
    from .dataset.pw3d import read_3dpw

    annotations = read_3dpw(args.root, args.split)
    save_annotations(args.out, annotations)
    print(f"wrote {args.out}: {len(annotations)} rows of {annotations.dataset}; images are relative to "
          f"{args.root}/imageFiles")
    return 0


def main(argv=None) -> int:
    from .cli import job_main
    return job_main("annotate", argv)


if __name__ == "__main__":
    sys.exit(main())
