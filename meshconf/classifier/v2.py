"""Estimator v2 (the default): per-joint monotone error trees, mesh-level models, a stack fitted out of fold.

Parts, each fitted on the same rows:
* the multi-task network ensemble (v1's architecture, temperatures left at 1): mesh logit, worst-joint logits,
  per-joint error;
* 14 gradient-boosted regressors of clip(SE_j, 0, 1), monotone increasing in the joint's own ED and in the sorted
  ED (the per-joint error is not at a plateau: these raise the correlation with the true error);
* 14 boosted classifiers "is joint j off by more than 0.1?" (monotone the same way) and one mesh-level classifier
  "is every joint within 0.1?" (monotone decreasing in the sorted ED).

How they combine (`V2.combine`), with six numbers fitted on out-of-fold predictions of block cross-validation
(`prepare`'s folds: contiguous blocks of frames, a purge gap, the clean and occluded copy of a frame in one fold):
* joint_error = max(0, w trees + (1 - w) network), w maximising the mean per-joint Pearson r;
* worst joint = softmax(a log p_network + b log(joint_error + 0.01)), (a, b) minimising the cross-entropy;
* P(accurate) = sigmoid(c1 network logit + c2 sum_j log(1 - p_j) + c3 mesh logit + c0), a logistic regression.
The per-joint bounds and operating points are calibrated on the same out-of-fold predictions, which mix the clean
and the occluded regime. The shipped parts are then refitted on every training row; only arrays ship.

Every choice above (tree sizes, which parts, the combination) was made on block cross-validation of the 3DPW
training sets; see the README for the numbers.
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np
import torch
from torch import nn

from .. import constants as C
from ..errors import MeshconfError
from .data import EDSet, Prepared, cv_split
from ..sp_op.signals import SIGNAL_COLUMNS
from .calibration import BOUND_EPS
from .forest import Forest, forest_features, monotone_constraints
from .models import Ensemble, Estimator, Prediction
from .v2net import V2, Parts

FIXED = dict(max_leaf_nodes=None, early_stopping=False)  # perfect trees of max_depth, a fixed number of them
ERROR_TREES = dict(max_depth=5, learning_rate=0.1, max_iter=80, l2_regularization=1.0)
JOINT_TREES = dict(max_depth=4, learning_rate=0.2, max_iter=50, l2_regularization=1.0)
MESH_TREES = dict(max_depth=5, learning_rate=0.1, max_iter=80, l2_regularization=1.0)
NETWORK = dict(members=5, epochs=8, batch=256, lr=2e-3, hidden=256)
BLEND_GRID = np.round(np.linspace(0, 1, 21), 2)


def _tensors32(rows: EDSet) -> tuple:
    """ed, conf [, signals] as float32 tensors: what `V2.parts` takes."""
    arrays = (rows.ed, rows.conf) + (() if rows.signals is None else (rows.signals,))
    return tuple(torch.from_numpy(np.asarray(a, dtype=np.float32)) for a in arrays)


def _classifier_labels(y: np.ndarray, what: str) -> np.ndarray:
    if y.min() == y.max():
        raise MeshconfError(f"too little training data: {what} has only one class in a training fold; "
                            f"prepare more rows (or fewer --folds)")
    return y


def fit_parts(rows: EDSet, seed: int, held_out: EDSet | None = None, progress: bool = True,
              label: str = "") -> tuple[V2, list]:
    """Every part of v2 fitted on `rows` (SE <= 1); `held_out` only scores the network's curves."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from tqdm import tqdm

    from .training import train_member, tensors

    train = tensors(rows)
    val = tensors(held_out) if held_out is not None else None
    nets, histories = [], []
    for k in range(NETWORK["members"]):
        net, history = train_member(train, val, seed + k, NETWORK["epochs"], NETWORK["batch"], NETWORK["lr"],
                                  NETWORK["hidden"], progress, desc=f"{label}network {k + 1}/{NETWORK['members']}",
                                  temperature=False)
        history.name = f"{label}network member {k + 1}/{NETWORK['members']}"
        history.held_out_label = "held-out fold"
        nets.append(net)
        histories.append(history)
    x = forest_features(*_tensors32(rows)).double().numpy()
    n_sig = 0 if rows.signals is None else rows.signals.shape[1]
    se = np.asarray(rows.se, dtype=np.float64)
    error, bad = [], []
    for j in tqdm(range(C.NUM_J14), desc=f"{label}per-joint trees", disable=None if progress else True,
                  leave=False):
        cst = monotone_constraints(j, 1, n_sig)
        error.append(HistGradientBoostingRegressor(**ERROR_TREES, **FIXED, monotonic_cst=cst,
                                                   random_state=seed + j).fit(x, np.clip(se[:, j], 0, 1)))
        bad.append(HistGradientBoostingClassifier(**JOINT_TREES, **FIXED, monotonic_cst=cst,
                                                  random_state=seed + 100 + j).fit(
            x, _classifier_labels(se[:, j] > C.ACCURATE_SE_THRESHOLD, f"joint {j} off by more than 0.1")))
    mesh = HistGradientBoostingClassifier(**MESH_TREES, **FIXED, monotonic_cst=monotone_constraints(None, -1, n_sig),
                                          random_state=seed + 200).fit(
        x, _classifier_labels(rows.label_m, "the mesh label"))
    model = V2(Ensemble(nets), Forest.from_sklearn(error, ERROR_TREES["max_depth"]),
               Forest.from_sklearn(bad, JOINT_TREES["max_depth"]), Forest.from_sklearn([mesh],
                                                                                      MESH_TREES["max_depth"]))
    model.n_signals.fill_(n_sig)
    return model.eval(), histories


