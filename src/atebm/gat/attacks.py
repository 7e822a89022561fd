"""Adaptive attacks on the detector committee and the classifier (T Sec. 3.2.2, Eq. 3.30-3.35, 3.47-3.48).

Every attack is a per-sample *objective* the attacker ascends (the negated loss of the thesis), written as a small
``nn.Module`` bound to the labels of the rows it attacks. They are run by the attack layer
(:func:`atebm.attacks.search`, ``objective_for``), which judges every iterate by the *decision being attacked* (a
margin positive exactly when the attack succeeded, e.g. :class:`~atebm.attacks.AcceptanceMargin` on a detection
rule's view at its threshold) and keeps per sample the best input of all attackers. Objectives (``z_f``: classifier
logits, ``z_H``: committee logits, y: true label):

====================  ==========================================================================================
``ClassifierAttack``  Eq. 3.30: maximise max_{i != y} z_f,i - z_f,y (the CW margin; the detector is ignored)
``DetectorAttack``    Eq. 3.32: maximise max_{i != y} z_H,i (evade the detectors; the attack on generative
                      detection)
``CombinedAttack``    Eq. 3.33-3.34: the classifier g with K+1 logits (the extra one is
                      (1 - max_{j != y} z_H,j) max_j z_f,j); maximise max_{i != y} z_f,i - max_i z_g,i
``SwitchingAttack``   Eq. 3.35: while f still predicts y, the classifier margin (3.30); once it does not,
                      max_{i != y} z_H,i (3.32). Not monotone in success: the search's margin, not this value,
                      decides which iterate is kept
``SingleDetectorAttack``  the per-detector attack of the AUC tables (T Tab. 3.2-3.5) and of Eq. 3.47: maximise
                      z_{d_k}
====================  ==========================================================================================

The rule's own decision is attacked with :class:`~atebm.attacks.AcceptanceMargin` directly (the "acceptance"
attack); :class:`IntegratedView` writes integrated detection as K logits so that the same margin applies.
:func:`per_class_candidates` is the attack of T Eq. 3.47-3.48 on the generative classifier.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import AcceptanceMargin, AttackResult, AttackSpec, Labelled, ThreatModel, rows_of, search, top_other
from ..attacks.objectives import true_logit

__all__ = ["ClassifierAttack", "DetectorAttack", "CombinedAttack", "SwitchingAttack", "SingleDetectorAttack",
           "IntegratedView", "per_class_candidates", "OBJECTIVES"]

_Labelled = Labelled


def _true(logits: Tensor, y: Tensor) -> Tensor:
    return true_logit(logits, y)


class ClassifierAttack(_Labelled):
    """T Eq. 3.30 (negated): max_{i != y} z_f(x)_i - z_f(x)_y."""

    def __init__(self, classifier: nn.Module, y: Tensor) -> None:
        super().__init__(y)
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        y, z = self.labels(x), self.classifier(x)
        return top_other(z, y) - _true(z, y)


class DetectorAttack(_Labelled):
    """T Eq. 3.32 (negated): max_{i != y} z_H(x)_i, with z_H the committee's logits (Eq. 3.31)."""

    def __init__(self, committee: nn.Module, y: Tensor) -> None:
        super().__init__(y)
        self.committee = committee

    def forward(self, x: Tensor) -> Tensor:
        return top_other(self.committee(x), self.labels(x))


class CombinedAttack(_Labelled):
    """T Eq. 3.33-3.34 (negated), after Carlini & Wagner's attack on detectors: with
    z_g = [z_f, (1 - max_{j != y} z_H,j) · max_j z_f,j], maximise max_{i != y} z_f,i - max_i z_g,i."""

    def __init__(self, classifier: nn.Module, committee: nn.Module, y: Tensor) -> None:
        super().__init__(y)
        self.classifier, self.committee = classifier, committee

    def forward(self, x: Tensor) -> Tensor:
        y = self.labels(x)
        z_f, z_h = self.classifier(x), self.committee(x)
        extra = (1 - top_other(z_h, y)) * z_f.max(dim=1).values
        z_g = torch.cat([z_f, extra[:, None]], dim=1)
        return top_other(z_f, y) - z_g.max(dim=1).values


