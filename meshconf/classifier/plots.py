"""Figures for training and evaluation (matplotlib, headless)."""

from __future__ import annotations


import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from .. import constants as C  # noqa: E402
from ..files.fileio import atomic_path  # noqa: E402


def _save(fig, path):
    try:
        with atomic_path(path, ".png") as tmp:
            fig.savefig(tmp, dpi=110, bbox_inches="tight")
    finally:
        plt.close(fig)


def training_curves(histories, path) -> None:
    """Loss and accuracy per epoch, training and validation, one row per model."""
    fig, axes = plt.subplots(len(histories), 2, figsize=(11, 3.3 * len(histories)), squeeze=False)
    for row, h in zip(axes, histories):
        epochs = np.arange(1, len(h.curves["train_loss"]) + 1)
        for ax, key, label in ((row[0], "loss", "loss"), (row[1], "acc", "accuracy")):
            ax.plot(epochs, h.curves[f"train_{key}"], label="training")
            if h.curves.get(f"val_{key}"):
                ax.plot(epochs, h.curves[f"val_{key}"], label=h.held_out_label)
            ax.set_title(f"{h.name}: {label}")
            ax.set_xlabel("epoch")
            ax.grid(alpha=0.3)
            ax.legend()
    fig.tight_layout()
    _save(fig, path)


def reliability(results: dict, path) -> None:
    """Reliability diagrams of P(mesh accurate): results[model][set] = metrics dict."""
    models = list(results)
    sets = list(next(iter(results.values())))
    fig, axes = plt.subplots(len(models), len(sets), figsize=(3.6 * len(sets), 3.4 * len(models)), squeeze=False)
    for i, m in enumerate(models):
        for j, s in enumerate(sets):
            ax = axes[i][j]
            r = results[m][s]["reliability"]
            conf, freq, count = map(np.asarray, (r["confidence"], r["frequency"], r["count"]))
            ok = count > 0
            centers = (np.arange(len(conf)) + 0.5) / len(conf)
            ax.bar(centers[ok], freq[ok], width=1 / len(conf), alpha=0.6, edgecolor="k", label="fraction accurate per bin")
            ax.plot([0, 1], [0, 1], "k--", lw=1, label="ideal")
            ax.plot(conf[ok], freq[ok], "o-", color="C3", ms=3, label="at the bin's mean P")
            ax.set_title(f"{m}\n{s}: ECE {results[m][s]['mc_ece']:.3f}", fontsize=9)
            ax.set_xlabel("predicted P(accurate)")
            ax.set_ylabel("fraction accurate")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def joint_correlation(results: dict, path) -> None:
    """Per-joint Pearson r between predicted and true error, per model and set."""
    rows = [(m, s, results[m][s]["joint_pearson_r"]) for m in results for s in results[m]
            if "joint_pearson_r" in results[m][s]]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(12, 4))
    width = 0.8 / len(rows)
    x = np.arange(C.NUM_J14)
    for k, (m, s, r) in enumerate(rows):
        ax.bar(x + k * width, r, width, label=f"{m} / {s}")
    ax.set_xticks(x + 0.4 - width / 2, C.J14_NAMES, rotation=45, ha="right")
    ax.set_ylabel("Pearson r (predicted vs true SE)")
    ax.set_ylim(0, 1)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def risk_coverage(results: dict, path) -> None:
    """Risk (share of accepted meshes that are inaccurate) against coverage (share accepted), most confident first,
    one panel per set, one line per estimator; AURC in the legend."""
    models = list(results)
    sets = list(next(iter(results.values())))
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False)
    for j, s in enumerate(sets):
        ax = axes[0][j]
        for m in models:
            r = results[m][s]
            curve = r["risk_coverage"]
            ax.plot(curve["coverage"], curve["risk"], lw=1.5, label=f"{m} (AURC {r['aurc']:.3f})")
        base = 1 - results[models[0]][s]["accurate_rate"]
        ax.axhline(base, color="k", ls=":", lw=1, label=f"accept all ({base:.2f})")
        ax.set_title(s, fontsize=10)
        ax.set_xlabel("coverage (share of meshes accepted)")
        ax.set_ylabel("risk (inaccurate among accepted)")
        ax.set_xlim(0, 1)
        ax.set_ylim(0, max(0.05, base * 1.3))
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)
