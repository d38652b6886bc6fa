"""OpenPose body model: network and loader against the goldens, decoding against goldens and a literal oracle."""

import json
import pickle

import numpy as np
import pytest
from conftest import assert_matches_checksums
import torch

import reference_body
from meshconf.errors import MeshconfError
from meshconf.openpose import (BodyPoseModel, decode, decode_full, detect, detect_batch, load_body, people,
                               preprocess)
from meshconf.openpose.limbs import greedy_matching
from meshconf.openpose.peaks import find_peaks, reference_peak_mask
from meshconf.openpose.synthetic import synthetic_maps
from meshconf.recipe import openpose_recipe


# ---------------------------------------------------------------------------------------------------- network
def test_state_dict_matches_file_manifest(shared):
    manifest = json.loads((shared / "golden" / "manifest_openpose_body.json").read_text())["keys"]
    state = BodyPoseModel().state_dict()
    assert list(state) == [spec["module_key"] for spec in manifest.values()]  # same order as the file
    for file_key, spec in manifest.items():
        assert list(state[spec["module_key"]].shape) == spec["shape"], file_key


def test_recipe_weights_match_checksums(shared):
    checks = json.loads((shared / "golden" / "weights_checksums_seed0.json").read_text())["openpose_body_file_keys"]
    assert_matches_checksums(openpose_recipe(0), checks)


@pytest.mark.parametrize("case", ["demo_op_img", "bgr_u8_224x170"])
def test_network_golden_through_load_body(body_model, golden, case):
    g = golden("openpose_net_golden.npz")
    image = g[f"{case}__oriImg"]
    net_input, geo = preprocess(image)
    if image.dtype == np.uint8:
        np.testing.assert_array_equal(net_input, g[f"{case}__net_input"])
    else:
        np.testing.assert_allclose(net_input, g[f"{case}__net_input"], atol=1e-5)
    assert [0, 0, geo.pad_down, geo.pad_right] == list(g[f"{case}__pad"])
    x = torch.from_numpy(net_input)
    with torch.inference_mode():
        paf, heatmap = body_model(x)
        stages = body_model.stages(x)
    np.testing.assert_allclose(paf.numpy(), g[f"{case}__paf"], atol=1e-4)
    np.testing.assert_allclose(heatmap.numpy(), g[f"{case}__heatmap"], atol=1e-4)
    assert heatmap.min() >= 0  # the final-heatmap ReLU quirk
    for t, (l1, l2) in enumerate(stages, start=1):
        np.testing.assert_allclose(l1.numpy(), g[f"{case}__stage{t}_L1"], atol=1e-4)
        np.testing.assert_allclose(l2.numpy(), g[f"{case}__stage{t}_L2"], atol=1e-4)


@pytest.mark.parametrize("case", ["demo_op_img", "bgr_u8_224x170"])
def test_detect_end_to_end_with_random_weights(body_model, golden, case):
    """Hundreds of spurious peaks. The golden calls this fragile (a peak moved 1 px between thread counts), so the
    counts are compared loosely; the exact check is the oracle comparison on the golden maps."""
    g = golden("openpose_net_golden.npz")
    image = g[f"{case}__oriImg"]
    candidate, subset = detect(body_model, image)
    assert abs(len(candidate) - len(g[f"{case}__e2e_candidate"])) <= 0.03 * len(g[f"{case}__e2e_candidate"])
    assert abs(len(subset) - len(g[f"{case}__e2e_subset"])) <= 2
    net_input, geo = preprocess(image)
    with torch.inference_mode():
        paf, heatmap = body_model(torch.from_numpy(net_input))
    full = decode_full(paf, heatmap, geo.image_hw)
    np.testing.assert_array_equal(full.candidate, candidate)
    counts = np.bincount(full.all_peaks[:, 4].astype(int), minlength=18)
    assert np.all(np.abs(counts - g[f"{case}__e2e_n_peaks_per_part"]) <= 2)

    c, s = decode(g[f"{case}__paf"], g[f"{case}__heatmap"], image.shape[:2])
    rc, rs = reference_body.decode(g[f"{case}__paf"], g[f"{case}__heatmap"], image.shape[:2])
    np.testing.assert_array_equal(c, rc)
    np.testing.assert_array_equal(s, rs)


