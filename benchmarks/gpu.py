"""Where the time of an extraction goes on a device, and what decoding on the device changes: one run, one table.

    python benchmarks/gpu.py                       # CUDA (the prepared check: benchmarks/gpu_check.sh)
    python benchmarks/gpu.py --device cpu --crops 32 --batch 16   # the same table on this machine

Per precision (fp32 with TF32 off, fp32 with TF32, bf16), with recipe weights and one real photo cropped at random
boxes: the networks alone (the ceilings), each stage of one batch on its own (read + crop, SPIN + SMPL, OpenPose,
decode crop by crop on the CPU = the old path, decode of the batch on the device = `decode_batch`), and `extract`
end to end with each decode path, serial and through the pipelined runner (`meshconf.engine.runner`). Device time is synchronised before every clock read. The original structure
(pytorch-openpose's per-image loop) is `benchmarks/speed.py`'s business; its per-crop decode is the "cpu" row here.
Writes a table and JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import sys
import tempfile
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from memory import cpu_name, data_dir, write_result  # noqa: E402

from meshconf import geometry  # noqa: E402
from meshconf.engine.bundle import DEMO_PARTS, load_models  # noqa: E402
from meshconf.dataset import AnnotatedCrops, Annotations, save_annotations  # noqa: E402
from meshconf.dataset.crops import collate  # noqa: E402
from meshconf.openpose import decode_batch, decode_full, forward, forward_tensors, preprocess  # noqa: E402
from meshconf.runtime import synchronize  # noqa: E402
from meshconf.engine.extraction import extract  # noqa: E402

PRECISIONS = (("fp32", "float32", False), ("tf32", "float32", True), ("bf16", "bfloat16", False))


def timed(device, fn, repeat: int = 1) -> float:
    """Seconds of the fastest of `repeat` calls, device synchronised."""
    best = float("inf")
    for _ in range(repeat):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def dataset(tmp: pathlib.Path, n: int) -> AnnotatedCrops:
    shutil.copy(SHARED / "data" / "meshconfidence" / "examples" / "im1010.jpg", tmp / "b.jpg")
    rng = np.random.default_rng(0)
    center = np.array([150.0, 160.0]) + rng.uniform(-15, 15, (n, 2))
    joints = center[:, None] + rng.uniform(-60, 60, (n, 14, 2))
    save_annotations(tmp / "bench.npz", Annotations(np.array(["b.jpg"] * n), center, rng.uniform(0.9, 1.2, n),
                                                    joints, center.copy(), dataset="bench"))
    return AnnotatedCrops(tmp / "bench.npz", tmp)


def stage_rows(models, data, crops: np.ndarray, label: str) -> list[dict]:
    """Each stage of one batch on its own, in crops/s."""
    device, n = models.device, len(crops)
    rows = []

    def rate(stage, seconds):
        rows.append(dict(precision=label, stage=stage, crops=n, crops_per_s=round(n / seconds, 1)))

    rate("read + crop, one process", timed(device, lambda: collate([data[i] for i in range(n)])))

    with torch.inference_mode():
        x = geometry.normalize_crop(crops.astype(np.float32), device).contiguous(memory_format=torch.channels_last)
        rate("SPIN + SMPL", timed(device, lambda: models.smpl(*models.spin(x)[:2]), 3))
    bgr = [np.ascontiguousarray(c[:, :, ::-1].astype(np.float32)) for c in crops]
    net_input = np.concatenate([preprocess(b)[0] for b in bgr])
    image_hw = preprocess(bgr[0])[1].image_hw
    rate("OpenPose network", timed(device, lambda: forward_tensors(models.body, net_input, n), 3))
    paf, heat = forward_tensors(models.body, net_input, n)
    paf_np, heat_np = paf.cpu().numpy(), heat.cpu().numpy()
    rate("decode, crop by crop on the CPU (old path)",
         timed(device, lambda: [decode_full(paf_np[k], heat_np[k], image_hw) for k in range(n)]))
    rate("decode, batch on the device (decode_batch)", timed(device, lambda: decode_batch(paf, heat, image_hw), 2))
    decoded = decode_batch(paf, heat, image_hw)
    rows[-1]["peaks_per_crop"] = round(sum(len(d.candidate) for d in decoded) / n, 1)
    with torch.inference_mode():
        rotmat, betas, camera = models.spin(x)
        keypoints = geometry.project_spin_joints(models.smpl(rotmat, betas).joints, camera).float().cpu().numpy()
    rows += host_rows(device, data, crops, net_input, decoded, keypoints, label)
    return rows


def host_rows(device, data, crops: np.ndarray, net_input: np.ndarray, decoded: list, keypoints: np.ndarray,
              label: str) -> list[dict]:
    """The rest of a job's stages for one batch: the copies to the device (pinned, as the jobs do), the people's
    assembly and each job's per-crop errors in the host processes the jobs use (`runtime.host_workers`), and
    writing one chunk. A stage whose crops/s stays far above the networks' does not bound the jobs."""
    from meshconf.engine.extraction import _row_errors
    from meshconf.engine.pipeline import _crop_eds
    from meshconf.files.chunks import ChunkStore
    from meshconf.openpose.batch import _assemble_job
    from meshconf.runtime import host_map, host_workers
    from meshconf.sensitivity.image import closest_points

    n, workers = len(crops), host_workers(device)
    rows = []

    def rate(stage, seconds):
        rows.append(dict(precision=label, stage=stage, crops=n, crops_per_s=round(n / seconds, 1)))

    def copy(array):
        tensor = torch.from_numpy(array)
        tensor = tensor.pin_memory() if device.type == "cuda" else tensor
        return tensor.to(device, non_blocking=True)

    rate("copy crops + OpenPose input to the device", timed(device, lambda: (copy(crops), copy(net_input)), 3))
    batch = collate([data[i] for i in range(n)])
    jobs = {
        "assembly of people": (_assemble_job, [(d.connection_all, d.all_peaks[:, 2]) for d in decoded]),
        "extract's ED + SE": (_row_errors, [(keypoints[k], d.candidate, d.subset, batch["spine2d"][k],
                                             batch["joints2d"][k]) for k, d in enumerate(decoded)]),
        "demo's ED (analyse_crops)": (_crop_eds, [(keypoints[k], d.candidate, d.subset)
                                                  for k, d in enumerate(decoded)]),
        "sensitivity's person per variant": (closest_points, [(d.candidate, d.subset, batch["joints2d"][k])
                                                              for k, d in enumerate(decoded)]),
    }
    for name, (fn, work) in jobs.items():
        host_map(fn, work, workers)  # starts the processes once
        rate(f"host: {name}, {workers} processes", timed(device, lambda: host_map(fn, work, workers), 3))
    with tempfile.TemporaryDirectory() as folder:
        store = ChunkStore(folder)
        arrays = {"index": np.arange(n), "ed": np.random.rand(n, 14), "se": np.random.rand(n, 14),
                  "conf": np.random.rand(n, 14), "occluded_joint": np.full(n, -1), "spin_finite": np.ones(n, bool),
                  "skipped": np.zeros(n, bool)}
        count = iter(range(1000))
        rate("write one chunk", timed(device, lambda: store.write({**arrays, "index": arrays["index"] +
                                                                   n * next(count)}), 3))
    return rows


