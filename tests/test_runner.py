"""The pipelined runner: order, errors, early stops, and jobs whose arrays equal the serial run's bit for bit."""

from __future__ import annotations

import importlib
import threading
import time

import numpy as np
import pytest
import torch

from meshconf.engine.runner import Stages, default_depth, pipelined


def test_pipelined_keeps_order_and_overlaps():
    """Finishing on the worker while the next item launches; results in input order for every depth."""
    threads = set()

    def launch(x):
        return x * 10

    def finish(x):
        threads.add(threading.current_thread().name)
        time.sleep(0.01 * (x % 3))  # uneven finishing times must not reorder anything
        return x + 1

    stages = Stages(launch, finish)
    for depth in (0, 1, 3):
        for device in (None, "cpu"):
            threads.clear()
            assert list(pipelined(range(7), stages, depth, device)) == [(i, i * 10 + 1) for i in range(7)]
            assert (threads == {threading.main_thread().name}) == (depth == 0), threads


def test_pipelined_launches_ahead_by_depth_only():
    log = []
    stages = Stages(lambda x: log.append(("launch", x)) or x, lambda x: x)
    consumed = []
    for item, _ in pipelined(range(5), stages, depth=2):
        consumed.append(item)
        launched = [x for kind, x in log if kind == "launch"]
        assert max(launched) <= item + 2  # never more than depth batches in flight
    assert consumed == list(range(5))


@pytest.mark.parametrize("where", ["launch", "finish"])
def test_an_error_in_a_stage_comes_out_after_the_finished_items(where):
    def launch(x):
        if where == "launch" and x == 3:
            raise ValueError("bad launch")
        return x

    def finish(x):
        if where == "finish" and x == 3:
            raise ValueError("bad finish")
        return x

    got = []
    with pytest.raises(ValueError, match=f"bad {where}"):
        for item, result in pipelined(range(6), Stages(launch, finish), depth=1):
            got.append(result)
    assert got == [0, 1, 2]


def test_stopping_early_waits_for_the_worker():
    finished = []

    def finish(x):
        time.sleep(0.02)
        finished.append(x)
        return x

    gen = pipelined(range(10), Stages(lambda x: x, finish), depth=2)
    assert next(gen) == (0, 0)
    gen.close()  # the consumer stops (an error while writing, Ctrl-C)
    count = len(finished)
    time.sleep(0.1)
    assert len(finished) == count <= 3  # nothing still running behind the caller's back
    assert default_depth("cpu") == default_depth("cuda") == 1


@pytest.mark.slow
@pytest.mark.parametrize("signals", [False, True])
def test_pipelined_extract_equals_the_serial_run_bit_for_bit(tmp_path, tiny_dataset, spin_model, smpl_layer,
                                                             body_model, signals):
    """Depth 0 (serial), depth 2 with per-crop decoding and depth 1 with the batched decode: the same arrays."""
    from meshconf.dataset import AnnotatedCrops
    from meshconf.engine import extraction as X

    detect = importlib.import_module("meshconf.openpose.detect")  # the module (the package exports a function of that name)

    data = AnnotatedCrops(*tiny_dataset)
    args = (spin_model, smpl_layer, body_model, data)
    runs = {"serial": dict(depth=0), "deep": dict(depth=2), "batched": dict(depth=1)}
    for name, kw in runs.items():
        before = detect.DECODE_ON_DEVICE
        detect.DECODE_ON_DEVICE = name == "batched"
        try:
            assert X.extract(*args, str(tmp_path / name), "t", batch_size=2, occlude=True, seed=3, progress=False,
                             signals=signals, **kw)
        finally:
            detect.DECODE_ON_DEVICE = before
    suffixes = ("sp_op", "sp_gt", "conf") + (("signals",) if signals else ())
    for suffix in suffixes:
        want = np.load(tmp_path / "serial" / f"t_{suffix}.npy")
        for name in ("deep", "batched"):
            np.testing.assert_array_equal(np.load(tmp_path / name / f"t_{suffix}.npy"), want, err_msg=name)


