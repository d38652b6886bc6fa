"""Extraction over an annotated dataset: batched equals one by one, interrupted-and-resumed equals uninterrupted."""

import json

import numpy as np
import pytest

from meshconf import constants as C
from meshconf.engine import extraction as X
from meshconf.dataset import AnnotatedCrops, load_annotations
from meshconf.errors import MeshconfError
from meshconf.cli import run_job


def test_annotation_roundtrip_and_dataset(tiny_dataset):
    path, root = tiny_dataset
    a = load_annotations(path)
    assert len(a) == 5 and a.dataset == "tiny" and a.joints2d.shape == (5, 14, 2)
    item = AnnotatedCrops(a, root)[1]
    assert item["crop"].shape == (224, 224, 3) and np.isnan(item["joints2d"][5]).all()
    assert np.isfinite(item["joints2d"][0]).all()
    bad = path.parent / "bad.npz"
    np.savez(bad, imgname=np.array(["x"]))
    with pytest.raises(MeshconfError, match="lacks"):
        load_annotations(bad)


def test_occlusion_joint_is_per_row_and_seeded():
    joints = np.zeros((14, 2))
    joints[3] = np.nan
    picks = {X.occlusion_joint(7, i, joints) for i in range(50)}
    assert 3 not in picks and len(picks) > 5
    assert X.occlusion_joint(7, 11, joints) == X.occlusion_joint(7, 11, joints)


@pytest.mark.slow
def test_batched_resumed_and_single_runs_agree(tmp_path, tiny_dataset, spin_model, smpl_layer, body_model):
    path, root = tiny_dataset
    data = AnnotatedCrops(path, root)
    args = (spin_model, smpl_layer, body_model, data)
    assert X.extract(*args, str(tmp_path / "b5"), "t", batch_size=5, occlude=True, seed=3, progress=False)
    assert X.extract(*args, str(tmp_path / "b1"), "t", batch_size=1, occlude=True, seed=3, progress=False,
                     workers=2)  # images read in two background processes
    # interrupted after one batch of 2, then resumed with another batch size
    assert not X.extract(*args, str(tmp_path / "r"), "t", batch_size=2, occlude=True, seed=3, max_batches=1,
                         progress=False)
    assert X.extract(*args, str(tmp_path / "r"), "t", batch_size=3, occlude=True, seed=3, progress=False)
    for suffix in ("sp_op", "sp_gt", "conf"):
        full = np.load(tmp_path / "b5" / f"t_{suffix}.npy")
        assert full.shape == (5, 14) and full.dtype == np.float64
        np.testing.assert_allclose(np.load(tmp_path / "b1" / f"t_{suffix}.npy"), full, atol=1e-4, equal_nan=True)
        np.testing.assert_allclose(np.load(tmp_path / "r" / f"t_{suffix}.npy"), full, atol=1e-4, equal_nan=True)
    se = np.load(tmp_path / "b5" / "t_sp_gt.npy")
    assert np.isnan(se[1, 5]) and np.isfinite(np.delete(se, 5, axis=1)).all()


def test_se_row_by_hand():
    kp = np.zeros((49, 2), np.float32)
    kp[C.SPIN_SPINE] = (100, 100)
    for slot, row in enumerate(C.SPIN_TO_J14_SE):
        kp[row] = (100 + slot, 100)
    gt = np.array([(110 + slot, 100) for slot in range(14)], np.float32)
    # anchor = SPIN's spine: no shift, every joint 10 px off
    np.testing.assert_allclose(X.se_row(kp, gt, (100, 100)), 10 / 112, atol=1e-6)
    # anchor 10 px right: SPIN moves onto the ground truth
    np.testing.assert_allclose(X.se_row(kp, gt, (110, 100)), 0, atol=1e-6)


@pytest.mark.slow
def test_extract_job_writes_manifest(tmp_path, tiny_dataset, demo_data_dir):
    path, root = tiny_dataset
    assert run_job("extract", ["--annotations", str(path), "--images", str(root), "--out", str(tmp_path), "--name", "tiny_test",
                   "--data-dir", str(demo_data_dir), "--batch-size", "4"]) == 0
    manifest = json.loads((tmp_path / "tiny_test_manifest.json").read_text())
    assert manifest["rows"] == 5 and manifest["dataset"] == "tiny" and not manifest["occluded"]
    assert np.load(tmp_path / "tiny_test_sp_op.npy").shape == (5, 14)