@pytest.mark.slow
def test_load_body_accepts_module_keys_and_rejects_bad_files(tmp_path, openpose_weights, golden):
    state = torch.load(openpose_weights, weights_only=True)
    g = golden("openpose_net_golden.npz")
    x = torch.from_numpy(g["bgr_u8_224x170__net_input"])
    own = tmp_path / "own_save.pth"  # a state_dict saved from BodyPoseModel keeps the module keys
    torch.save(load_body(openpose_weights).state_dict(), own)
    with torch.inference_mode():
        np.testing.assert_allclose(load_body(own)(x)[1].numpy(), g["bgr_u8_224x170__heatmap"], atol=1e-4)
    mixed = tmp_path / "mixed.pth"
    torch.save({("model0." + k if k.startswith("conv1") else k): v for k, v in state.items()}, mixed)
    with pytest.raises(MeshconfError, match="does not fit"):
        load_body(mixed)

    missing = tmp_path / "missing.pth"
    torch.save({k: v for k, v in state.items() if k != "Mconv7_stage6_L2.bias"}, missing)
    with pytest.raises(MeshconfError, match=r"1 missing: Mconv7_stage6_L2\.bias"):
        load_body(missing)
    misshapen = tmp_path / "misshapen.pth"
    torch.save(state | {"conv1_1.weight": torch.zeros(64, 4, 3, 3)}, misshapen)
    with pytest.raises(MeshconfError, match="misshapen: conv1_1.weight"):
        load_body(misshapen)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(openpose_weights.read_bytes()[:1000])
    with pytest.raises(MeshconfError, match="not a readable PyTorch file"):
        load_body(truncated)
    with pytest.raises(MeshconfError, match="not found"):
        load_body(tmp_path / "nowhere.pth")

    class Hostile:
        def __reduce__(self):
            return (print, ("executed",))

    hostile = tmp_path / "hostile.pth"
    with open(hostile, "wb") as fh:
        pickle.dump({"conv1_1.weight": Hostile()}, fh, protocol=2)
    with pytest.raises(MeshconfError, match="not loaded"):
        load_body(hostile)

    model = load_body(openpose_weights)
    with torch.inference_mode():
        np.testing.assert_allclose(model(x)[1].numpy(), g["bgr_u8_224x170__heatmap"], atol=1e-4)


# ---------------------------------------------------------------------------------------------------- decoding
@pytest.mark.parametrize("name", ["openpose_decode_A1.npz", "openpose_decode_A2.npz"])
def test_decode_goldens(golden, name):
    g = golden(name)
    candidate, subset = decode(g["net_paf"], g["net_heatmap"], tuple(g["image_hw"]))
    assert candidate.shape == g["candidate"].shape and subset.shape == g["subset"].shape
    np.testing.assert_array_equal(candidate[:, [0, 1, 3]], g["candidate"][:, [0, 1, 3]])
    np.testing.assert_allclose(candidate[:, 2], g["candidate"][:, 2], atol=1e-5)
    np.testing.assert_array_equal(subset[:, :18], g["subset"][:, :18])
    np.testing.assert_array_equal(subset[:, 19], g["subset"][:, 19])
    np.testing.assert_allclose(subset[:, 18], g["subset"][:, 18], atol=1e-5)

    full = decode_full(torch.from_numpy(g["net_paf"]), torch.from_numpy(g["net_heatmap"]), g["image_hw"])
    np.testing.assert_array_equal(full.all_peaks[:, [0, 1, 3, 4]], g["all_peaks"][:, [0, 1, 3, 4]])
    ca = g["connection_all"]
    np.testing.assert_array_equal(full.connection_all[:, [0, 1, 2, 4, 5]], ca[:, [0, 1, 2, 4, 5]])
    np.testing.assert_allclose(full.connection_all[:, 3], ca[:, 3], atol=1e-5)
    assert list(full.special_k) == list(g["special_k"])
    np.testing.assert_array_equal(full.delete_idx, g["deleteIdx"])
    np.testing.assert_allclose(full.subset_before_delete, g["subset_before_delete"], atol=1e-5)


