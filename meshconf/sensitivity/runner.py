"""Each of the 14 ground-truth joints occluded in turn over an annotated dataset (`meshconf sensitivity dataset`),
all 15 variants of an image in one batch: `run_dataset(DatasetOptions(...))` loads the models, runs the resumable,
shardable pass and writes the table, figures and arrays (`meshconf.sensitivity.dataset` is the analysis itself)."""

from __future__ import annotations

import csv
import io
import os
import sys
import time

from dataclasses import dataclass
from functools import partial

import numpy as np

from ..assets import catalog as assets
from ..errors import MeshconfError
from ..runtime import synchronize
from ..files.fileio import write_atomic, write_json
from ..files.imageio import write_image
from . import dataset as ds
from . import figures
from ..dataset.groundtruth import GroundTruth3D
from ..engine.options import ModelOptions
from ..engine.runner import Stages, default_depth, default_workers, pipelined
from .common import load, parts, save_npz


@dataclass(frozen=True)
class DatasetOptions:
    """One dataset sensitivity run: the data, the analysis and the models."""
    annotations: str
    images: str
    out: str = "sensitivity_dataset"
    model: str = "both"  # spin, openpose or both
    every: int = 1
    max_images: int | None = None
    occ_size: int = 40
    fill: tuple = (123.675, 116.28, 103.53)  # RGB 0-255, ImageNet's mean (`dataset.occlusion.parse_fill`)
    workers: int | None = None  # image-reading processes; None: `engine.runner.default_workers` for the device
    depth: int | None = None  # batches finishing while the next launches (`engine.runner`); None: its default
    models: ModelOptions = ModelOptions(batch_size=4)


def _model_files(model: str, options: DatasetOptions, models) -> dict[str, str]:
    """Every file whose contents decide this model's numbers (the gendered SMPL models too, when present: they
    make the 3D ground truth)."""
    paths = models.paths
    if model != "spin":
        return {"openpose": paths["openpose_body"]}
    files = {"spin": paths["spin_checkpoint"], "smpl": paths["smpl_neutral"],
             "J_regressor_extra": paths["J_regressor_extra"], "J_regressor_h36m": paths["J_regressor_h36m"]}
    for gender in ("male", "female"):
        found = assets.locate(f"smpl_{gender}", options.models.data_dir)
        if found:
            files[f"smpl_{gender}"] = found
    return files


def _processor(model: str, options: DatasetOptions, data, models) -> tuple[Stages, str, str, tuple]:
    """(the stages of one batch -> chunk arrays, reference, unit, array keys) for one model. A batch's variant crops
    are drawn and sent through the network in `launch`; `finish` computes the errors (see `runner.pipelined`)."""
    # On a GPU a whole step (batch-size images x 15 variants) is one forward; on a CPU 8 crops per forward were
    # measured fastest (larger batches spill the caches).
    forward = None if models.device.type == "cuda" else 8

    def variants(batch):
        v, occ = ds.joint_variants(batch["crop"], batch["joints2d"], options.occ_size, options.fill)
        return v, occ, forward or v.shape[0] * v.shape[1]

    if model == "spin":
        truth = GroundTruth3D(data.annotations, models)

        def launch(batch):
            v, occ, size = variants(batch)
            return batch, occ, ds.spin_variant_launch(models.spin, models.smpl, models.regressor_h36m, v, size)

        def finish(launched):
            batch, occ, queued = launched
            errors = ds.spin_variant_finish(queued, truth(batch["index"]))
            return _skipped({"index": batch["index"], "errors": errors["mpjpe"], "pa": errors["pa"],
                             "occluded": occ}, batch)

        return Stages(launch, finish), truth.description, "mm", ("errors", "pa", "occluded")

    def launch(batch):
        v, occ, size = variants(batch)
        return batch, occ, ds.openpose_variant_launch(models.body, v, size)

    def finish(launched):
        batch, occ, queued = launched
        errors = ds.openpose_variant_finish(queued, batch["joints2d"])["px"]
        return _skipped({"index": batch["index"], "errors": errors, "occluded": occ}, batch)

    return Stages(launch, finish), "ground truth (2D joints)", "px", ("errors", "occluded")


def _skipped(arrays: dict, batch: dict) -> dict:
    """The rows with an unusable box (see `AnnotatedCrops.box_problem`) as NaN, flagged."""
    from ..dataset.crops import skip_rows

    return skip_rows(arrays, batch)


def _write_outputs(options: DatasetOptions, model: str, merged: dict, info: dict) -> list:
    """The arrays, the table (csv + json), the bar chart and matrix, and the template body; returns the summary."""
    summary = ds.summarise(merged["errors"], merged["occluded"])
    matrix = ds.occlusion_matrix(merged["errors"], merged["occluded"])
    save_npz(os.path.join(options.out, f"{model}_errors.npz"), merged, info)
    table = ds.table(summary)
    write_json(os.path.join(options.out, f"{model}_summary.json"),
               {**info, "per_occluded_joint": table, "matrix": matrix.tolist()})
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(table[0]))
    writer.writeheader()
    writer.writerows({k: (round(v, 4) if isinstance(v, float) else v) for k, v in row.items()} for row in table)
    write_atomic(os.path.join(options.out, f"{model}_summary.csv"), text.getvalue().encode())
    write_image(os.path.join(options.out, f"{model}_summary.png"),
                figures.summary_figure(summary, matrix, model, info["unit"], info["reference"])[:, :, ::-1])
    _template(options, model, summary, info["unit"])
    return summary


