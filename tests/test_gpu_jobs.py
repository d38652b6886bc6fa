"""Every model job on CUDA against the same job on the CPU (marked `gpu`; TF32 off, float32): arrays within the
goldens' tolerances, the same people, reports that agree. They skip without a CUDA device.

`MESHCONF_TEST_DEVICE=cpu pytest -m gpu tests/test_gpu_jobs.py` runs them CPU against CPU, to check the tests
themselves on a machine without a GPU.
"""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch

from meshconf.cli import run_job

OTHER = os.environ.get("MESHCONF_TEST_DEVICE", "cuda")
pytestmark = [pytest.mark.gpu, pytest.mark.slow,
              pytest.mark.skipif(OTHER.startswith("cuda") and not torch.cuda.is_available(),
                                 reason="needs a CUDA device (or MESHCONF_TEST_DEVICE=cpu)")]
# ED and its neighbours in normalised units (1.0 = 112 px): 1e-3 is 0.11 px, beyond the networks' float noise
ED_ATOL, CONF_ATOL, P_ATOL = 1e-3, 1e-3, 1e-3


def _both(tmp_path, job, argv_for):
    """Run `job` on the CPU and on OTHER; returns the two output folders."""
    outs = []
    for device in ("cpu", OTHER):
        out = tmp_path / device.replace(":", "_")
        assert run_job(job, argv_for(out) + ["--device", device]) == 0, (job, device)
        outs.append(out)
    return outs


@pytest.mark.parametrize("extra", [[], ["--occlude", "--seed", "1"], ["--signals"]], ids=["plain", "occluded",
                                                                                          "signals"])
def test_extract(tmp_path, tiny_dataset, demo_data_dir, extra):
    path, root = tiny_dataset
    cpu, other = _both(tmp_path, "extract", lambda out: ["--annotations", str(path), "--images", str(root),
                                                         "--out", str(out), "--name", "t", "--data-dir",
                                                         str(demo_data_dir), "--batch-size", "3",
                                                         "--compile", "off", *extra])
    for key, atol in (("sp_op", ED_ATOL), ("sp_gt", ED_ATOL), ("conf", CONF_ATOL)):
        a, b = (np.load(folder / f"t_{key}.npy") for folder in (cpu, other))
        np.testing.assert_array_equal(np.isnan(a), np.isnan(b), err_msg=key)
        np.testing.assert_allclose(b, a, atol=atol, err_msg=key)
    if "--occlude" in extra:
        np.testing.assert_array_equal(*(np.load(f / "t_occluded_joint.npy") for f in (cpu, other)))
    if "--signals" in extra:
        a, b = (np.load(f / "t_signals.npy") for f in (cpu, other))
        np.testing.assert_allclose(b, a, atol=1e-2, rtol=1e-2)


def test_sensitivity_dataset(tmp_path, tiny_dataset, demo_data_dir, shared):
    shutil.copy(shared / "data" / "spin" / "J_regressor_h36m.npy", demo_data_dir)
    path, root = tiny_dataset
    cpu, other = _both(tmp_path, "sensitivity", lambda out: ["dataset", "--annotations", str(path), "--images",
                                                             str(root), "--data-dir", str(demo_data_dir), "--out",
                                                             str(out), "--batch-size", "2", "--compile", "off",
                                                             "--no-progress"])
    for model, atol in (("spin", 0.5), ("openpose", 0.5)):  # mm, px
        with np.load(cpu / f"{model}_errors.npz") as a, np.load(other / f"{model}_errors.npz") as b:
            np.testing.assert_array_equal(a["index"], b["index"])
            np.testing.assert_allclose(b["errors"], a["errors"], atol=atol, err_msg=model)


def test_sensitivity_image(tmp_path, demo_data_dir, shared):
    shutil.copy(shared / "data" / "spin" / "J_regressor_h36m.npy", demo_data_dir)
    image = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    cpu, other = _both(tmp_path, "sensitivity", lambda out: ["image", str(image), "--data-dir", str(demo_data_dir),
                                                             "--out", str(out), "--occ-size", "112", "--stride",
                                                             "56", "--compile", "off", "--no-progress"])
    for model, atol in (("spin", 0.5), ("openpose", 0.5)):
        with np.load(cpu / f"{model}_grid.npz") as a, np.load(other / f"{model}_grid.npz") as b:
            np.testing.assert_allclose(b["errors"], a["errors"], atol=atol, err_msg=model)


