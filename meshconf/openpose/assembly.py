"""People from limb connections: the reference's assembly rules, quirks included (REFERENCE.md E.6-E.7).

Each person is a row of 20 float64: 18 candidate ids (-1 = missing), the total score and the part count. The walk
is sequential by nature (a connection can extend, start or merge people made by the ones before it); finding the
people a connection touches is one vectorised comparison over all rows.
"""

from __future__ import annotations

import numpy as np

from .. import constants as C

WIDTH = C.OP_SUBSET_WIDTH
TOTAL, COUNT = WIDTH - 2, WIDTH - 1
# Limbs 17 and 18 (shoulder -> ear) only complete people; the reference never starts a person from them.
FIRST_NON_STARTING_LIMB = 17


def assemble(connections: np.ndarray, peak_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(subset (M,20) after deletion, subset before deletion, deleted row indices) from connections
    (C,6) [k, idA, idB, score, i, j] in the reference's order and the candidates' scores."""
    subset = np.full((len(connections), WIDTH), -1.0)  # at most one new row per connection
    n = 0
    for k, id_a, id_b, score in connections[:, :4].tolist():
        k = int(k)
        a, b = C.OP_LIMBS[k]
        found = np.flatnonzero((subset[:n, a] == id_a) | (subset[:n, b] == id_b))
        if len(found) == 1:
            row = subset[found[0]]
            if row[b] != id_b:
                row[b] = id_b
                row[COUNT] += 1
                row[TOTAL] += peak_score[int(id_b)] + score
        elif len(found) >= 2:
            # The reference keeps a two-entry list and raises IndexError on a third match; we use the first two.
            j1, j2 = found[0], found[1]
            both = (subset[j1, :TOTAL] >= 0) & (subset[j2, :TOTAL] >= 0)
            if not both.any():  # disjoint: merge j2 into j1 (-1 + (id + 1) = id works because -1 marks missing)
                subset[j1, :TOTAL] += subset[j2, :TOTAL] + 1
                subset[j1, TOTAL:] += subset[j2, TOTAL:]
                subset[j1, TOTAL] += score
                subset[j2:n - 1] = subset[j2 + 1:n]
                subset[n - 1] = -1.0
                n -= 1
            else:  # unconditional, so a part already there is counted again (reference quirk)
                subset[j1, b] = id_b
                subset[j1, COUNT] += 1
                subset[j1, TOTAL] += peak_score[int(id_b)] + score
        elif k < FIRST_NON_STARTING_LIMB:
            subset[n, a], subset[n, b] = id_a, id_b
            subset[n, COUNT] = 2
            subset[n, TOTAL] = (0 + peak_score[int(id_a)] + peak_score[int(id_b)]) + score  # Python sum() order
            n += 1
    before = subset[:n].copy()
    deleted = np.flatnonzero((before[:, COUNT] < C.OP_MIN_PARTS)
                             | (before[:, TOTAL] / np.where(before[:, COUNT] == 0, 1, before[:, COUNT])
                                < C.OP_MIN_MEAN_SCORE))
    return np.delete(before, deleted, axis=0), before, deleted
