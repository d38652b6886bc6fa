"""`meshconf qualitative`: one dataset image's predicted and ground-truth confidence, its ED row found through the
manifest."""

import json

import numpy as np
import pytest

from meshconf.sp_op.arrays import find_row
from meshconf.dataset import Annotations, load_annotations, save_annotations
from meshconf.cli import run_job


@pytest.fixture(scope="module")
def arrays(tmp_path_factory, tiny_dataset, demo_data_dir):
    path, root = tiny_dataset
    out = tmp_path_factory.mktemp("arrays")
    assert run_job("extract", ["--annotations", str(path), "--images", str(root), "--out", str(out), "--name", "tiny_test",
                   "--data-dir", str(demo_data_dir), "--batch-size", "5"]) == 0
    return out


@pytest.mark.slow
def test_pictures_and_report(tmp_path, tiny_dataset, arrays, demo_data_dir):
    path, root = tiny_dataset
    assert run_job("qualitative", ["--dataset", "3dpw", "--img_number", "3", "--annotations", str(path), "--images", str(root),
                   "--arrays", str(arrays), "--name", "tiny_test", "--data-dir", str(demo_data_dir),
                   "--renderer", "software", "--render-res", "224", "--out", str(tmp_path),
                   "--accept-precision", "0.9"]) == 0
    for key in ("orig", "mesh_confidence_pred", "mesh_confidence_gt", "wj_confidence_pred", "wj_confidence_gt",
                "panel"):
        assert (tmp_path / f"3dpw_img_3_{key}.png").stat().st_size > 0
    report = json.loads((tmp_path / "3dpw_img_3_report.json").read_text())
    assert report["array_row"] == 3 and report["matched_by"] == "manifest" and report["imgname"] == "b.jpg"
    ed = np.load(arrays / "tiny_test_sp_op.npy")[3]
    np.testing.assert_allclose(report["ed_px"], ed * 112, equal_nan=True)
    se = np.load(arrays / "tiny_test_sp_gt.npy")[3]
    assert report["accurate_ground_truth"] == bool(se.max() < 0.1)
    from meshconf.classifier import load

    threshold = load("default").threshold_for(0.9)
    assert report["acceptance"] == {"target_precision": 0.9, "threshold": threshold}
    assert report["accepted"] == (report["p_accurate"] >= threshold) and report["bound_coverage"] == 0.9
    assert len(report["error_bound_px"]) == 14
    assert all(b >= e for b, e in zip(report["error_bound_px"], report["estimated_error_px"]))


def test_rows_found_by_image_not_position(tmp_path, tiny_dataset, arrays, demo_data_dir):
    path, root = tiny_dataset
    a = load_annotations(path)
    order = np.arange(len(a))[::-1]  # the same rows, reversed
    reversed_path = tmp_path / "reversed.npz"
    save_annotations(reversed_path, Annotations(a.imgname[order], a.center[order], a.scale[order], a.joints2d[order],
                                                a.spine2d[order], dataset="tiny"))
    row = find_row(str(arrays), "tiny_test", "a.png", load_annotations(reversed_path).center[0], 0, 5)
    assert row.row == 4 and row.matched_by == "manifest"
    np.testing.assert_array_equal(row.ed, np.load(arrays / "tiny_test_sp_op.npy")[4])
    # a row the arrays never saw
    from meshconf.errors import MeshconfError
    with pytest.raises(MeshconfError, match="another annotation file"):
        find_row(str(arrays), "tiny_test", "a.png", (1.0, 2.0), 0, 5)


def test_arrays_without_manifest(tmp_path, arrays):
    import shutil

    from meshconf.errors import MeshconfError

    for suffix in ("sp_op", "sp_gt", "conf"):
        shutil.copy(arrays / f"tiny_test_{suffix}.npy", tmp_path)
    with pytest.raises(MeshconfError, match="--by-position"):
        find_row(str(tmp_path), "tiny_test", "a.png", (112, 112), 2, 5)
    assert find_row(str(tmp_path), "tiny_test", "a.png", (112, 112), 2, 5, by_position=True).row == 2
    with pytest.raises(MeshconfError, match="cannot be matched by position"):
        find_row(str(tmp_path), "tiny_test", "a.png", (112, 112), 2, 6, by_position=True)


def test_accurate_means_the_training_label_everywhere():
    """A mesh whose worst joint is exactly 0.1 off is accurate for training, calibration and the reports alike."""
    import pathlib

    from meshconf.classifier.data import mesh_label, row_is_accurate

    edge = np.full((1, 14), 0.05)
    edge[0, 3] = 0.1
    assert mesh_label(edge)[0] == 1 and row_is_accurate(edge[0])
    over = edge.copy()
    over[0, 3] = np.nextafter(0.1, 1)
    assert mesh_label(over)[0] == 0 and not row_is_accurate(over[0])
    unknown = edge[0].copy()
    unknown[5] = np.nan
    assert row_is_accurate(unknown)
    # nowhere else is "accurate" decided by its own comparison with the threshold
    package = pathlib.Path(__file__).resolve().parents[1] / "meshconf"
    for path in package.rglob("*.py"):
        for line in path.read_text().splitlines():
            if "ACCURATE_SE_THRESHOLD" in line and ("se.max(" in line or "se).max(" in line or "(found.se" in line):
                assert path.name == "data.py", (path, line)
