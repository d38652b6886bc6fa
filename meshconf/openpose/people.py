"""Typed people from (candidate, subset): what a user wants from a detection, in one place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import constants as C


@dataclass(frozen=True)
class Person:
    """One assembled person. `keypoints` (18,4) in COCO-18 order: x, y (image pixels), score, present (1 or 0);
    a missing part has x = y = NaN and score 0, so it cannot be used as a position by accident."""

    keypoints: np.ndarray
    candidate_ids: np.ndarray  # (18,) int, -1 = missing
    total_score: float
    part_count: int

    @property
    def present(self) -> np.ndarray:
        return self.keypoints[:, 3] > 0

    def to_j14(self) -> np.ndarray:
        """(14,4) x, y, score, present in meshconf's 14-joint order (`constants.J14_NAMES`)."""
        return self.keypoints[list(C.COCO_TO_J14)]


def people(candidate: np.ndarray, subset: np.ndarray) -> list[Person]:
    """One `Person` per subset row, in the subset's order."""
    candidate = np.asarray(candidate, dtype=np.float64).reshape(-1, 4)
    out = []
    for row in np.asarray(subset, dtype=np.float64).reshape(-1, C.OP_SUBSET_WIDTH):
        ids = row[: C.NUM_COCO].astype(np.int64)
        present = ids >= 0
        keypoints = np.zeros((C.NUM_COCO, 4))
        keypoints[:, :2] = np.nan
        keypoints[present, :3] = candidate[ids[present], :3]
        keypoints[present, 3] = 1.0
        out.append(Person(keypoints, ids, float(row[C.OP_SUBSET_WIDTH - 2]), int(row[C.OP_SUBSET_WIDTH - 1])))
    return out
