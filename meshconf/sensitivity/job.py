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

import json
import os
import time

import numpy as np

from .. import assets, geometry
from ..errors import MeshconfError
from ..imageio import read_bgr, write_atomic, write_image


def _common(p, batch_help: str, batch_default: int) -> None:
    p.add_argument("--model", choices=("spin", "openpose", "both"), default="both")
    p.add_argument("--occ-size", type=int, default=40, help="occluder side in crop px (default: %(default)s)")
    p.add_argument("--fill", default="mean", help="black, white, mean (ImageNet grey, the original's 0) or R,G,B")
    p.add_argument("--pixel-normalised", type=float, help="the original's --pixel value (normalised space); "
                   "overrides --fill")
    p.add_argument("--batch-size", type=int, default=batch_default, help=f"{batch_help} (default: %(default)s)")
    p.add_argument("--data-dir")
    p.add_argument("--checkpoint", help="SPIN checkpoint (default: from the data folder)")
    p.add_argument("--threads", type=int, default=0)


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="mode", metavar="image|dataset", required=True)
    d = sub.add_parser("dataset", help="occlude each ground-truth joint in turn over an annotated dataset")
    d.add_argument("--annotations", required=True, help="annotation .npz (meshconf annotate)")
    d.add_argument("--images", required=True, help="image root the annotation's imgname paths are relative to")
    d.add_argument("--every", type=int, default=1, help="analyse every k-th row (default: all)")
    d.add_argument("--max-images", type=int, help="stop after this many rows (after --every)")
    d.add_argument("--out", default="sensitivity_dataset", help="output folder (default: %(default)s)")
    d.add_argument("--workers", type=int, default=0, help="image-reading processes (default: 0; 4-8 on a GPU)")
    _common(d, "images per step, 15 crops each", 4)
    p = sub.add_parser("image", help="sliding occluder over one crop")
    p.add_argument("image", help="an image; by default it is treated as a crop with the person centred")
    p.add_argument("--bbox", nargs=4, type=float, metavar=("X", "Y", "W", "H"), help="person box in px")
    p.add_argument("--stride", type=int, default=20, help="occluder step in crop px (default: %(default)s)")
    p.add_argument("--out", default="sensitivity", help="output folder (default: %(default)s)")
    _common(p, "occluded copies per forward pass, the fastest per image here", 8)


def _model_paths(todo, args) -> dict[str, str]:
    names = []
    if "spin" in todo:
        names += [n for n in ("spin_checkpoint", "smpl_neutral", "J_regressor_extra", "J_regressor_h36m")
                  if not (args.checkpoint and n == "spin_checkpoint")]
    if "openpose" in todo:
        names.append("openpose_body")
    return assets.require_all(names, args.data_dir)


def _load_spin(args, paths, device="cpu"):
    import torch

    from ..models import load_smpl, load_spin
    from ..models.resnet import fold_batchnorm
    spin = fold_batchnorm(load_spin(args.checkpoint or paths["spin_checkpoint"], device))
    smpl = load_smpl(paths["smpl_neutral"], paths["J_regressor_extra"], device=device)
    regressor = torch.from_numpy(np.load(paths["J_regressor_h36m"], allow_pickle=False)).float()
    return spin, smpl, regressor


def _save_npz(path, arrays: dict, info: dict) -> None:
    import io
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays, info=np.array(json.dumps(info)))
    write_atomic(path, buffer.getvalue())


def run(args) -> int:
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    return run_dataset(args) if args.mode == "dataset" else run_image(args)


def run_image(args) -> int:
    from . import figures
    from .image import openpose_sensitivity, spin_sensitivity
    from .occlusion import Grid, parse_fill

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
    paths = _model_paths(todo, args)
    os.makedirs(args.out, exist_ok=True)
    write_image(os.path.join(args.out, "crop.png"), crop[:, :, ::-1])
    for model in todo:
        if model == "spin":
            spin, smpl, regressor = _load_spin(args, paths)
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
        _save_npz(os.path.join(args.out, f"{model}_grid.npz"), arrays, info)
        write_image(os.path.join(args.out, f"{model}_joints.png"), figures.joint_figure(crop, result)[:, :, ::-1])
        write_image(os.path.join(args.out, f"{model}_mean.png"), figures.mean_figure(crop, result)[:, :, ::-1])
        finite = result.mean[np.isfinite(result.mean)]
        summary = f"mean {finite.min():.1f}-{finite.max():.1f} {result.unit}" if finite.size else "nothing detected"
        print(f"{model}: {len(grid.windows)} windows in {seconds:.1f} s ({1e3 * seconds / len(grid.windows):.0f} ms "
              f"per window), {summary}, reference: {result.reference} -> {args.out}/{model}_*.png")
    if not todo:
        raise MeshconfError("nothing to do")
    return 0


