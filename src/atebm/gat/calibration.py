"""Calibration of the generative classifier g(x) = argmax_k d_k(x) + c_k (T Eq. 3.40-3.43, Sec. 3.4.2).

The unknown log partition functions log Z_k of p(x|k) = exp(d_k(x)) / Z_k (T Eq. 3.40-3.42) are absorbed into
offsets c_k, learned by minimising the cross-entropy of softmax_k(d_k(x) + c_k) against the labels of a
held-out split. The offsets are defined up to one common constant (the argmax and the softmax do not change when
every c_k moves by the same amount); we return them with mean 0.

Which split: the thesis names a validation set in Sec. 3.4.2 and the training set with early stopping on the test
set in Sec. 3.4.4. We use the committee's **validation split** (MNIST 5,000: 50 digits per class): the training
split's scores are overfit (detector training loss reaches 1e-4 while clean test AUC is 0.88-0.998, note 11), so
offsets fitted there would correct the wrong thing, and the test split stays untouched for evaluation. The
validation split was only used to *select* each detector's checkpoint (by adversarial AUC), not to fit weights.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..training import resolve_device, write_json
from .committee import Committee, load_committee, save_committee
from .data import labelled_splits
from .softmax_classifier import batched_logits

__all__ = ["fit_offsets", "calibrate_committee", "run_gat_calibrate", "CALIBRATION_SPLITS", "score_histograms",
           "CALIBRATION_JSON", "HISTOGRAM_FILE"]

#: Splits calibration may use; the default (and our choice, see the module docstring) is the first.
CALIBRATION_SPLITS = ("val", "train")
CALIBRATION_JSON = "calibration.json"
HISTOGRAM_FILE = "calibration_histograms.png"


def fit_offsets(scores: Tensor, y: Tensor, *, steps: int = 200, l2: float = 0.0) -> Tensor:
    """Offsets c (shape ``(K,)``, mean 0) minimising mean cross-entropy of ``softmax(scores + c)`` against ``y``
    (plus ``l2 * ||c||^2``), by L-BFGS from c = 0 (T Eq. 3.43; the initial value of the thesis). The problem is
    convex in c, so the optimum does not depend on the start."""
    if scores.dim() != 2 or scores.shape[0] != y.shape[0]:
        raise ValueError(f"scores must be (N, K) with one row per label; got {tuple(scores.shape)} and "
                         f"{tuple(y.shape)} labels")
    if scores.shape[0] == 0:
        raise ValueError("calibration needs at least one labelled input")
    k = scores.shape[1]
    labels = torch.as_tensor(y).long()
    if int(labels.min()) < 0 or int(labels.max()) >= k:
        raise ValueError(f"labels must lie in [0, {k - 1}], got [{int(labels.min())}, {int(labels.max())}]")
    z = scores.detach().double()
    c = torch.zeros(k, dtype=torch.float64, requires_grad=True)
    optimiser = torch.optim.LBFGS([c], lr=1.0, max_iter=steps, tolerance_grad=1e-10, tolerance_change=1e-12,
                                  line_search_fn="strong_wolfe")

    def closure() -> Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(z + c, labels) + l2 * (c ** 2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        optimiser.step(closure)
    out = c.detach()
    return (out - out.mean()).float()


def _summary(scores: Tensor, y: Tensor, offsets: Tensor) -> dict[str, float]:
    return {"accuracy": float(((scores + offsets).argmax(1) == y).float().mean()),
            "cross_entropy": float(F.cross_entropy(scores + offsets, y))}


def calibrate_committee(committee: Committee, x: Tensor, y: Tensor, *, x_eval: Tensor | None = None,
                        y_eval: Tensor | None = None, batch_size: int = 500) -> dict[str, Any]:
    """Fits the committee's offsets on ``(x, y)`` and sets them (in place). Returns the offsets and accuracy /
    cross-entropy before (c = 0) and after on the fitting split and, when given, on ``(x_eval, y_eval)`` (then
    also ``"_eval_scores"``, the uncalibrated (N, K) scores there, for :func:`score_histograms`; pop it before
    writing the record as JSON)."""
    labels = torch.as_tensor(y).long()
    committee.set_offsets(torch.zeros(committee.num_classes))
    scores = batched_logits(committee, x, batch_size)
    offsets = fit_offsets(scores, labels)
    zero = torch.zeros_like(offsets)
    result: dict[str, Any] = {"offsets": offsets.tolist(), "n_fit": len(labels),
                              "fit": {"before": _summary(scores, labels, zero), "after": _summary(scores, labels,
                                                                                                 offsets)}}
    if x_eval is not None and y_eval is not None:
        e_labels = torch.as_tensor(y_eval).long()
        e_scores = batched_logits(committee, x_eval, batch_size)
        result["eval"] = {"before": _summary(e_scores, e_labels, zero), "after": _summary(e_scores, e_labels, offsets),
                          "n": len(e_labels)}
        result["score_ranges"] = {"min": float(e_scores.min()), "max": float(e_scores.max()),
                                  "std": float(e_scores.std())}
        result["_eval_scores"] = e_scores
    committee.set_offsets(offsets)
    return result


def committee_and_splits(checkpoint: str | os.PathLike, data: str | None, device: str) -> tuple[Committee, Any, Path]:
    """The committee of ``checkpoint`` (a run folder or its ``committee.pt``) on ``device``, the labelled splits
    of ``data`` (default: the data it was trained on) at its input geometry, and its run folder."""
    committee = load_committee(checkpoint, device=resolve_device(device))
    meta = committee.meta
    source = data or meta.get("data")
    if not source:
        raise ValueError("the committee names no data source; pass data=... (--data)")
    splits = labelled_splits(source, int(meta.get("size", 28)), int(meta.get("channels", 1)))
    folder = Path(checkpoint) if Path(checkpoint).is_dir() else Path(checkpoint).parent
    return committee, splits, folder


def run_gat_calibrate(checkpoint: str | os.PathLike, *, split: str = "val", data: str | None = None,
                      device: str = "auto", save: bool = True, report: bool = True) -> dict[str, Any]:
    """``atebm gat calibrate``: refits the offsets c_k of the committee in ``checkpoint`` (a run folder or its
    ``committee.pt``) on ``split`` of its data (default: the validation split; see the module docstring) on
    ``device`` (``auto``: CUDA when available, :func:`~atebm.training.resolve_device`; the scores come back to the
    CPU for the fit), reports accuracy before/after on that split and on the test split, and (``save``) writes the
    offsets and the record into the committee file (``meta["calibration"]``) and ``calibration.json`` beside it,
    with the score histograms (``calibration_histograms.png``) and, with ``report``, the report sections; so that
    :func:`atebm.gat.load` returns the calibrated classifier. Returns the calibration record."""
    if split not in CALIBRATION_SPLITS:
        raise ValueError(f"split must be one of {CALIBRATION_SPLITS}, got {split!r}")
    committee, splits, folder = committee_and_splits(checkpoint, data, device)
    source = data or committee.meta.get("data")
    fit_set = splits.val if split == "val" else splits.train
    assert fit_set.y is not None and splits.test.y is not None
    record = calibrate_committee(committee, fit_set.x, fit_set.y, x_eval=splits.test.x, y_eval=splits.test.y)
    if not save:
        record.pop("_eval_scores")
    record.update(split=split, data=source, eval_split="test",
                  objective="mean cross-entropy of softmax_k(d_k(x) + c_k), L-BFGS from c = 0, offsets centred")
    if save:
        record["histograms"] = score_histograms(committee, splits.test.x, splits.test.y, folder / HISTOGRAM_FILE,
                                                scores=record.pop("_eval_scores"))
        committee.meta["calibration"] = record
        committee.meta.pop("path", None)
        save_committee(Path(checkpoint), committee)
        write_json(folder / CALIBRATION_JSON, record)
        if report:
            report_calibration(folder, record)
    return record


def report_calibration(out: str | os.PathLike, record: dict[str, Any]) -> None:
    """Adds the calibration table (T Tab. 3.16-3.17 analogue) and the histograms (T Fig. 3.11) to the report."""
    from ..report import Report

    report = Report.open(out)
    rows = [[f"{record['split']} (fit)", f"{record['fit']['before']['accuracy']:.4f}",
             f"{record['fit']['after']['accuracy']:.4f}", f"{record['fit']['before']['cross_entropy']:.4f}",
             f"{record['fit']['after']['cross_entropy']:.4f}"]]
    if "eval" in record:
        e = record["eval"]
        rows.append([f"{record['eval_split']} ({e['n']})", f"{e['before']['accuracy']:.4f}",
                     f"{e['after']['accuracy']:.4f}", f"{e['before']['cross_entropy']:.4f}",
                     f"{e['after']['cross_entropy']:.4f}"])
    report.add_table("gat/calibration", "Generative classifier: accuracy before / after calibration (T Tab. 3.16)",
                     ["split", "accuracy c=0", "accuracy calibrated", "CE c=0", "CE calibrated"], rows,
                     protocol={"objective": record["objective"], "data": record["data"]},
                     note="offsets c_k (T Tab. 3.17): " + ", ".join(f"{c:+.3f}" for c in record["offsets"]))
    hist = record.get("histograms") or {}
    if hist.get("file") and (Path(out) / hist["file"]).exists():
        report.add_image("gat/calibration_histograms", "Scores z_{d_k} on class k vs other classes (T Fig. 3.11)",
                         hist["file"], caption="test split; dotted line: -c_k")
    report.save()


def score_histograms(committee: Committee, x: Tensor, y: Tensor, path: str | os.PathLike,
                     batch_size: int = 500, scores: Tensor | None = None) -> dict[str, Any]:
    """T Fig. 3.11 analogue: per detector, the histogram of z_{d_k} on class-k inputs against the other classes
    (one panel per class), saved to ``path``; returns per class the mean score on each side."""
    import matplotlib.pyplot as plt

    from ..report.plots import figure_png  # noqa: F401  (selects the Agg backend)

    if scores is None:
        scores = batched_logits(committee, x, batch_size) - committee.offsets.detach().cpu()
    k = scores.shape[1]
    cols = min(k, 5)
    fig, axes = plt.subplots((k + cols - 1) // cols, cols, figsize=(2.3 * cols, 1.9 * ((k + cols - 1) // cols)),
                             squeeze=False)
    stats = []
    for c in range(k):
        ax = axes.flat[c]
        inside, outside = scores[y == c, c].numpy(), scores[y != c, c].numpy()
        bins = torch.linspace(float(scores[:, c].min()), float(scores[:, c].max()), 31).numpy()
        ax.hist(outside, bins=bins, alpha=0.6, density=True, label="other classes")
        ax.hist(inside, bins=bins, alpha=0.6, density=True, label=f"class {c}")
        ax.axvline(-float(committee.offsets[c]), color="k", lw=0.8, ls=":")
        ax.set_title(f"d_{c}", fontsize=8)
        ax.tick_params(labelsize=6)
        stats.append({"class": c, "mean_in": float(inside.mean()), "mean_out": float(outside.mean())})
    for ax in list(axes.flat)[k:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return {"file": str(Path(path).name), "per_class": stats}
