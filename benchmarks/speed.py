"""Speed benchmark, side by side in one run: the original structure, meshconf float32 and meshconf bfloat16, with the
ratio and the arithmetic floor, for the networks, the demo, extraction and sensitivity.

    python benchmarks/speed.py [--quick] [--json benchmarks/results/speed.json]

Variants are interleaved call by call (host noise hits every variant alike); each row prints median, min, max, n.
- "original": the original's structure: eager float32 networks as its code built them (SPIN's BatchNorms unfolded,
  OpenPose one image at a time with pytorch-openpose's own decoder, transcribed in tests/reference_body.py).
- "fp32" / "bf16": meshconf's networks as a job runs them: folded SPIN, compiled with frozen weights
  (`compile=True`) where the row says so, otherwise eager.
- floor: FLOPs of the network (counted with torch's FlopCounterMode) / the best measured throughput of a
  convolution on this machine in that precision (measured at the start of the run).
Recipe weights through the real loaders, the synthetic SMPL model and the 3DOH demo crop from ../shared; the
recipe weights' OpenPose maps hold hundreds of spurious peaks, so decoding-heavy rows are a stress case.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from meshconf import geometry, sp_op  # noqa: E402
from meshconf.engine.agreement import compare  # noqa: E402
from meshconf.models import load_smpl, load_spin  # noqa: E402
from meshconf.openpose import load_body, preprocess  # noqa: E402
from meshconf.openpose.detect import forward  # noqa: E402
from meshconf.models.recipe import write_openpose_weights, write_spin_checkpoint  # noqa: E402
from meshconf.runtime import keep_freed_memory  # noqa: E402
import reference_body  # noqa: E402  (pytorch-openpose's decoder, transcribed loop for loop)

sys.path.insert(0, str(REPO / "benchmarks"))
from memory import cpu_name as cpu_model  # noqa: E402


# ------------------------------------------------------------------------------------------------- machine
def onednn_bf16_kernel() -> str:
    """The oneDNN implementation a bfloat16 convolution runs here (`ONEDNN_VERBOSE`): says whether AMX is used."""
    code = ("import torch; c = torch.nn.Conv2d(64, 64, 3, padding=1).bfloat16().to(memory_format=torch.channels_last);"
            "x = torch.randn(1, 64, 32, 32).bfloat16().contiguous(memory_format=torch.channels_last);"
            "torch.no_grad().__enter__(); c(x); c(x)")
    out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "ONEDNN_VERBOSE": "1"},
                         capture_output=True, text=True, timeout=120).stdout
    kernels = []
    for line in out.splitlines():
        fields = line.split(",")
        if line.startswith("onednn_verbose") and "exec" in fields and "convolution" in fields:
            kernels.append(fields[fields.index("convolution") + 1])  # e.g. brg_conv_fwd:avx512_core_amx_bf16
    return kernels[-1] if kernels else "unknown (no oneDNN convolution reported)"


# ------------------------------------------------------------------------------------------------- timing
def interleaved(variants: dict, n: int, warmup: int = 1) -> dict[str, list[float]]:
    """Seconds per call of each variant, calls interleaved; the first `warmup` calls (compilation) are not timed
    but reported as `first_s`."""
    first = {}
    for name, fn in variants.items():
        start = time.perf_counter()
        for _ in range(warmup):
            fn()
        first[name] = time.perf_counter() - start
    times = {name: [] for name in variants}
    for _ in range(n):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return times, first


ROWS: list[dict] = []


def report(section: str, times: dict, first: dict, per: int = 1, unit: str = "ms", floor: dict | None = None,
           note: str = "") -> None:
    scale = {"ms": 1e3, "s": 1.0}[unit] / per
    base = statistics.median(times["original"]) if "original" in times else None
    print(f"\n{section}" + (f"  ({note})" if note else ""))
    print(f"  {'variant':22} {'median':>9} {'min':>9} {'max':>9} {'n':>3} {'unit':7} {'vs orig':>8} "
          f"{'floor':>8} {'x floor':>8} {'first call':>11}")
    for name, values in times.items():
        med = statistics.median(values)
        row = dict(section=section, variant=name, median=med * scale, min=min(values) * scale,
                   max=max(values) * scale, n=len(values), unit=unit + ("/img" if per > 1 else ""),
                   speedup_vs_original=(base / med) if base else None, first_call_s=first.get(name), note=note)
        f = (floor or {}).get(name)
        if f:
            row["floor"] = f * scale
            row["times_floor"] = med / f
        ROWS.append(row)
        fmt = lambda v, w=8, d=2: f"{v:{w}.{d}f}" if v is not None else f"{'-':>{w}}"  # noqa: E731
        print(f"  {name:22} {row['median']:9.4g} {row['min']:9.4g} {row['max']:9.4g} {row['n']:3d} "
              f"{row['unit']:7} {fmt(row['speedup_vs_original'])} {fmt(row.get('floor'), 8, 3 if unit == 's' else 1)} "
              f"{fmt(row.get('times_floor'))} {fmt(row['first_call_s'], 10, 1)}s", flush=True)


# ------------------------------------------------------------------------------------------------- floors
def peak_conv_gflops(dtype: torch.dtype, reps: int = 5) -> tuple[float, str]:
    """Best GFLOP/s over a few convolution shapes the two networks use (channels-last for bfloat16)."""
    shapes = [(128, 128, 7, 23), (256, 256, 3, 46), (512, 512, 3, 23), (128, 128, 3, 56)]
    best, where = 0.0, ""
    with torch.inference_mode():
        for cin, cout, k, size in shapes:
            conv = torch.nn.Conv2d(cin, cout, k, padding=k // 2).to(dtype)
            x = torch.randn(4, cin, size, size).to(dtype)
            if dtype == torch.bfloat16:
                conv, x = conv.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)
            conv(x)
            t = min(_once(conv, x) for _ in range(reps))
            gflops = 2 * 4 * cout * cin * k * k * size * size / t / 1e9
            if gflops > best:
                best, where = gflops, f"conv {k}x{k} {cin}->{cout} at {size}x{size}, batch 4"
    return best, where


def _once(fn, *a) -> float:
    start = time.perf_counter()
    fn(*a)
    return time.perf_counter() - start


def network_gflop(model, x) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 1e9


# ------------------------------------------------------------------------------------------------- pipelines
def original_crop_pipeline(spin, smpl, body, estimator, crop_rgb):
    """The original demo's per-image work on one crop: HMR batch 1 (BatchNorms unfolded), SMPL, OpenPose with
    pytorch-openpose's decoder, the original's ED and estimator."""
    with torch.inference_mode():
        rotmat, betas, camera = spin(geometry.normalize_crop(crop_rgb[None]))
        out = smpl(rotmat, betas)
        keypoints = geometry.project_spin_joints(out.joints, camera).numpy()[0]
        vertices = out.vertices.numpy()
    image = np.ascontiguousarray((crop_rgb.astype(np.float32) / np.float32(255))[:, :, ::-1] * np.float32(255))
    net_input, _ = reference_body.preprocess(image)
    paf, heatmap = forward(body, net_input)
    candidate, subset = reference_body.decode(paf, heatmap, image.shape[:2])
    ed = sp_op.demo_ed(keypoints, candidate, subset)
    estimator.predict(ed[None], np.ones((1, 14)))
    return vertices[0], geometry.camera_translation(camera).numpy()[0]


ORIGINAL_DEMO = r"""
import sys, time
import numpy as np, torch, cv2, scipy.ndimage  # the original's imports
from meshconf.models.hmr import HMR
from meshconf.openpose.network import BodyPoseModel, file_key
from meshconf.models import load_smpl
from meshconf.classifier import load as load_estimator
import reference_body, speed
spin = HMR(); spin.load_state_dict(torch.load(sys.argv[1], weights_only=True)["model"], strict=False); spin.eval()
body = BodyPoseModel(); state = torch.load(sys.argv[2], weights_only=True)
body.load_state_dict({k: state[file_key(k)] for k in body.state_dict()}); body.eval()
smpl = load_smpl(sys.argv[3], sys.argv[4])
crop = cv2.imread(sys.argv[5])[:, :, ::-1].copy()
out = speed.original_crop_pipeline(spin, smpl, body, load_estimator("original"), crop)
if len(sys.argv) > 6:  # the original's two renders (mesh, per-part colours), with its pyrender set-up
    from meshconf import render
    for colour in (render.GOOD_RGB, None):
        vertex_rgb = None if colour else np.full((len(out[0]), 3), 0.5)
        render.render(out[0], smpl.faces, out[1], crop, colour=colour or render.GOOD_RGB, vertex_rgb=vertex_rgb,
                      res=448, backend="pyrender")
