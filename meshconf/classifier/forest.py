"""Gradient-boosted tree ensembles as perfect binary trees in flat arrays, evaluated level by level for all trees.

Training uses scikit-learn's HistGradientBoosting models with a `max_depth`; what ships is only arrays (per tree:
split feature and threshold of its 2^D - 1 internal nodes in heap order, values of its 2^D leaves), so loading runs
no code and inference needs no scikit-learn. A leaf above depth D becomes a node whose threshold is +inf (every row
goes left) over copies of its value, so every tree is perfect and a row's path is D steps of index arithmetic:
`node = 2 node + 1 + (x[feature] > threshold)`, for every (row, tree) pair at once.

Why this shape: v1's trees (31 leaves, unbounded depth, up to 19 levels) could only be walked node by node, and
35,515 rows took 18-33 s on two cores; perfect trees of depth 4-5 need D gathers per (row, tree), and rows are
processed in small chunks so that the (rows x trees) index arrays stay in cache (measured: 128-row chunks ran
2.6x faster than 2048-row chunks).

Exactness: features are float32 values (`forest_features` computes them in float32) and thresholds are stored as
the largest float32 not above scikit-learn's float64 threshold, so `x <= t32` decides exactly as `x <= t64` does:
the trees give scikit-learn's raw scores (up to the order of summing the leaf values).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import constants as C

CHUNK_ROWS = 128
N_FOREST_FEATURES = 3 * C.NUM_J14 + 2
SORTED_ED = slice(2 * C.NUM_J14, 3 * C.NUM_J14)  # columns of the sorted ED in `forest_features`


def forest_features(ed: torch.Tensor, conf: torch.Tensor, signals: torch.Tensor | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(N, 44 [+ S]): ED, confidence, sorted ED, number of missing joints, mean ED [, the extracted signals], the
    features of every tree model. v2 computes them in float32, so training (on these values, as float64) and
    inference compare the very same numbers; v1's trees were trained on float64 features."""
    ed, conf = ed.to(dtype), conf.to(dtype)
    extra = [] if signals is None else [signals.to(dtype)]
    return torch.cat([ed, conf, torch.sort(ed, dim=1).values, (conf <= 0).sum(1, keepdim=True).to(dtype),
                      ed.mean(1, keepdim=True)] + extra, dim=1)


def monotone_constraints(joint: int | None, sign: int = 1, n_signals: int = 0) -> list[int]:
    """`sign` on the joint's own ED (joint None: only the sorted ED) and on every sorted-ED column, 0 elsewhere
    (signals unconstrained): a larger disagreement never predicts a smaller error. Constraints like these are what
    is expected to hold on other datasets and cameras, where a free fit of 3DPW's quirks would not."""
    cst = [0] * (N_FOREST_FEATURES + n_signals)
    if joint is not None:
        cst[joint] = sign
    for q in range(SORTED_ED.start, SORTED_ED.stop):
        cst[q] = sign
    return cst


def float32_floor(values: np.ndarray) -> np.ndarray:
    """The largest float32 not above each float64 value (+inf stays +inf)."""
    values = np.asarray(values, np.float64)
    out = values.astype(np.float32)
    above = out.astype(np.float64) > values
    out[above] = np.nextafter(out[above], np.float32(-np.inf))
    return out