def _write_3dpw(root, shared):
    """A 3DPW-format fixture: one sequence pickle with the real keys, and its image files."""
    import pickle

    import cv2

    frames = 3
    intrinsics = np.array([[500.0, 0, 240], [0, 500.0, 135], [0, 0, 1]])
    extrinsics = np.tile(np.eye(4), (frames, 1, 1))
    extrinsics[:, 2, 3] = 4.0  # the person stands 4 m in front of the camera
    c, s = np.cos(0.3), np.sin(0.3)
    extrinsics[:, :3, :3] = [[c, 0, s], [0, 1, 0], [-s, 0, c]]  # and the camera is turned
    rng = np.random.default_rng(0)
    joints = rng.uniform(-0.4, 0.4, (frames, 72))
    poses2d = np.zeros((frames, 3, 18))
    poses2d[:, 0] = rng.uniform(180, 300, (frames, 18))
    poses2d[:, 1] = rng.uniform(60, 220, (frames, 18))
    poses2d[:, 2] = 0.8
    seq = {"sequence": "downtown_test_00", "poses": [rng.normal(size=(frames, 72))], "betas": [np.zeros(10)],
           "trans": [np.zeros((frames, 3))], "jointPositions": [joints], "poses2d": [poses2d],
           "cam_poses": extrinsics, "cam_intrinsics": intrinsics, "campose_valid": [np.array([1, 0, 1])],
           "genders": ["f"], "img_frame_ids": np.arange(frames)}
    (root / "sequenceFiles" / "test").mkdir(parents=True)
    with open(root / "sequenceFiles" / "test" / "downtown_test_00.pkl", "wb") as fh:
        pickle.dump(seq, fh, protocol=2)
    (root / "imageFiles" / "downtown_test_00").mkdir(parents=True)
    photo = cv2.imread(str(shared / "data" / "meshconfidence" / "examples" / "im1010.jpg"))
    for frame in range(frames):
        cv2.imwrite(str(root / "imageFiles" / "downtown_test_00" / f"image_{frame:05d}.jpg"),
                    cv2.resize(photo, (480, 270)))
    return seq


@pytest.mark.slow
def test_3dpw_reader_to_extract(tmp_path, shared, demo_data_dir):
    from meshconf.dataset.pw3d import project

    seq = _write_3dpw(tmp_path / "3DPW", shared)
    assert run_job("annotate", ["3dpw", "--root", str(tmp_path / "3DPW"), "--out", str(tmp_path / "ann.npz")]) == 0
    a = load_annotations(tmp_path / "ann.npz")
    assert len(a) == 2 and list(a.imgname) == ["downtown_test_00/image_00000.jpg", "downtown_test_00/image_00002.jpg"]
    px = project(seq["jointPositions"][0][2].reshape(24, 3), seq["cam_poses"][2], seq["cam_intrinsics"])
    np.testing.assert_allclose(a.joints2d[1], px[list(C.SMPL24_TO_J14)])
    np.testing.assert_allclose(a.spine2d[1], px[C.SMPL24_SPINE])
    assert str(a.extra["gender"][0]) == "f" and a.dataset == "3dpw_test"
    from scipy.spatial.transform import Rotation
    root = Rotation.from_matrix(seq["cam_poses"][2][:3, :3] @ Rotation.from_rotvec(seq["poses"][0][2][:3]).as_matrix())
    np.testing.assert_allclose(a.extra["pose"][1][:3], root.as_rotvec(), atol=1e-6)  # root in the camera frame
    np.testing.assert_allclose(a.extra["pose"][1][3:], seq["poses"][0][2][3:72])
    np.testing.assert_allclose(a.extra["camera_extrinsics"][1], seq["cam_poses"][2][:3])
    np.testing.assert_allclose(a.extra["camera_intrinsics"][1], seq["cam_intrinsics"])
    assert run_job("extract", ["--annotations", str(tmp_path / "ann.npz"), "--images", str(tmp_path / "3DPW" / "imageFiles"),
                   "--out", str(tmp_path / "out"), "--name", "3dpw_test", "--occlude",
                   "--data-dir", str(demo_data_dir)]) == 0
    assert np.load(tmp_path / "out" / "3dpw_test_sp_op.npy").shape == (2, 14)