"""


def whole_process(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])} failed:\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and smaller batches")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=str(REPO / "benchmarks" / "results" / "speed.json"))
    args = parser.parse_args(argv)
    if not (SHARED / "golden").is_dir():
        print(f"needs the shared goldens at {SHARED} (set MESHCONF_SHARED)", file=sys.stderr)
        return 2
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    n = 3 if args.quick else 5
    machine = {"cpu": cpu_model(), "threads": args.threads, "torch": torch.__version__,
               "onednn_bf16_conv": onednn_bf16_kernel()}
    machine["amx"] = "amx" in machine["onednn_bf16_conv"]
    peak32, where32 = peak_conv_gflops(torch.float32)
    peak16, where16 = peak_conv_gflops(torch.bfloat16)
    machine.update(peak_gflops_fp32=round(peak32, 1), peak_fp32_kernel=where32, peak_gflops_bf16=round(peak16, 1),
                   peak_bf16_kernel=where16)
    print(f"CPU: {machine['cpu']}, {args.threads} threads, torch {torch.__version__}")
    print(f"oneDNN bfloat16 convolution: {machine['onednn_bf16_conv']} (AMX {'used' if machine['amx'] else 'not used'})")
    print(f"peak conv throughput: fp32 {peak32:.0f} GFLOP/s ({where32}); bf16 {peak16:.0f} GFLOP/s ({where16})")

    tmp = pathlib.Path(tempfile.mkdtemp(prefix="meshconf-speed-"))
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")  # fast forms of this run's weights; inductor's cache too
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = os.environ.get("TORCHINDUCTOR_CACHE_DIR", str(tmp / "inductor"))
    try:
        ckpt, body_path = tmp / "model_checkpoint.pt", tmp / "body_pose_model.pth"
        mean_params = dict(np.load(SHARED / "data" / "spin" / "smpl_mean_params.npz"))
        write_spin_checkpoint(ckpt, 0, mean_params)
        write_openpose_weights(body_path, 0)
        smpl_dir, regressor = SHARED / "golden" / "smpl_synthetic", SHARED / "data" / "spin" / "J_regressor_extra.npy"
        smpl = load_smpl(smpl_dir, regressor)
        from meshconf.files.imageio import read_bgr

        photo = read_bgr(SHARED / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png")
        crop_rgb = geometry.crop(photo[:, :, ::-1], *geometry.centered_box(*photo.shape[:2]))  # (224,224,3) uint8

        # ---------------------------------------------------------------- OpenPose forward
        bodies = {"original": load_body(body_path), "fp32": load_body(body_path, compile=True),
                  "bf16": load_body(body_path, precision="bfloat16", compile=True)}
        x1, _ = preprocess(np.ascontiguousarray(crop_rgb[:, :, ::-1]))
        gflop_op = network_gflop(bodies["original"], torch.from_numpy(x1))
        machine["openpose_gflop_184"] = round(gflop_op, 2)
        with torch.inference_mode():
            ref = bodies["original"](torch.from_numpy(x1))
            agree = {k: max(float((a.float() - b).abs().max()) for a, b in zip(m(torch.from_numpy(x1).to(
                next(m.parameters()).dtype)), ref)) for k, m in bodies.items() if k != "original"}
        machine["openpose_max_abs_diff"] = agree
        print(f"OpenPose maps against eager fp32: compiled fp32 {agree['fp32']:.2e}, bf16 {agree['bf16']:.2e}")
        for batch in (1, 4 if args.quick else 16):
            xb = np.repeat(x1, batch, axis=0)
            floors = {"original": batch * gflop_op / peak32, "fp32": batch * gflop_op / peak32,
                      "bf16": batch * gflop_op / peak16}
            times, first = interleaved({k: (lambda m=m: forward(m, xb)) for k, m in bodies.items()},
                                       n if batch == 1 else max(2, n - 2))
            report(f"OpenPose forward 184x184, batch {batch}", times, first, per=batch, floor=floors,
                   note="fp32/bf16 compiled")
        del bodies

        # ---------------------------------------------------------------- HMR forward
        spins = {"original": load_spin(ckpt), "fp32": load_spin(ckpt, compile=True),
                 "bf16": load_spin(ckpt, precision="bfloat16", compile=True)}
        x224 = geometry.normalize_crop(crop_rgb[None])
        gflop_hmr = network_gflop(spins["original"], x224)
        machine["hmr_gflop_224"] = round(gflop_hmr, 3)
        for batch in (1, 16) if args.quick else (1, 16, 64):
            xb = x224.repeat(batch, 1, 1, 1).contiguous(memory_format=torch.channels_last)
            floors = {"original": batch * gflop_hmr / peak32, "fp32": batch * gflop_hmr / peak32,
                      "bf16": batch * gflop_hmr / peak16}

            def call(m, xb=xb):
                with torch.inference_mode():
                    m(xb)
            times, first = interleaved({k: (lambda m=m: call(m)) for k, m in spins.items()},
                                       n if batch < 64 else 2)
            report(f"HMR forward 224x224, batch {batch}", times, first, per=batch, floor=floors,
                   note="fp32/bf16 folded + compiled")
        del spins

        # ---------------------------------------------------------------- demo, whole process
        data = tmp / "data"
        (data / "smpl").mkdir(parents=True)
        for src, dst in ((ckpt, "model_checkpoint.pt"), (body_path, "body_pose_model.pth"),
                         (regressor, "J_regressor_extra.npy"),
                         (SHARED / "data" / "meshcapade" / "smpl_vert_segmentation.json",
                          "smpl_vert_segmentation.json")):
            os.symlink(src, data / dst)
        shutil.copy(smpl_dir / "SMPL_NEUTRAL.pkl", data / "smpl" / "SMPL_NEUTRAL.pkl")
        import cv2
        crop_png = tmp / "crop.png"
        cv2.imwrite(str(crop_png), crop_rgb[:, :, ::-1])
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MESHCONF_OFFLINE": "1"}
        warm_env = {**env, "XDG_CACHE_HOME": str(tmp / "warm-cache")}

        def demo_cmd(out, precision="float32"):
            return [sys.executable, "-m", "meshconf", "demo", "--img", str(crop_png), "--data-dir", str(data),
                    "--out", str(tmp / out), "--no-progress", "--precision", precision]

        def cold():  # meshconf's fast forms gone (other programs' caches, e.g. matplotlib's fonts, stay)
            shutil.rmtree(tmp / "cold-cache" / "meshconf", ignore_errors=True)
            return whole_process(demo_cmd("cold"), {**env, "XDG_CACHE_HOME": str(tmp / "cold-cache")})

        original_cmd = [sys.executable, "-c", ORIGINAL_DEMO, str(ckpt), str(body_path), str(smpl_dir),
                        str(regressor), str(crop_png)]
        original_env = {**env, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"),
                                                              str(REPO / "benchmarks")])}
        from meshconf.demo.render import pyrender_available

        variants = {"original": lambda: whole_process(original_cmd, original_env),
                    "fp32 cold": cold,
                    "fp32 warm": lambda: whole_process(demo_cmd("warm"), warm_env),
                    "bf16 warm": lambda: whole_process(demo_cmd("warm16", "bfloat16"), warm_env)}
        if pyrender_available():  # the original as it really ran: two pyrender renders (llvmpipe on a CPU)
            variants["original+render"] = lambda: whole_process(original_cmd + ["render"], original_env)
        times, first = interleaved(variants, 2 if args.quick else 3)
        report("demo, one cropped image, whole process (meshconf: default settings, renders and pages included; "
               "original: without its renders, and with them)", times, first, unit="s",
               note="cold: no fast forms in the cache")

        # ---------------------------------------------------------------- demo, folder of 16 crops (in process)
        from meshconf.engine.bundle import load_models
        from meshconf.classifier import load as load_estimator
        from meshconf.engine.pipeline import analyse_crops

        rng = np.random.default_rng(0)
        crops = [np.clip(crop_rgb.astype(int) + rng.integers(-8, 9, crop_rgb.shape), 0, 255).astype(np.uint8)
                 for _ in range(4 if args.quick else 16)]
        bundles = {p: load_models({"spin", "smpl", "body", "estimator"}, data, device="cpu", precision=p,
                                  offline=True) for p in ("float32", "bfloat16")}
        orig_spin, orig_body, orig_est = load_spin(ckpt), load_body(body_path), load_estimator("original")

        def original_folder():
            for c in crops:
                original_crop_pipeline(orig_spin, smpl, orig_body, orig_est, c)
        times, first = interleaved({"original": original_folder,
                                    "fp32": lambda: analyse_crops(bundles["float32"], crops),
                                    "bf16": lambda: analyse_crops(bundles["bfloat16"], crops)},
                                   2 if args.quick else 3)
        report(f"demo pipeline, a folder of {len(crops)} crops (models loaded; eager, as the demo runs them)",
               times, first, per=len(crops))
        agreement = compare(analyse_crops(bundles["float32"], crops), analyse_crops(bundles["bfloat16"], crops))
        machine["bf16_agreement_recipe_weights"] = agreement.as_dict()
        print("  bfloat16 against float32 on these crops (recipe weights, a stress case):")
        for line in agreement.lines():
            print(f"    {line}")
        bundles.clear()

        # ---------------------------------------------------------------- extraction per image
        from meshconf.dataset import AnnotatedCrops, Annotations
        from meshconf.engine.extraction import extract

        from extract import original_structure

        images = tmp / "images"
        images.mkdir()
        shutil.copy(SHARED / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png", images / "a.png")
        shutil.copy(SHARED / "data" / "meshconfidence" / "examples" / "im1010.jpg", images / "b.jpg")
        count = 8 if args.quick else 32
        names = np.array(["a.png", "b.jpg"] * (count // 2 + 1))[:count]
        center = np.array([112.0, 112.0]) + rng.uniform(-15, 15, (count, 2))
        joints = center[:, None] + rng.uniform(-60, 60, (count, 14, 2))
        dataset = AnnotatedCrops(Annotations(names, center, rng.uniform(0.9, 1.2, count), joints, center.copy(),
                                             dataset="bench"), images)
        from meshconf.accel import compiled_parts

        # as a job of 512+ crops loads them (`--compile auto`)
        nets = {p: (load_spin(ckpt, precision=p, compile="spin" in compiled_parts("auto", 10**6, p)),
                    load_body(body_path, precision=p, compile="body" in compiled_parts("auto", 10**6, p)))
                for p in ("float32", "bfloat16")}
        runs = iter(range(10**6))

        def meshconf_extract(p):
            spin, body = nets[p]
            extract(spin, smpl, body, dataset, str(tmp / f"extract{next(runs)}"), "bench", batch_size=16,
                    progress=False)
        times, first = interleaved({"original": lambda: original_structure(orig_spin, smpl, body_path, dataset),
                                    "fp32": lambda: meshconf_extract("float32"),
                                    "bf16": lambda: meshconf_extract("bfloat16")}, 1 if args.quick else 2)
        report(f"extraction, {count} crops (batch 16)", times, first, per=count, unit="s",
               note="--compile auto for 512+ crops: SPIN compiled, OpenPose in bf16 only")

        # ---------------------------------------------------------------- sensitivity per window
        from meshconf.dataset.occlusion import Grid, parse_fill
        from meshconf.sensitivity import occluded_copies, openpose_sensitivity, spin_sensitivity
        from meshconf.sensitivity.image import spin_j14

        grid = Grid(224, 40, 60)  # 4 x 4 windows: enough for a per-window time, short for the original
        fill = parse_fill("mean", None)
        h36m = torch.from_numpy(np.load(SHARED / "data" / "spin" / "J_regressor_h36m.npy")).float()

        def original_sensitivity():
            for copy in occluded_copies(crop_rgb, grid.windows, fill):
                spin_j14(orig_spin, smpl, h36m, copy[None])
                image = np.ascontiguousarray(copy[:, :, ::-1])
                net_input, _ = reference_body.preprocess(image)
                reference_body.decode(*forward(orig_body, net_input), image.shape[:2])

        def meshconf_sensitivity(p):
            spin, body = nets[p]
            spin_sensitivity(spin, smpl, h36m, crop_rgb, grid, fill, batch_size=16)
            openpose_sensitivity(body, crop_rgb, grid, fill, 16)
        times, first = interleaved({"original": original_sensitivity,
                                    "fp32": lambda: meshconf_sensitivity("float32"),
                                    "bf16": lambda: meshconf_sensitivity("bfloat16")}, 1 if args.quick else 2)
        report(f"sensitivity, SPIN + OpenPose, {len(grid.windows)} windows", times, first,
               per=len(grid.windows), note="as extraction: --compile auto for 512+ crops")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    out = pathlib.Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".tmp").write_text(json.dumps({"benchmark": "speed", "machine": machine, "quick": args.quick,
                                                   "rows": ROWS}, indent=1, default=float))
    out.with_suffix(".tmp").replace(out)
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
