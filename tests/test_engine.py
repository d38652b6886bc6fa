"""The inference engine: one model layer, the device policy, precision, and the MeshConfidence object.

Tests that take a device run on the CPU everywhere and on CUDA where it exists (marked `gpu`: compared against the
CPU within the goldens' tolerances with TF32 off)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from meshconf.errors import MeshconfError

CUDA = torch.cuda.is_available()
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu,
                                              pytest.mark.skipif(not CUDA, reason="needs a CUDA device")])]


@pytest.fixture(scope="module")
def crops(shared):
    import cv2

    from meshconf import geometry

    image = cv2.imread(str(shared / "data" / "meshconfidence" / "examples" / "im1010.jpg"))[:, :, ::-1]
    h, w = image.shape[:2]
    return [geometry.crop(image, (w / 2 + dx, h / 2), max(h, w) / 200 * s) for dx, s in ((0, 1.0), (20, 0.8),
                                                                                          (-30, 1.2))]


@pytest.fixture(scope="module")
def engine(demo_data_dir):
    from meshconf import MeshConfidence

    return MeshConfidence(data_dir=demo_data_dir, device="cpu")


def test_contract_signature():
    import inspect

    from meshconf import MeshConfidence

    params = inspect.signature(MeshConfidence).parameters
    assert [(k, params[k].default) for k in ("data_dir", "checkpoint", "device", "precision", "estimator")] == [
        ("data_dir", None), ("checkpoint", None), ("device", "auto"), ("precision", "float32"),
        ("estimator", "default")]
    crops_params = inspect.signature(MeshConfidence.analyse_crops).parameters
    assert crops_params["legacy_ed"].default is False and crops_params["batch_size"].default == 16
    analyse = inspect.signature(MeshConfidence.analyse).parameters
    assert (analyse["boxes"].default, analyse["cropped"].default, analyse["max_people"].default) == (None, False, None)


@pytest.mark.slow
def test_analyse_crops_equals_the_former_pipeline(engine, crops, spin_checkpoint):
    """Today's `pipeline.analyse_crops` on unfolded SPIN (as the demo ran it) against the engine (folded SPIN)."""
    from meshconf.engine.bundle import Models
    from meshconf.models import load_spin
    from meshconf.engine.pipeline import analyse_crops

    m = engine.models
    former = Models(load_spin(spin_checkpoint), m.smpl, m.body, m.estimator, m.segmentation, m.paths)
    old = analyse_crops(former, crops, batch_size=2)
    new = engine.analyse_crops(crops, batch_size=2)
    assert len(new) == len(old) == 3
    for a, b in zip(old, new):
        np.testing.assert_allclose(b.vertices, a.vertices, atol=1e-4)  # the goldens' vertex tolerance
        np.testing.assert_allclose(b.spin_keypoints_2d, a.spin_keypoints_2d, atol=1e-3)
        np.testing.assert_allclose(b.ed, a.ed, atol=1e-4)
        assert abs(b.p_accurate - a.p_accurate) < 1e-4


def test_analyse_returns_typed_people(engine, shared):
    from meshconf import ImageResult, PersonResult

    path = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    [result] = engine.analyse(path, cropped=True)
    assert isinstance(result, ImageResult) and result.name == str(path)
    assert len(result.people) == 1 and isinstance(result.people[0], PersonResult)
    assert result.people[0].box.source == "cropped"
    import cv2

    image = cv2.imread(str(path))
    boxed = engine.analyse([image, image], boxes=[(10, 10, 150, 200), [(0, 0, 100, 100), (50, 50, 120, 120)]])
    assert [len(r.people) for r in boxed] == [1, 2] and boxed[0].name == "image 0"
    assert all(p.box.source == "bbox" for r in boxed for p in r.people)
    with pytest.raises(MeshconfError, match="max_people"):
        engine.analyse(image, max_people=0)
    # short reprs, JSON-ready dicts, and the demo's default number of people
    import inspect
    import json

    from meshconf.jobs import demo as demo_job
    from meshconf.engine.inference import MeshConfidence

    assert len(repr(result)) < 300 and len(repr(result.people[0].analysis)) < 300
    assert "p_accurate" in repr(result.people[0].analysis)
    as_dict = json.loads(json.dumps(boxed[1].to_dict(), allow_nan=False))
    assert len(as_dict["people"]) == 2 and len(as_dict["people"][0]["ed_px"]) == 14
    assert as_dict["people"][0]["box"]["source"] == "bbox"
    parser = __import__("argparse").ArgumentParser()
    demo_job.add_arguments(parser)
    assert parser.get_default("max_people") is None  # everyone, as MeshConfidence.analyse
    assert inspect.signature(MeshConfidence.analyse).parameters["max_people"].default is None