def _gender_key(value) -> str:
    text = str(value).strip().lower()
    return {"m": "male", "male": "male", "f": "female", "female": "female"}.get(text, "neutral")


class _GroundTruth3D:
    """Ground-truth J14 in metres for dataset rows: `joints3d` from the annotation file when present, else the
    rows' SMPL parameters through the row's gendered SMPL (neutral where that model or the gender is missing),
    else None (the reference is then SPIN's unoccluded prediction)."""

    def __init__(self, annotations, paths, data_dir, regressor):
        extra = annotations.extra
        self.joints3d = extra.get("joints3d")
        self.params = (extra["pose"], extra["betas"]) if {"pose", "betas"} <= set(extra) else None
        self.gender = extra.get("gender")
        self.paths, self.data_dir, self.regressor, self.models = paths, data_dir, regressor, {}
        self.used: set[str] = set()

    @property
    def description(self) -> str:
        if self.joints3d is not None:
            return "ground truth (annotated 3D joints)"
        if self.params is not None:
            return "ground truth (SMPL parameters)"
        return "unoccluded prediction"

    def _smpl(self, gender: str):
        from ..models import load_smpl
        if gender not in self.models:
            path = assets.locate(f"smpl_{gender}", self.data_dir) if gender != "neutral" else None
            self.models[gender] = (load_smpl(path, self.paths["J_regressor_extra"], gender) if path else
                                   load_smpl(self.paths["smpl_neutral"], self.paths["J_regressor_extra"]))
            if not path and gender != "neutral":
                print(f"note: no SMPL {gender} model in the data folder; its ground truth uses the neutral model")
        return self.models[gender]

    def __call__(self, index: np.ndarray):
        from .dataset import smpl_joints3d
        if self.joints3d is not None:
            return np.asarray(self.joints3d[index], dtype=np.float64)
        if self.params is None:
            return None
        out = np.empty((len(index), 14, 3))
        genders = np.array([_gender_key(self.gender[i]) if self.gender is not None else "neutral" for i in index])
        for gender in np.unique(genders):
            rows = genders == gender
            out[rows] = smpl_joints3d(self._smpl(str(gender)), self.regressor, self.params[0][index[rows]],
                                      self.params[1][index[rows]])
        return out