@pytest.mark.slow
def test_torchrun_two_processes_equal_one(tmp_path, tiny_dataset, demo_data_dir):
    """`torchrun` with 2 CPU processes (gloo): each takes every other row, rank 0 writes the merged arrays."""
    from conftest import run_torchrun

    path, root = tiny_dataset
    common = ["--annotations", str(path), "--images", str(root), "--name", "t", "--occlude", "--seed", "5",
              "--data-dir", str(demo_data_dir), "--batch-size", "2"]
    assert run_job("extract", common + ["--out", str(tmp_path / "one")]) == 0
    run_torchrun("extract", common + ["--out", str(tmp_path / "two"), "--threads", "1"])
    for suffix in ("sp_op", "sp_gt", "conf"):
        np.testing.assert_allclose(np.load(tmp_path / "two" / f"t_{suffix}.npy"),
                                   np.load(tmp_path / "one" / f"t_{suffix}.npy"), atol=1e-4, equal_nan=True)
    manifest = json.loads((tmp_path / "two" / "t_manifest.json").read_text())
    assert manifest["processes"] == 2 and len(manifest["row_keys"]) == 5
    assert manifest["row_keys"][1][0] == "b.jpg"


@pytest.mark.slow
def test_extract_signals_job(tmp_path, tiny_dataset, demo_data_dir):
    """`--signals` writes one row of SIGNAL_COLUMNS per annotation row, hashed in the manifest, without changing
    ED; a resume that asks for signals does not mix with chunks made without them."""
    from meshconf.cli import main
    from meshconf.sp_op.signals import NUM_SIGNALS, SIGNAL_COLUMNS

    path, root = tiny_dataset
    common = ["extract", "--annotations", str(path), "--images", str(root), "--name", "t",
              "--data-dir", str(demo_data_dir), "--no-progress", "--batch-size", "2"]
    assert main(common + ["--out", str(tmp_path / "plain")]) == 0
    assert main(common + ["--out", str(tmp_path / "sig"), "--signals"]) == 0
    signals = np.load(tmp_path / "sig" / "t_signals.npy")
    assert signals.shape == (5, NUM_SIGNALS) and np.isfinite(signals).all()
    for suffix in ("sp_op", "conf"):
        np.testing.assert_array_equal(np.load(tmp_path / "sig" / f"t_{suffix}.npy"),
                                      np.load(tmp_path / "plain" / f"t_{suffix}.npy"))
    manifest = json.loads((tmp_path / "sig" / "t_manifest.json").read_text())
    assert manifest["signal_columns"] == list(SIGNAL_COLUMNS) and "t_signals.npy" in manifest["files"]
    col = {name: i for i, name in enumerate(SIGNAL_COLUMNS)}
    assert (signals[:, col["box_px"]] > 0).all() and (signals[:, col["spin_step_pose_1"]] > 0).all()
    conf = np.load(tmp_path / "sig" / "t_conf.npy")
    dx = signals[:, col["offset_x_r_ankle"]:col["offset_x_r_ankle"] + 14]
    dy = signals[:, col["offset_y_r_ankle"]:col["offset_y_r_ankle"] + 14]
    ed = np.load(tmp_path / "sig" / "t_sp_op.npy")
    found = conf > 0
    np.testing.assert_allclose(np.hypot(dx, dy)[found], ed[found], atol=1e-5)  # ED is the offsets' length
    assert (dx[~found] == 0).all()
    assert not (tmp_path / "plain" / "t_signals.npy").exists()


def test_signal_functions_by_hand():
    from meshconf.sp_op import signals as S

    j14 = np.tile([[100.0, 50.0]], (14, 1))
    j14[0] = (10, 20)  # R ankle
    mirrored = j14[list(S.J14_FLIP)].copy()
    mirrored[:, 0] = 223 - mirrored[:, 0]
    np.testing.assert_allclose(S.flip_disagreement(j14, mirrored), 0, atol=1e-12)
    mirrored[5, 1] += 11.2  # the mirror image's L ankle is the R ankle: 0.1 off
    assert S.flip_disagreement(j14, mirrored)[0] == pytest.approx(0.1)
    row = np.full(20, -1.0)
    row[C.COCO_TO_J14[0]] = 1  # R ankle -> candidate 1
    peaks = np.array([[0, 0, 0.4, 0, C.COCO_TO_J14[0]], [0, 0, 0.8, 1, C.COCO_TO_J14[0]], [0, 0, 0.9, 2, 0]])
    ratio = S.second_peak_ratio(peaks, row)
    assert ratio[0] == pytest.approx(0.5) and ratio[1] == S.MISSING
    a, b = C.OP_LIMBS[0]
    row[a], row[b] = 0, 2
    conn = np.array([[0, 0, 2, 0.7, 0, 0]])
    assert S.paf_scores(conn, row)[0] == pytest.approx(0.7) and S.paf_scores(conn, row)[1:].sum() == 0
    border = np.full((14, 2), 100.0)
    border[3] = (-5, 100)
    border[4] = (100, 222.5)
    np.testing.assert_array_equal(np.flatnonzero(S.at_border(border)), [3, 4])