@pytest.mark.slow
def test_pipelined_analyse_crops_equals_serial(demo_data_dir, shared):
    """MeshConfidence.analyse_crops' path (the demo, qualitative, check-precision): depth 2 against serial."""
    import cv2

    from meshconf import MeshConfidence, geometry
    from meshconf.engine.pipeline import analyse_crops

    image = cv2.imread(str(shared / "data" / "meshconfidence" / "examples" / "im1010.jpg"))[:, :, ::-1]
    h, w = image.shape[:2]
    crops = [geometry.crop(image, (w / 2 + dx, h / 2), max(h, w) / 200 * s) for dx, s in ((0, 1.0), (20, 0.8),
                                                                                          (-30, 1.2))]
    models = MeshConfidence(data_dir=demo_data_dir, device="cpu").models
    serial = analyse_crops(models, crops, batch_size=1, depth=0)
    deep = analyse_crops(models, crops, batch_size=1, depth=2)
    assert len(serial) == len(deep) == 3
    for a, b in zip(serial, deep):
        for field in ("vertices", "spin_keypoints_2d", "candidate", "subset", "ed", "conf", "worst_joint_prob", "rotmat"):
            np.testing.assert_array_equal(getattr(b, field), getattr(a, field), err_msg=field)
        assert a.p_accurate == b.p_accurate