class SwitchingAttack(_Labelled):
    """T Eq. 3.35 (negated): ``max_{i != y} z_f,i - z_f,y`` while z_f,y >= max_{i != y} z_f,i, else
    ``max_{i != y} z_H,i``."""

    def __init__(self, classifier: nn.Module, committee: nn.Module, y: Tensor) -> None:
        super().__init__(y)
        self.classifier, self.committee = classifier, committee

    def forward(self, x: Tensor) -> Tensor:
        y = self.labels(x)
        z_f = self.classifier(x)
        margin = top_other(z_f, y) - _true(z_f, y)
        return torch.where(margin <= 0, margin, top_other(self.committee(x), y))


class SingleDetectorAttack(nn.Module):
    """The per-detector attack of T Tab. 3.2-3.5: maximise z_{d_k}(x) (other-class inputs made to look like
    class k)."""

    def __init__(self, detector: nn.Module) -> None:
        super().__init__()
        self.detector = detector

    def forward(self, x: Tensor) -> Tensor:
        z = self.detector(x)
        return z[:, 0] if z.dim() == 2 else z


class IntegratedView(nn.Module):
    """Integrated detection at threshold T as K logits: ``v_k(x) = min(z_f,k - max_{j != k} z_f,j, z_{d_k}(x) - T)``,
    non-negative exactly when f predicts k *and* d_k accepts x (T Fig. 3.1, left). So integrated detection accepts
    a misclassified input iff max_{k != y} v_k >= 0, the decision :class:`~atebm.attacks.AcceptanceMargin` at T = 0
    attacks on this view."""

    def __init__(self, classifier: nn.Module, committee: nn.Module, threshold: float) -> None:
        super().__init__()
        self.classifier, self.committee, self.threshold = classifier, committee, float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        z_f = self.classifier(x)
        top2 = z_f.topk(2, dim=1)
        best_other = torch.where(z_f >= top2.values[:, :1], top2.values[:, 1:2], top2.values[:, :1])
        return torch.minimum(z_f - best_other, self.committee(x) - self.threshold)


#: Name -> constructor of the detection attacks of T Eq. 3.30-3.35, as used in protocols and on the command line.
OBJECTIVES: dict[str, Callable[..., nn.Module]] = {
    "classifier": ClassifierAttack, "detector": DetectorAttack, "combined": CombinedAttack,
    "switching": SwitchingAttack,
}


def per_class_candidates(committee: Any, x: Tensor, y: Tensor, *, threat: ThreatModel, spec: AttackSpec,
                         seed: int = 0, batch_size: int = 256, stop_at: float | None = 0.0) -> list[AttackResult]:
    """T Eq. 3.47-3.48 on the generative classifier g(x) = argmax_k d_k(x) + c_k (Tramer et al.'s attack): for
    every class k, the rows with y != k ascend d_k(x + delta) alone inside the ball (``spec``), each iterate judged
    by the committee's misclassification margin ``max_{i != y} (d_i + c_i) - (d_y + c_y)``. Returns one search
    result per class k (covering the rows ``y != k``, in ``result.protocol["rows"]``); an input is broken when any of
    its K - 1 candidates flips it (Eq. 3.48 keeps the candidate with the largest d_k + c_k, which can discard a
    flipping one)."""
    y = torch.as_tensor(y).long()
    device = next(committee.parameters()).device
    results = []
    for k in range(committee.num_classes):
        rows = torch.nonzero(y != k)[:, 0]
        if len(rows) == 0:
            continue
        detector = SingleDetectorAttack(committee.detector(k))

        def ascend_d_k(_rows: Tensor, d: nn.Module = detector) -> nn.Module:
            return d

        result = search(rows_of(lambda yb: AcceptanceMargin(committee, yb), y[rows], device=device), x[rows],
                        objective_for=ascend_d_k, threat=threat, attackers=[spec], seed=seed + k,
                        batch_size=batch_size, device=device, model=committee, stop_at=stop_at, keep_inputs=False)
        result.protocol["rows"] = rows.tolist()
        results.append(result)
    return results
