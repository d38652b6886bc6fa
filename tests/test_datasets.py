"""3DOH50K and Human3.6M readers on fixtures in the datasets' own on-disk formats, through annotation file ->
Dataset -> extract."""

import json

import cv2
import numpy as np
import pytest

from meshconf import constants as C
from meshconf.dataset import AnnotatedCrops, load_annotations
from meshconf.errors import MeshconfError
from meshconf.cli import run_job


def _write_3doh(root, shared):
    """`annots.json` with the published layout (nested lists as the authors wrote them) and its images."""
    rng = np.random.default_rng(0)
    photo = cv2.imread(str(shared / "data" / "meshconfidence" / "examples" / "im1010.jpg"))
    (root / "images").mkdir(parents=True)
    annots = {}
    for key in ("00012", "00003"):
        joints = rng.uniform(60, 200, (24, 2))
        annots[key] = {"bbox": [[40.0, 30.0], [210.0, 250.0]], "pose": [rng.normal(0, 0.2, 72).tolist()],
                       "betas": [rng.normal(0, 1, 10).tolist()], "trans": [[0.0, 0.2, 5.0]],
                       "smpl_joints_2d": joints.tolist(), "smpl_joints_3d": rng.normal(size=(24, 3)).tolist()}
        cv2.imwrite(str(root / "images" / f"{key}.jpg"), cv2.resize(photo, (256, 280)))
    (root / "annots.json").write_text(json.dumps(annots))
    return annots


@pytest.mark.slow
def test_3doh_reader_to_extract(tmp_path, shared, demo_data_dir):
    annots = _write_3doh(tmp_path / "3DOH50K", shared)
    assert run_job("annotate", ["3doh", "--root", str(tmp_path / "3DOH50K"), "--out", str(tmp_path / "a.npz")]) == 0
    a = load_annotations(tmp_path / "a.npz")
    assert list(a.imgname) == ["00003.jpg", "00012.jpg"] and a.dataset == "3doh_test"  # sorted keys
    np.testing.assert_allclose(a.center[0], (125, 140))
    np.testing.assert_allclose(a.scale[0], 1.2 * 220 / 200)
    joints = np.asarray(annots["00003"]["smpl_joints_2d"])
    np.testing.assert_allclose(a.joints2d[0], joints[list(C.SMPL24_TO_J14)])
    np.testing.assert_allclose(a.spine2d[0], joints[6])
    np.testing.assert_allclose(a.extra["pose"][1], annots["00012"]["pose"][0])
    item = AnnotatedCrops(a, tmp_path / "3DOH50K" / "images")[1]
    assert item["crop"].shape == (224, 224, 3) and np.isfinite(item["joints2d"]).all()
    assert run_job("extract", ["--annotations", str(tmp_path / "a.npz"), "--images", str(tmp_path / "3DOH50K" / "images"),
                   "--out", str(tmp_path / "out"), "--name", "3doh_test", "--data-dir", str(demo_data_dir)]) == 0
    assert np.load(tmp_path / "out" / "3doh_test_sp_op.npy").shape == (2, 14)


def test_3doh_bad_files(tmp_path):
    with pytest.raises(MeshconfError, match="annots.json; expected"):
        from meshconf.dataset.oh3d import read_3doh
        read_3doh(tmp_path)
    (tmp_path / "annots.json").write_text(json.dumps({"1": {"bbox": [[0, 0], [1, 1]]}}))
    with pytest.raises(MeshconfError, match="entry '1' lacks"):
        read_3doh(tmp_path)


FRAMES = 12


def _write_cdf(path, pose):
    """One record holding (frames, values), as the published pose files do."""
    from cdflib.cdfwrite import CDF

    path.parent.mkdir(parents=True, exist_ok=True)
    cdf = CDF(str(path), cdf_spec={"Compressed": False})
    cdf.write_var({"Variable": "Pose", "Data_Type": CDF.CDF_FLOAT, "Num_Elements": 1, "Rec_Vary": True,
                   "Dim_Sizes": list(pose.shape)}, var_attrs={}, var_data=pose[None].astype(np.float32))
    cdf.close()


def _write_mask_file(path, boxes, size):
    """MATLAB v7.3 (HDF5): `Masks` (frames, 1) object references to column-major masks."""
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as fh:
        refs = fh.create_dataset("Masks", (len(boxes), 1), dtype=h5py.ref_dtype)
        for k, (x0, y0, x1, y1) in enumerate(boxes):
            mask = np.zeros(size, np.uint8)  # (H, W)
            mask[y0:y1, x0:x1] = 1
            refs[k, 0] = fh.create_dataset(f"#refs#/m{k}", data=mask.T).ref