def _glb_positions(glb: bytes) -> np.ndarray:
    import json

    length = int(np.frombuffer(glb[12:16], "<u4")[0])
    gltf = json.loads(glb[20:20 + length])
    accessor = gltf["accessors"][gltf["meshes"][0]["primitives"][0]["attributes"]["POSITION"]]
    view = gltf["bufferViews"][accessor["bufferView"]]
    return np.frombuffer(glb[28 + length:], "<f4", accessor["count"] * 3, view["byteOffset"]).reshape(-1, 3)


def _same_but_timings(one, two, where="report") -> bool:
    """Equal JSON values, floats to 1e-4, timings ignored; an AssertionError names the first difference."""
    if isinstance(one, dict):
        assert isinstance(two, dict) and set(one) == set(two), where
        for key in set(one) - {"timings_ms", "person_detection_ms"}:
            _same_but_timings(one[key], two[key], f"{where}.{key}")
    elif isinstance(one, list):
        assert isinstance(two, list) and len(one) == len(two), where
        for k, (a, b) in enumerate(zip(one, two)):
            _same_but_timings(a, b, f"{where}[{k}]")
    elif isinstance(one, float):
        assert two == pytest.approx(one, rel=1e-4, abs=1e-4), where
    else:
        assert one == two, where
    return True


@pytest.mark.slow
def test_python_users_write_what_the_demo_writes(engine, demo_data_dir, shared, tmp_path):
    """`MeshConfidence.analyse` + `save` give the same files as `meshconf demo`: the same pictures, meshes and
    report (to float noise: the CLI loads its own models), but for the timings."""
    import json

    import cv2

    from meshconf.cli import run_job

    path = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    assert run_job("demo", [str(path), "--cropped", "--renderer", "software", "--render-res", "224",
                            "--data-dir", str(demo_data_dir), "--out", str(tmp_path / "cli")]) == 0
    [result] = engine.analyse(path, cropped=True)
    report = engine.save(result, tmp_path / "api", renderer="software", render_res=224)
    cli_files = sorted(p.relative_to(tmp_path / "cli") for p in (tmp_path / "cli").rglob("*") if p.is_file())
    api_files = sorted(p.relative_to(tmp_path / "api") for p in (tmp_path / "api").rglob("*") if p.is_file())
    assert cli_files == api_files and len(cli_files) >= 10
    for rel in cli_files:
        if rel.suffix == ".png":  # text in the panel may differ in a last digit
            one, two = (cv2.imread(str(tmp_path / side / rel)) for side in ("cli", "api"))
            assert one.shape == two.shape and (one != two).any(axis=2).mean() < 0.002, rel
        elif rel.suffix == ".glb":
            np.testing.assert_allclose(*(_glb_positions((tmp_path / side / rel).read_bytes()) for side in ("cli", "api")),
                                       rtol=0, atol=1e-5)

    on_disk = json.loads((tmp_path / "api" / "report.json").read_text())
    assert _same_but_timings(on_disk, report)
    assert _same_but_timings(json.loads((tmp_path / "cli" / "report.json").read_text()), on_disk)


def test_device_policy():
    from meshconf.runtime import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if CUDA else "cpu")
    with pytest.raises(MeshconfError, match="not a device"):
        resolve_device("potato")
    if not CUDA:
        with pytest.raises(MeshconfError, match="no CUDA"):
            resolve_device("cuda")


def test_unknown_precision_is_one_line(demo_data_dir):
    from meshconf.engine.bundle import load_models

    with pytest.raises(MeshconfError, match="precision must be one of float32, bfloat16"):
        load_models({"spin"}, demo_data_dir, precision="float16")


@pytest.mark.slow
@pytest.mark.parametrize("device", DEVICES)
def test_networks_on_a_device_agree_with_the_cpu(device, demo_data_dir, crops):
    """TF32 off: CUDA within the goldens' tolerances of the CPU (HMR 1e-4, vertices 1e-4)."""
    from meshconf.engine.bundle import load_models

    cpu = load_models({"spin", "smpl", "body"}, demo_data_dir, device="cpu")
    other = load_models({"spin", "smpl", "body"}, demo_data_dir, device=device)
    assert not torch.backends.cuda.matmul.allow_tf32
    from meshconf import geometry
    from meshconf.openpose import detect_batch

    with torch.inference_mode():
        outs = [m.smpl(*m.spin(geometry.normalize_crop(np.stack(crops), m.device))[:2]).vertices.cpu()
                for m in (cpu, other)]
    np.testing.assert_allclose(outs[1].numpy(), outs[0].numpy(), atol=1e-4)
    bgr = [np.ascontiguousarray(c[:, :, ::-1]) for c in crops]
    for (c0, _), (c1, _) in zip(detect_batch(cpu.body, bgr), detect_batch(other.body, bgr)):
        assert np.asarray(c0).shape == np.asarray(c1).shape