def extract_rows(models, data, tmp: pathlib.Path, batch: int, label: str, workers: int) -> list[dict]:
    """`extract` end to end: decode crop by crop on the CPU or as a batch on the device, serial or pipelined
    (`engine.runner`: the next batch's networks run while this one decodes; images read in `workers` processes)."""
    import meshconf.openpose.detect as detect_module
    from meshconf.engine import runner

    rows = []
    variants = [(False, 0, 0, True), (True, 0, 0, True), (False, 1, workers, True), (True, 1, workers, True)]
    if models.device.type == "cuda":  # the finishing thread on the default stream, as a comparison
        variants.append((True, 1, workers, False))
    for on_device, depth, readers, own_stream in variants:
        detect_module.DECODE_ON_DEVICE = on_device
        runner.SEPARATE_STREAM = own_stream
        out = tmp / f"x_{label}_{on_device}_{depth}"
        run = dict(batch_size=batch, progress=False, models=models.settings(), depth=depth, workers=readers)
        extract(models.spin, models.smpl, models.body, data, str(out), "w", max_batches=1, **run)  # warm-up
        seconds = timed(models.device, lambda: extract(models.spin, models.smpl, models.body, data, str(out), "w",
                                                       **run))
        n = len(data) - batch
        where = "on the device" if on_device else "on the CPU"
        how = f"pipelined, {readers} readers" if depth else "serial"
        how += "" if own_stream or not depth else ", finishing on the default stream"
        rows.append(dict(precision=label, stage=f"extract end to end, decode {where}, {how}",
                         crops=n, crops_per_s=round(n / seconds, 1)))
    detect_module.DECODE_ON_DEVICE = None
    runner.SEPARATE_STREAM = True
    return rows


def original_rows(models, data, n: int, label: str) -> list[dict]:
    """The original structure on this device: SPIN + SMPL on batches of 16, then OpenPose one image at a time,
    decoded by pytorch-openpose's decoder (transcribed in tests/reference_body.py) or by meshconf's (`decode_full`)."""
    sys.path.insert(0, str(REPO / "tests"))
    import reference_body

    device = models.device
    crops = np.stack([data[i]["crop"] for i in range(n)]).astype(np.float32)
    decoders = {"pytorch-openpose's decoder": lambda paf, heat, hw: reference_body.decode(paf, heat, hw),
                "meshconf's decoder": lambda paf, heat, hw: decode_full(paf[0], heat[0], hw)}
    rows = []
    for name, decoder in decoders.items():
        def run():
            for s in range(0, n, 16):
                with torch.inference_mode():
                    x = geometry.normalize_crop(crops[s:s + 16], device)
                    rotmat, betas, camera = models.spin(x)
                    geometry.project_spin_joints(models.smpl(rotmat, betas).joints, camera).cpu()
                for crop in crops[s:s + 16]:
                    image = np.ascontiguousarray(crop[:, :, ::-1])
                    net_input, _ = reference_body.preprocess(image)
                    paf, heat = forward(models.body, net_input)
                    decoder(paf, heat, image.shape[:2])

        seconds = timed(device, run)
        rows.append(dict(precision=label, stage=f"original structure, {name}", crops=n,
                         crops_per_s=round(n / seconds, 1)))
    return rows


