"""Detection metrics for scores where **higher = more in-distribution** (METHOD Sec. 3 and 6; G App. G).

In-distribution samples are the positives (label 1), OOD samples the negatives (label 0), as in E Tab. 4 and
G App. G ("samples in p_k labeled as 1s and samples in p_OOD labeled as 0s"). All numbers come from
scikit-learn:

* AUROC = P(s_in > s_out) + 0.5 P(s_in = s_out)  (``roc_auc_score``);
* AUPR-in = average precision with in-distribution positive (``average_precision_score(y, s)``);
* AUPR-out = average precision with OOD positive and the negated score (``average_precision_score(1 - y, -s)``);
* FPR@95%TPR = the fraction of OOD samples accepted at the highest threshold that accepts at least 95 % of the
  in-distribution samples (``roc_curve``, first operating point with TPR >= 0.95).
"""
from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

__all__ = ["detection_metrics", "auroc", "aupr_in", "aupr_out", "fpr_at_tpr", "roc_points", "as_scores"]


def _raw(values: Any, what: str) -> np.ndarray:
    if hasattr(values, "detach"):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{what} is empty")
    if np.isnan(array).any():
        raise ValueError(f"{what} contains {int(np.isnan(array).sum())} NaN value(s); the model's scores are not "
                         "usable (check for a diverged checkpoint)")
    return array


def as_scores(values: Any, what: str = "scores") -> np.ndarray:
    """A 1-D float64 array of scores. ``+inf``/``-inf`` (a saturated model) are kept in order by mapping them
    just above/below the finite range; NaN is refused, since it has no place in a ranking."""
    array = _raw(values, what)
    if not np.isfinite(array).all():
        finite = array[np.isfinite(array)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
        array = np.where(array == np.inf, hi + 1.0, np.where(array == -np.inf, lo - 1.0, array))
    return array


def _labelled(in_scores: Any, out_scores: Any) -> tuple[np.ndarray, np.ndarray]:
    s_in, s_out = _raw(in_scores, "in-distribution scores"), _raw(out_scores, "OOD scores")
    # map ±inf over both sets at once, so that the order between the sets is kept
    joint = as_scores(np.concatenate([s_in, s_out]), "scores")
    labels = np.concatenate([np.ones(len(s_in)), np.zeros(len(s_out))])
    return labels, joint


def auroc(in_scores: Any, out_scores: Any) -> float:
    """Area under the ROC curve, in-distribution positive."""
    labels, scores = _labelled(in_scores, out_scores)
    return float(roc_auc_score(labels, scores))


def aupr_in(in_scores: Any, out_scores: Any) -> float:
    """Average precision with in-distribution samples as positives, ranked by the score."""
    labels, scores = _labelled(in_scores, out_scores)
    return float(average_precision_score(labels, scores))


def aupr_out(in_scores: Any, out_scores: Any) -> float:
    """Average precision with OOD samples as positives, ranked by the negated score."""
    labels, scores = _labelled(in_scores, out_scores)
    return float(average_precision_score(1 - labels, -scores))


def fpr_at_tpr(in_scores: Any, out_scores: Any, tpr: float = 0.95) -> float:
    """Fraction of OOD samples accepted when the threshold accepts at least ``tpr`` of the in-distribution ones."""
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must lie in (0, 1], got {tpr}")
    labels, scores = _labelled(in_scores, out_scores)
    return _fpr_at(labels, scores, tpr)


def _fpr_at(labels: np.ndarray, scores: np.ndarray, tpr: float) -> float:
    """FPR at the first operating point of the ROC curve whose TPR reaches ``tpr``."""
    fpr, tpr_curve, _ = roc_curve(labels, scores, drop_intermediate=False)
    index = int(np.searchsorted(tpr_curve, tpr - 1e-12, side="left"))
    return float(fpr[min(index, len(fpr) - 1)])


def detection_metrics(in_scores: Any, out_scores: Any) -> dict[str, float]:
    """AUROC, AUPR-in, AUPR-out and FPR@95%TPR (fractions in [0, 1]) plus the sample counts."""
    labels, scores = _labelled(in_scores, out_scores)
    return {
        "auroc": float(roc_auc_score(labels, scores)),
        "aupr_in": float(average_precision_score(labels, scores)),
        "aupr_out": float(average_precision_score(1 - labels, -scores)),
        "fpr95": _fpr_at(labels, scores, 0.95),
        "n_in": int(labels.sum()),
        "n_out": int(len(labels) - labels.sum()),
    }


def roc_points(in_scores: Any, out_scores: Any, max_points: int = 200) -> dict[str, Any]:
    """The ROC curve (``fpr``, ``tpr`` lists, at most ``max_points`` kept, end points included) and its AUROC,
    for plotting."""
    labels, scores = _labelled(in_scores, out_scores)
    fpr, tpr, _ = roc_curve(labels, scores)
    if len(fpr) > max_points:
        keep = np.unique(np.linspace(0, len(fpr) - 1, max_points).round().astype(int))
        fpr, tpr = fpr[keep], tpr[keep]
    return {"fpr": [float(v) for v in fpr], "tpr": [float(v) for v in tpr],
            "auroc": float(roc_auc_score(labels, scores))}
