"""Adaptive attacks on the detector committee and the classifier (T Sec. 3.2.2, Eq. 3.30-3.35).

Every attack is a per-sample *objective* the attacker maximises (the negated loss of the thesis), written as a
small ``nn.Module`` so that the models inside it run in eval mode, and solved by one of the project's step
rules in :mod:`atebm.sampling` (through :func:`run_attack`):

* ``rule="pgd"``: :func:`atebm.pgd`, sign steps for Linf and unit-L2 ("normalised") steps for L2 (T Tab. 3.3);
* ``rule="adam"``: :func:`atebm.sampling.adam_pgd`, the Adam-step PGD (T Tab. 3.2);

both inside the eps-ball and the [0, 1] box, optionally from random starts with restarts (the best final
objective per sample is kept). Objectives (``z_f``: classifier logits, ``z_H``: committee logits, y: true label):

====================  ==========================================================================================
``ClassifierAttack``  Eq. 3.30: maximise max_{i != y} z_f,i - z_f,y (the CW margin; the detector is ignored)
``DetectorAttack``    Eq. 3.32: maximise max_{i != y} z_H,i (evade the detectors; the attack on generative
                      detection)
``CombinedAttack``    Eq. 3.33-3.34: the classifier g with K+1 logits (the extra one is
                      (1 - max_{j != y} z_H,j) max_j z_f,j); maximise max_{i != y} z_f,i - max_i z_g,i
``SwitchingAttack``   Eq. 3.35: while f still predicts y, the classifier margin (3.30); once it does not,
                      max_{i != y} z_H,i (3.32)
``SingleDetectorAttack``  the per-detector attack of the AUC tables (T Tab. 3.2-3.5): maximise z_{d_k}
``AcceptanceAttack``  the detection rule's own decision at its threshold T: maximise
                      max_{i != y} z_i - max(z_y, T) on the rule's K-logit view (the committee for generative
                      detection, :class:`IntegratedView` for integrated detection); positive exactly when the
                      input is misclassified and accepted (what FPR counts, T Eq. 3.29)
``TargetedMargin``    the targeted margin z_t - z_y on any K-logit model (lowers the true class as it raises t)
====================  ==========================================================================================

:func:`per_class_attack` is the attack of T Eq. 3.47-3.48 on the generative classifier: one single-detector
ascent per wrong class k, then the candidate with the highest d_k + c_k.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from ..sampling import adam_pgd, pgd
from .presets import ATTACK_RULES

__all__ = ["ClassifierAttack", "DetectorAttack", "CombinedAttack", "SwitchingAttack", "SingleDetectorAttack",
           "ThresholdMargin", "AcceptanceAttack", "IntegratedView", "TargetedMargin", "run_attack",
           "per_class_attack", "top_other", "OBJECTIVES"]


def top_other(logits: Tensor, y: Tensor) -> Tensor:
    """max_{i != y} logits_i per row."""
    masked = logits.masked_fill(nn.functional.one_hot(y, logits.shape[1]).bool(), -math.inf)
    return masked.max(dim=1).values


def _true(logits: Tensor, y: Tensor) -> Tensor:
    return logits.gather(1, y.view(-1, 1))[:, 0]


class _Labelled(nn.Module):
    """An objective bound to the labels of one batch (the attack runs on exactly that batch)."""

    y: Tensor

    def __init__(self, y: Tensor) -> None:
        super().__init__()
        self.register_buffer("y", torch.as_tensor(y).long().view(-1).clone())

    def _labels(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.y.shape[0]:
            raise ValueError(f"this objective is bound to {self.y.shape[0]} labels; got a batch of {x.shape[0]}")
        return self.y.to(x.device)


class ClassifierAttack(_Labelled):
    """T Eq. 3.30 (negated): max_{i != y} z_f(x)_i - z_f(x)_y."""

    def __init__(self, classifier: nn.Module, y: Tensor) -> None:
        super().__init__(y)
        self.classifier = classifier

    def forward(self, x: Tensor) -> Tensor:
        y, z = self._labels(x), self.classifier(x)
        return top_other(z, y) - _true(z, y)


class DetectorAttack(_Labelled):
    """T Eq. 3.32 (negated): max_{i != y} z_H(x)_i, with z_H the committee's logits (Eq. 3.31)."""

    def __init__(self, committee: nn.Module, y: Tensor) -> None:
        super().__init__(y)
        self.committee = committee

    def forward(self, x: Tensor) -> Tensor:
        return top_other(self.committee(x), self._labels(x))


