"""`meshconf sensitivity dataset`: occluders on each ground-truth joint, all 15 variants of an image in one batch."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch

from meshconf import constants as C
from meshconf.dataset import AnnotatedCrops, Annotations, load_annotations
from meshconf.dataset.crops import collate
from meshconf.sensitivity import dataset as ds
from meshconf.sensitivity.image import MM, op_points, pelvis, spin_j14
from meshconf.dataset.occlusion import joint_window
from meshconf.cli import run_job


@pytest.fixture(scope="module")
def regressor(shared):
    return torch.from_numpy(np.load(shared / "data" / "spin" / "J_regressor_h36m.npy")).float()


def test_joint_variants_geometry():
    crops = np.full((2, 224, 224, 3), 7, np.uint8)
    joints = np.full((2, 14, 2), 100.0)
    joints[0, 0] = (5, 10)  # near the corner: the window is clipped at 0
    joints[0, 1] = np.nan  # unknown joint: no occluder
    joints[0, 2] = (400, 100)  # outside the crop: the window is empty, so not occluded
    joints[1, 13] = (223, 223)  # bottom-right: clipped at 224
    variants, occluded = ds.joint_variants(crops, joints, 40, (0, 0, 0))
    assert variants.shape == (2, 15, 224, 224, 3) and variants.dtype == np.float32
    assert (variants[:, 0] == 7).all()  # variant 0 is the unoccluded crop
    assert not occluded[0, 1] and not occluded[0, 2] and occluded[0, 0] and occluded[1].all()
    assert (variants[0, 2] == 7).all() and (variants[0, 3] == 7).all()
    black = variants[0, 1, :, :, 0] == 0
    # the original's rule: top-left max(joint - 20, 0) = (0, 0), so the square keeps its size instead of being cut
    assert black[:40, :40].all() and black.sum() == 40 * 40
    black = variants[1, 14, :, :, 0] == 0
    assert black[203:, 203:].all() and black.sum() == 21 * 21
    for k in range(14):  # every other variant has exactly the original's window
        if occluded[1, k] and k != 13:
            y0, x0, y1, x1 = joint_window(joints[1, k], 40)
            assert (variants[1, 1 + k, y0:y1, x0:x1] == 0).all() and (variants[1, 1 + k] == 0).sum() == 3 * 1600


def test_summary_by_hand():
    errors = np.ones((3, 15, 14))
    errors[:, 1 + 4] = 3.0  # occluding joint 4 triples every error
    errors[0, 1 + 4, 7] = np.nan  # one joint not found
    occluded = np.ones((3, 14), bool)
    occluded[2, 4] = False  # image 2 never had joint 4 occluded
    rows = ds.summarise(errors, occluded)
    assert [r.joint for r in rows] == list(C.J14_NAMES)
    r = rows[4]
    assert r.images == 2 and r.mean_error == 3.0 and r.unoccluded == 1.0 and r.increase == 2.0
    assert r.detected == pytest.approx(27 / 28) and r.detected_unoccluded == 1.0
    assert rows[0].increase == 0 and rows[0].images == 3
    matrix = ds.occlusion_matrix(errors, occluded)
    assert matrix.shape == (14, 14) and (matrix[4] == 3).all() and (np.delete(matrix, 4, 0) == 1).all()


@pytest.mark.slow
def test_spin_batched_equals_one_at_a_time(tiny_dataset, spin_model, smpl_layer, regressor):
    """The original's structure: one occluded crop through the network at a time, the error per joint."""
    data = AnnotatedCrops(*tiny_dataset)
    batch = collate([data[0], data[1]])
    variants, occluded = ds.joint_variants(batch["crop"], batch["joints2d"], 40, (0, 0, 0))
    batched = ds.spin_variant_errors(spin_model, smpl_layer, regressor, variants, None, batch_size=7)["mpjpe"]
    assert batched.shape == (2, 15, 14)
    np.testing.assert_allclose(batched[:, 0], 0, atol=1e-9)  # reference = the unoccluded prediction
    assert not occluded[1, 5] and (batched[:, 1:].max((1, 2)) > 0).all()
    for b in range(2):
        reference = spin_j14(spin_model, smpl_layer, regressor, batch["crop"][b:b + 1].astype(np.float32))[0]
        for v in range(15):
            crop = batch["crop"][b].astype(np.float32).copy()
            if v:
                if not occluded[b, v - 1]:
                    continue
                y0, x0, y1, x1 = joint_window(batch["joints2d"][b, v - 1], 40)
                crop[y0:y1, x0:x1] = 0
            pred = spin_j14(spin_model, smpl_layer, regressor, crop[None])[0]
            single = np.linalg.norm((pred - pelvis(pred)[0]) - (reference - pelvis(reference)[0]), axis=-1) * MM
            np.testing.assert_allclose(batched[b, v], single, atol=1e-2)  # mm