def _pearson_mean(err: np.ndarray, se: np.ndarray) -> float:
    from .metrics import pearson_per_joint

    return float(np.nanmean(pearson_per_joint(err, se)))


def fit_combination(model: V2, parts: Parts, rows: EDSet) -> dict:
    """The six combining numbers from out-of-fold parts of `rows` (see the module docstring); returns what was
    chosen, for the metadata."""
    from sklearn.linear_model import LogisticRegression

    se = np.asarray(rows.se, np.float64)
    scores = {}
    for w in BLEND_GRID:
        model.blend.fill_(float(w))
        scores[float(w)] = _pearson_mean(model.combine(parts)[2].numpy(), se)
    best = max(scores, key=lambda w: (scores[w], -w))  # ties: the smaller tree weight
    model.blend.fill_(best)
    err = model.combine(parts)[2]
    target = torch.from_numpy(rows.label_wj)
    coef = torch.tensor([1.0, 0.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([coef], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")
    log_err = torch.log(err + BOUND_EPS)

    def closure():
        opt.zero_grad()
        loss = nn.functional.cross_entropy(coef[0] * parts.net_wj + coef[1] * log_err, target)
        loss.backward()
        return loss

    opt.step(closure)
    model.wj_coef.copy_(coef.detach())
    z = torch.stack([parts.net_mc, parts.log_fine, parts.mesh], 1).numpy()
    lr = LogisticRegression().fit(z, rows.label_m)
    model.stack.copy_(torch.as_tensor([*lr.coef_[0], lr.intercept_[0]], dtype=torch.float64))
    return {"blend_tree_weight": best, "blend_r_by_weight": scores,
            "worst_joint_coefficients": [float(c) for c in model.wj_coef],
            "stack_coefficients": [float(c) for c in model.stack],
            "stack_inputs": ["network mesh logit", "sum_j log(1 - p_j) of the per-joint classifiers",
                             "mesh-level classifier logit", "intercept"]}


def to_prediction(model: V2, parts: Parts) -> Prediction:
    logit, wj, err = model.combine(parts)
    return Prediction(torch.sigmoid(logit).numpy(), torch.softmax(wj, 1).numpy(), err.numpy())


def train_v2(prep: Prepared, seed: int = 0, progress: bool = True,
             keep: dict | None = None) -> tuple[Estimator, list, dict]:
    """Out-of-fold parts over the prepared folds, the combination and calibration fitted on them, then every part
    refitted on all rows. Returns the estimator, the first fold's network curves and the out-of-fold metrics; `keep`
    (a dict) receives the out-of-fold "parts" and their "rows", for `save_out_of_fold`."""
    from . import metrics as M

    if prep.pool is None:
        raise MeshconfError("these prepared tables have no cross-validation folds (pool.npz); run `meshconf prepare` "
                            "again with this version")
    sane = np.flatnonzero(~(prep.pool.se > C.TRAIN_MAX_SE).any(axis=1))
    pool = prep.pool.subset(sane, "pool")
    folds = sorted(int(f) for f in np.unique(prep.pool_fold))
    if len(folds) < 2:
        raise MeshconfError("the prepared tables have a single fold; cross-validation needs at least 2")
    fold, purge = prep.pool_fold[sane], int(prep.split.get("purge", 0))
    oof_parts, oof_rows, curves = [], [], []
    for k in folds:
        fit_idx, held_idx = cv_split(pool, fold, k, purge)
        label = f"fold {k + 1}/{len(folds)}: "
        model, histories = fit_parts(pool.subset(fit_idx), seed, pool.subset(held_idx), progress, label)
        with torch.no_grad():
            oof_parts.append(model.parts(*_tensors32(pool.subset(held_idx))))
        oof_rows.append(held_idx)
        if k == folds[0]:
            curves = histories
    order = np.concatenate(oof_rows)
    parts = Parts.cat(oof_parts)
    rows = pool.subset(order, "out-of-fold")
    final, _ = fit_parts(pool, seed, None, progress, "all rows: ")
    combination = fit_combination(final, parts, rows)
    oof_pred = to_prediction(final, parts)
    estimator = Estimator(final, "meshconfv2", {
        "recipe": "meshconf v2: network ensemble + monotone per-joint error trees + per-joint and mesh-level "
                  "classifier trees, combined and calibrated on out-of-fold predictions of block cross-validation",
        "seed": seed, "network": NETWORK, "trees": {"error": {**ERROR_TREES, **FIXED, "models": 14},
                                                    "joint_bad": {**JOINT_TREES, **FIXED, "models": 14},
                                                    "mesh": {**MESH_TREES, **FIXED, "models": 1}},
        "features": "ED, OpenPose confidence, sorted ED, number of missing joints, mean ED (float32)"
                    + ("" if pool.signals is None else ", and the extracted signals (trees only)"),
        "signals": None if pool.signals is None else list(SIGNAL_COLUMNS),
        "monotone": "+1 on the joint's own ED and the sorted ED (mesh classifier: -1 on the sorted ED)",
        "folds": len(folds), "train_rows": len(pool), "train_filter": "rows with SE > 1 dropped",
        **combination})
    estimator.calibrate_prediction(oof_pred, rows.se, groups=rows.source)
    oof_pred.joint_error_bound = estimator.bound_of(oof_pred.joint_error)
    oof_metrics = M.evaluate(oof_pred, rows, estimator.operating_points)
    estimator.metadata["calibration"] = ("out-of-fold predictions of every training row, bounds and operating points "
                                         "holding in each source (clean and occluded) separately")
    estimator.metadata["cv_metrics"] = _scalars(oof_metrics)
    estimator.metadata["cv_metrics_by_source"] = {
        str(g): _scalars(M.evaluate(_rows_of(oof_pred, rows.source == g), rows.subset(np.flatnonzero(
            rows.source == g)), estimator.operating_points)) for g in np.unique(rows.source)}
    if keep is not None:
        keep.update(parts=parts, rows=rows)
    return estimator, curves, oof_metrics


def save_out_of_fold(path, parts: Parts, rows: EDSet) -> None:
    """The out-of-fold parts of every training row with its ground truth and origin: what the combination and the
    calibration were fitted on, for studying them without retraining (`Parts` field names, plus se/source/rows)."""
    from ..files.fileio import atomic_path

    with atomic_path(path, ".npz") as tmp:
        np.savez_compressed(tmp, se=rows.se, source=rows.source.astype(str), rows=rows.rows,
                            **{f.name: getattr(parts, f.name).numpy() for f in fields(Parts)})


def _scalars(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if not isinstance(v, (list, dict))}
    for point in metrics.get("operating_points", []):
        out[f"precision_at_{point['target_precision']:g}"] = point["precision"]
        out[f"acceptance_at_{point['target_precision']:g}"] = point["acceptance"]
    return out


def _rows_of(pred: Prediction, mask) -> Prediction:
    return Prediction(pred.p_accurate[mask], pred.worst_joint_prob[mask], pred.joint_error[mask],
                      None if pred.joint_error_bound is None else pred.joint_error_bound[mask])