class CombinedAttack(_Labelled):
    """T Eq. 3.33-3.34 (negated), after Carlini & Wagner's attack on detectors: with
    z_g = [z_f, (1 - max_{j != y} z_H,j) · max_j z_f,j], maximise max_{i != y} z_f,i - max_i z_g,i."""

    def __init__(self, classifier: nn.Module, committee: nn.Module, y: Tensor) -> None:
        super().__init__(y)
        self.classifier, self.committee = classifier, committee

    def forward(self, x: Tensor) -> Tensor:
        y = self._labels(x)
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
        y = self._labels(x)
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


class ThresholdMargin(_Labelled):
    """``max(z_y, T) - max_{i != y} z_i`` on a K-logit model: negative exactly when the input is misclassified
    *and* its top logit clears the threshold T, i.e. a false positive of generative detection at T (the success
    criterion of T Tab. 3.6, minimised by :func:`atebm.sampling.min_distortion_l2`)."""

    def __init__(self, model: nn.Module, y: Tensor, threshold: float) -> None:
        super().__init__(y)
        self.model, self.threshold = model, float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        y, z = self._labels(x), self.model(x)
        return _true(z, y).clamp_min(self.threshold) - top_other(z, y)


class AcceptanceAttack(_Labelled):
    """``max_{i != y} z_i - max(z_y, T)`` on a K-logit model (the negated :class:`ThresholdMargin`): positive
    exactly when argmax_k z_k != y and max_k z_k >= T. On the committee it attacks generative detection at T (T
    Eq. 3.27-3.29: a wrong class that clears the threshold, with the true class pushed down at once, which
    Eq. 3.32 leaves alone); on :class:`IntegratedView` with T = 0 it attacks integrated detection."""

    def __init__(self, model: nn.Module, y: Tensor, threshold: float) -> None:
        super().__init__(y)
        self.model, self.threshold = model, float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        y, z = self._labels(x), self.model(x)
        return top_other(z, y) - _true(z, y).clamp_min(self.threshold)


class IntegratedView(nn.Module):
    """Integrated detection at threshold T as K logits: ``v_k(x) = min(z_f,k - max_{j != k} z_f,j, z_{d_k}(x) - T)``,
    non-negative exactly when f predicts k *and* d_k accepts x (T Fig. 3.1, left). So integrated detection accepts
    a misclassified input iff max_{k != y} v_k >= 0, the criterion :class:`AcceptanceAttack` (T = 0) and the
    independent attackers maximise."""

    def __init__(self, classifier: nn.Module, committee: nn.Module, threshold: float) -> None:
        super().__init__()
        self.classifier, self.committee, self.threshold = classifier, committee, float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        z_f = self.classifier(x)
        top2 = z_f.topk(2, dim=1)
        best_other = torch.where(z_f >= top2.values[:, :1], top2.values[:, 1:2], top2.values[:, :1])
        return torch.minimum(z_f - best_other, self.committee(x) - self.threshold)


