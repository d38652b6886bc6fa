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


def test_fast_form_is_used_bound_to_the_source_and_survives_damage(tmp_path, monkeypatch, openpose_weights):
    from meshconf.models.checkpoint import fast_form_dir, read_fast_form
    from meshconf.openpose import load_body
    from meshconf.recipe import write_openpose_weights

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


def test_fast_form_of_a_refused_file_is_never_written(tmp_path, monkeypatch):
    from meshconf.models.checkpoint import fast_form_dir
    from meshconf.openpose import load_body

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    bad = tmp_path / "body.pth"
    torch.save({"conv1_1.weight": torch.zeros(1)}, bad)
    with pytest.raises(MeshconfError, match="does not fit"):
        load_body(bad)
    assert not os.path.isdir(fast_form_dir()) or not os.listdir(fast_form_dir())


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
