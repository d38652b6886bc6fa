"""Calibration that ships with an estimator: split-conformal per-joint error bounds, operating points (a threshold
on P(accurate) per target precision of accepted meshes), and the risk-coverage curve that evaluates them."""

from __future__ import annotations

import numpy as np

BOUND_EPS = 0.01  # normalised units (1.1 px): the log scale of the bounds starts near the label's resolution


def conformal_log_quantiles(estimate: np.ndarray, se: np.ndarray, coverage: float = 0.9,
                            eps: float = 0.01) -> np.ndarray:
    """Per joint, the split-conformal quantile of log(SE + eps) - log(estimate + eps): with n calibration rows, the
    ceil((n + 1) coverage)-th smallest score, so a new exchangeable row is covered with probability >= coverage."""
    scores = np.log(np.asarray(se, np.float64) + eps) - np.log(np.asarray(estimate, np.float64) + eps)
    out = np.empty(scores.shape[1])
    for j in range(scores.shape[1]):
        s = np.sort(scores[np.isfinite(scores[:, j]), j])
        k = min(len(s), int(np.ceil((len(s) + 1) * coverage))) - 1
        out[j] = s[k] if len(s) else np.inf
    return out


def bound_report(bound: np.ndarray, se: np.ndarray, px: float = 112.0) -> dict:
    """Marginal coverage (per joint and overall) and width of per-joint upper bounds."""
    ok = np.isfinite(se)
    covered = (se <= bound) & ok
    per_joint = covered.sum(0) / np.maximum(ok.sum(0), 1)
    return {"coverage": float(covered.sum() / max(ok.sum(), 1)),
            "coverage_per_joint": [float(c) for c in per_joint],
            "bound_px_mean": float(np.mean(bound) * px), "bound_px_median": float(np.median(bound) * px)}


def accepted(p_accurate, threshold: float):
    """The acceptance rule at an operating point (scalars or arrays): P(accurate) >= threshold; NaN never passes."""
    p = np.asarray(p_accurate, dtype=np.float64)
    return np.isfinite(p) & (p >= threshold)


def operating_points(p: np.ndarray, label: np.ndarray, precisions=(0.8, 0.85, 0.9, 0.95)) -> list:
    """For each target precision of accepted meshes (accepted: P(accurate) >= threshold), the lowest threshold
    reaching it on these rows, as [precision, threshold] pairs; targets no threshold reaches are left out."""
    order = np.argsort(-p, kind="stable")
    ps, ys = np.asarray(p)[order], np.asarray(label)[order]
    precision_at = np.cumsum(ys) / np.arange(1, len(ys) + 1)  # accepting the top k
    out = []
    for target in precisions:
        ok = np.flatnonzero(precision_at >= target)
        ok = ok[ok >= 19]  # at least 20 accepted meshes, so a precision is not one lucky row
        if len(ok):
            k = ok.max()
            out.append([float(target), float(ps[k])])
    return out


def acceptance_report(p: np.ndarray, label: np.ndarray, points) -> list[dict]:
    """Precision and acceptance each operating point reaches on a set."""
    rows = []
    for target, threshold in points:
        passed = accepted(p, threshold)
        rows.append({"target_precision": target, "threshold": threshold,
                     "precision": float(label[passed].mean()) if passed.any() else None,
                     "acceptance": float(passed.mean())})
    return rows


def risk_coverage(p: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(coverage, risk, AURC): accepting meshes from the most to the least confident, the share accepted and the
    share of accepted meshes that are inaccurate; AURC is the mean risk over all coverages (lower is better)."""
    order = np.argsort(-np.asarray(p), kind="stable")
    wrong = 1 - np.asarray(label)[order]
    k = np.arange(1, len(order) + 1)
    risk = np.cumsum(wrong) / k
    return k / len(order), risk, float(risk.mean())


def group_quantiles(estimate, se, groups, coverage: float, eps: float) -> np.ndarray:
    """Per joint, the largest of each group's conformal quantile: the bound then covers every group."""
    return np.max([conformal_log_quantiles(estimate[groups == g], se[groups == g], coverage, eps)
                   for g in np.unique(groups)], axis=0)


def group_operating_points(p, label, groups, precisions=(0.8, 0.85, 0.9, 0.95)) -> list:
    """`operating_points` that every group reaches: per target, the largest of the groups' thresholds."""
    per_group = [dict(operating_points(p[groups == g], label[groups == g], precisions)) for g in np.unique(groups)]
    return [[float(t), max(points[t] for points in per_group)] for t in precisions
            if all(t in points for points in per_group)]


# ---------------------------------------------------------------------------------------------------------------
# Recalibration of P(accurate): a monotone map fitted on a user's own labelled rows (`meshconf calibrate`), stored in
# the estimator's metadata as plain numbers and applied by `Estimator.predict`.

def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, np.float64), 1e-6, 1 - 1e-6)
    return np.log(p) - np.log1p(-p)


