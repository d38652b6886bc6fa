import pickle
import sys
import types

import numpy as np
import pytest
import torch

from meshconf import geometry
from meshconf.cli import main as cli_main
from meshconf.errors import MeshconfError
from meshconf.models import load_smpl
from meshconf.models.smpl_file import read_smpl_file


def test_chain_golden(smpl_layer, golden):
    g = golden("smpl_golden.npz")
    with torch.no_grad():
        out = smpl_layer(torch.from_numpy(g["chain_rotmat"]), torch.from_numpy(g["chain_betas"]))
        camera = torch.from_numpy(g["chain_camera"])
        kp2d = geometry.project_spin_joints(out.joints, camera)
    assert out.vertices.shape == (2, 6890, 3) and out.joints.shape == (2, 49, 3)
    np.testing.assert_allclose(out.vertices.numpy(), g["chain_vertices"], atol=1e-5)
    np.testing.assert_allclose(out.joints.numpy(), g["chain_joints49"], atol=1e-5)
    np.testing.assert_allclose(out.smplx_joints.numpy(), g["chain_smplx_joints45"], atol=1e-5)
    np.testing.assert_allclose(geometry.camera_translation(camera).numpy(), g["chain_cam_t"], atol=1e-5)
    np.testing.assert_allclose(kp2d.numpy(), g["chain_kp2d"], atol=1e-3)
    assert smpl_layer.faces.shape == (13776, 3)


def test_chain_from_own_hmr(spin_model, smpl_layer, golden):
    g = golden("smpl_golden.npz")
    with torch.no_grad():
        rotmat, betas, camera = spin_model(torch.from_numpy(golden("hmr_golden.npz")["input"]))
        kp2d = geometry.project_spin_joints(smpl_layer(rotmat, betas).joints, camera)
    np.testing.assert_allclose(kp2d.numpy(), g["chain_kp2d"], atol=5e-3)


def test_axis_angle_batch(smpl_layer, golden):
    g = golden("smpl_golden.npz")
    aa = torch.from_numpy(g["x_axis_angle"])
    rotmat = geometry.batch_rodrigues(aa.reshape(-1, 3)).reshape(3, 24, 3, 3)
    np.testing.assert_allclose(rotmat.numpy(), g["x_rotmat"], atol=1e-6)
    betas = torch.from_numpy(g["x_betas"])
    with torch.no_grad():
        out = smpl_layer(rotmat, betas)
        kp2d = geometry.project_spin_joints(out.joints, torch.from_numpy(g["x_camera"]))
        aa_out = smpl_layer.forward_axis_angle(aa.reshape(3, 72), betas)
    np.testing.assert_allclose(out.vertices.numpy(), g["x_vertices"], atol=1e-5)
    np.testing.assert_allclose(out.joints.numpy(), g["x_joints49"], atol=1e-5)
    np.testing.assert_allclose(out.smplx_joints.numpy(), g["x_smplx_joints45"], atol=1e-5)
    np.testing.assert_allclose(kp2d.numpy(), g["x_kp2d"], atol=1e-3)
    np.testing.assert_allclose(aa_out.vertices.numpy(), g["x_aa_path_vertices"], atol=1e-5)
    np.testing.assert_allclose(aa_out.joints.numpy(), g["x_aa_path_joints49"], atol=1e-5)


def test_pkl_npz_folder_and_convert_agree(tmp_path, shared, smpl_layer, golden):
    g = golden("smpl_golden.npz")
    regressor = shared / "data" / "spin" / "J_regressor_extra.npy"
    out_npz = tmp_path / "smpl" / "SMPL_NEUTRAL.npz"
    out_npz.parent.mkdir()
    assert cli_main(["convert-smpl", str(shared / "golden" / "smpl_synthetic" / "SMPL_NEUTRAL.pkl"),
                     str(out_npz)]) == 0
    converted = np.load(out_npz, allow_pickle=False)
    reference = np.load(shared / "golden" / "smpl_synthetic_NEUTRAL.npz")
    for key in ("v_template", "shapedirs", "J_regressor", "weights", "kintree_table", "f"):
        np.testing.assert_array_equal(converted[key], reference[key], err_msg=key)
    for source in (out_npz, tmp_path, shared / "golden" / "smpl_synthetic_NEUTRAL.npz"):
        layer = load_smpl(source, regressor)
        with torch.no_grad():
            out = layer(torch.from_numpy(g["chain_rotmat"]), torch.from_numpy(g["chain_betas"]))
        np.testing.assert_allclose(out.vertices.numpy(), g["chain_vertices"], atol=1e-5)
        np.testing.assert_allclose(out.joints.numpy(), g["chain_joints49"], atol=1e-5)


