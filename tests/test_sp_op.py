"""ED definitions: the demo golden, and hand-derived cases of the training-data definition (REFERENCE.md §F)."""

import numpy as np
import pytest

from meshconf import constants as C
from meshconf import sp_op


def test_demo_ed_reproduces_golden(golden):
    g = golden("ed_demo_golden.npz")
    candidate = g["candidate_with_sentinel"][:-1]  # the demo appends the sentinel itself
    ed = sp_op.demo_ed(g["smpl_pred_keypoints_2d"][0], candidate, g["subset"])
    np.testing.assert_allclose(ed, g["ed_raw"], atol=1e-5)
    z = (ed - np.float32(C.SP_OP_NORM_MEAN)) / np.sqrt(np.float32(C.SP_OP_NORM_VAR))
    np.testing.assert_allclose(z, g["ed_standardized"], atol=1e-4)


def _scene():
    """SPIN joints (49,2) and two OpenPose people: person 1 lies on SPIN's joints shifted by (+30, -10) px,
    person 0 is elsewhere."""
    rng = np.random.default_rng(0)
    kp = rng.uniform(40, 180, (49, 2)).astype(np.float32)
    spin = kp[list(C.SPIN_TO_J14_ED)]
    coco = np.full((18, 2), np.nan)
    for j14, coco_part in enumerate(C.COCO_TO_J14):
        coco[coco_part] = spin[j14]
    people = [coco + [150, 150], coco + [30, -10]]
    candidate, subset = [], []
    for person in people:
        row = np.full(20, -1.0)
        for part in range(18):
            if not np.isnan(person[part, 0]):
                row[part] = len(candidate)
                candidate.append([*person[part], 0.5 + 0.01 * part, len(candidate)])
        row[18], row[19] = 10.0, 14
        subset.append(row)
    return kp, np.array(candidate), np.array(subset)


def test_relative_ed_selects_the_closest_person_and_aligns_spines():
    kp, candidate, subset = _scene()
    result = sp_op.relative_ed(kp, candidate, subset)
    assert result.person == 1
    # Person 1 is SPIN's J14 shifted rigidly, so after aligning spines only the difference between the two spine
    # definitions remains: every joint is off by the same vector (SPIN spine - OP pseudo-spine of SPIN's points).
    spin = kp[list(C.SPIN_TO_J14_ED)]
    offset = kp[C.SPIN_SPINE] - sp_op.op_spine(spin)
    expected = np.float32(np.linalg.norm(offset) / 112)
    np.testing.assert_allclose(result.ed, expected, atol=1e-6)
    assert (result.conf > 0).all()
    # A ground-truth anchor moves both skeletons alike: the same ED.
    np.testing.assert_allclose(sp_op.relative_ed(kp, candidate, subset, anchor=(100, 90)).ed, result.ed, atol=1e-5)


def test_relative_ed_missing_hip_drags_the_pseudo_spine():
    kp, candidate, subset = _scene()
    subset[1, 8] = -1  # person 1 loses the right hip (COCO 8 = J14 slot 2)
    result = sp_op.relative_ed(kp, candidate, subset)
    assert result.person == 1 and result.conf[C.J14_R_HIP] == 0 and result.missing[C.J14_R_HIP]
    op = result.op_points
    # The placeholder (224, 224) took part in the pseudo-spine and was shifted with the rest (training-data quirk).
    raw, _ = sp_op.person_points(candidate, subset[1], C.OP_MISSING_OUTPUT_PX)
    assert np.allclose(raw[C.J14_R_HIP], 224)
    np.testing.assert_allclose(op - raw, np.broadcast_to(kp[C.SPIN_SPINE] - sp_op.op_spine(raw), op.shape),
                               atol=1e-4)


def test_relative_ed_with_nobody_is_distance_to_spins_own_spine():
    kp, candidate, _ = _scene()
    result = sp_op.relative_ed(kp, candidate, np.zeros((0, 20)))
    assert result.person == -1 and (result.conf == 0).all()
    spin = kp[list(C.SPIN_TO_J14_ED)]
    np.testing.assert_allclose(result.ed, np.linalg.norm(spin - kp[C.SPIN_SPINE], axis=1) / 112, atol=1e-6)
    assert sp_op.demo_ed(kp, np.zeros((0,)), np.zeros((0, 20))).shape == (14,)


def test_relative_ed_matches_shipped_training_distribution(shared):
    """The no-person rows of the shipped 3DPW test ED: all-zero confidence, ED = distance to SPIN's own spine,
    between about 0.04 and 1.5 (REFERENCE.md F.3)."""
    ed = np.load(shared / "data" / "meshconfidence" / "sp_op" / "3dpw" / "3dpw_test_sp_op.npy")
    conf = np.load(shared / "data" / "meshconfidence" / "sp_op" / "3dpw" / "3dpw_test_conf.npy")
    nobody = (conf == 0).all(1)
    assert nobody.sum() == 17
    assert ed[nobody].min() >= 0.03 and ed[nobody].max() <= 1.6
    with pytest.raises(AssertionError):  # the rows are not all zero, unlike a naive "no person = no error"
        np.testing.assert_allclose(ed[nobody], 0)