@pytest.mark.parametrize("seed", range(6))
def test_decode_equals_reference_on_random_scenes(seed):
    """Sizes with and without padding, 1-4 people, clean and noisy maps: identical to the literal reference."""
    rng = np.random.default_rng(seed)
    image_hw = [(224, 224), (224, 320), (170, 131), (480, 640), (97, 260), (300, 200)][seed]
    paf, heat = synthetic_maps(rng, image_hw, n_people=1 + seed % 4, noise=0.05 * (seed % 2))
    candidate, subset = decode(paf, heat, image_hw)
    rc, rs = reference_body.decode(paf, heat, image_hw)
    np.testing.assert_array_equal(candidate, rc)
    np.testing.assert_array_equal(subset, rs)


def test_decode_edge_cases_have_defined_results():
    hw = (224, 224)
    zeros_paf, zeros_heat = np.zeros((1, 38, 23, 23), np.float32), np.zeros((1, 19, 23, 23), np.float32)
    candidate, subset = decode(zeros_paf, zeros_heat, hw)  # no peaks at all: the reference's 1-D candidate
    assert candidate.shape == (0,) and subset.shape == (0, 20)

    nan_heat = np.full_like(zeros_heat, np.nan)
    candidate, subset = decode(np.full_like(zeros_paf, np.nan), nan_heat, hw)
    assert candidate.shape == (0,) and subset.shape == (0, 20)

    one_part = zeros_heat.copy()
    one_part[0, 3, 10, 12] = 1.0  # a lone right wrist: one peak, no limb, nobody
    candidate, subset = decode(zeros_paf, one_part, hw)
    rc, rs = reference_body.decode(zeros_paf, one_part, hw)
    assert candidate.shape == (1, 4) and subset.shape == (0, 20)
    np.testing.assert_array_equal(candidate, rc)

    plateau = zeros_heat.copy()
    plateau[0, 3:5, 5:12, 5:12] = 0.5  # flat tops: tied peaks, decided by scipy's last bits
    candidate, subset = decode(zeros_paf, plateau, hw)
    rc, rs = reference_body.decode(zeros_paf, plateau, hw)
    np.testing.assert_array_equal(candidate, rc)
    np.testing.assert_array_equal(subset, rs)

    with pytest.raises(MeshconfError, match="net_paf is 22x23"):
        decode(zeros_paf[:, :, :22], zeros_heat[:, :, :22], hw)


def test_find_peaks_equals_scipy_on_hard_maps():
    rng = np.random.default_rng(3)
    cases = [rng.random((60, 80, 5), dtype=np.float32),  # noise: hundreds of peaks
             np.full((40, 50, 2), 0.3, np.float32),  # constant: every pixel ties
             rng.random((10, 30, 2), dtype=np.float32),  # narrower than the filter
             np.where(rng.random((50, 50, 3)) > 0.999, 5.0, 0.0).astype(np.float32)]  # isolated spikes
    cases[1][7, 9, 1] = np.inf
    for maps in cases:
        part, row, col = (t.numpy() for t in find_peaks(maps))
        expected = [np.nonzero(reference_peak_mask(maps[:, :, p].astype(np.float64))) for p in range(maps.shape[2])]
        exp_part = np.concatenate([np.full(len(r), p) for p, (r, _) in enumerate(expected)])
        np.testing.assert_array_equal(part, exp_part)
        np.testing.assert_array_equal(row, np.concatenate([r for r, _ in expected]))
        np.testing.assert_array_equal(col, np.concatenate([c for _, c in expected]))


