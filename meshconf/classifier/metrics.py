"""Honest metrics for error estimators, and the baselines they must beat (SPEC-original §2.7).

Accuracy is divided by the number of samples (the original divided by batches x batch size). Everything is a pure
function of a `Prediction` and an `EDSet` with ground truth.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score

from .. import constants as C
from .data import EDSet, mesh_label, original_filter
from .calibration import acceptance_report, bound_report, risk_coverage
from .models import Prediction

ECE_BINS = 10


def topk_hit(prob: np.ndarray, label: np.ndarray, k: int) -> np.ndarray:
    top = np.argsort(-prob, axis=1, kind="stable")[:, :k]
    return (top == label[:, None]).any(axis=1)


def expected_calibration_error(p: np.ndarray, y: np.ndarray, bins: int = ECE_BINS):
    """ECE of P(accurate) with equal-width bins; also returns the per-bin (confidence, frequency, count)."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, bins - 1)
    conf, freq, count = np.zeros(bins), np.zeros(bins), np.zeros(bins, dtype=np.int64)
    for b in range(bins):
        sel = which == b
        count[b] = sel.sum()
        if count[b]:
            conf[b], freq[b] = p[sel].mean(), y[sel].mean()
    ece = float((count / max(len(p), 1) * np.abs(conf - freq)).sum())
    return ece, conf, freq, count


def pearson_per_joint(pred_err: np.ndarray, se: np.ndarray) -> np.ndarray:
    out = np.full(C.NUM_J14, np.nan)
    for j in range(C.NUM_J14):
        if pred_err[:, j].std() > 0 and se[:, j].std() > 0:
            out[j] = np.corrcoef(pred_err[:, j], se[:, j])[0, 1]
    return out


def evaluate(pred: Prediction, s: EDSet, points=None) -> dict:
    """Every metric of one estimator on one set with ground truth (`points`: the estimator's operating points)."""
    y = mesh_label(s.se)
    wj = s.label_wj
    p = pred.p_accurate
    said = p > 0.5
    inaccurate = y == 0
    out = {
        "n": int(len(y)),
        "accurate_rate": float(y.mean()),
        "mc_accuracy": float((said == y).mean()),
        "mc_precision_accurate": float((said & (y == 1)).sum() / max(said.sum(), 1)),
        "mc_recall_accurate": float((said & (y == 1)).sum() / max((y == 1).sum(), 1)),
        "mc_precision_inaccurate": float((~said & inaccurate).sum() / max((~said).sum(), 1)),
        "mc_recall_inaccurate": float((~said & inaccurate).sum() / max(inaccurate.sum(), 1)),
        "mc_auroc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan"),
        "mc_auprc_accurate": float(average_precision_score(y, p)) if y.sum() else float("nan"),
        "mc_auprc_inaccurate": float(average_precision_score(1 - y, 1 - p)) if inaccurate.sum() else float("nan"),
        "wj_top1": float(topk_hit(pred.worst_joint_prob, wj, 1).mean()),
        "wj_top3": float(topk_hit(pred.worst_joint_prob, wj, 3).mean()),
        "wj_top1_inaccurate": float(topk_hit(pred.worst_joint_prob[inaccurate], wj[inaccurate], 1).mean()),
        "wj_top3_inaccurate": float(topk_hit(pred.worst_joint_prob[inaccurate], wj[inaccurate], 3).mean()),
    }
    ece, conf, freq, count = expected_calibration_error(p, y)
    out.update(mc_ece=ece, reliability={"confidence": conf.tolist(), "frequency": freq.tolist(),
                                        "count": count.tolist()})
    coverage, risk, aurc = risk_coverage(p, y)
    step = max(1, len(coverage) // 200)
    out.update(aurc=aurc, risk_coverage={"coverage": coverage[::step].tolist(), "risk": risk[::step].tolist()})
    if points:
        out["operating_points"] = acceptance_report(p, y, points)
    if pred.joint_error_bound is not None:
        out["bounds"] = bound_report(pred.joint_error_bound, s.se, C.NORM_UNIT_PX)
        out["bound_coverage"] = out["bounds"]["coverage"]
        out["bound_coverage_worst_joint"] = min(out["bounds"]["coverage_per_joint"])
        out["bound_px_median"] = out["bounds"]["bound_px_median"]
    if pred.joint_error is not None:
        r = pearson_per_joint(pred.joint_error, s.se)
        out.update(joint_pearson_r=r.tolist(), joint_pearson_r_mean=float(np.nanmean(r)),
                   joint_mae_px=float(np.abs(pred.joint_error - s.se).mean() * C.NORM_UNIT_PX))
    return out


# ----------------------------------------------------------------------------------------------------------------
# Baselines: each returns a Prediction, so the same metrics apply. Scores are monotone maps of the rule's quantity,
# so AUROC ranks exactly what the rule ranks and p > 0.5 is exactly the rule's decision.

def _sharp(x, scale=0.01):
    return 1.0 / (1.0 + np.exp(-np.clip(x / scale, -50, 50)))


def _ranking(values: np.ndarray) -> np.ndarray:
    e = np.exp((values - values.max(axis=1, keepdims=True)) / 0.05)
    return e / e.sum(axis=1, keepdims=True)


def majority_baseline(train_label_m: np.ndarray, n: int) -> Prediction:
    p = float(train_label_m.mean() > 0.5)
    return Prediction(np.full(n, 0.25 + 0.5 * p), np.full((n, C.NUM_J14), 1.0 / C.NUM_J14))


def max_ed_baseline(s: EDSet) -> Prediction:
    """Accurate iff max ED <= 0.1 (calculate_wj (3)); worst joint = ED argmax, top 3 of ED (calculate_wj (1), (2))."""
    return Prediction(_sharp(C.ACCURATE_SE_THRESHOLD - s.ed.max(axis=1)), _ranking(s.ed), s.ed.copy())


def fit_line_baseline(train: EDSet) -> np.ndarray:
    """SE ~ m*ED + c per joint (line_fitting.py): joint and hips/neck detected (conf >= 0.1), SE_j <= 1."""
    theta = np.zeros((C.NUM_J14, 2))
    base = ((train.conf[:, C.J14_R_HIP] >= C.TRAIN_MIN_CONF) & (train.conf[:, C.J14_L_HIP] >= C.TRAIN_MIN_CONF)
            & (train.conf[:, C.J14_NECK] >= C.TRAIN_MIN_CONF))
    for j in range(C.NUM_J14):
        sel = base & (train.conf[:, j] >= C.TRAIN_MIN_CONF) & (train.se[:, j] <= C.TRAIN_MAX_SE)
        theta[j] = np.polyfit(train.ed[sel, j], train.se[sel, j], 1)
    return theta


def line_baseline(s: EDSet, theta: np.ndarray) -> Prediction:
    est = s.ed * theta[:, 0] + theta[:, 1]
    return Prediction(_sharp(C.ACCURATE_SE_THRESHOLD - est.max(axis=1)), _ranking(est), est)


def baselines(s: EDSet, train: EDSet) -> dict[str, Prediction]:
    theta = fit_line_baseline(train)
    return {"majority class": majority_baseline(mesh_label(train.se[original_filter(train)]), len(s)),
            "max-ED threshold / ED argmax": max_ed_baseline(s),
            "per-joint line fit": line_baseline(s, theta)}