def recalibrated(p: np.ndarray, spec: dict | None) -> np.ndarray:
    """P(accurate) through a stored recalibration: None or "identity" (unchanged), "logistic"
    (sigmoid(a logit(p) + b)) or "isotonic" (piecewise linear through the fitted steps)."""
    method = (spec or {}).get("method", "identity")
    if method == "identity":
        return p
    if method == "logistic":
        z = float(spec["a"]) * _logit(p) + float(spec["b"])
        return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))
    if method == "isotonic":
        return np.interp(p, np.asarray(spec["x"], np.float64), np.asarray(spec["y"], np.float64))
    raise ValueError(f"unknown recalibration method {method!r}")


def fit_recalibration(p: np.ndarray, label: np.ndarray, method: str) -> dict:
    """A monotone map from P(accurate) to the observed frequency of accurate meshes."""
    p, label = np.asarray(p, np.float64), np.asarray(label, np.float64)
    if method == "identity":
        return {"method": "identity"}
    if min(label.sum(), len(label) - label.sum()) < MIN_CLASS_ROWS:
        raise ValueError(f"at least {MIN_CLASS_ROWS} accurate and {MIN_CLASS_ROWS} inaccurate meshes are needed")
    if method == "logistic":
        from sklearn.linear_model import LogisticRegression

        fit = LogisticRegression(C=1e4, max_iter=1000).fit(_logit(p)[:, None], label)
        return {"method": "logistic", "a": float(fit.coef_[0, 0]), "b": float(fit.intercept_[0])}
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        fit = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(p, label)
        # the fitted steps, shrunk a little towards 0.5 so no mesh is ever called certain from a handful of rows
        y = (fit.y_thresholds_ * len(p) + 0.5) / (len(p) + 1)
        return {"method": "isotonic", "x": fit.X_thresholds_.tolist(), "y": y.tolist()}
    raise ValueError(f"unknown recalibration method {method!r}")


RECALIBRATIONS = ("identity", "logistic", "isotonic")
# Fewer accurate (or inaccurate) meshes than this in a fold and a fitted map follows that fold's prevalence rather than
# the estimator's error (seen on 3DPW: 1,000 rows with 36 accurate meshes moved ECE on later rows from 0.014 to 0.10).
MIN_CLASS_ROWS = 50


def choose_recalibration(p: np.ndarray, label: np.ndarray, halves: list[np.ndarray]) -> tuple[dict, dict]:
    """The recalibration with the lowest held-out Brier score, cross-fitted over `halves` (row index arrays that
    together cover the rows: fit on all but one, score on that one); then refitted on every row. Identity is a
    candidate, so a well-calibrated estimator stays as it is. Returns (spec, held-out Brier per method)."""
    scores = {}
    for method in RECALIBRATIONS:
        total = 0.0
        try:
            for k, held in enumerate(halves):
                fit_rows = np.concatenate([h for i, h in enumerate(halves) if i != k])
                spec = fit_recalibration(p[fit_rows], label[fit_rows], method)
                total += float(((recalibrated(p[held], spec) - label[held]) ** 2).sum())
        except ValueError:  # one class only in a fold: this method cannot be fitted there
            total = float("inf")
        scores[method] = total / max(sum(len(h) for h in halves), 1)
    best = min(RECALIBRATIONS, key=lambda m: (scores[m], RECALIBRATIONS.index(m)))
    return fit_recalibration(p, label, best), scores