def _same_report(a: dict, b: dict, where="report"):
    """Equal but for floats (within P_ATOL, relative 1e-3), timings, device and file paths."""
    if isinstance(a, dict):
        skip = {"timings_ms", "person_detection_ms", "device", "models", "seconds"}
        assert set(a) == set(b), where
        for key in set(a) - skip:
            _same_report(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list):
        assert len(a) == len(b), where
        for k, (x, y) in enumerate(zip(a, b)):
            _same_report(x, y, f"{where}[{k}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-3, abs=P_ATOL * 112), where  # px values too
    else:
        assert a == b, where


def test_demo_folder(tmp_path, demo_data_dir, shared):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("3doh_img_0_orig.png",):
        shutil.copy(shared / "data" / "meshconfidence" / "demo" / name, folder / name)
    shutil.copy(shared / "data" / "meshconfidence" / "examples" / "im1010.jpg", folder / "b.jpg")
    cpu, other = _both(tmp_path, "demo", lambda out: [str(folder), "--max-people", "2", "--data-dir",
                                                      str(demo_data_dir), "--renderer", "software", "--render-res",
                                                      "224", "--out", str(out), "--compile", "off", "--no-progress"])
    for name in ("3doh_img_0_orig", "b"):
        a, b = (json.loads((f / name / "report.json").read_text()) for f in (cpu, other))
        _same_report(a, b, name)


def test_qualitative(tmp_path, tiny_dataset, demo_data_dir):
    path, root = tiny_dataset
    arrays = tmp_path / "arrays"
    assert run_job("extract", ["--annotations", str(path), "--images", str(root), "--out", str(arrays), "--name",
                               "tiny_test", "--data-dir", str(demo_data_dir), "--device", "cpu"]) == 0
    cpu, other = _both(tmp_path, "qualitative", lambda out: ["--dataset", "3dpw", "--img_number", "3",
                                                             "--annotations", str(path), "--images", str(root),
                                                             "--arrays", str(arrays), "--name", "tiny_test",
                                                             "--data-dir", str(demo_data_dir), "--renderer",
                                                             "software", "--render-res", "224", "--out", str(out)])
    a, b = (json.loads((f / "3dpw_img_3_report.json").read_text()) for f in (cpu, other))
    _same_report(a, b)


def test_check_precision(tmp_path, demo_data_dir, shared):
    image = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    cpu, other = _both(tmp_path, "check-precision", lambda out: [str(image), "--cropped", "--data-dir",
                                                                 str(demo_data_dir), "--json",
                                                                 str(out.with_suffix(".json")), "--compile", "off"])
    a, b = (json.loads(f.with_suffix(".json").read_text()) for f in (cpu, other))
    assert a.keys() == b.keys()


def test_analyse_crops(demo_data_dir, shared):
    import cv2

    from meshconf import MeshConfidence, geometry

    image = cv2.imread(str(shared / "data" / "meshconfidence" / "examples" / "im1010.jpg"))[:, :, ::-1]
    h, w = image.shape[:2]
    crops = [geometry.crop(image, (w / 2 + dx, h / 2), max(h, w) / 200) for dx in (0, 25, -25)]
    results = [MeshConfidence(data_dir=demo_data_dir, device=d).analyse_crops(crops) for d in ("cpu", OTHER)]
    for a, b in zip(*results):
        np.testing.assert_allclose(b.vertices, a.vertices, atol=1e-4)
        np.testing.assert_allclose(b.ed, a.ed, atol=ED_ATOL)
        assert abs(b.p_accurate - a.p_accurate) < P_ATOL
        np.testing.assert_array_equal(np.asarray(b.subset)[:, -1], np.asarray(a.subset)[:, -1])  # the same people
