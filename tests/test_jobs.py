"""How the jobs behave for a careful user: output names that never collide, reruns without stale results, the
original's files and flags, help text for every option, and the renderer chosen by measurement."""

from __future__ import annotations

import argparse
import importlib
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from meshconf.cli import JOBS
from meshconf.cli import main as cli_main
from meshconf.errors import MeshconfError


def test_output_folders_never_collide(tmp_path):
    from meshconf.jobs.demo import output_folders

    args = SimpleNamespace(out=str(tmp_path / "o"))
    folders = output_folders(args, ["a/x.jpg", "a/x.png", "b/x.png"])
    assert len(set(folders.values())) == 3
    assert folders["a/x.jpg"].endswith("a/x_jpg") and folders["b/x.png"].endswith("b/x")
    assert output_folders(args, ["a/x.jpg", "b/y.jpg"]) == {"a/x.jpg": str(tmp_path / "o" / "x"),
                                                           "b/y.jpg": str(tmp_path / "o" / "y")}
    assert output_folders(args, ["a/x.jpg", "a/x.jpg"]) == {"a/x.jpg": str(tmp_path / "o")}  # given twice: once
    seq = [f"3DPW/imageFiles/seq{k}/image_00000.jpg" for k in range(3)]
    assert len(set(output_folders(args, seq).values())) == 3


def test_a_foreign_out_folder_is_never_replaced(tmp_path, capsys):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    image = tmp_path / "x.png"
    image.write_bytes(b"")
    assert cli_main(["demo", str(image), "--out", str(tmp_path / "mine"), "--data-dir", str(tmp_path)]) == 2
    assert "not a meshconf result folder" in capsys.readouterr().err
    assert (tmp_path / "mine" / "thesis.tex").read_text() == "precious"


