"""Integrated and generative detection of adversarial examples (T Fig. 3.1, Sec. 3.2.1-3.2.2, Eq. 3.27-3.29).

Both rules first predict a class k̂ and then accept x as clean when the logit of detector d_k̂ clears a threshold
T shared by all detectors (a universal threshold, as in the thesis's evaluation):

* **integrated**: k̂ = argmax_k z_f(x)_k (the softmax classifier f), score z_{d_k̂}(x);
* **generative**: k̂ = argmax_k z_H(x)_k (the committee itself, T Eq. 3.27), score max_k z_H(x)_k.

Over T (Eq. 3.28-3.29): TPR = fraction of clean test inputs accepted; FPR = fraction of perturbed inputs that are
accepted *and* misclassified (k̂ != y), out of all perturbed inputs. :func:`detection_curve` gives the whole
curve, :func:`operating_point` the values at a target TPR (0.95 in T Tab. 3.6).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..metrics.detection import as_scores
from .softmax_classifier import batched_logits

__all__ = ["Detection", "detect", "detection_curve", "operating_point", "DETECTION_RULES"]

DETECTION_RULES = ("integrated", "generative")


@dataclass
class Detection:
    """Per input: the predicted class k̂ and the detection score z_{d_k̂}(x)."""

    predictions: Tensor
    scores: Tensor

    def misclassified(self, y: Tensor) -> Tensor:
        return self.predictions != torch.as_tensor(y).view(-1)


def detect(rule: str, committee: nn.Module, x: Tensor, classifier: nn.Module | None = None,
           batch_size: int = 500) -> Detection:
    """Predicted classes and detection scores of ``x`` under ``rule`` (``"integrated"`` needs ``classifier``)."""
    if rule not in DETECTION_RULES:
        raise ValueError(f"rule must be one of {DETECTION_RULES}, got {rule!r}")
    z_h = batched_logits(committee, x, batch_size)
    if rule == "generative":
        scores, predictions = z_h.max(dim=1)
        return Detection(predictions, scores)
    if classifier is None:
        raise ValueError("integrated detection needs the softmax classifier f")
    predictions = batched_logits(classifier, x, batch_size).argmax(dim=1)
    return Detection(predictions, z_h.gather(1, predictions.view(-1, 1))[:, 0])


def _array(values: Any, what: str) -> np.ndarray:
    if isinstance(values, Tensor):
        values = values.detach().cpu().numpy()
    array = np.asarray(values, dtype=np.float64).reshape(-1)
    if array.size == 0:
        raise ValueError(f"{what} are empty")
    return array


def _checked(clean_scores: Any, adv_scores: Any, adv_misclassified: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    clean, adv = _array(clean_scores, "clean scores"), _array(adv_scores, "adversarial scores")
    joint = as_scores(np.concatenate([clean, adv]))  # refuses NaN; maps ±inf over both sets at once, in order
    clean, adv = joint[:len(clean)], joint[len(clean):]
    flags = adv_misclassified.cpu().numpy() if isinstance(adv_misclassified, Tensor) else adv_misclassified
    wrong = np.asarray(flags, dtype=bool).reshape(-1)
    if wrong.shape != adv.shape:
        raise ValueError(f"adv_misclassified needs one flag per adversarial score ({adv.shape[0]}), got "
                         f"{wrong.shape[0]}")
    return clean, adv, wrong


def _rates(clean: np.ndarray, adv: np.ndarray, wrong: np.ndarray, thresholds: np.ndarray) -> tuple[np.ndarray, ...]:
    clean_sorted = np.sort(clean)
    counted = np.sort(adv[wrong])
    tpr = (len(clean_sorted) - np.searchsorted(clean_sorted, thresholds, side="left")) / len(clean_sorted)
    fpr = (len(counted) - np.searchsorted(counted, thresholds, side="left")) / len(adv)
    return tpr, fpr


def detection_curve(clean_scores: Any, adv_scores: Any, adv_misclassified: Any,
                    max_points: int | None = 400) -> dict[str, list[float]]:
    """TPR and FPR (T Eq. 3.28-3.29) at every threshold where either changes, from ``+inf`` (nothing accepted)
    down to ``-inf`` (everything accepted); an input is accepted when its score is ``>= T``. ``max_points``
    thins the curve for storage (end points kept)."""
    clean, adv, wrong = _checked(clean_scores, adv_scores, adv_misclassified)
    thresholds = np.unique(np.concatenate([clean, adv[wrong]]))[::-1]
    thresholds = np.concatenate([[np.inf], thresholds, [-np.inf]])
    tpr, fpr = _rates(clean, adv, wrong, thresholds)
    if max_points is not None and len(thresholds) > max_points:
        keep = np.unique(np.linspace(0, len(thresholds) - 1, max_points).round().astype(int))
        thresholds, tpr, fpr = thresholds[keep], tpr[keep], fpr[keep]
    return {"threshold": [float(t) for t in thresholds], "tpr": [float(v) for v in tpr],
            "fpr": [float(v) for v in fpr]}


def operating_point(clean_scores: Any, adv_scores: Any, adv_misclassified: Any, tpr: float = 0.95) -> dict[str, float]:
    """The highest threshold accepting at least ``tpr`` of the clean inputs, with its TPR and FPR."""
    if not 0 < tpr <= 1:
        raise ValueError(f"tpr must lie in (0, 1], got {tpr}")
    clean, adv, wrong = _checked(clean_scores, adv_scores, adv_misclassified)
    ranked = np.sort(clean)[::-1]
    threshold = float(ranked[max(0, math.ceil(tpr * len(ranked) - 1e-9) - 1)])
    t_rate, f_rate = _rates(clean, adv, wrong, np.array([threshold]))
    return {"threshold": threshold, "tpr": float(t_rate[0]), "fpr": float(f_rate[0]),
            "misclassified": float(wrong.mean()), "n_clean": int(len(clean)), "n_adv": int(len(adv))}
