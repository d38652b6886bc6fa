"""ED: the per-joint 2D distance between SPIN's projected joints and OpenPose's keypoints (REFERENCE.md §F).

Pure functions on one sample's arrays; coordinates are crop pixels (224 crop), ED is in normalised units
(1.0 = 112 px). Two definitions:

* `relative_ed` (default everywhere): what the classifiers were trained on. Both skeletons are aligned at their own
  spine estimates (SPIN joint 41; OpenPose's pseudo-spine from hips and neck), OpenPose's person is the one closest
  to SPIN's joints, and a missing part sits at (224, 224) before alignment (the training data's quirk, kept so the
  numbers mean what the classifiers learned). `anchor` is the ground-truth spine when a dataset has one (training
  data); without it the anchor is SPIN's own spine, which cancels exactly (F.4).
* `demo_ed` (`--legacy-ed`): the original demo's ED: `subset[0]`, no alignment. Kept for comparison only; its values
  are not distributed like the training data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import constants as C

_HALF = np.float32(C.NORM_UNIT_PX)  # 112.0


def normalize(points_px) -> np.ndarray:
    """(p - 112) / 112 in float32, as the original does."""
    return (np.asarray(points_px, dtype=np.float32) - _HALF) / _HALF


def _distance(a_px, b_px) -> np.ndarray:
    d = normalize(a_px) - normalize(b_px)
    return np.sqrt((d * d).sum(-1)).astype(np.float32)


def _candidates(candidate) -> np.ndarray:
    return np.asarray(candidate, dtype=np.float64).reshape(-1, 4)


def _people(subset) -> np.ndarray:
    return np.asarray(subset, dtype=np.float64).reshape(-1, C.OP_SUBSET_WIDTH)


def person_points(candidate, row, missing) -> tuple[np.ndarray, np.ndarray]:
    """(14,2) float32 points and (14,) confidences of one subset row in J14 order; missing parts at `missing`."""
    candidate = _candidates(candidate)
    ids = np.asarray(row)[list(C.COCO_TO_J14)].astype(np.int64)
    present = ids >= 0
    points = np.tile(np.asarray(missing, dtype=np.float32), (C.NUM_J14, 1))
    conf = np.zeros(C.NUM_J14, dtype=np.float32)
    points[present] = candidate[ids[present], :2]
    conf[present] = candidate[ids[present], 2]
    return points, conf


def demo_ed(spin_keypoints_2d, candidate, subset) -> np.ndarray:
    """The original demo's (14,) ED: SPIN's J14 points against `subset[0]`, missing parts at (224, 224), no
    alignment. With nobody detected the original crashed; here every part counts as missing."""
    spin = np.asarray(spin_keypoints_2d, dtype=np.float32).reshape(-1, 2)[list(C.SPIN_TO_J14_ED)]
    people = _people(subset)
    row = people[0] if len(people) else np.full(C.OP_SUBSET_WIDTH, -1.0)
    op, _ = person_points(candidate, row, C.OP_MISSING_OUTPUT_PX)
    return _distance(spin, op)


@dataclass(frozen=True)
class RelativeED:
    """Result of `relative_ed` for one crop."""

    ed: np.ndarray  # (14,) float32, normalised units
    conf: np.ndarray  # (14,) OpenPose score per joint, 0 = missing
    person: int  # subset row used, -1 when nobody was detected
    spin_points: np.ndarray  # (14,2) SPIN J14 points after alignment, px
    op_points: np.ndarray  # (14,2) OpenPose J14 points after alignment (missing ones included), px

    @property
    def missing(self) -> np.ndarray:
        return self.conf <= 0


def select_person(spin_j14_px, candidate, subset) -> int:
    """Index of the subset row whose 14 joints (missing ones at (112, 112)) have the smallest mean px distance to
    `spin_j14_px`; the first one on a tie; -1 for an empty subset."""
    people = _people(subset)
    if not len(people):
        return -1
    spin = np.asarray(spin_j14_px, dtype=np.float32)
    cost = [np.linalg.norm(person_points(candidate, row, C.OP_MISSING_SELECT_PX)[0] - spin, axis=1).mean()
            for row in people]
    return int(np.argmin(cost))


def op_spine(points_px) -> np.ndarray:
    """OpenPose pseudo-spine ((R hip + L hip)/2 + 1.3 neck) / 2.3 over J14 points."""
    p = np.asarray(points_px, dtype=np.float32)
    w = np.float32(C.OP_SPINE_NECK_WEIGHT)
    return ((p[C.J14_R_HIP] + p[C.J14_L_HIP]) / np.float32(2) + w * p[C.J14_NECK]) / (np.float32(1) + w)


def relative_ed(spin_keypoints_2d, candidate, subset, anchor=None) -> RelativeED:
    """ED as the training data defines it (REFERENCE.md F.3/F.4) from SPIN's (49,2) projected joints (px) and
    OpenPose's (candidate, subset). `anchor`: the ground-truth spine (px) if known, else SPIN's spine joint."""
    keypoints = np.asarray(spin_keypoints_2d, dtype=np.float32).reshape(-1, 2)
    spin_spine = keypoints[C.SPIN_SPINE]
    anchor = spin_spine if anchor is None else np.asarray(anchor, dtype=np.float32)
    spin = (keypoints + (anchor - spin_spine))[list(C.SPIN_TO_J14_ED)]
    person = select_person(spin, candidate, subset)
    if person < 0:  # nobody: OpenPose points at (0,0), confidence 0, and the pseudo-spine is (0,0) too
        op = np.zeros((C.NUM_J14, 2), dtype=np.float32)
        conf = np.zeros(C.NUM_J14, dtype=np.float32)
        spine = np.zeros(2, dtype=np.float32)
    else:
        op, conf = person_points(candidate, _people(subset)[person], C.OP_MISSING_OUTPUT_PX)
        spine = op_spine(op)
    op = op + (anchor - spine)
    return RelativeED(_distance(spin, op), conf, person, spin, op)
