"""Sensitivity analysis: grid geometry, fills and units, batched equals one at a time, the job end to end."""

import json

import numpy as np
import pytest
import torch

from meshconf import constants as C
from meshconf.errors import MeshconfError
from meshconf.sensitivity import Grid, occluded_copies, openpose_sensitivity, parse_fill, procrustes, spin_sensitivity
from meshconf.cli import run_job


def test_grid_geometry_matches_the_original():
    grid = Grid(224, 40, 20)
    assert grid.per_axis == 11 and len(grid.windows) == 121
    np.testing.assert_array_equal(grid.windows[0], [0, 0, 40, 40])
    np.testing.assert_array_equal(grid.windows[1], [0, 20, 40, 60])  # row-major
    np.testing.assert_array_equal(grid.windows[11], [20, 0, 60, 40])
    np.testing.assert_array_equal(grid.windows[-1], [200, 200, 224, 224])  # clipped at the border
    assert Grid(224, 50, 30).per_axis == 7  # ceil(174 / 30 + 1)
    assert Grid(224, 224, 10).per_axis == 1
    with pytest.raises(MeshconfError):
        Grid(224, 0, 20)


def test_fills_and_copies():
    assert parse_fill("black") == (0.0, 0.0, 0.0)
    np.testing.assert_allclose(parse_fill(normalised=0), np.array(C.IMG_NORM_MEAN) * 255)
    np.testing.assert_allclose(parse_fill(normalised=1), [182, 173, 161], atol=0.5)  # the original pixel 1 (SPEC)
    assert parse_fill("10,20,30") == (10.0, 20.0, 30.0)
    with pytest.raises(MeshconfError, match="--fill"):
        parse_fill("purple")
    crop = np.random.default_rng(0).integers(0, 255, (224, 224, 3)).astype(np.uint8)
    copies = occluded_copies(crop, Grid(224, 40, 20).windows[[0, 120]], (1.0, 2.0, 3.0))
    assert (copies[0, :40, :40] == [1, 2, 3]).all() and (copies[0, 40:] == crop[40:]).all()
    assert (copies[1, 200:, 200:] == [1, 2, 3]).all() and (copies[1, :200] == crop[:200]).all()


def test_procrustes_removes_similarity_transforms():
    rng = np.random.default_rng(1)
    target = rng.normal(size=(3, 14, 3))
    angle = 0.7
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    pred = 1.7 * target @ rotation.T + np.array([0.3, -0.2, 5.0])
    np.testing.assert_allclose(procrustes(pred, target), target, atol=1e-9)


@pytest.fixture(scope="module")
def crop(shared):
    import cv2

    image = cv2.imread(str(shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"))
    return image[:, :, ::-1].copy()


def test_spin_batched_equals_one_at_a_time_and_units(spin_model, smpl_layer, shared, crop):
    regressor = torch.from_numpy(np.load(shared / "data" / "spin" / "J_regressor_h36m.npy")).float()
    grid = Grid(224, 112, 112)  # 4 windows
    batched = spin_sensitivity(spin_model, smpl_layer, regressor, crop, grid, parse_fill("black"), batch_size=4)
    single = spin_sensitivity(spin_model, smpl_layer, regressor, crop, grid, parse_fill("black"), batch_size=1)
    np.testing.assert_allclose(batched.errors, single.errors, atol=1e-2)  # mm
    assert batched.unit == "mm" and batched.errors.shape == (4, 14) and batched.heatmap.shape == (2, 2, 14)
    # Units: a ground truth 10 mm beside the unoccluded prediction. Root alignment removes the offset entirely; the
    # unaligned error moves by 10 mm at most the window's own effect (triangle inequality), so metres became mm.
    tiny = Grid(224, 1, 224)
    from meshconf.sensitivity.image import spin_j14
    reference = spin_j14(spin_model, smpl_layer, regressor, crop[None].astype(np.float32))[0]
    plain = spin_sensitivity(spin_model, smpl_layer, regressor, crop, tiny, parse_fill("mean"))
    shifted = spin_sensitivity(spin_model, smpl_layer, regressor, crop, tiny, parse_fill("mean"),
                               gt_j14_m=reference + [0.010, 0, 0])
    assert plain.reference == "unoccluded prediction" and shifted.reference == "ground truth"
    np.testing.assert_allclose(shifted.errors, plain.errors, atol=1e-6)
    assert (np.abs(shifted.extra["unaligned"] - 10.0) <= plain.extra["unaligned"] + 1e-6).all()
    assert shifted.extra["unaligned"].mean() > 5  # it is the 10 mm offset, not 0.01


@pytest.mark.slow
def test_openpose_batched_equals_one_at_a_time(body_model, crop):
    grid = Grid(224, 112, 112)
    batched = openpose_sensitivity(body_model, crop, grid, parse_fill("mean"), batch_size=4)
    single = openpose_sensitivity(body_model, crop, grid, parse_fill("mean"), batch_size=1)
    np.testing.assert_allclose(batched.errors, single.errors, atol=1e-3, equal_nan=True)
    assert batched.unit == "px" and batched.extra["detected"].shape == (4, 14)


@pytest.mark.slow
def test_job_writes_grid_and_figures(tmp_path, demo_data_dir, shared):
    import shutil

    shutil.copy(shared / "data" / "spin" / "J_regressor_h36m.npy", demo_data_dir)
    image = shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png"
    assert run_job("sensitivity", ["image", str(image), "--data-dir", str(demo_data_dir), "--out", str(tmp_path),
                     "--occ-size", "112", "--stride", "112", "--fill", "black"]) == 0
    for model in ("spin", "openpose"):
        for suffix in ("_grid.npz", "_joints.png", "_mean.png"):
            assert (tmp_path / f"{model}{suffix}").stat().st_size > 0
        with np.load(tmp_path / f"{model}_grid.npz") as npz:
            info = json.loads(str(npz["info"]))
            assert npz["errors"].shape == (4, 14) and info["windows"] == 4
            assert info["unit"] == ("mm" if model == "spin" else "px") and info["fill_rgb"] == [0.0, 0.0, 0.0]


@pytest.mark.slow
def test_job_on_a_dataset_row_uses_ground_truth(tmp_path, tiny_dataset, demo_data_dir, shared):
    import shutil

    from meshconf.dataset import Annotations, load_annotations, save_annotations

    shutil.copy(shared / "data" / "spin" / "J_regressor_h36m.npy", demo_data_dir)
    path, root = tiny_dataset
    a = load_annotations(path)
    joints3d = np.random.default_rng(0).normal(0, 0.3, (len(a), 14, 3))
    with_3d = tmp_path / "with3d.npz"
    save_annotations(with_3d, Annotations(a.imgname, a.center, a.scale, a.joints2d, a.spine2d, {"joints3d": joints3d}))
    assert run_job("sensitivity", ["image", "--annotations", str(with_3d), "--images", str(root), "--img-number", "2",
                     "--data-dir", str(demo_data_dir), "--out", str(tmp_path / "o"), "--occ-size", "112",
                     "--stride", "112"]) == 0
    for model in ("spin", "openpose"):
        with np.load(tmp_path / "o" / f"{model}_grid.npz") as npz:
            info = json.loads(str(npz["info"]))
            assert info["reference"] == "ground truth" and "row 2 (a.png)" in info["input"]
    with np.load(tmp_path / "o" / "spin_grid.npz") as npz:
        assert npz["errors"].mean() > 50  # random 3D ground truth: large errors in mm, not metres
    assert run_job("sensitivity", ["image", "--annotations", str(with_3d), "--data-dir", str(demo_data_dir)]) == 2