def run_dataset(options: DatasetOptions) -> int:
    from ..engine.bundle import require_files
    from ..files.chunks import ChunkStore, collect, distributed, finish, run_chunked, shard
    from ..dataset import AnnotatedCrops
    from ..dataset.crops import collate

    if options.every < 1 or (options.max_images is not None and options.max_images < 1) or \
            options.models.batch_size < 1 or (options.workers or 0) < 0:
        raise MeshconfError("--every, --max-images and --batch-size must be positive, --workers at least 0")
    fill, m = options.fill, options.models
    data = AnnotatedCrops(options.annotations, options.images)
    rows = list(range(0, len(data), options.every))[:options.max_images]
    if not rows:
        raise MeshconfError(f"{options.annotations} has no rows")
    todo = ("spin", "openpose") if options.model == "both" else (options.model,)
    require_files(parts(todo), m.data_dir, m.checkpoint, m.offline)  # missing files fetched or named first
    os.makedirs(options.out, exist_ok=True)
    rank, world = distributed()  # under torchrun each process takes every world-th row; rank 0 writes the results
    models = load(todo, m, fixed_shapes=True, items=len(rows) * ds.VARIANTS)  # device "auto": this rank's own GPU
    mine = shard(len(data), rank, world, rows)
    if rank == 0:
        first = data[rows[0]]
        variants, occluded = ds.joint_variants(first["crop"][None], first["joints2d"][None], options.occ_size, fill)
        write_image(os.path.join(options.out, "examples.png"),
                    figures.examples_figure(variants[0], occluded[0])[:, :, ::-1])
    # Results depend on the row and these only, so a later run may add rows (--every, --max-images) to the same folder.
    settings = {"annotations": data.annotations.fingerprint(), "occ_size": options.occ_size, "fill_rgb": list(fill)}
    for model in todo:
        store = ChunkStore(os.path.join(options.out, f".{model}_chunks"))
        with store.lock(rank):
            stages, reference, unit, keys = _processor(model, options, data, models)
            keys = (*keys, "skipped")
            store.bind({**settings, "model": model, "reference": reference,
                        "models": models.settings(_model_files(model, options, models))})
            start = time.perf_counter()
            depth = default_depth(models.device) if options.depth is None else options.depth
            workers = default_workers(models.device) if options.workers is None else options.workers
            finished = run_chunked(data, store, stages, m.batch_for(models.device), f"{model} sensitivity", collate,
                                   rows=mine, progress=rank == 0 and m.progress, workers=workers,
                                   stream=partial(pipelined, stages=stages, depth=depth, device=models.device))
            complete, merged = collect(store, keys, mine, finished, rank, world)
            if not complete:
                raise MeshconfError("the analysis stopped before every row was done; run the same command to "
                                    "resume")
            if rank != 0:
                continue
            for row in merged["index"][merged["skipped"].astype(bool)]:
                print(f"note: annotation row {int(row)} ({data.annotations.imgname[int(row)]}): "
                      f"{data[int(row)]['problem']}; skipped (NaN in the arrays)", file=sys.stderr)
            synchronize(models.device)
            seconds = time.perf_counter() - start
            info = {"model": model, "unit": unit, "reference": reference, "images": len(rows),
                    "device": str(models.device), "precision": models.precision, "tf32": models.tf32,
                    "annotations": os.path.abspath(options.annotations), "dataset": data.annotations.dataset,
                    "occ_size": options.occ_size, "fill_rgb": list(fill), "every": options.every,
                    "variants": "row 0 unoccluded, row 1+k joint k occluded; columns are the measured J14 joints",
                    "seconds_this_run": round(seconds, 3)}
            summary = _write_outputs(options, model, merged, info)
        worst = max(summary, key=lambda r: r.increase if np.isfinite(r.increase) else -np.inf)
        print(f"{model}: {len(rows)} images x 15 variants ({seconds:.1f} s this run); largest increase when "
              f"{worst.joint} is occluded: {worst.unoccluded:.1f} -> {worst.mean_error:.1f} {unit} -> "
              f"{options.out}/{model}_summary.*")
    if rank == 0:
        from ..demo.pages import gallery

        gallery(options.out, "meshconf sensitivity: each joint occluded over a dataset",
                [("examples.png", "where the occluders land on the first image")] +
                [(f"{m}_{kind}.png", f"{m}: {label}") for m in todo for kind, label in
                 (("summary", "error increase per occluded joint, and the occluded x measured matrix"),
                  ("template", "the template body painted by the mean error"))],
                note=f"{options.annotations}: {len(rows)} images")
    finish(world)
    return 0


def _template(options: DatasetOptions, model, summary, unit) -> None:
    import torch

    from ..engine.bundle import load_models
    from ..demo.render import fit_translation

    needed = ("smpl_neutral", "J_regressor_extra", "part_segmentation")
    found = {name: assets.locate(name, options.models.data_dir) for name in needed}
    if not all(found.values()):
        lacking = ", ".join(n for n, p in found.items() if not p)
        print(f"note: {lacking} not in the data folder (see meshconf doctor); {model}_template.png skipped")
        return
    figure_models = load_models({"smpl", "segmentation"}, options.models.data_dir, device="cpu")  # drawn on the CPU
    smpl = figure_models.smpl
    rotmat, betas = ds.template_pose()
    with torch.inference_mode():
        vertices = smpl(rotmat, betas).vertices[0].numpy()
    cam_t = fit_translation(vertices)
    values = [r.mean_error for r in summary]
    image = figures.template_figure(values, vertices, smpl.faces, cam_t, figure_models.segmentation,
                                    f"mean error when the part's joint is occluded ({unit})",
                                    f"{model}: occlusion sensitivity per body part")
    write_image(os.path.join(options.out, f"{model}_template.png"), image[:, :, ::-1])
