"""Per-crop signals beyond ED, for estimators trained on users' own data (`meshconf extract --signals`).

What the literature suggests carries error information that ED alone does not: how far SPIN's iterative regressor
still moved at each step (a converged fit moves little), how much SPIN disagrees with itself on the mirrored crop,
how unambiguous each OpenPose peak is (the runner-up peak of the same part against the chosen one), how well the
part affinity fields support each limb, crowding (people detected, this person's overlap with others), the person's
size in the image, SPIN joints at or beyond the crop border, and the signed 2D offsets whose lengths ED is.
(OpenPose's peak value of each chosen keypoint is already the confidence array.)

Pure functions on one crop's arrays, plus the column names; `SIGNAL_COLUMNS` fixes the order of the (N, S) array
`<name>_signals.npy` that `extract --signals` writes and `prepare`/`train` read.
"""

from __future__ import annotations

import numpy as np

from .. import constants as C

J14_FLIP = (5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13)  # J14 index of each joint's mirror image
MISSING = -1.0  # the value of a signal that does not exist for this crop (no such keypoint, nobody detected)
_JOINTS = [n.replace(" ", "_").lower() for n in C.J14_NAMES]
_LIMBS = [f"{a}-{b}" for a, b in C.OP_LIMBS]

SIGNAL_COLUMNS = tuple(
    [f"spin_step_{part}_{i + 1}" for i in range(3) for part in ("pose", "shape", "cam")]
    + [f"flip_disagreement_{j}" for j in _JOINTS]
    + [f"second_peak_ratio_{j}" for j in _JOINTS]
    + [f"paf_score_{limb}" for limb in _LIMBS]
    + ["people_detected", "overlap_with_others", "box_px"]
    + [f"spin_at_border_{j}" for j in _JOINTS]
    + [f"offset_x_{j}" for j in _JOINTS] + [f"offset_y_{j}" for j in _JOINTS])
NUM_SIGNALS = len(SIGNAL_COLUMNS)
BORDER_PX = 2.0


def flip_disagreement(j14_px: np.ndarray, j14_flipped_px: np.ndarray, width: float = C.IMG_RES) -> np.ndarray:
    """(14,) normalised distance between SPIN's joints on the crop and its joints on the mirrored crop, mapped back
    (x -> width - 1 - x, left and right swapped)."""
    back = np.asarray(j14_flipped_px, np.float64)[list(J14_FLIP)].copy()
    back[:, 0] = width - 1 - back[:, 0]
    return np.linalg.norm(np.asarray(j14_px, np.float64) - back, axis=1) / C.NORM_UNIT_PX


def second_peak_ratio(all_peaks: np.ndarray, person_row) -> np.ndarray:
    """(14,) for each joint: the best other peak of the same part over the chosen peak's score (MISSING without a
    chosen keypoint; 0 when the chosen peak is the only one)."""
    out = np.full(C.NUM_J14, MISSING)
    if person_row is None:
        return out
    peaks = np.asarray(all_peaks, np.float64).reshape(-1, 5)  # x, y, score, id, part
    for j, part in enumerate(C.COCO_TO_J14):
        chosen = int(person_row[part])
        if chosen < 0:
            continue
        mine = peaks[peaks[:, 4] == part]
        score = mine[mine[:, 3] == chosen, 2]
        others = mine[mine[:, 3] != chosen, 2]
        if len(score) and score[0] > 0:
            out[j] = (others.max() / score[0]) if len(others) else 0.0
    return out


def paf_scores(connection_all: np.ndarray, person_row) -> np.ndarray:
    """(19,) PAF connection score of each limb of this person (0 when the limb is not part of the person)."""
    out = np.zeros(len(C.OP_LIMBS))
    if person_row is None:
        return out
    conn = np.asarray(connection_all, np.float64).reshape(-1, 6)  # limb, id A, id B, score, i, j
    for k, (a, b) in enumerate(C.OP_LIMBS):
        ia, ib = int(person_row[a]), int(person_row[b])
        if ia < 0 or ib < 0:
            continue
        hit = conn[(conn[:, 0] == k) & (conn[:, 1] == ia) & (conn[:, 2] == ib)]
        if len(hit):
            out[k] = hit[0, 3]
    return out


def _keypoint_box(candidate: np.ndarray, row) -> np.ndarray | None:
    ids = np.asarray(row[:18]).astype(np.int64)
    ids = ids[ids >= 0]
    if not len(ids):
        return None
    pts = np.asarray(candidate, np.float64).reshape(-1, 4)[ids, :2]
    return np.concatenate([pts.min(0), pts.max(0)])


def overlap_with_others(candidate, subset, person: int) -> float:
    """Largest IoU of this person's keypoint box with another detected person's (0 alone, MISSING for nobody)."""
    people = np.asarray(subset, np.float64).reshape(-1, C.OP_SUBSET_WIDTH)
    if person < 0:
        return MISSING
    mine = _keypoint_box(candidate, people[person])
    best = 0.0
    for k, row in enumerate(people):
        other = None if k == person else _keypoint_box(candidate, row)
        if mine is None or other is None:
            continue
        w = max(0.0, min(mine[2], other[2]) - max(mine[0], other[0]))
        h = max(0.0, min(mine[3], other[3]) - max(mine[1], other[1]))
        union = np.prod(mine[2:] - mine[:2]) + np.prod(other[2:] - other[:2]) - w * h
        best = max(best, w * h / union if union > 0 else 0.0)
    return float(best)


def at_border(j14_px: np.ndarray, width: float = C.IMG_RES) -> np.ndarray:
    """(14,) 1 where SPIN's joint lies within BORDER_PX of the crop border or outside the crop."""
    p = np.asarray(j14_px, np.float64)
    return ((p < BORDER_PX) | (p > width - 1 - BORDER_PX)).any(1).astype(np.float64)


def crop_signals(steps: np.ndarray, j14_px: np.ndarray, j14_flipped_px: np.ndarray, decoded, person: int,
                 box_px: float, spin_aligned_px: np.ndarray, op_aligned_px: np.ndarray, conf: np.ndarray) -> np.ndarray:
    """The (NUM_SIGNALS,) row of one crop in SIGNAL_COLUMNS order. `steps`: (3, 3) norms of SPIN's pose, shape
    and camera updates per iteration; `decoded`: OpenPose's `Decoded`; `person`: the subset row ED used (-1:
    nobody); the aligned points are `RelativeED`'s (offsets of missing keypoints are 0)."""
    people = np.asarray(decoded.subset, np.float64).reshape(-1, C.OP_SUBSET_WIDTH)
    row = people[person] if person >= 0 else None
    offsets = (np.asarray(spin_aligned_px, np.float64) - np.asarray(op_aligned_px, np.float64)) / C.NORM_UNIT_PX
    offsets[np.asarray(conf) <= 0] = 0.0  # a missing keypoint has no offset; the confidence (0) says so
    out = np.concatenate([np.asarray(steps, np.float64).reshape(-1), flip_disagreement(j14_px, j14_flipped_px),
                          second_peak_ratio(decoded.all_peaks, row), paf_scores(decoded.connection_all, row),
                          [len(people), overlap_with_others(decoded.candidate, decoded.subset, person), box_px],
                          at_border(j14_px), offsets[:, 0], offsets[:, 1]])
    assert out.shape == (NUM_SIGNALS,)
    return out