def job_rows(models, data, root: pathlib.Path, tmp: pathlib.Path, label: str, precision: str, tf32: bool,
             images: int, crops: int, workers: int) -> list[dict]:
    """The dataset sensitivity analysis (OpenPose and SPIN, 15 variant crops an image) and the demo's path on a
    folder of `crops` person crops (`analyse_crops`: SPIN, SMPL, OpenPose, ED, the estimator), serial and
    pipelined."""
    from meshconf.engine.options import ModelOptions
    from meshconf.engine.pipeline import analyse_crops
    from meshconf.sensitivity.runner import DatasetOptions, run_dataset

    device = models.device
    shutil.copy(SHARED / "data" / "spin" / "J_regressor_h36m.npy", root)
    rows = []
    for model in ("openpose", "spin"):
        for depth in (0, 1):
            options = DatasetOptions(str(tmp / "bench.npz"), str(tmp), out=str(tmp / f"s_{label}_{model}_{depth}"),
                                     model=model, max_images=images, depth=depth, workers=workers,
                                     models=ModelOptions(data_dir=str(root), device=str(device), precision=precision,
                                                         tf32=tf32, batch_size=8, progress=False, compile="off"))
            run_dataset(DatasetOptions(**{**options.__dict__, "max_images": 8, "out": options.out + "_warm"}))
            run_dataset(options)  # its own clock: the rows only, not loading the models
            seconds = json.loads((pathlib.Path(options.out) / f"{model}_summary.json").read_text())["seconds_this_run"]
            rows.append(dict(precision=label, stage=f"sensitivity dataset, {model}, {'pipelined' if depth else 'serial'}",
                             crops=images * 15, crops_per_s=round(images * 15 / seconds, 1)))
    person = [data[i]["crop"] for i in range(crops)]
    models = load_models(DEMO_PARTS, root, device=str(device), precision=precision, tf32=tf32)  # with the estimator
    analyse_crops(models, person[:16], depth=0)  # warm-up
    for depth in (0, 1):
        seconds = timed(device, lambda: analyse_crops(models, person, batch_size=16, depth=depth))
        rows.append(dict(precision=label, stage=f"demo path (analyse_crops), {'pipelined' if depth else 'serial'}",
                         crops=crops, crops_per_s=round(crops / seconds, 1)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--crops", type=int, default=256, help="rows of the extraction (one batch is warm-up)")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--precisions", default="fp32,tf32,bf16")
    parser.add_argument("--original-crops", type=int, default=16, help="crops of the original structure (slow)")
    parser.add_argument("--sensitivity-images", type=int, default=16, help="images of the dataset sensitivity runs")
    parser.add_argument("--demo-crops", type=int, default=64)
    parser.add_argument("--tests-log", help="a log whose last lines go into the JSON (gpu_check.sh's test run)")
    parser.add_argument("--workers", type=int, default=None,
                        help="image-reading processes of the pipelined runs (default: 4 on a GPU, 0 on the CPU)")
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "gpu.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    print(f"CPU: {cpu_name()}; {os.cpu_count()} cores; device: {gpu or args.device}; torch {torch.__version__}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        root = data_dir(tmp)
        data = dataset(tmp, args.crops)
        crops = np.stack([data[i]["crop"] for i in range(args.batch)])
        for label, precision, tf32 in PRECISIONS:
            if label not in args.precisions.split(","):
                continue
            if tf32 and device.type != "cuda":
                continue
            models = load_models({"spin", "smpl", "body"}, root, device=args.device, precision=precision,
                                 tf32=tf32, fixed_shapes=True)
            rows += stage_rows(models, data, crops, label)
            workers = args.workers if args.workers is not None else (4 if device.type == "cuda" else 0)
            start = len(rows)
            rows += extract_rows(models, data, tmp, args.batch, label, workers)
            if label == "fp32" and args.original_crops:
                rows += original_rows(models, data, args.original_crops, label)
            rows += job_rows(models, data, root, tmp, label, precision, tf32, args.sensitivity_images,
                             args.demo_crops, workers)
            for row in rows[start:]:
                print(row, flush=True)
    width = max(len(r["stage"]) for r in rows)
    print(f"\n| precision | {'stage'.ljust(width)} | crops/s |\n|---|---|---|")
    for r in rows:
        print(f"| {r['precision']} | {r['stage'].ljust(width)} | {r['crops_per_s']} |")
    result = dict(benchmark="gpu", cpu=cpu_name(), cores=os.cpu_count(), device=gpu or args.device,
                  torch=torch.__version__, batch=args.batch, rows=rows,
                  tests_log=pathlib.Path(args.tests_log).read_text()[-2000:] if args.tests_log else None)
    write_result(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
