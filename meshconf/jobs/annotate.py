"""`meshconf annotate <dataset> --root DIR --out A.npz`: a dataset, as its owners publish it, to the annotation file
`meshconf extract` and `meshconf sensitivity dataset` read (meshconf.dataset.annotations).

    meshconf annotate 3dpw --root data/3DPW --split test --out 3dpw_test.npz      # images: data/3DPW/imageFiles
    meshconf annotate 3doh --root data/3DOH50K --out 3doh_test.npz                # images: data/3DOH50K/images
    meshconf annotate h36m --root data/H36M --extract-frames --out h36m_p1.npz    # images: data/H36M/images
"""

from __future__ import annotations

import os

from ..dataset import save_annotations

IMAGE_FOLDERS = {"3dpw": "imageFiles", "3doh": "images", "h36m": "images"}


def add_arguments(parser) -> None:
    parser.add_argument("dataset", choices=sorted(IMAGE_FOLDERS), help="dataset format")
    parser.add_argument("--root", required=True, help="dataset folder in its published layout (see the README)")
    parser.add_argument("--out", required=True, help="annotation file to write (.npz)")
    parser.add_argument("--split", default="test", help="3DPW: train, validation or test (default: %(default)s)")
    parser.add_argument("--protocol", type=int, default=1, choices=(1, 2), help="Human3.6M protocol (default: 1)")
    parser.add_argument("--subjects", default="S9,S11", help="Human3.6M subjects (default: %(default)s)")
    parser.add_argument("--extract-frames", action="store_true",
                        help="Human3.6M: first write every 5th video frame to ROOT/images (resumable)")


def run(args) -> int:
    if args.dataset == "3dpw":
        from ..dataset.pw3d import read_3dpw
        annotations = read_3dpw(args.root, args.split)
    elif args.dataset == "3doh":
        from ..dataset.oh3d import read_3doh
        annotations = read_3doh(args.root)
    else:
        from ..dataset.h36m import extract_frames, read_h36m
        subjects = tuple(s.strip() for s in args.subjects.split(",") if s.strip())
        if args.extract_frames:
            written = extract_frames(args.root, subjects=subjects, protocol=args.protocol)
            print(f"wrote {written} new frames to {os.path.join(args.root, 'images')}")
        annotations = read_h36m(args.root, args.protocol, subjects)
    save_annotations(args.out, annotations)
    print(f"wrote {args.out}: {len(annotations)} rows of {annotations.dataset}; images are relative to "
          f"{os.path.join(args.root, IMAGE_FOLDERS[args.dataset])}")
    return 0