@pytest.mark.slow
def test_colliding_names_and_a_rerun_leave_every_result_and_nothing_stale(tmp_path, demo_data_dir, shared):
    photo = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    import cv2

    for rel in ("a/x.jpg", "a/x.png", "b/x.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), cv2.imread(str(photo)))
    inputs = [str(tmp_path / r) for r in ("a/x.jpg", "a/x.png", "b/x.png")]
    argv = ["demo", *inputs, "--cropped", "--renderer", "software", "--out", str(tmp_path / "o"), "--data-dir",
            str(demo_data_dir), "--no-progress", "--accept-precision", "0.9"]
    assert cli_main(argv) == 0
    reports = {name: json.loads((tmp_path / "o" / name / "report.json").read_text())
               for name in ("a/x_jpg", "a/x_png", "b/x")}
    assert {r["input"] for r in reports.values()} == set(inputs)
    (tmp_path / "o" / "a" / "x_jpg" / "person7").mkdir()  # what an earlier run with more people left
    assert cli_main(argv) == 0
    assert not (tmp_path / "o" / "a" / "x_jpg" / "person7").exists()
    assert (tmp_path / "o" / "a" / "x_jpg" / "person0" / "report.json").exists()
    assert reports["a/x_jpg"]["renderer"] == "software"
    person = json.loads((tmp_path / "o" / "a" / "x_jpg" / "person0" / "report.json").read_text())
    from meshconf.classifier import load

    threshold = load("default").threshold_for(0.9)
    assert person["acceptance"]["threshold"] == threshold
    assert person["accepted"] == (person["p_accurate"] >= threshold)
    assert len(person["joint_error_bound_px"]) == 14  # the default estimator's 90% bounds, in px
    page = (tmp_path / "o" / "a" / "x_jpg" / "index.html").read_text()
    assert "bound px" in page and ("accepted at 90% precision" in page or "rejected at 90% precision" in page)
    assert not [p for p in (tmp_path / "o" / "a").iterdir() if p.name.startswith(".")]  # no staging left


def test_auto_renderer_is_the_software_one_on_a_cpu_context(monkeypatch):
    from meshconf.demo import render

    monkeypatch.setattr(render, "gpu_device_nodes", lambda: True)
    monkeypatch.setattr(render, "gl_renderer", lambda: "llvmpipe (LLVM 15.0.6, 256 bits)")
    assert render.resolve_backend("auto") == "software"
    monkeypatch.setattr(render, "gl_renderer", lambda: "NVIDIA H200/PCIe/SSE2")
    assert render.resolve_backend("auto") == "pyrender"
    monkeypatch.setattr(render, "gl_renderer", lambda: None)
    assert render.resolve_backend("auto") == "software"
    # no GPU device node at all: software, without asking pyrender (whose import alone costs 0.8 s)
    monkeypatch.setattr(render, "gpu_device_nodes", lambda: False)
    monkeypatch.setattr(render, "gl_renderer", lambda: "NVIDIA H200/PCIe/SSE2")
    assert render.resolve_backend("auto") == "software"


def test_every_option_has_help_and_shows_its_default():
    bad = []

    def walk(job, parser):
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(f"{job} {name}", sub)
                continue
            text = action.help or ""
            has_default = action.option_strings and action.default not in (None, False, [], argparse.SUPPRESS)
            if not text or (has_default and "default" not in text):
                bad.append((job, action.option_strings or action.dest))

    for job, (module, _) in JOBS.items():
        parser = argparse.ArgumentParser()
        importlib.import_module(module).add_arguments(parser)
        walk(job, parser)
    assert not bad, bad


def test_original_classifier_files_convert_and_run(tmp_path):
    from meshconf.classifier import load
    from meshconf.classifier.models import OriginalModels

    torch.manual_seed(3)
    original = OriginalModels().eval()
    torch.save(original.mc.state_dict(), tmp_path / "classifier.pt")  # the original's files: plain state dicts
    torch.save({k: v.double() for k, v in original.wj.state_dict().items()}, tmp_path / "classifier_wj.pt")
    out = tmp_path / "mine.safetensors"
    assert cli_main(["convert-classifier", str(tmp_path / "classifier.pt"), str(tmp_path / "classifier_wj.pt"),
                     str(out)]) == 0
    estimator = load(str(out))
    ed = np.random.default_rng(0).uniform(0, 1, (20, 14))
    with torch.no_grad():
        mc, wj, _ = original(torch.from_numpy(ed).float())
    prediction = estimator.predict(ed)
    np.testing.assert_allclose(prediction.p_accurate, torch.sigmoid(mc).numpy(), atol=1e-6)
    np.testing.assert_allclose(prediction.worst_joint_prob, torch.softmax(wj, 1).numpy(), atol=1e-6)
    (tmp_path / "notes.pt").write_text("not weights")
    assert cli_main(["convert-classifier", str(tmp_path / "notes.pt"), str(tmp_path / "classifier_wj.pt"),
                     str(tmp_path / "x.safetensors")]) == 2


def test_img_flag_means_a_crop_as_in_the_original(monkeypatch, tmp_path):
    from meshconf.jobs import demo as job

    seen = {}

    def fake_require(*a, **k):
        raise MeshconfError("stop here")

    monkeypatch.setattr("meshconf.engine.fetching.ensure", fake_require)
    parser = argparse.ArgumentParser()
    job.add_arguments(parser)
    args = parser.parse_args(["--img", "x.png"])
    with pytest.raises(MeshconfError):
        job.run(args)
    seen["cropped"] = args.cropped
    args = parser.parse_args(["--img", "x.png", "--bbox", "1", "2", "3", "4"])
    with pytest.raises(MeshconfError):
        job.run(args)
    assert seen["cropped"] is True and args.cropped is False


def test_sensitivity_takes_the_original_dataset_flags(capsys):
    assert cli_main(["sensitivity", "image", "--dataset=3dpw", "--img_number=0"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--dataset 3dpw needs its annotation file" in err and "meshconf annotate 3dpw" in err


@pytest.mark.parametrize("argv, message", [
    (["extract", "--annotations", "a", "--images", "b", "--out", "o", "--name", "n", "--occ-size", "-5"],
     "--occ-size must be at least 1"),
    (["extract", "--annotations", "a", "--images", "b", "--out", "o", "--name", "n", "--threads", "0"],
     "--threads must be at least 1"),
    (["qualitative", "--annotations", "a", "--images", "b", "--arrays", "c", "--render-res", "8"],
     "--render-res must be between 32 and 4096"),
    (["qualitative", "--annotations", "a", "--images", "b", "--arrays", "c", "--render-res", "20000"],
     "--render-res must be between 32 and 4096"),
])
def test_argument_ranges_before_any_model_loads(argv, message, capsys):
    assert cli_main(argv) == 2
    assert message in capsys.readouterr().err


def test_fetch_only_takes_file_names(tmp_path, capsys):
    parser = argparse.ArgumentParser()
    from meshconf.jobs import fetch

    fetch.add_arguments(parser)
    assert parser.parse_args(["--only", "body_pose_model.pth"]).only == ["body_pose_model.pth"]


def test_jobs_wait_passively_unless_the_user_chose():
    """OpenMP threads sleep while they wait in every job (spinning cost 2-4x beside a busy neighbour,
    benchmarks/threads.py), set before torch starts; a user's OMP_WAIT_POLICY is kept."""
    import subprocess
    import sys

    code = ("import os, sys; from meshconf.cli import main; main(['--version']); "
            "print(os.environ.get('OMP_WAIT_POLICY'), 'torch' in sys.modules)")
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.stdout.split()[-2:] == ["PASSIVE", "False"], done.stdout + done.stderr
    done = subprocess.run([sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"},
                          capture_output=True, text=True)
    assert done.stdout.split()[-2:] == ["ACTIVE", "False"], done.stdout + done.stderr
