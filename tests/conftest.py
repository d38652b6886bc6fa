"""Shared fixtures. Data and goldens live in ../shared beside the checkout (or $MESHCONF_SHARED).

Without them the tests that need them skip with a reason; under CI=true they fail instead, so a CI run can never
pass by skipping its checks.
"""

from __future__ import annotations

import os
import pathlib

import numpy as np
import pytest
import torch

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED = pathlib.Path(os.environ.get("MESHCONF_SHARED", REPO.parent / "shared"))

torch.set_num_threads(2)  # the goldens were produced with 2 threads


def assert_matches_checksums(state, checks) -> None:
    """Recipe tensors against golden/weights_checksums_seed0.json entries (README section 3: rtol 1e-9, exact first)."""
    assert set(state) == set(checks)
    for key, tensor in state.items():
        t = tensor.double()
        assert t.sum().item() == pytest.approx(checks[key]["sum"], rel=1e-9, abs=1e-12), key
        assert (t * t).sum().item() == pytest.approx(checks[key]["sumsq"], rel=1e-9, abs=1e-12), key
        assert t.flatten()[0].item() == checks[key]["first"], key


def need_shared(*relpaths: str) -> pathlib.Path:
    for rel in relpaths or ("",):
        if not (SHARED / rel).exists():
            message = f"needs {SHARED / rel} (the project's shared data/goldens, set MESHCONF_SHARED to relocate)"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(message + " - required under CI=true")
            pytest.skip(message)
    return SHARED


GOLDEN_IN_REPO = REPO / "tests" / "golden"  # the goldens with no third-party content (its README)


def golden_path(name: str) -> pathlib.Path:
    """A golden file: from the repository when it is kept there, else from ../shared/golden (skip or fail without)."""
    own = GOLDEN_IN_REPO / name
    if own.exists():
        return own
    return need_shared(f"golden/{name}") / "golden" / name


@pytest.fixture(scope="session")
def shared():
    return need_shared("golden", "data")


@pytest.fixture(scope="session")
def golden():
    cache = {}

    def load(name):
        if name not in cache:
            cache[name] = dict(np.load(golden_path(name)))
        return cache[name]

    return load


@pytest.fixture(scope="session")
def mean_params(shared):
    return dict(np.load(shared / "data" / "spin" / "smpl_mean_params.npz"))


@pytest.fixture(scope="session")
def spin_checkpoint(tmp_path_factory, mean_params):
    """Seed-0 recipe weights written in SPIN's real checkpoint format."""
    from meshconf.models.recipe import write_spin_checkpoint

    path = tmp_path_factory.mktemp("weights") / "model_checkpoint.pt"
    write_spin_checkpoint(path, 0, mean_params)
    return path


@pytest.fixture(scope="session")
def loadable_spin_checkpoint(tmp_path_factory):
    """Recipe weights in SPIN's checkpoint format with recipe-made mean-parameter buffers: for tests of the loader's
    refusals, which need a well-formed file but no golden numbers (and so no ../shared)."""
    from meshconf.models.recipe import write_spin_checkpoint

    path = tmp_path_factory.mktemp("weights") / "loadable_checkpoint.pt"
    identity_6d = np.tile(np.array([1, 0, 0, 1, 0, 0], np.float32), 24)  # every joint unrotated
    write_spin_checkpoint(path, 0, {"pose": identity_6d, "shape": np.zeros(10), "cam": np.array([0.9, 0, 0])})
    return path


@pytest.fixture(scope="session")
def spin_model(spin_checkpoint):
    from meshconf.models import load_spin

    return load_spin(spin_checkpoint)


@pytest.fixture(scope="session")
def smpl_layer(shared):
    from meshconf.models import load_smpl

    return load_smpl(shared / "golden" / "smpl_synthetic", shared / "data" / "spin" / "J_regressor_extra.npy")


@pytest.fixture(scope="session")
def openpose_weights(tmp_path_factory):
    """Seed-0 recipe weights written as a `body_pose_model.pth` (flat dict of file keys): made by code, so the
    tests of OpenPose that need no golden run in a clone alone."""
    from meshconf.models.recipe import write_openpose_weights

    path = tmp_path_factory.mktemp("weights") / "body_pose_model.pth"
    write_openpose_weights(path, 0)
    return path


@pytest.fixture(scope="session")
def body_model(openpose_weights):
    from meshconf.openpose import load_body

    return load_body(openpose_weights)


@pytest.fixture(scope="session")
def demo_data_dir(tmp_path_factory, shared, spin_checkpoint, openpose_weights):
    """A data folder in SPIN's layout with recipe weights and the synthetic SMPL model."""
    import shutil

    root = tmp_path_factory.mktemp("data")
    (root / "smpl").mkdir()
    os.symlink(spin_checkpoint, root / "model_checkpoint.pt")
    os.symlink(openpose_weights, root / "body_pose_model.pth")
    shutil.copy(shared / "golden" / "smpl_synthetic" / "SMPL_NEUTRAL.pkl", root / "smpl" / "SMPL_NEUTRAL.pkl")
    shutil.copy(shared / "data" / "spin" / "J_regressor_extra.npy", root)
    shutil.copy(shared / "data" / "meshcapade" / "smpl_vert_segmentation.json", root)
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory, shared):
    """Five annotated crops of two example photos (random joints, one unknown): (annotation path, image root)."""
    import shutil

    from meshconf.dataset import Annotations, save_annotations

    root = tmp_path_factory.mktemp("images")
    shutil.copy(shared / "data" / "meshconfidence" / "demo" / "3doh_img_0_orig.png", root / "a.png")
    shutil.copy(shared / "data" / "meshconfidence" / "examples" / "im1010.jpg", root / "b.jpg")
    rng = np.random.default_rng(0)
    n = 5
    names = np.array(["a.png", "b.jpg", "a.png", "b.jpg", "a.png"])
    center = np.array([[112, 112], [150, 160], [100, 120], [140, 150], [120, 100]], float)
    scale = np.array([1.12, 1.3, 0.9, 1.1, 1.0])
    joints = center[:, None] + rng.uniform(-60, 60, (n, 14, 2))
    joints[1, 5] = np.nan  # an unknown joint
    spine = center + rng.uniform(-10, 10, (n, 2))
    path = tmp_path_factory.mktemp("ann") / "tiny.npz"
    save_annotations(path, Annotations(names, center, scale, joints, spine, dataset="tiny"))
    return path, root


def run_torchrun(job: str, args: list[str], processes: int = 2) -> None:
    """`torchrun --standalone ... -m meshconf <job>` with CPU processes (gloo, one thread each); fails the test with its stderr."""
    import subprocess
    import sys

    torchrun = os.path.join(os.path.dirname(sys.executable), "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run([torchrun, "--standalone", "--nproc_per_node", str(processes), "-m", "meshconf", job, *args],
                          env=env, capture_output=True, text=True)  # no deadline: a busy machine may take long
    assert done.returncode == 0, done.stderr[-3000:]