def test_greedy_matching_equals_sequential_walk():
    rng = np.random.default_rng(0)
    for _ in range(50):
        n = int(rng.integers(0, 200))
        rows, cols = rng.integers(0, 15, n), rng.integers(0, 12, n)
        used_r, used_c, expected = set(), set(), []
        for k, (r, c) in enumerate(zip(rows, cols)):
            if r not in used_r and c not in used_c:
                used_r.add(r), used_c.add(c), expected.append(k)
        got = greedy_matching(torch.from_numpy(rows), torch.from_numpy(cols)).tolist()
        assert got == expected


# ---------------------------------------------------------------------------------------------------- detection
@pytest.mark.slow
def test_detect_batch_equals_detect_and_bad_input(body_model, golden, shared):
    import cv2

    g = golden("openpose_net_golden.npz")
    photo = cv2.imread(str(shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"))
    images = [g["bgr_u8_224x170__oriImg"], g["demo_op_img__oriImg"], photo[:, :170], photo[10:200, 20:210]]
    batched = detect_batch(body_model, images, batch_size=2)
    for image, (candidate, subset) in zip(images, batched):
        single_c, single_s = detect(body_model, image)
        np.testing.assert_array_equal(candidate[:, [0, 1, 3]], single_c[:, [0, 1, 3]])
        np.testing.assert_allclose(candidate[:, 2], single_c[:, 2], atol=1e-5)
        np.testing.assert_array_equal(subset[:, [*range(18), 19]], single_s[:, [*range(18), 19]])
        np.testing.assert_allclose(subset[:, 18], single_s[:, 18], atol=1e-4)

    blank = np.zeros((64, 48, 3), np.uint8)
    candidate, subset = detect(body_model, blank)
    assert subset.shape[1] == 20 and (candidate.ndim == 1 or candidate.shape[1] == 4)
    for nothing in (np.zeros((0, 0, 3), np.uint8), np.zeros((5000, 2, 3), np.uint8),
                    np.full((40, 40, 3), np.nan, np.float32)):
        candidate, subset = detect(body_model, nothing)
        assert candidate.shape == (0,) and subset.shape == (0, 20)
    results = detect_batch(body_model, [np.zeros((0, 0, 3), np.uint8), blank])
    assert results[0][0].shape == (0,) and len(results) == 2
    with pytest.raises(MeshconfError, match="HxWx3"):
        detect(body_model, np.zeros((32, 32), np.uint8))
    with pytest.raises(MeshconfError, match="uint8 or float"):
        detect(body_model, np.zeros((32, 32, 3), np.int32))


def test_people_are_typed_and_map_to_j14(golden):
    g = golden("openpose_decode_A2.npz")
    candidate, subset = decode(g["net_paf"], g["net_heatmap"], tuple(g["image_hw"]))
    found = people(candidate, subset)
    assert len(found) == len(subset)
    for person, row in zip(found, subset):
        assert person.part_count == int(row[19]) and person.total_score == row[18]
        ids = row[:18].astype(int)
        np.testing.assert_array_equal(person.present, ids >= 0)
        np.testing.assert_array_equal(person.keypoints[ids >= 0, :3], candidate[ids[ids >= 0], :3])
        assert np.isnan(person.keypoints[ids < 0, :2]).all() and (person.keypoints[ids < 0, 2] == 0).all()
        j14 = person.to_j14()
        assert j14.shape == (14, 4)
        np.testing.assert_array_equal(j14[12], person.keypoints[1])  # J14 neck = COCO neck
        np.testing.assert_array_equal(j14[0], person.keypoints[10])  # J14 right ankle = COCO RAnkle
    assert people(np.zeros((0,)), np.zeros((0, 20))) == []