@pytest.mark.slow
def test_bfloat16_runs_both_networks_and_is_labelled(demo_data_dir, crops, engine):
    from meshconf import MeshConfidence

    bf16 = MeshConfidence(data_dir=demo_data_dir, device="cpu", precision="bfloat16")
    assert bf16.models.spin.conv1.weight.dtype == torch.bfloat16
    assert bf16.models.spin.fc1.weight.dtype == torch.float32  # the regressor stays float32
    assert next(bf16.models.body.parameters()).dtype == torch.bfloat16
    fast, exact = bf16.analyse_crops(crops), engine.analyse_crops(crops)
    for a, b in zip(fast, exact):
        assert a.vertices.dtype == b.vertices.dtype and np.isfinite(a.vertices).all()
        assert np.abs(a.vertices - b.vertices).max() < 0.05  # metres: bfloat16 is close, not equal
    assert bf16.models.describe()["precision"] == "bfloat16"
    assert bf16.models.settings()["precision"] == "bfloat16"  # chunks of another precision are never mixed


@pytest.mark.slow
def test_every_model_job_accepts_device_cpu(tmp_path, demo_data_dir, tiny_dataset, shared):
    import shutil

    from meshconf.cli import main

    shutil.copy(shared / "data" / "spin" / "J_regressor_h36m.npy", demo_data_dir)  # the sensitivity jobs need it
    path, root = tiny_dataset
    crop = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    common = ["--device", "cpu", "--data-dir", str(demo_data_dir)]
    assert main(["demo", str(crop), "--cropped", "--renderer", "software", "--out", str(tmp_path / "d"),
                 "--precision", "bfloat16", *common]) == 0
    report = json.loads((tmp_path / "d" / "report.json").read_text())
    assert report["device"] == "cpu" and report["precision"] == "bfloat16"
    assert main(["extract", "--annotations", str(path), "--images", str(root), "--out", str(tmp_path / "x"),
                 "--name", "t", *common]) == 0
    assert json.loads((tmp_path / "x" / "t_manifest.json").read_text())["device"] == "cpu"
    assert main(["qualitative", "--dataset", "3dpw", "--img_number", "1", "--annotations", str(path), "--images",
                 str(root), "--arrays", str(tmp_path / "x"), "--name", "t", "--renderer", "software",
                 "--out", str(tmp_path / "q"), *common]) == 0
    assert main(["sensitivity", "image", str(crop), "--model", "spin", "--stride", "92", "--out",
                 str(tmp_path / "s"), *common]) == 0
    assert main(["sensitivity", "dataset", "--annotations", str(path), "--images", str(root), "--model", "spin",
                 "--max-images", "1", "--out", str(tmp_path / "sd"), *common]) == 0
    assert json.loads((tmp_path / "sd" / "spin_summary.json").read_text())["device"] == "cpu"


@pytest.mark.slow
def test_readme_python_snippets_run_as_written(demo_data_dir, shared, tmp_path, monkeypatch):
    """Every ```python block of the README, unchanged, in a folder holding `photo.jpg` and SPIN's `data/` layout
    (recipe weights; MESHCONF_DATA points at it for the blocks that pass no data_dir)."""
    import pathlib
    import re
    import shutil

    readme = (pathlib.Path(__file__).resolve().parents[1] / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, flags=re.S)
    assert len(blocks) >= 2
    shutil.copy(shared / "data" / "meshconfidence" / "examples" / "im1010.jpg", tmp_path / "photo.jpg")
    (tmp_path / "data").symlink_to(demo_data_dir)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MESHCONF_DATA", str(demo_data_dir))
    monkeypatch.setenv("MESHCONF_OFFLINE", "1")
    for k, block in enumerate(blocks):
        namespace = {}
        exec(compile(block, f"README.md python block {k}", "exec"), namespace)
    assert (tmp_path / "photo_meshconf" / "report.json").is_file()