def _write_h36m(root, with_masks=True):
    rng = np.random.default_rng(1)
    stems = {"S9": ["Directions 1.54138969", "Directions 1.60457274", "Walking_ALL.54138969"],
             "S11": ["Sitting.60457274"]}
    truth = {}
    for subject, names in stems.items():
        for stem in names:
            d2 = rng.uniform(80, 200, (FRAMES, 32, 2))
            d3 = rng.normal(0, 400, (FRAMES, 32, 3)) + [0, 0, 4000]
            _write_cdf(root / subject / "MyPoseFeatures" / "D2_Positions" / f"{stem}.cdf", d2.reshape(FRAMES, 64))
            _write_cdf(root / subject / "MyPoseFeatures" / "D3_Positions_mono" / f"{stem}.cdf",
                       d3.reshape(FRAMES, 96))
            if with_masks:
                boxes = [(50 + k, 40, 150 + k, 220) for k in range(FRAMES)]
                _write_mask_file(root / subject / "MySegmentsMat" / "ground_truth_bb" / f"{stem}.mat", boxes,
                                 (240, 256))
            video = root / subject / "Videos" / f"{stem}.mp4"
            video.parent.mkdir(parents=True, exist_ok=True)
            writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 25, (256, 240))
            for k in range(FRAMES):  # frame k is uniformly 15 k grey: the extracted names can be checked
                writer.write(np.full((240, 256, 3), 15 * k, np.uint8))
            writer.release()
            truth[(subject, stem)] = (d2.astype(np.float32), d3.astype(np.float32))
    return truth


@pytest.mark.slow
def test_h36m_frames_reader_and_extract(tmp_path, demo_data_dir):
    from meshconf.dataset.h36m import extract_frames

    root = tmp_path / "H36M"
    truth = _write_h36m(root)
    assert run_job("annotate", ["h36m", "--root", str(root), "--extract-frames", "--out", str(tmp_path / "h.npz")]) == 0
    images = sorted(p.name for p in (root / "images").iterdir())
    assert len(images) == 3 * 3 and "S9_Directions_1.54138969_000006.jpg" in images  # frames 0, 5, 10; no _ALL
    assert not any("ALL" in name for name in images)
    grey = cv2.imread(str(root / "images" / "S9_Directions_1.54138969_000006.jpg")).mean()
    assert abs(grey - 15 * 5) < 4  # name 000006 is video frame 5, paired with pose row 5
    assert extract_frames(root, progress=False) == 0  # a rerun keeps what is there
    a = load_annotations(tmp_path / "h.npz")
    assert len(a) == 9 and a.dataset == "h36m_p1" and list(a.extra["box_source"]) == ["mask"]
    row = list(a.imgname).index("S9_Directions_1.54138969_000006.jpg")
    d2, d3 = truth[("S9", "Directions 1.54138969")]
    # J14 (jaw as head) from the pose file's joints with SPIN's maps; spine = Spine1 (12)
    np.testing.assert_allclose(a.joints2d[row], d2[5][[3, 2, 1, 6, 7, 8, 27, 26, 25, 17, 18, 19, 24, 14]], rtol=1e-6)
    np.testing.assert_allclose(a.spine2d[row], d2[5][12], rtol=1e-6)
    expected3d = (d3[5][[3, 2, 1, 6, 7, 8, 27, 26, 25, 17, 18, 19, 24, 15]] - d3[5][11]) / 1000
    np.testing.assert_allclose(a.extra["joints3d"][row], expected3d, atol=1e-6)
    np.testing.assert_allclose(a.center[row], ((55 + 155) / 2, (40 + 220) / 2))
    np.testing.assert_allclose(a.scale[row], 0.9 * 180 / 200)
    assert run_job("extract", ["--annotations", str(tmp_path / "h.npz"), "--images", str(root / "images"), "--out",
                   str(tmp_path / "out"), "--name", "h36m_p1", "--occlude", "--data-dir", str(demo_data_dir),
                   "--batch-size", "5"]) == 0
    assert np.load(tmp_path / "out" / "h36m_p1_sp_gt.npy").shape == (9, 14)


def test_h36m_protocol_2_and_joint_boxes(tmp_path):
    from meshconf.dataset.h36m import read_h36m

    root = tmp_path / "H36M"
    truth = _write_h36m(root, with_masks=False)
    a = read_h36m(root, protocol=2)
    assert {name.split("_0000")[0] for name in a.imgname} == {"S9_Directions_1.60457274", "S11_Sitting.60457274"}
    assert list(a.extra["box_source"]) == ["2d joints"]
    d2 = truth[("S11", "Sitting.60457274")][0][0]
    np.testing.assert_allclose(a.scale[list(a.imgname).index("S11_Sitting.60457274_000001.jpg")],
                               1.2 * (d2.max(0) - d2.min(0)).max() / 200, rtol=1e-6)
    with pytest.raises(MeshconfError, match="no Human3.6M pose files"):
        read_h36m(tmp_path / "nowhere")
