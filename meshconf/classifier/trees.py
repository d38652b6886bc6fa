"""v1's per-joint gradient-boosted trees ("is joint j off by more than 0.1?") as plain tensors, and v1's stack.

(v2 stores perfect trees of bounded depth instead, evaluated level by level: `forest.py`. v1's trees, of unbounded
depth, are walked node by node here and take about 20 s for 35,515 rows; they stay for loading v1 as shipped.)

Training uses scikit-learn's HistGradientBoostingClassifier; what ships is only arrays (split feature, threshold,
children, leaf values) in safetensors, evaluated here with torch, so loading runs no code and needs no sklearn.

Why: the mesh label is "every joint within 0.1", and per-joint models learn from 14x more labels than one mesh
classifier. The product of the per-joint "fine" probabilities ranks meshes better than either network head
(3DPW test AUROC 0.881 against 0.868); a logistic stacker over it and the network's calibrated logit, fitted on the
held-out split, gives the final P(accurate).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from .. import constants as C
from .data import EDSet
from .forest import forest_features

GB_PARAMS = dict(max_iter=200, learning_rate=0.08, max_leaf_nodes=31, l2_regularization=1.0)


def tree_features(ed: torch.Tensor, conf: torch.Tensor) -> torch.Tensor:
    """v1's tree features: `forest_features` in float64."""
    return forest_features(ed, conf, dtype=torch.float64)


class JointTrees(nn.Module):
    """14 boosted binary classifiers stored as flat node arrays; forward -> (N,14) P(joint error > 0.1)."""

    def __init__(self, n_nodes: int = 1, n_trees: int = 1):
        super().__init__()
        self.register_buffer("feature", torch.zeros(n_nodes, dtype=torch.int32))
        self.register_buffer("threshold", torch.zeros(n_nodes, dtype=torch.float64))
        self.register_buffer("left", torch.zeros(n_nodes, dtype=torch.int32))
        self.register_buffer("right", torch.zeros(n_nodes, dtype=torch.int32))
        self.register_buffer("is_leaf", torch.ones(n_nodes, dtype=torch.bool))
        self.register_buffer("value", torch.zeros(n_nodes, dtype=torch.float64))
        self.register_buffer("roots", torch.zeros(C.NUM_J14, n_trees, dtype=torch.int64))
        self.register_buffer("baseline", torch.zeros(C.NUM_J14, dtype=torch.float64))
        self.register_buffer("depth", torch.zeros((), dtype=torch.int64))

    @classmethod
    def from_sklearn(cls, models) -> "JointTrees":
        feature, threshold, left, right, leaf, value, roots = [], [], [], [], [], [], []
        offset, depth = 0, 0
        for model in models:
            model_roots = []
            for (predictor,) in model._predictors:  # binary classification: one tree per iteration
                nodes = predictor.nodes
                if nodes["is_categorical"].any():
                    raise ValueError("categorical splits are not supported")
                model_roots.append(offset)
                feature.append(nodes["feature_idx"])
                threshold.append(nodes["num_threshold"])
                left.append(np.where(nodes["is_leaf"], 0, nodes["left"] + offset))
                right.append(np.where(nodes["is_leaf"], 0, nodes["right"] + offset))
                leaf.append(nodes["is_leaf"].astype(bool))
                value.append(nodes["value"])
                depth = max(depth, int(nodes["depth"].max()))
                offset += len(nodes)
            roots.append(model_roots)
        out = cls(offset, len(roots[0]))
        out.feature.copy_(torch.from_numpy(np.concatenate(feature).astype(np.int32)))
        out.threshold.copy_(torch.from_numpy(np.concatenate(threshold).astype(np.float64)))
        out.left.copy_(torch.from_numpy(np.concatenate(left).astype(np.int32)))
        out.right.copy_(torch.from_numpy(np.concatenate(right).astype(np.int32)))
        out.is_leaf.copy_(torch.from_numpy(np.concatenate(leaf)))
        out.value.copy_(torch.from_numpy(np.concatenate(value).astype(np.float64)))
        out.roots.copy_(torch.as_tensor(roots, dtype=torch.int64))
        out.baseline.copy_(torch.as_tensor([float(np.ravel(m._baseline_prediction)[0]) for m in models]))
        out.depth.fill_(depth)
        return out

    def forward(self, ed: torch.Tensor, conf: torch.Tensor, chunk: int = 8192) -> torch.Tensor:
        x = tree_features(ed, conf)
        out = []
        for start in range(0, len(x), chunk):
            xt = x[start:start + chunk].T.contiguous()  # (F, n)
            n = xt.shape[1]
            raw = []
            for j in range(C.NUM_J14):
                node = self.roots[j][:, None].expand(-1, n).clone()  # (trees, n)
                for _ in range(int(self.depth) + 1):
                    f = self.feature[node].long()
                    go_left = torch.gather(xt, 0, f) <= self.threshold[node]
                    child = torch.where(go_left, self.left[node], self.right[node]).long()
                    node = torch.where(self.is_leaf[node], node, child)
                raw.append(self.baseline[j] + self.value[node].sum(0))
            out.append(torch.sigmoid(torch.stack(raw, 1)))
        return torch.cat(out) if out else torch.zeros(0, C.NUM_J14, dtype=torch.float64)


class Stacked(nn.Module):
    """P(accurate) = sigmoid(a log prod_j(1 - p_j) + b * network logit + c); worst joint and joint errors from the
    network ensemble."""

    def __init__(self, network: nn.Module, trees: JointTrees):
        super().__init__()
        self.network = network
        self.trees = trees
        self.register_buffer("coef", torch.zeros(3, dtype=torch.float64))

    def stack_inputs(self, ed, conf) -> tuple[torch.Tensor, tuple]:
        mc, wj, err = self.network(ed, conf)
        p_bad = self.trees(ed, conf)
        log_fine = torch.log(torch.clamp(1 - p_bad, min=1e-12)).sum(1)
        return torch.stack([log_fine, mc.double()], 1), (wj, err)

    def forward(self, ed, conf):
        z, (wj, err) = self.stack_inputs(ed, conf)
        logit = z[:, 0] * self.coef[0] + z[:, 1] * self.coef[1] + self.coef[2]
        return logit.float(), wj, err


def fit_joint_trees(train: EDSet, seed: int = 0, progress: bool = True) -> JointTrees:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from tqdm import tqdm

    ed = torch.from_numpy(np.asarray(train.ed, dtype=np.float32))
    conf = torch.from_numpy(np.asarray(train.conf, dtype=np.float32))
    x = tree_features(ed, conf).numpy()  # from float32 inputs, as at inference
    models = []
    for j in tqdm(range(C.NUM_J14), desc="per-joint trees", disable=None if progress else True):
        models.append(HistGradientBoostingClassifier(**GB_PARAMS, random_state=seed + j)
                      .fit(x, train.se[:, j] > C.ACCURATE_SE_THRESHOLD))
    return JointTrees.from_sklearn(models)


def fit_stack(stacked: Stacked, val: EDSet) -> None:
    """Logistic regression of the mesh label on (log prod fine, network logit) over the held-out split."""
    from sklearn.linear_model import LogisticRegression

    with torch.no_grad():
        z, _ = stacked.stack_inputs(torch.from_numpy(np.asarray(val.ed, dtype=np.float32)),
                                    torch.from_numpy(np.asarray(val.conf, dtype=np.float32)))
    lr = LogisticRegression().fit(z.numpy(), val.label_m)
    stacked.coef.copy_(torch.as_tensor([*lr.coef_[0], lr.intercept_[0]], dtype=torch.float64))