@pytest.mark.slow
def test_spin_ground_truth_in_mm(tiny_dataset, spin_model, smpl_layer, regressor):
    data = AnnotatedCrops(*tiny_dataset)
    batch = collate([data[2]])
    variants, _ = ds.joint_variants(batch["crop"], batch["joints2d"], 40, (0, 0, 0))
    own = spin_j14(spin_model, smpl_layer, regressor, batch["crop"].astype(np.float32))
    plain = ds.spin_variant_errors(spin_model, smpl_layer, regressor, variants, None)
    shifted = ds.spin_variant_errors(spin_model, smpl_layer, regressor, variants, own + [0.01, 0.0, 0.0])
    np.testing.assert_allclose(shifted["mpjpe"], plain["mpjpe"], atol=1e-2)  # a translation is root-aligned away
    bent = own.copy()
    bent[0, 0] += [0.0, 0.05, 0.0]  # one joint 50 mm off
    moved = ds.spin_variant_errors(spin_model, smpl_layer, regressor, variants, bent)["mpjpe"]
    assert moved[0, 0, 0] == pytest.approx(50.0, abs=0.5) and moved[0, 0, 1:].max() < 0.5


@pytest.mark.slow
def test_openpose_rows_match_single_detections(tiny_dataset, body_model):
    from meshconf.openpose import detect

    data = AnnotatedCrops(*tiny_dataset)
    batch = collate([data[0], data[3]])
    variants, _ = ds.joint_variants(batch["crop"], batch["joints2d"], 40, (124, 116, 104))
    errors = ds.openpose_variant_errors(body_model, variants, batch["joints2d"], batch_size=8)["px"]
    assert errors.shape == (2, 15, 14)
    for b, v in ((0, 0), (1, 0), (1, 4), (1, 14)):
        candidate, subset = detect(body_model, np.ascontiguousarray(variants[b, v][:, :, ::-1]))
        gt = batch["joints2d"][b]
        points, _ = op_points(candidate, subset, np.where(np.isnan(gt), 112, gt))
        np.testing.assert_allclose(errors[b, v], np.linalg.norm(points - gt, axis=1), atol=1e-3, equal_nan=True)


def test_ground_truth_sources(tiny_dataset, smpl_layer, regressor, demo_data_dir):
    from meshconf.engine.bundle import Models
    from meshconf.dataset.groundtruth import GroundTruth3D, smpl_joints3d

    a = load_annotations(tiny_dataset[0])
    paths = {"smpl_neutral": str(demo_data_dir / "smpl"), "J_regressor_extra": str(demo_data_dir /
                                                                                   "J_regressor_extra.npy")}
    models = Models(smpl=smpl_layer, paths=paths, regressor_h36m=regressor, data_dir=str(demo_data_dir))
    assert GroundTruth3D(a, models)(np.arange(2)) is None
    rng = np.random.default_rng(1)
    pose, betas = rng.normal(0, 0.2, (5, 72)), rng.normal(0, 1, (5, 10))
    with_params = Annotations(a.imgname, a.center, a.scale, a.joints2d, a.spine2d,
                              {"pose": pose, "betas": betas, "gender": np.array(["m", "f", "n", "m", "f"])})
    truth = GroundTruth3D(with_params, models)
    got = truth(np.array([3, 1]))
    assert truth.description == "ground truth (SMPL parameters)"
    np.testing.assert_allclose(got, smpl_joints3d(smpl_layer, regressor, pose[[3, 1]], betas[[3, 1]]), atol=1e-6)
    joints3d = rng.normal(size=(5, 14, 3))
    annotated = Annotations(a.imgname, a.center, a.scale, a.joints2d, a.spine2d, {"joints3d": joints3d, **with_params.extra})
    np.testing.assert_array_equal(GroundTruth3D(annotated, models)(np.array([4])), joints3d[[4]])


