"""`meshconf check-precision IMAGES...`: is `--precision bfloat16` safe with my weights on my images?

Runs the whole pipeline twice, in float32 and in bfloat16, on the same person crops (found once, in float32) and
reports where a user would notice a difference: OpenPose keypoints that moved by more than 1 px or vanished,
people counts, per-joint ED, and the estimator's decisions (accepted or not, worst joint, error bounds). In
whole images (not `--cropped`) it also counts the people each precision finds.

bfloat16 stays opt-in because its agreement depends on the weights: run this with the real weights before
switching a job to it. `--json` keeps the numbers.
"""

from __future__ import annotations

import sys

from ..errors import MeshconfError
from ..engine.options import add_model_options, check_accept_precision, check_model_options, model_choice


def add_arguments(parser) -> None:
    parser.add_argument("inputs", nargs="+", metavar="IMAGE", help="images or folders of images")
    parser.add_argument("--cropped", action="store_true",
                        help="each image is a person crop (as the original demo's --img); otherwise OpenPose finds "
                             "the people")
    parser.add_argument("--max-people", type=int, default=None, help="at most this many people per image "
                        "(default: all)")
    parser.add_argument("--estimator", default="default", help="estimator whose decisions are compared "
                        "(default: %(default)s)")
    parser.add_argument("--accept-precision", type=float, default=None,
                        help="compare accept/reject decisions at the estimator's operating point for this "
                             "precision (default: P(accurate) > 0.5)")
    parser.add_argument("--json", help="also write the numbers to this JSON file")
    add_model_options(parser, precision=False)


def check_arguments(args) -> None:
    check_model_options(args)
    if args.max_people is not None and args.max_people < 1:
        raise MeshconfError(f"--max-people must be at least 1, got {args.max_people}")
    check_accept_precision(args.accept_precision)


def run(args) -> int:
    from tqdm import tqdm

    from .. import geometry
    from ..engine.agreement import compare
    from ..engine.bundle import DEMO_PARTS, require_files
    from ..files.fileio import write_json
    from ..files.imageio import expand_inputs, read_bgr
    from ..engine.inference import MeshConfidence, person_boxes

    check_arguments(args)
    paths = []
    for kind, path in expand_inputs(args.inputs):
        if kind == "video":
            print(f"note: {path} is a video, skipped (give its frames as images)", file=sys.stderr)
        else:
            paths.append(path)
    if not paths:
        raise MeshconfError("no images to compare; give image files or folders of images")
    images = [read_bgr(p) for p in paths]  # unreadable input fails here, before the models load
    require_files(DEMO_PARTS, args.data_dir, args.checkpoint, args.offline, progress=not args.no_progress)
    choice = {k: v for k, v in model_choice(args).items() if k != "precision"}
    runs = {p: MeshConfidence(estimator=args.estimator, precision=p, **choice) for p in ("float32", "bfloat16")}
    reference, other = runs["float32"], runs["bfloat16"]
    threshold = (reference.models.estimator.threshold_for(args.accept_precision)
                 if args.accept_precision is not None else 0.5)
    crops, counts = [], []
    bar = tqdm(list(zip(paths, images)), desc="images", unit="img", disable=True if args.no_progress else None)
    for path, image in bar:
        found = person_boxes(reference.models.body, [image], None, args.cropped, args.max_people)[0]
        found_b = found if args.cropped else person_boxes(other.models.body, [image], None, False,
                                                          args.max_people)[0]
        counts.append((path, len(found), len(found_b)))
        crops += [geometry.crop(image[:, :, ::-1], box.center, box.scale) for box in found]
    if not crops:
        raise MeshconfError("OpenPose found nobody in these images; give --cropped for person crops")
    result = compare(reference.analyse_crops(crops, batch_size=args.batch_size),
                     other.analyse_crops(crops, batch_size=args.batch_size), threshold)
    changed = [(p, a, b) for p, a, b in counts if a != b]
    print(f"float32 against bfloat16 on {len(paths)} image(s), {result.crops} person crop(s), "
          f"device {reference.device}:")
    for line in result.lines():
        print(f"  {line}")
    if not args.cropped:
        print(f"  people found per image changed: {len(changed)}/{len(paths)}"
              + "".join(f"\n    {p}: {a} -> {b}" for p, a, b in changed[:10]))
    if args.json:
        write_json(args.json, {**result.as_dict(), "images": len(paths), "device": str(reference.device),
                               "estimator": args.estimator, "cropped": args.cropped,
                               "people_per_image": [{"image": p, "float32": a, "bfloat16": b}
                                                    for p, a, b in counts],
                               "files": reference.models.describe()["files"]})
        print(f"wrote {args.json}")
    return 0
