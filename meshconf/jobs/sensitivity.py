"""`meshconf sensitivity image|dataset`: how SPIN and OpenPose react to occlusion.

`image IMAGE`: a sliding occluder over one person crop. Outputs in `--out`: `<model>_grid.npz` (windows, per-joint
errors, unit, reference, fill), `<model>_joints.png` (per-joint maps) and `<model>_mean.png` (mean map, worst window
in red), for `--model spin`, `openpose` or `both`.

`dataset --annotations A --images ROOT`: each of the 14 ground-truth joints occluded in turn, over a dataset (all 15
variants of an image in one batch). Outputs in `--out`: `<model>_errors.npz` (per image (15,14) errors),
`<model>_summary.csv`/`.json` (one row per occluded joint), `<model>_template.png` (the template body painted by
the mean error per occluded joint), `<model>_summary.png` (bar chart and occluded x measured matrix), and
`examples.png`. Resumable: work is kept in `.<model>_chunks/`; the same command continues an interrupted run.
"""

from __future__ import annotations

import os
import time

import numpy as np

from .. import geometry
from ..engine.bundle import require_files
from ..sensitivity.common import add_common, load, parts, save_npz
from ..errors import MeshconfError
from ..engine.options import ModelOptions, check_model_options
from ..runtime import synchronize
from ..files.imageio import read_bgr, write_image


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="mode", metavar="image|dataset", required=True)
    d = sub.add_parser("dataset", help="occlude each ground-truth joint in turn over an annotated dataset")
    d.add_argument("--annotations", required=True, help="annotation .npz (meshconf annotate)")
    d.add_argument("--images", required=True, help="image root the annotation's imgname paths are relative to")
    d.add_argument("--every", type=int, default=1, help="analyse every k-th row (default: all)")
    d.add_argument("--max-images", type=int, help="stop after this many rows (after --every)")
    d.add_argument("--out", default="sensitivity_dataset", help="output folder (default: %(default)s)")
    d.add_argument("--workers", type=int, default=None,
                   help="image-reading processes (default: none on the CPU; half the cores, at most 8, on a GPU)")
    add_common(d, "images per step, 15 crops each", 4, gpu_batch=16)
    p = sub.add_parser("image", help="sliding occluder over one crop")
    p.add_argument("image", nargs="?", help="an image; by default it is treated as a crop with the person centred")
    p.add_argument("--bbox", nargs=4, type=float, metavar=("X", "Y", "W", "H"), help="person box in px")
    p.add_argument("--annotations", help="instead of IMAGE: an annotation .npz (meshconf annotate), so errors are "
                   "measured against its ground truth")
    p.add_argument("--images", help="with --annotations: the image root")
    p.add_argument("--dataset", help="the original's --dataset: names the dataset of --annotations (3dpw, 3doh, "
                   "h36m_p1); the annotation file itself comes from `meshconf annotate`")
    p.add_argument("--img-number", "--img_number", dest="img_number", type=int, default=0,
                   help="with --annotations: the row (default: %(default)s)")
    p.add_argument("--stride", type=int, default=20, help="occluder step in crop px (default: %(default)s)")
    p.add_argument("--out", default="sensitivity", help="output folder (default: %(default)s)")
    add_common(p, "occluded copies per forward pass, the fastest per image here", 8)


def run(args) -> int:
    check_model_options(args)
    if args.occ_size < 1:
        raise MeshconfError(f"--occ-size must be at least 1, got {args.occ_size}")
    if args.mode == "dataset":
        from ..dataset.occlusion import parse_fill
        from ..sensitivity.runner import DatasetOptions, run_dataset

        return run_dataset(DatasetOptions(
            annotations=args.annotations, images=args.images, out=args.out, model=args.model, every=args.every,
            max_images=args.max_images, occ_size=args.occ_size, fill=parse_fill(args.fill, args.pixel_normalised),
            workers=args.workers, models=ModelOptions.from_args(args)))
    return run_image(args)


