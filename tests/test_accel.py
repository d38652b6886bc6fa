"""Compiled networks (goldens through `compile=True`), the fast start-up form of model files, and the decode
overlap: each checked against the plain path on the same inputs."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from meshconf.accel import COMPILE_MIN_ITEMS, call_padded, is_compiled, wants_compile
from meshconf.errors import MeshconfError


def test_compile_policy():
    from meshconf.accel import compiled_parts

    assert compiled_parts("on", 1) == ("spin", "body") and compiled_parts("off", 10**6) == ()
    assert compiled_parts("auto", 10) == ()
    assert compiled_parts("auto", COMPILE_MIN_ITEMS) == ("spin",)  # fp32 OpenPose measured no faster compiled
    assert compiled_parts("auto", COMPILE_MIN_ITEMS, "bfloat16") == ("spin", "body")
    assert wants_compile("on") and not wants_compile("off") and wants_compile(True) and not wants_compile(False)
    assert not wants_compile("auto") and not wants_compile("auto", COMPILE_MIN_ITEMS - 1)
    assert wants_compile("auto", COMPILE_MIN_ITEMS)
    with pytest.raises(MeshconfError, match="--compile"):
        wants_compile("sometimes")


@pytest.mark.slow
def test_compiled_networks_match_goldens(openpose_weights, spin_checkpoint, golden):
    from meshconf.models import load_spin
    from meshconf.models.hmr import HMR
    from meshconf.openpose import load_body, preprocess
    from meshconf.openpose.network import BodyPoseModel

    body = load_body(openpose_weights, compile=True)
    assert isinstance(body, BodyPoseModel) and is_compiled(body)
    g = golden("openpose_net_golden.npz")
    net_input, _ = preprocess(g["demo_op_img__oriImg"])
    with torch.inference_mode():
        paf, heatmap = body(torch.from_numpy(net_input))
    np.testing.assert_allclose(paf.numpy(), g["demo_op_img__paf"], atol=1e-4)
    np.testing.assert_allclose(heatmap.numpy(), g["demo_op_img__heatmap"], atol=1e-4)

    spin = load_spin(spin_checkpoint, compile=True)
    assert isinstance(spin, HMR) and is_compiled(spin)
    h = golden("hmr_golden.npz")
    x = torch.from_numpy(h["input"])  # batch 2
    with torch.inference_mode():
        rotmat, betas, camera = spin(x)
        # a short batch runs padded through the same graph, and gives the rows it would give alone
        short = call_padded(spin, x[:1], 2)
    np.testing.assert_allclose(rotmat.numpy(), h["pred_rotmat"], atol=1e-4)
    np.testing.assert_allclose(betas.numpy(), h["pred_betas"], atol=1e-4)
    np.testing.assert_allclose(camera.numpy(), h["pred_camera"], atol=1e-4)
    assert short[0].shape == (1, 24, 3, 3)
    np.testing.assert_allclose(short[0].numpy(), h["pred_rotmat"][:1], atol=1e-4)


def test_call_padded_is_plain_call_for_eager_models():
    model = torch.nn.Linear(3, 2)
    x = torch.ones(1, 3)
    assert torch.equal(call_padded(model, x, 8), model(x))


@pytest.mark.slow
def test_fast_form_is_used_bound_to_the_source_and_survives_damage(tmp_path, monkeypatch, openpose_weights):
    from meshconf.models.checkpoint import fast_form_dir, read_fast_form
    from meshconf.openpose import load_body
    from meshconf.models.recipe import write_openpose_weights

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MESHCONF_FAST_LOAD", raising=False)
    source = tmp_path / "body_pose_model.pth"
    source.write_bytes(openpose_weights.read_bytes())
    assert read_fast_form(source, "openpose_body") is None
    first = load_body(source)  # reads the .pth with every check, writes the fast form
    fast = read_fast_form(source, "openpose_body")
    assert fast is not None and set(fast) == set(first.state_dict())
    forms = [n for n in os.listdir(fast_form_dir()) if n.endswith(".safetensors")]
    assert len(forms) == 1
    second = load_body(source)
    for key, value in first.state_dict().items():
        assert torch.equal(value, second.state_dict()[key]), key

    # a fast form that does not fit the network (a foreign file under its name) is ignored, not loaded
    from safetensors.torch import save_file

    fast_path = os.path.join(fast_form_dir(), forms[0])
    save_file({"model0.conv1_1.weight": torch.zeros(2, 2)}, fast_path,
              metadata=dict(read_fast_form_metadata(fast_path)))
    foreign = load_body(source)
    assert torch.equal(foreign.state_dict()["model0.conv1_1.weight"], first.state_dict()["model0.conv1_1.weight"])
    assert read_fast_form(source, "openpose_body")["model0.conv1_1.weight"].shape == (64, 3, 3, 3)  # rewritten

    # a changed source is never served from the old fast form
    write_openpose_weights(source, 1)
    assert read_fast_form(source, "openpose_body") is None
    changed = load_body(source)
    assert not torch.equal(changed.state_dict()["model0.conv1_1.weight"], first.state_dict()["model0.conv1_1.weight"])

    # a damaged fast form falls back to the source
    for name in os.listdir(fast_form_dir()):
        if name.endswith(".safetensors"):
            path = os.path.join(fast_form_dir(), name)
            with open(path, "r+b") as fh:
                fh.truncate(1000)
    assert read_fast_form(source, "openpose_body") is None
    again = load_body(source)
    assert torch.equal(again.state_dict()["model0.conv1_1.weight"], changed.state_dict()["model0.conv1_1.weight"])

    monkeypatch.setenv("MESHCONF_FAST_LOAD", "0")
    assert fast_form_dir() is None and read_fast_form(source, "openpose_body") is None


def read_fast_form_metadata(path):
    from safetensors import safe_open

    with safe_open(path, framework="pt") as handle:
        return handle.metadata()


def test_fast_form_of_a_refused_file_is_never_written(tmp_path, monkeypatch):
    from meshconf.models.checkpoint import fast_form_dir
    from meshconf.openpose import load_body

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bad = tmp_path / "body.pth"
    torch.save({"conv1_1.weight": torch.zeros(1)}, bad)
    with pytest.raises(MeshconfError, match="does not fit"):
        load_body(bad)
    assert not os.path.isdir(fast_form_dir()) or not os.listdir(fast_form_dir())


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_decode_overlap_gives_the_same_detections(body_model, golden, device):
    from meshconf.openpose import detect_batch

    if device == "cuda" and not torch.cuda.is_available():
        pytest.skip("no CUDA device here")
    model = body_model.to(device)
    image = golden("openpose_net_golden.npz")["bgr_u8_224x170__oriImg"]
    images = [image, image[:, ::-1].copy(), np.ascontiguousarray(image[::-1]), image]
    plain = detect_batch(model, images, batch_size=1, overlap=False)
    overlapped = detect_batch(model, images, batch_size=1, overlap=True)
    for (c1, s1), (c2, s2) in zip(plain, overlapped):
        np.testing.assert_array_equal(c1, c2)
        np.testing.assert_array_equal(s1, s2)
    model.to("cpu")


def _analysis(candidate, subset, ed, p, worst):
    from types import SimpleNamespace

    from meshconf.sp_op.ed import select_person

    person = select_person(np.zeros((14, 2)), candidate, subset) if len(subset) else -1
    return SimpleNamespace(candidate=candidate, subset=subset, relative=SimpleNamespace(person=person),
                           ed=np.asarray(ed, float), p_accurate=p, worst_joint_prob=np.eye(14)[worst],
                           joint_error_bound=None)


def test_agreement_counts_moves_losses_and_flips():
    from meshconf.engine.agreement import compare

    candidate = np.array([[10.0, 10.0, 0.9, 0], [20.0, 20.0, 0.8, 1]])
    subset = np.full((1, 20), -1.0)
    subset[0, :2] = [0, 1]
    subset[0, 18:] = [1.7, 2]
    a = _analysis(candidate, subset, np.zeros(14), 0.6, 3)
    same = compare([a], [a])
    assert same.within_1px == 1.0 and same.keypoints == 2 and same.decisions_flipped == 0
    assert same.max_shift_px == 0 and same.ed_diff_px_max == [0.0] * 14

    moved = candidate.copy()
    moved[0, :2] += [3.0, 4.0]  # 5 px
    lost = subset.copy()
    lost[0, 1] = -1
    b = _analysis(moved, lost, np.full(14, 0.01), 0.4, 5)
    diff = compare([a], [b])
    assert diff.keypoints == 2 and diff.within_1px == 0.0 and diff.max_shift_px == pytest.approx(5.0)
    assert diff.keypoints_lost == 1 and diff.keypoints_gained == 0
    assert diff.decisions_flipped == 1 and diff.worst_joint_changed == 1
    assert diff.ed_diff_px_max[0] == pytest.approx(0.01 * 112)
    assert len(diff.lines()) == 4


@pytest.mark.slow
def test_check_precision_job_on_recipe_weights(demo_data_dir, shared, tmp_path, capsys):
    import json

    from meshconf.cli import main

    image = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    out = tmp_path / "agreement.json"
    assert main(["check-precision", str(image), "--cropped", "--data-dir", str(demo_data_dir), "--offline",
                 "--compile", "off", "--no-progress", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "keypoints within 1 px" in printed and "decisions at 0.500 flipped" in printed
    report = json.loads(out.read_text())
    assert report["crops"] == 1 and 0 <= report["within_1px"] <= 1 and len(report["ed_diff_px_mean"]) == 14
    # the recipe weights' bfloat16 maps differ from float32 ones (a stress case): the tool must see something
    assert report["max_shift_px"] > 0 or report["keypoints_lost"] + report["keypoints_gained"] > 0


def test_check_precision_refuses_bad_arguments_before_loading(tmp_path, capsys):
    from meshconf.cli import main

    assert main(["check-precision", str(tmp_path / "missing.png"), "--data-dir", str(tmp_path), "--offline"]) == 2
    assert "missing.png" in capsys.readouterr().err
    assert main(["check-precision", "x.png", "--max-people", "0"]) == 2


@pytest.mark.slow
def test_extract_job_with_compiled_networks_equals_eager(tmp_path, tiny_dataset, demo_data_dir):
    """`--compile on` through a whole job: same arrays as eager to float rounding, the choice in the manifest,
    and a resume with the other choice refused (chunks of the two are not mixed)."""
    import json

    from meshconf.cli import main

    path, root = tiny_dataset
    common = ["extract", "--annotations", str(path), "--images", str(root), "--name", "t", "--device", "cpu",
              "--data-dir", str(demo_data_dir), "--offline", "--no-progress", "--batch-size", "4"]
    assert main([*common, "--out", str(tmp_path / "eager"), "--compile", "off"]) == 0
    assert main([*common, "--out", str(tmp_path / "compiled"), "--compile", "on"]) == 0
    for suffix in ("sp_op", "sp_gt", "conf"):
        eager = np.load(tmp_path / "eager" / f"t_{suffix}.npy")
        compiled = np.load(tmp_path / "compiled" / f"t_{suffix}.npy")
        np.testing.assert_allclose(compiled, eager, atol=1e-3, equal_nan=True, err_msg=suffix)
    manifest = json.loads((tmp_path / "compiled" / "t_manifest.json").read_text())
    assert manifest["compiled"] == ["body", "spin"]
    assert main([*common, "--out", str(tmp_path / "compiled"), "--compile", "off"]) == 2


def test_fast_form_never_serves_a_file_rewritten_in_place_with_its_old_size_and_mtime(tmp_path, monkeypatch):
    """The case that served stale weights: same path, inode, size and mtime, other bytes."""
    from meshconf.classifier.models import MeshConfNet  # a small network's state dict stands in for a model file
    from meshconf.models.checkpoint import read_fast_form, write_fast_form

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("MESHCONF_FAST_LOAD", raising=False)
    source = tmp_path / "model.pth"
    torch.manual_seed(0)
    old = MeshConfNet(8).state_dict()
    torch.save(old, source)
    write_fast_form(source, "test", old)
    assert read_fast_form(source, "test") is not None
    st = os.stat(source)
    data = bytearray(source.read_bytes())
    data[len(data) // 2] ^= 0xFF  # one byte in the middle: neither the size nor the first and last MiB change
    with open(source, "r+b") as fh:  # in place: the inode stays
        fh.write(data)
    os.utime(source, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(source)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    assert read_fast_form(source, "test") is None
