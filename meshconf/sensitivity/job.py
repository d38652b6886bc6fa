"""`meshconf sensitivity image IMAGE`: slide an occluder over a person crop and map how SPIN and OpenPose react.

Outputs in `--out`: `<model>_grid.npz` (windows, per-joint errors, unit, reference, fill), `<model>_joints.png`
(per-joint maps) and `<model>_mean.png` (mean map, worst window in red), for `--model spin`, `openpose` or `both`.
The dataset-wide, joint-targeted analysis (`sensitivity dataset`) needs the dataset readers and is not built yet.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .. import assets, geometry
from ..errors import MeshconfError
from ..imageio import read_bgr, write_atomic, write_image


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="mode", metavar="image", required=True)
    p = sub.add_parser("image", help="sliding occluder over one crop")
    p.add_argument("image", help="an image; by default it is treated as a crop with the person centred")
    p.add_argument("--bbox", nargs=4, type=float, metavar=("X", "Y", "W", "H"), help="person box in px")
    p.add_argument("--model", choices=("spin", "openpose", "both"), default="both")
    p.add_argument("--occ-size", type=int, default=40, help="occluder side in crop px (default: %(default)s)")
    p.add_argument("--stride", type=int, default=20, help="occluder step in crop px (default: %(default)s)")
    p.add_argument("--fill", default="mean", help="black, white, mean (ImageNet grey, the original's 0) or R,G,B")
    p.add_argument("--pixel-normalised", type=float, help="the original's --pixel value (normalised space); "
                   "overrides --fill")
    p.add_argument("--batch-size", type=int, default=8,
                   help="occluded copies per forward pass (default: %(default)s, the fastest per image here)")
    p.add_argument("--data-dir")
    p.add_argument("--checkpoint", help="SPIN checkpoint (default: from the data folder)")
    p.add_argument("--out", default="sensitivity", help="output folder (default: %(default)s)")
    p.add_argument("--threads", type=int, default=0)


def run(args) -> int:
    import torch

    from . import figures
    from .image import openpose_sensitivity, spin_sensitivity
    from .occlusion import Grid, parse_fill

    if args.threads:
        torch.set_num_threads(args.threads)
    grid = Grid(224, args.occ_size, args.stride)
    fill = parse_fill(args.fill, args.pixel_normalised)
    image = read_bgr(args.image)
    if args.bbox:
        from ..pipeline import box_from_xywh
        box = box_from_xywh(*args.bbox)
        center, scale = box.center, box.scale
    else:
        center, scale = geometry.centered_box(*image.shape[:2])
    crop = geometry.crop(image[:, :, ::-1], center, scale)
    todo = ("spin", "openpose") if args.model == "both" else (args.model,)
    names = []
    if "spin" in todo:
        names += [n for n in ("spin_checkpoint", "smpl_neutral", "J_regressor_extra", "J_regressor_h36m")
                  if not (args.checkpoint and n == "spin_checkpoint")]
    if "openpose" in todo:
        names.append("openpose_body")
    paths = assets.require_all(names, args.data_dir)
    os.makedirs(args.out, exist_ok=True)
    write_image(os.path.join(args.out, "crop.png"), crop[:, :, ::-1])
    for model in todo:
        if model == "spin":
            from ..models import load_smpl, load_spin
            from ..models.resnet import fold_batchnorm
            spin = fold_batchnorm(load_spin(args.checkpoint or paths["spin_checkpoint"]))
            smpl = load_smpl(paths["smpl_neutral"], paths["J_regressor_extra"])
            regressor = torch.from_numpy(np.load(paths["J_regressor_h36m"], allow_pickle=False)).float()
            start = time.perf_counter()
            result = spin_sensitivity(spin, smpl, regressor, crop, grid, fill, args.batch_size)
        else:
            from ..openpose import load_body
            body = load_body(paths["openpose_body"])
            start = time.perf_counter()
            result = openpose_sensitivity(body, crop, grid, fill, args.batch_size)
        seconds = time.perf_counter() - start  # analysis only, models loaded
        arrays = {"windows": grid.windows, "errors": result.errors, "heatmap": result.heatmap,
                  "mean": result.mean, **result.extra}
        info = {"model": model, "unit": result.unit, "reference": result.reference, "fill_rgb": list(fill),
                "occ_size": args.occ_size, "stride": args.stride, "windows": len(grid.windows),
                "worst_window": result.worst_window, "seconds": round(seconds, 3), "input": args.image}
        import io
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays, info=np.array(json.dumps(info)))
        write_atomic(os.path.join(args.out, f"{model}_grid.npz"), buffer.getvalue())
        write_image(os.path.join(args.out, f"{model}_joints.png"), figures.joint_figure(crop, result)[:, :, ::-1])
        write_image(os.path.join(args.out, f"{model}_mean.png"), figures.mean_figure(crop, result)[:, :, ::-1])
        finite = result.mean[np.isfinite(result.mean)]
        summary = f"mean {finite.min():.1f}-{finite.max():.1f} {result.unit}" if finite.size else "nothing detected"
        print(f"{model}: {len(grid.windows)} windows in {seconds:.1f} s ({1e3 * seconds / len(grid.windows):.0f} ms "
              f"per window), {summary}, reference: {result.reference} -> {args.out}/{model}_*.png")
    if not todo:
        raise MeshconfError("nothing to do")
    return 0


def main(argv=None) -> int:
    from ..cli import job_main
    return job_main("sensitivity", argv)