@pytest.mark.slow
def test_pipelined_sensitivity_equals_serial(tmp_path, tiny_dataset, demo_data_dir, shared, body_model):
    """The dataset analysis (both models) and the image analysis's OpenPose windows: depth 1 against serial."""
    import shutil

    from meshconf.dataset.occlusion import Grid, parse_fill
    from meshconf.engine.options import ModelOptions
    from meshconf.sensitivity import openpose_sensitivity
    from meshconf.sensitivity.runner import DatasetOptions, run_dataset

    shutil.copy(shared / "data" / "spin" / "J_regressor_h36m.npy", demo_data_dir)
    path, root = tiny_dataset
    for depth in (0, 1):
        options = DatasetOptions(str(path), str(root), out=str(tmp_path / str(depth)), max_images=2, depth=depth,
                                 models=ModelOptions(data_dir=str(demo_data_dir), device="cpu", batch_size=1,
                                                     progress=False))
        assert run_dataset(options) == 0
    for model in ("spin", "openpose"):
        with np.load(tmp_path / "0" / f"{model}_errors.npz") as a, np.load(tmp_path / "1" / f"{model}_errors.npz") as b:
            np.testing.assert_array_equal(b["errors"], a["errors"], err_msg=model)
    import cv2

    crop = cv2.imread(str(shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"))[:, :, ::-1].copy()
    grid = Grid(224, 112, 112)
    serial = openpose_sensitivity(body_model, crop, grid, parse_fill("mean"), batch_size=2, depth=0)
    deep = openpose_sensitivity(body_model, crop, grid, parse_fill("mean"), batch_size=2, depth=1)
    np.testing.assert_array_equal(deep.errors, serial.errors)


def test_gpu_batch_defaults():
    """No --batch-size: the CPU default on the CPU, the larger GPU default on a GPU; a given size is kept on both."""
    import argparse

    from meshconf.engine.options import ModelOptions
    from meshconf.jobs import extract, sensitivity

    def options(module, argv):
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        return ModelOptions.from_args(parser.parse_args(argv))

    plain = options(extract, ["--annotations", "a.npz", "--images", ".", "--out", "o", "--name", "n"])
    assert (plain.batch_for("cpu"), plain.batch_for("cuda"), plain.batch_for("cuda:1")) == (16, 128, 128)
    given = options(extract, ["--annotations", "a.npz", "--images", ".", "--out", "o", "--name", "n", "--batch-size", "8"])
    assert (given.batch_for("cpu"), given.batch_for("cuda")) == (8, 8)
    data = options(sensitivity, ["dataset", "--annotations", "a.npz", "--images", "."])
    assert (data.batch_for("cpu"), data.batch_for("cuda")) == (4, 16)
    image = options(sensitivity, ["image", "x.jpg"])
    assert image.batch_for("cuda") == image.batch_for("cpu") == 8


def test_reading_workers_default_by_device(monkeypatch):
    """No --workers: none on the CPU; on a GPU half the cores, at most 8."""
    import os

    from meshconf.engine.runner import default_workers

    assert default_workers("cpu") == 0
    for cores, want in ((2, 1), (16, 8), (128, 8)):
        monkeypatch.setattr(os, "cpu_count", lambda c=cores: c)
        assert default_workers("cuda") == want and default_workers("cpu") == 0


@pytest.mark.slow
@pytest.mark.parametrize("signals", [False, True])
def test_rows_finished_in_worker_processes_equal_rows_finished_here(tiny_dataset, spin_model, smpl_layer,
                                                                    body_model, signals):
    """A GPU host's finishing stage: people assembled and ED/SE computed in spawned processes; the same arrays."""
    from meshconf.dataset import AnnotatedCrops
    from meshconf.dataset.crops import collate
    from meshconf.engine import extraction as X

    data = AnnotatedCrops(*tiny_dataset)
    batch = collate([data[i] for i in range(len(data))])
    launched = X.launch_batch(spin_model, smpl_layer, body_model, batch, True, 3, 40, len(data), signals)
    here = X.finish_batch(launched, workers=0)
    launched = X.launch_batch(spin_model, smpl_layer, body_model, batch, True, 3, 40, len(data), signals)
    pooled = X.finish_batch(launched, workers=2)
    assert set(here) == set(pooled)
    for key, value in here.items():
        np.testing.assert_array_equal(pooled[key], value, err_msg=key)


@pytest.mark.slow
def test_demo_and_sensitivity_finished_in_worker_processes_equal_here(tiny_dataset, demo_data_dir, shared,
                                                                      body_model):
    """A GPU host's finishing stage of the demo's path (ED per crop) and of both sensitivity analyses (the person
    per variant crop) in spawned processes: the same numbers as here."""
    import cv2

    from meshconf import MeshConfidence, geometry
    from meshconf.dataset import AnnotatedCrops
    from meshconf.dataset.occlusion import Grid, parse_fill
    from meshconf.engine.pipeline import analyse_crops
    from meshconf.sensitivity import dataset as ds
    from meshconf.sensitivity import openpose_sensitivity

    image = cv2.imread(str(shared / "data" / "meshconfidence" / "examples" / "im1010.jpg"))[:, :, ::-1]
    h, w = image.shape[:2]
    crops = [geometry.crop(image, (w / 2 + dx, h / 2), max(h, w) / 200 * s)
             for dx, s in ((0, 1.0), (20, 0.8), (-30, 1.2), (10, 0.9))]
    models = MeshConfidence(data_dir=demo_data_dir, device="cpu").models
    here = analyse_crops(models, crops, batch_size=4, depth=0, workers=0)
    pooled = analyse_crops(models, crops, batch_size=4, depth=0, workers=2)
    for a, b in zip(here, pooled, strict=True):
        for field in ("ed", "ed_legacy", "conf", "candidate", "subset", "worst_joint_prob"):
            np.testing.assert_array_equal(getattr(b, field), getattr(a, field), err_msg=field)
        for field in ("ed", "conf", "person", "spin_points", "op_points"):
            np.testing.assert_array_equal(getattr(b.relative, field), getattr(a.relative, field), err_msg=field)
        assert (a.p_accurate, a.problem) == (b.p_accurate, b.problem)

    data = AnnotatedCrops(*tiny_dataset)
    rows = [data[i] for i in range(min(2, len(data)))]
    variants, _ = ds.joint_variants(np.stack([r["crop"] for r in rows]), np.stack([r["joints2d"] for r in rows]),
                                    40, parse_fill("mean"))
    gt = np.stack([r["joints2d"] for r in rows])
    errors = [ds.openpose_variant_finish(ds.openpose_variant_launch(body_model, variants, 8), gt, workers=n)["px"]
              for n in (0, 2)]
    np.testing.assert_array_equal(errors[1], errors[0])

    crop = cv2.imread(str(shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"))[:, :, ::-1].copy()
    grid = Grid(224, 112, 112)
    serial, pooled = (openpose_sensitivity(body_model, crop, grid, parse_fill("mean"), batch_size=4, depth=0,
                                           workers=n) for n in (0, 2))
    np.testing.assert_array_equal(pooled.errors, serial.errors)
    np.testing.assert_array_equal(pooled.extra["detected"], serial.extra["detected"])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("separate", [True, False])
def test_the_finishing_stream_waits_for_the_launch(monkeypatch, separate):
    """On CUDA the finishing thread reads what the launch queued on another stream: it must see every launch
    complete (a long product queued last), and the results must equal the serial run's."""
    from meshconf.engine import runner

    monkeypatch.setattr(runner, "SEPARATE_STREAM", separate)
    device = torch.device("cuda")
    base = torch.randn(2048, 2048, device=device, dtype=torch.float64) / 64

    def launch(i):
        x = base + i
        for _ in range(4):  # long enough that a reader not waiting would see it unfinished
            x = x @ base
        return x

    def finish(x):
        return float(x.sum().item()), float(x[-1, -1].item())

    stages = runner.Stages(launch, finish)
    serial = [stages(i) for i in range(6)]
    piped = [result for _, result in runner.pipelined(range(6), stages, depth=2, device=device)]
    assert piped == serial