class TargetedMargin(_Labelled):
    """``z_t(x) - z_y(x)`` on a K-logit model, for a target class t != y per sample: positive exactly when t
    beats the true class (a targeted full-margin attack; it raises z_t and lowers z_y at once)."""

    target: Tensor

    def __init__(self, model: nn.Module, y: Tensor, target: Tensor) -> None:
        super().__init__(y)
        self.model = model
        self.register_buffer("target", torch.as_tensor(target).long().view(-1).clone())
        if self.target.shape != self.y.shape:
            raise ValueError(f"need one target per label; got {self.target.shape[0]} targets for "
                             f"{self.y.shape[0]} labels")
        if bool((self.target == self.y).any()):
            raise ValueError("a target class must differ from the true class")

    def forward(self, x: Tensor) -> Tensor:
        y, z = self._labels(x), self.model(x)
        return z.gather(1, self.target.to(x.device).view(-1, 1))[:, 0] - _true(z, y)


def per_class_attack(committee: Any, x: Tensor, y: Tensor, **attack_options: Any) -> Tensor:
    """T Eq. 3.47-3.48 on the generative classifier g(x) = argmax_k d_k(x) + c_k (Tramer et al.'s attack):
    for every class k != y, delta_k maximises d_k(x + delta) inside the ball (:func:`run_attack` with
    ``attack_options``, on the single detector ``committee.detector(k)``); then delta* is the delta_k with the
    largest d_k(x + delta_k) + c_k. Returns x + delta* (CPU)."""
    y = torch.as_tensor(y).long()
    device = next(committee.parameters()).device
    best_x = x.clone()
    best = torch.full((len(x),), -math.inf)
    for k in range(committee.num_classes):
        rows = torch.nonzero(y != k)[:, 0]
        if len(rows) == 0:
            continue
        detector = committee.detector(k)
        adv = run_attack(SingleDetectorAttack(detector), x[rows], **attack_options)
        with torch.no_grad():
            value = torch.cat([detector(adv[i:i + 500].to(device)).view(-1).cpu()
                               for i in range(0, len(adv), 500)]) + float(committee.offsets[k])
        better = value > best[rows]
        best[rows] = torch.where(better, value, best[rows])
        best_x[rows[better]] = adv[better]
    return best_x


#: Name -> constructor, as used in protocols and on the command line.
OBJECTIVES: dict[str, Callable[..., nn.Module]] = {
    "classifier": ClassifierAttack, "detector": DetectorAttack, "combined": CombinedAttack,
    "switching": SwitchingAttack,
}


def run_attack(make_objective: Callable[[Tensor], nn.Module] | nn.Module, x: Tensor, y: Tensor | None = None, *,
               rule: str = "pgd", norm: str = "linf", eps: float, steps: int, step_size: float,
               random_start: bool = False, restarts: int = 1, batch_size: int = 500,
               generator: torch.Generator | None = None, device: torch.device | str | None = None) -> Tensor:
    """Runs one attack over ``x`` in batches and returns the perturbed inputs (CPU).

    ``make_objective`` is a labelled objective's factory (called with each batch's labels ``y``), or one
    unlabelled objective module used for every batch (e.g. :class:`SingleDetectorAttack`). ``rule`` picks the
    step rule (see the module docstring); the rest are the arguments of :func:`atebm.pgd`."""
    if rule not in ATTACK_RULES:
        raise ValueError(f"rule must be one of {ATTACK_RULES}, got {rule!r}")
    if not (isinstance(eps, (int, float)) and eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 need random_start=True")
    if not isinstance(make_objective, nn.Module) and y is None:
        raise ValueError("this attack needs the labels y")
    step = adam_pgd if rule == "adam" else pgd
    options: dict[str, Any] = dict(steps=steps, step_size=step_size, norm=norm, eps=float(eps),
                                   random_start=random_start, restarts=restarts, generator=generator)
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size]
        if device is not None:
            xb = xb.to(device)
        if isinstance(make_objective, nn.Module):
            objective = make_objective
        else:
            assert y is not None
            objective = make_objective(y[i:i + batch_size])
        if device is not None:
            objective = objective.to(device)
        out.append(step(objective, xb, **options).cpu() if eps > 0 else xb.cpu())
    return torch.cat(out) if out else x.clone()
