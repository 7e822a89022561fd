"""Matplotlib figures for the report: training curves, ROC curves and score histograms (object-oriented API:
importing this module leaves the user's backend alone)."""
from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = ["curves_figure", "figure_png", "roc_figure", "histogram_figure", "plot_roc", "plot_histograms"]

_EVENT_COLOURS = {"step_size_too_large": "tab:red", "non_finite": "black", "exploding_scores": "tab:purple",
                  "attack_beaten_at_k_max": "tab:orange", "plateau": "tab:grey"}


def figure_png(figure: Any, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; closes it."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight")
    if hasattr(figure, "number"):  # a pyplot-managed figure: release it
        import matplotlib.pyplot as plt

        plt.close(figure)
    return buffer.getvalue()


def _series(history: Sequence[Mapping[str, Any]], name: str) -> tuple[np.ndarray, np.ndarray]:
    steps, values = [], []
    for record in history:
        value = record.get(name)
        if value is None:
            continue
        try:
            value = float(value)
        except (TypeError, ValueError):
            continue  # "nan"/"inf" strings from JSON
        if math.isfinite(value):
            steps.append(float(record["step"]))
            values.append(value)
    return np.asarray(steps), np.asarray(values)


def curves_figure(history: Sequence[Mapping[str, Any]], events: Sequence[Mapping[str, Any]] = ()) -> Any:
    """Three panels against the training step: BCE loss (and R1 when present); AUC(p_data vs perturbed p_0) and
    AUC(p_data vs clean p_0); the number of PGD steps K and the mean perturbation length."""
    fig = Figure(figsize=(13, 3.4))
    axes = fig.subplots(1, 3)
    ax = axes[0]
    for name, style in (("loss", "-"), ("r1", ":")):
        s, v = _series(history, name)
        if len(s) and (name != "r1" or np.any(v != 0)):
            ax.plot(s, v, style, label=name)
    ax.set_title("loss")
    ax = axes[1]
    for name, label in (("auc_adv", "AUC data vs perturbed p0"), ("auc_clean", "AUC data vs clean p0")):
        s, v = _series(history, name)
        if len(s):
            ax.plot(s, v, label=label)
    ax.axhline(0.5, color="grey", lw=0.6, ls="--")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title("AUC")
    ax = axes[2]
    s, v = _series(history, "k")
    if len(s):
        ax.step(s, v, where="post", label="K", color="tab:green")
    ax.set_title("K (PGD steps)")
    s, v = _series(history, "perturbation_l2")
    if len(s):
        twin = ax.twinx()
        twin.plot(s, v, color="tab:orange", lw=0.8, label="mean ||x*-x0||2")
        twin.set_ylabel("mean ||x* - x0||2", color="tab:orange")
    for ax in axes:
        ax.set_xlabel("step")
        for event in events:
            ax.axvline(float(event["step"]), color=_EVENT_COLOURS.get(event.get("kind", ""), "tab:red"), lw=0.8,
                       ls="--")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def plot_roc(ax: Any, curves: Mapping[str, Mapping[str, Any]], title: str) -> None:
    """ROC curves on ``ax``: ``curves[name] = {"fpr": [...], "tpr": [...], "auroc": float}``."""
    for name, curve in curves.items():
        ax.plot(curve["fpr"], curve["tpr"], lw=1.2, label=f"{name} ({float(curve['auroc']):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.6, ls="--")
    ax.set_xlabel("false positive rate (OOD accepted)")
    ax.set_ylabel("true positive rate (in-dist. accepted)")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6, loc="lower right")
    ax.grid(alpha=0.3)


def plot_histograms(ax: Any, in_scores: Any, groups: Mapping[str, Any], title: str) -> None:
    """Score histograms on ``ax``: in-distribution (filled) against each OOD group (outlines), shared bins."""
    arrays = [np.asarray(in_scores, dtype=np.float64)] + [np.asarray(g, dtype=np.float64) for g in groups.values()]
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 41)
    ax.hist(np.clip(arrays[0], lo, hi), bins=bins, density=True, alpha=0.45, color="black", label="in-distribution")
    for name, values in zip(groups, arrays[1:]):
        ax.hist(np.clip(values, lo, hi), bins=bins, density=True, histtype="step", lw=1.2, label=name)
    ax.set_xlabel("score f(x) (higher = in-distribution)")
    ax.set_ylabel("density")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=6)


def roc_figure(curves: Mapping[str, Mapping[str, Any]], title: str) -> Any:
    """A one-panel ROC figure (see :func:`plot_roc`)."""
    fig = Figure(figsize=(4.4, 4.2))
    ax = fig.subplots()
    plot_roc(ax, curves, title)
    fig.tight_layout()
    return fig


def histogram_figure(in_scores: Any, groups: Mapping[str, Any], title: str) -> Any:
    """A one-panel score-histogram figure (see :func:`plot_histograms`)."""
    fig = Figure(figsize=(5.2, 3.6))
    ax = fig.subplots()
    plot_histograms(ax, in_scores, groups, title)
    fig.tight_layout()
    return fig