def run_image(args) -> int:
    from ..sensitivity import figures
    from ..sensitivity.image import openpose_sensitivity, spin_sensitivity
    from ..dataset.occlusion import Grid, parse_fill

    grid = Grid(224, args.occ_size, args.stride)
    fill = parse_fill(args.fill, args.pixel_normalised)
    data, gt_px, source = None, None, args.image
    if args.dataset and not args.annotations:
        raise MeshconfError(f"--dataset {args.dataset} needs its annotation file and images: add --annotations A.npz "
                            f"--images ROOT (write A.npz with `meshconf annotate {args.dataset.split('_')[0]}`)")
    if args.annotations:
        from ..dataset import AnnotatedCrops
        if args.image or args.bbox or not args.images:
            raise MeshconfError("with --annotations give --images (the image root) and no IMAGE or --bbox")
        data = AnnotatedCrops(args.annotations, args.images)
        if not 0 <= args.img_number < len(data):
            raise MeshconfError(f"--img-number must be in 0..{len(data) - 1} for {args.annotations}")
        item = data[args.img_number]
        crop, gt_px = item["crop"], item["joints2d"]
        source = f"{args.annotations} row {args.img_number} ({data.annotations.imgname[args.img_number]})"
    elif args.image:
        image = read_bgr(args.image)
        if args.bbox:
            from ..engine.pipeline import box_from_xywh
            box = box_from_xywh(*args.bbox)
            center, scale = box.center, box.scale
        else:
            center, scale = geometry.centered_box(*image.shape[:2])
        crop = geometry.crop(image[:, :, ::-1], center, scale)
    else:
        raise MeshconfError("give an IMAGE, or --annotations and --images (with --img-number) for a dataset row")
    todo = ("spin", "openpose") if args.model == "both" else (args.model,)
    require_files(parts(todo), args.data_dir, args.checkpoint, args.offline)  # missing files fetched or named first
    models = load(todo, ModelOptions.from_args(args), items=len(grid.windows))
    os.makedirs(args.out, exist_ok=True)
    write_image(os.path.join(args.out, "crop.png"), crop[:, :, ::-1])
    for model in todo:
        if model == "spin":
            gt_m = None
            if data is not None:
                from ..dataset.groundtruth import GroundTruth3D
                truth = GroundTruth3D(data.annotations, models)(np.array([args.img_number]))
                gt_m = None if truth is None else truth[0]
            start = time.perf_counter()
            result = spin_sensitivity(models.spin, models.smpl, models.regressor_h36m, crop, grid, fill,
                                      args.batch_size, gt_j14_m=gt_m, progress=not args.no_progress)
        else:
            start = time.perf_counter()
            result = openpose_sensitivity(models.body, crop, grid, fill, args.batch_size, gt_j14_px=gt_px,
                                          progress=not args.no_progress)
        synchronize(models.device)
        seconds = time.perf_counter() - start  # analysis only, models loaded
        arrays = {"windows": grid.windows, "errors": result.errors, "heatmap": result.heatmap,
                  "mean": result.mean, **result.extra}
        info = {"model": model, "unit": result.unit, "reference": result.reference, "fill_rgb": list(fill),
                "device": str(models.device), "precision": models.precision, "tf32": models.tf32,
                "occ_size": args.occ_size, "stride": args.stride, "windows": len(grid.windows),
                "worst_window": result.worst_window, "seconds": round(seconds, 3), "input": source}
        save_npz(os.path.join(args.out, f"{model}_grid.npz"), arrays, info)
        write_image(os.path.join(args.out, f"{model}_joints.png"), figures.joint_figure(crop, result)[:, :, ::-1])
        write_image(os.path.join(args.out, f"{model}_mean.png"), figures.mean_figure(crop, result)[:, :, ::-1])
        finite = result.mean[np.isfinite(result.mean)]
        summary = f"mean {finite.min():.1f}-{finite.max():.1f} {result.unit}" if finite.size else "nothing detected"
        print(f"{model}: {len(grid.windows)} windows in {seconds:.1f} s ({1e3 * seconds / len(grid.windows):.0f} ms "
              f"per window), {summary}, reference: {result.reference} -> {args.out}/{model}_*.png")
    from ..demo.pages import gallery

    gallery(args.out, "meshconf sensitivity: sliding occluder", [("crop.png", "the crop")] +
            [(f"{m}_{kind}.png", f"{m}: {label}") for m in todo for kind, label in
             (("mean", "mean change per occluder position (worst window in red)"),
              ("joints", "change per joint and occluder position"))], note=str(source))
    if not todo:
        raise MeshconfError("nothing to do")
    return 0