@pytest.mark.slow
def test_job_spin_resumes_and_refuses_other_settings(tmp_path, tiny_dataset, demo_data_dir, shared, capsys):
    shutil.copy(shared / "data" / "spin" / "J_regressor_h36m.npy", demo_data_dir)
    path, root = tiny_dataset
    out = tmp_path / "out"
    argv = ["dataset", "--annotations", str(path), "--images", str(root), "--data-dir", str(demo_data_dir),
            "--out", str(out), "--model", "spin", "--every", "2", "--batch-size", "2"]
    assert run_job("sensitivity", argv) == 0
    with np.load(out / "spin_errors.npz") as npz:
        first = {k: npz[k] for k in npz.files}
    info = json.loads(str(first["info"]))
    assert list(first["index"]) == [0, 2, 4] and first["errors"].shape == (3, 15, 14)
    assert info["unit"] == "mm" and info["reference"] == "unoccluded prediction"
    rows = list(csv.DictReader(open(out / "spin_summary.csv")))
    assert [r["joint"] for r in rows] == list(C.J14_NAMES) and float(rows[0]["images"]) == 3
    for name in ("spin_summary.png", "spin_template.png", "examples.png", "spin_summary.json"):
        assert (out / name).stat().st_size > 0
    # an interrupt that lost the last chunk: the same command redoes only that
    chunks = sorted((out / ".spin_chunks").glob("chunk_*.npz"))
    assert len(chunks) == 2
    chunks[-1].unlink()
    assert run_job("sensitivity", argv) == 0
    with np.load(out / "spin_errors.npz") as npz:
        np.testing.assert_allclose(npz["errors"], first["errors"], atol=1e-3)
    capsys.readouterr()
    assert run_job("sensitivity", argv[:-2] + ["--batch-size", "2", "--occ-size", "30"]) == 2
    assert "other settings (occ_size)" in capsys.readouterr().err
    # more rows into the same folder: only the new ones are computed, the old ones are kept
    every = argv.index("--every") + 1
    assert run_job("sensitivity", argv[:every] + ["1"] + argv[every + 1:]) == 0
    with np.load(out / "spin_errors.npz") as npz:
        assert list(npz["index"]) == [0, 1, 2, 3, 4]
        np.testing.assert_allclose(npz["errors"][[0, 2, 4]], first["errors"], atol=1e-3)


@pytest.mark.slow
def test_job_openpose_one_image(tmp_path, tiny_dataset, demo_data_dir):
    path, root = tiny_dataset
    assert run_job("sensitivity", ["dataset", "--annotations", str(path), "--images", str(root), "--data-dir", str(demo_data_dir),
                     "--out", str(tmp_path), "--model", "openpose", "--max-images", "1", "--fill", "black"]) == 0
    summary = json.loads((tmp_path / "openpose_summary.json").read_text())
    assert summary["unit"] == "px" and summary["images"] == 1 and len(summary["per_occluded_joint"]) == 14
    assert summary["fill_rgb"] == [0.0, 0.0, 0.0] and np.shape(summary["matrix"]) == (14, 14)
    assert (tmp_path / "openpose_template.png").stat().st_size > 0


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path, tiny_dataset, demo_data_dir, shared):
    from conftest import run_torchrun

    shutil.copy(shared / "data" / "spin" / "J_regressor_h36m.npy", demo_data_dir)
    path, root = tiny_dataset
    argv = ["dataset", "--annotations", str(path), "--images", str(root), "--data-dir", str(demo_data_dir),
            "--model", "spin", "--every", "2", "--batch-size", "1"]
    assert run_job("sensitivity", argv + ["--out", str(tmp_path / "one")]) == 0
    run_torchrun("sensitivity", argv + ["--out", str(tmp_path / "two"), "--threads", "1"])
    with np.load(tmp_path / "one" / "spin_errors.npz") as one, np.load(tmp_path / "two" / "spin_errors.npz") as two:
        np.testing.assert_array_equal(two["index"], [0, 2, 4])
        np.testing.assert_allclose(two["errors"], one["errors"], atol=1e-2)
    assert (json.loads((tmp_path / "two" / "spin_summary.json").read_text())["images"]) == 3