def _fake_chumpy_pickle(path, arrays):
    """A Python-2-style SMPL pickle whose arrays are chumpy `Ch` objects, made without chumpy."""
    module = types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

        def __reduce__(self):
            return (Ch, (), {"x": self.x, "_dirty_vars": set()})

    Ch.__module__ = "chumpy.ch"
    Ch.__qualname__ = "Ch"
    module.Ch = Ch
    sys.modules["chumpy"] = types.ModuleType("chumpy")
    sys.modules["chumpy.ch"] = module
    try:
        data = {k: (Ch(v) if k in ("v_template", "shapedirs", "posedirs", "weights") else v)
                for k, v in arrays.items()}
        data["bs_style"] = "lbs"
        with open(path, "wb") as fh:
            pickle.dump(data, fh, protocol=2)
    finally:
        del sys.modules["chumpy"], sys.modules["chumpy.ch"]


def test_chumpy_pickle_reads_without_chumpy(tmp_path, shared):
    import scipy.sparse

    ref = np.load(shared / "golden" / "smpl_synthetic_NEUTRAL.npz")
    arrays = {k: ref[k] for k in ("v_template", "shapedirs", "posedirs", "weights", "kintree_table", "f")}
    arrays["J_regressor"] = scipy.sparse.csc_matrix(ref["J_regressor"])
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    _fake_chumpy_pickle(path, arrays)
    assert "chumpy" not in sys.modules
    data = read_smpl_file(path)
    np.testing.assert_array_equal(data.shapedirs, ref["shapedirs"])
    np.testing.assert_array_equal(data.J_regressor, ref["J_regressor"])


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os
        return (os.system, (f"touch {self.marker}",))


def test_hostile_pickle_refused_and_not_run(tmp_path, shared):
    marker = tmp_path / "pwned"
    path = tmp_path / "SMPL_NEUTRAL.pkl"
    with open(path, "wb") as fh:
        pickle.dump({"v_template": _Evil(marker)}, fh, protocol=2)
    with pytest.raises(MeshconfError) as e:
        load_smpl(path, shared / "data" / "spin" / "J_regressor_extra.npy")
    assert "forbidden global" in str(e.value) and "system" in str(e.value) and "\n" not in str(e.value)
    assert not marker.exists()


def test_bad_smpl_inputs_one_line_errors(tmp_path, shared):
    regressor = shared / "data" / "spin" / "J_regressor_extra.npy"
    cases = {}
    with pytest.raises(MeshconfError) as e:
        load_smpl(tmp_path / "missing.pkl", regressor)
    cases["missing"] = e
    with pytest.raises(MeshconfError) as e:
        load_smpl(tmp_path, regressor)  # a folder without a model
    cases["empty folder"] = e
    truncated = tmp_path / "trunc.pkl"
    truncated.write_bytes((shared / "golden" / "smpl_synthetic" / "SMPL_NEUTRAL.pkl").read_bytes()[:5000])
    with pytest.raises(MeshconfError) as e:
        load_smpl(truncated, regressor)
    cases["truncated"] = e
    incomplete = tmp_path / "incomplete.pkl"
    with open(incomplete, "wb") as fh:
        pickle.dump({"v_template": np.zeros((6890, 3))}, fh)
    with pytest.raises(MeshconfError) as e:
        load_smpl(incomplete, regressor)
    cases["missing keys"] = e
    with pytest.raises(MeshconfError) as e:
        load_smpl(shared / "golden" / "smpl_synthetic", tmp_path / "nope.npy")
    cases["regressor"] = e
    with pytest.raises(MeshconfError) as e:
        load_smpl(shared / "golden" / "smpl_synthetic", regressor, gender="other")
    cases["gender"] = e
    for name, exc in cases.items():
        assert "\n" not in str(exc.value), name
    assert "missing" in str(cases["missing keys"].value) and "shapedirs" in str(cases["missing keys"].value)
    assert "truncated" in str(cases["truncated"].value)


def test_convert_cli_bad_input(tmp_path, capsys):
    assert cli_main(["convert-smpl", str(tmp_path / "none.pkl"), str(tmp_path / "out.npz")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("meshconf convert-smpl: error:") and "none.pkl" in err and "\n" not in err