class Forest(nn.Module):
    """M boosted models of T perfect trees of depth D; forward(x (N, F) float32) -> (N, M) float64 raw scores
    (the decision function: log-odds for classifiers, the prediction for regressors)."""

    def __init__(self, n_models: int = 1, n_trees: int = 1, depth: int = 1):
        super().__init__()
        internal, leaves = 2 ** depth - 1, 2 ** depth
        self.register_buffer("feature", torch.zeros(n_models * n_trees, internal, dtype=torch.int32))
        self.register_buffer("threshold", torch.full((n_models * n_trees, internal), float("inf")))
        self.register_buffer("leaf", torch.zeros(n_models * n_trees, leaves, dtype=torch.float64))
        self.register_buffer("baseline", torch.zeros(n_models, dtype=torch.float64))

    @property
    def shape(self) -> tuple[int, int, int]:
        """(models, trees per model, depth)."""
        m = len(self.baseline)
        return m, self.feature.shape[0] // m, int(np.log2(self.leaf.shape[1]))

    @classmethod
    def from_sklearn(cls, models, depth: int) -> "Forest":
        """From fitted HistGradientBoostingClassifier (binary) / Regressor models with max_depth <= depth and the
        same number of iterations (early_stopping=False)."""
        n_trees = {len(m._predictors) for m in models}
        if len(n_trees) != 1:
            raise ValueError(f"models have different numbers of trees: {sorted(n_trees)}")
        out = cls(len(models), n_trees.pop(), depth)
        feature, threshold, leaf = out.feature.numpy(), np.full(out.threshold.shape, np.inf), out.leaf.numpy()
        k = 0
        for model in models:
            for (predictor,) in model._predictors:
                _fill(predictor.nodes, 0, 0, 0, depth, feature[k], threshold[k], leaf[k])
                k += 1
        out.threshold.copy_(torch.from_numpy(float32_floor(threshold)))
        out.baseline.copy_(torch.as_tensor([float(np.ravel(m._baseline_prediction)[0]) for m in models],
                                           dtype=torch.float64))
        return out

    def forward(self, x: torch.Tensor, chunk: int = CHUNK_ROWS) -> torch.Tensor:
        x = x.float().contiguous()
        n_models, n_trees, depth = self.shape
        n_all = n_models * n_trees
        feature = self.feature.reshape(-1).long()
        threshold = self.threshold.reshape(-1)
        leaf = self.leaf.reshape(-1)
        base = torch.arange(n_all) * (2 ** depth - 1)  # first node of each tree in the flat arrays
        step = 1 - base  # heap child 2i+1 (+1 for right), kept in flat numbering: g' = 2g + 1 - base (+1)
        leaf_base = torch.arange(n_all) * 2 ** depth - (2 ** depth - 1) - base
        root_feature, root_threshold = self.feature[:, 0].long(), self.threshold[:, 0]
        out = torch.empty(len(x), n_models, dtype=torch.float64)
        for start in range(0, len(x), chunk):
            xc = x[start:start + chunk]
            node = 2 * base + step + (xc[:, root_feature] > root_threshold)  # the root is the same for every row
            for _ in range(1, depth):
                node = 2 * node + step + (torch.gather(xc, 1, feature[node]) > threshold[node])
            values = leaf[node + leaf_base]  # (rows, models x trees)
            out[start:start + chunk] = values.view(len(xc), n_models, n_trees).sum(2)
        return out + self.baseline


def _fill(nodes, i: int, pos: int, level: int, depth: int, feature, threshold, leaf) -> None:
    """Copy scikit-learn's node i into heap position `pos` (at `level`) of a perfect tree of `depth`."""
    node = nodes[i]
    if node["is_leaf"]:
        span = 2 ** (depth - level)  # a leaf above the last level covers all its descendants' leaves
        first = (pos + 1) * span - 2 ** depth  # its leftmost descendant's heap index at level D, minus 2^D - 1
        leaf[first:first + span] = node["value"]
        return  # its internal descendants keep threshold +inf: every row goes left, to the leftmost copy
    if level >= depth:
        raise ValueError(f"a tree is deeper than {depth}; fit with max_depth={depth}")
    if node["is_categorical"]:
        raise ValueError("categorical splits are not supported")
    feature[pos] = node["feature_idx"]
    threshold[pos] = node["num_threshold"]
    _fill(nodes, int(node["left"]), 2 * pos + 1, level + 1, depth, feature, threshold, leaf)
    _fill(nodes, int(node["right"]), 2 * pos + 2, level + 1, depth, feature, threshold, leaf)