def run_dataset(args) -> int:
    import csv
    import io

    from ..chunks import ChunkStore, collect, distributed, local_device, run_chunked, shard
    from ..dataset import AnnotatedCrops
    from . import dataset as ds
    from . import figures
    from .occlusion import parse_fill

    if args.every < 1 or (args.max_images is not None and args.max_images < 1) or args.batch_size < 1:
        raise MeshconfError("--every, --max-images and --batch-size must be positive")
    fill = parse_fill(args.fill, args.pixel_normalised)
    data = AnnotatedCrops(args.annotations, args.images)
    rows = list(range(0, len(data), args.every))[:args.max_images]
    if not rows:
        raise MeshconfError(f"{args.annotations} has no rows")
    todo = ("spin", "openpose") if args.model == "both" else (args.model,)
    paths = _model_paths(todo, args)
    os.makedirs(args.out, exist_ok=True)
    rank, world = distributed()  # under torchrun each process takes every world-th row; rank 0 writes the results
    device = local_device()
    mine = shard(len(data), rank, world, rows)
    if rank == 0:
        first = data[rows[0]]
        variants, occluded = ds.joint_variants(first["crop"][None], first["joints2d"][None], args.occ_size, fill)
        write_image(os.path.join(args.out, "examples.png"),
                    figures.examples_figure(variants[0], occluded[0])[:, :, ::-1])
    settings = {"annotations_rows": len(data), "rows": [rows[0], args.every, len(rows)], "occ_size": args.occ_size,
                "fill_rgb": list(fill)}
    for model in todo:
        store = ChunkStore(os.path.join(args.out, f".{model}_chunks"))
        if model == "spin":
            spin, smpl, regressor = _load_spin(args, paths, device)
            truth = _GroundTruth3D(data.annotations, paths, args.data_dir, regressor)
            reference, unit, keys = truth.description, "mm", ("errors", "pa", "occluded")

            def process(batch):
                v, occ = ds.joint_variants(batch["crop"], batch["joints2d"], args.occ_size, fill)
                errors = ds.spin_variant_errors(spin, smpl, regressor, v, truth(batch["index"]))
                return {"index": batch["index"], "errors": errors["mpjpe"], "pa": errors["pa"], "occluded": occ}
        else:
            from ..openpose import load_body
            body = load_body(paths["openpose_body"], device)
            reference, unit, keys = "ground truth (2D joints)", "px", ("errors", "occluded")

            def process(batch):
                v, occ = ds.joint_variants(batch["crop"], batch["joints2d"], args.occ_size, fill)
                return {"index": batch["index"], "errors": ds.openpose_variant_errors(body, v, batch["joints2d"])["px"],
                        "occluded": occ}
        store.bind({**settings, "model": model, "reference": reference})
        start = time.perf_counter()
        finished = run_chunked(data, store, process, args.batch_size, f"{model} sensitivity", rows=mine,
                               progress=rank == 0, workers=args.workers)
        complete, merged = collect(store, keys, mine, finished, rank, world)
        if not complete:
            raise MeshconfError("the analysis stopped before every row was done; run the same command to resume")
        if rank != 0:
            continue
        seconds = time.perf_counter() - start
        summary = ds.summarise(merged["errors"], merged["occluded"])
        matrix = ds.occlusion_matrix(merged["errors"], merged["occluded"])
        info = {"model": model, "unit": unit, "reference": reference, "images": len(rows),
                "annotations": os.path.abspath(args.annotations), "dataset": data.annotations.dataset,
                "occ_size": args.occ_size, "fill_rgb": list(fill), "every": args.every,
                "variants": "row 0 unoccluded, row 1+k joint k occluded; columns are the measured J14 joints",
                "seconds_this_run": round(seconds, 1)}
        _save_npz(os.path.join(args.out, f"{model}_errors.npz"), merged, info)
        table = ds.table(summary)
        write_atomic(os.path.join(args.out, f"{model}_summary.json"),
                     json.dumps({**info, "per_occluded_joint": table, "matrix": matrix.tolist()}, indent=1).encode())
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in table)
        write_atomic(os.path.join(args.out, f"{model}_summary.csv"), text.getvalue().encode())
        write_image(os.path.join(args.out, f"{model}_summary.png"),
                    figures.summary_figure(summary, matrix, model, unit, reference)[:, :, ::-1])
        _template(args, model, summary, unit)
        worst = max(summary, key=lambda r: r.increase if np.isfinite(r.increase) else -np.inf)
        print(f"{model}: {len(rows)} images x 15 variants ({seconds:.1f} s this run); largest increase when "
              f"{worst.joint} is occluded: {worst.unoccluded:.1f} -> {worst.mean_error:.1f} {unit} -> "
              f"{args.out}/{model}_summary.*")
    return 0


def _template(args, model, summary, unit) -> None:
    import torch

    from ..models import load_smpl
    from ..render import fit_translation, load_segmentation
    from . import figures
    from .dataset import template_pose

    needed = ("smpl_neutral", "J_regressor_extra", "part_segmentation")
    found = {name: assets.locate(name, args.data_dir) for name in needed}
    if not all(found.values()):
        lacking = ", ".join(n for n, p in found.items() if not p)
        print(f"note: {lacking} not in the data folder (see meshconf doctor); {model}_template.png skipped")
        return
    smpl = load_smpl(found["smpl_neutral"], found["J_regressor_extra"])
    rotmat, betas = template_pose()
    with torch.inference_mode():
        vertices = smpl(rotmat, betas).vertices[0].numpy()
    cam_t = fit_translation(vertices)
    values = [r.mean_error for r in summary]
    image = figures.template_figure(values, vertices, smpl.faces, cam_t, load_segmentation(found["part_segmentation"]),
                                    f"mean error when the part's joint is occluded ({unit})",
                                    f"{model}: occlusion sensitivity per body part")
    write_image(os.path.join(args.out, f"{model}_template.png"), image[:, :, ::-1])


def main(argv=None) -> int:
    from ..cli import job_main
    return job_main("sensitivity", argv)
