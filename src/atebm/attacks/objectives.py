"""Margin objectives: per-sample values positive exactly when an attack has succeeded.

Every robustness number of atebm is "the fraction of inputs for which some attacker made a margin positive",
so each decision the library reports has one margin here, written once:

=======================  ====================================================================================
:class:`AcceptanceMargin`  ``max_{i != y} z_i - max(z_y, T)`` on K logits: misclassified *and* accepted at
                           threshold T (a false positive of generative detection, T Eq. 3.27-3.29, or, on
                           :class:`~atebm.gat.attacks.IntegratedView` at T = 0, of integrated detection); with
                           ``T = -inf`` the plain misclassification margin of Carlini & Wagner
:class:`TargetedMargin`    ``z_t - z_y``: target class t beats the true class
:class:`ScoreAbove`        ``f(x') - r``: a score raised above a reference (the OOD worst case, r = the clean score)
=======================  ====================================================================================

and :class:`CrossEntropy`, the per-sample cross-entropy, an objective to ascend (Madry et al.; T Eq. 3.46), not a
margin. Objectives are bound to the rows they attack (labels, thresholds, references);
:func:`rows_of` turns "an objective of these labels" into the ``rows -> objective`` factory the search takes.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..sampling import ScoreFn, per_sample_scores

__all__ = ["top_other", "true_logit", "Labelled", "AcceptanceMargin", "TargetedMargin", "CrossEntropy",
           "ScoreAbove", "rows_of"]


def top_other(logits: Tensor, y: Tensor) -> Tensor:
    """max_{i != y} logits_i per row."""
    masked = logits.masked_fill(nn.functional.one_hot(y, logits.shape[1]).bool(), -math.inf)
    return masked.max(dim=1).values


def true_logit(logits: Tensor, y: Tensor) -> Tensor:
    """logits_y per row."""
    return logits.gather(1, y.view(-1, 1))[:, 0]


class Labelled(nn.Module):
    """An objective bound to the labels of the batch it attacks (a batch of another length is refused)."""

    y: Tensor

    def __init__(self, y: Tensor) -> None:
        super().__init__()
        self.register_buffer("y", torch.as_tensor(y).long().view(-1).clone())

    def labels(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.y.shape[0]:
            raise ValueError(f"this objective is bound to {self.y.shape[0]} labels; got a batch of {x.shape[0]}")
        return self.y.to(x.device)


class AcceptanceMargin(Labelled):
    """``max_{i != y} z_i(x) - max(z_y(x), T)`` on a K-logit ``model``: positive exactly when argmax_k z_k != y and
    max_k z_k >= T (strictly above the true class and at least T). With ``threshold=-inf`` it is the
    misclassification margin ``max_{i != y} z_i - z_y`` (T Eq. 3.30 negated). Raising it lowers the true class and
    raises the best wrong one at once."""

    def __init__(self, model: nn.Module, y: Tensor, threshold: float = -math.inf) -> None:
        super().__init__(y)
        self.model, self.threshold = model, float(threshold)

    def forward(self, x: Tensor) -> Tensor:
        y, z = self.labels(x), self.model(x)
        return top_other(z, y) - true_logit(z, y).clamp_min(self.threshold)


class TargetedMargin(Labelled):
    """``z_t(x) - z_y(x)`` on a K-logit ``model`` for a target class t != y per sample: positive exactly when t
    beats the true class."""

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
        y, z = self.labels(x), self.model(x)
        return true_logit(z, self.target.to(x.device)) - true_logit(z, y)


class CrossEntropy(Labelled):
    """Per-sample cross-entropy ``L(softmax(z(x)), y)`` of a K-logit model, the quantity Madry et al.'s attack and
    T Eq. 3.46 ascend (an objective, not a margin: it has no success sign)."""

    def __init__(self, model: nn.Module, y: Tensor) -> None:
        super().__init__(y)
        self.model = model

    def forward(self, x: Tensor) -> Tensor:
        return F.cross_entropy(self.model(x), self.labels(x), reduction="none")


class ScoreAbove(nn.Module):
    """``f(x) - r`` per sample: positive exactly when the score ``f`` exceeds the reference ``r`` (for the OOD
    worst case, r = the clean score raised by a hair of float tolerance, so success means "the attack raised the
    score")."""

    reference: Tensor
    score: ScoreFn

    def __init__(self, score: ScoreFn, reference: Tensor) -> None:
        super().__init__()
        object.__setattr__(self, "score", score)     # not a submodule: .to() must not move the user's model
        self.register_buffer("reference", torch.as_tensor(reference, dtype=torch.float32).view(-1).clone())

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] != self.reference.shape[0]:
            raise ValueError(f"this objective is bound to {self.reference.shape[0]} references; got a batch of "
                             f"{x.shape[0]}")
        return per_sample_scores(self.score, x) - self.reference.to(x.device)


def rows_of(make: Callable[..., nn.Module], *per_sample: Tensor, device: Any = None) -> Callable[[Tensor], nn.Module]:
    """The ``rows -> objective`` factory of :func:`atebm.attacks.search` for an objective built from per-sample
    tensors: ``rows_of(lambda y: AcceptanceMargin(model, y, T), y)(rows) == AcceptanceMargin(model, y[rows], T)``
    (placed on ``device`` when given)."""
    tensors = [torch.as_tensor(t) for t in per_sample]

    def factory(rows: Tensor) -> nn.Module:
        objective = make(*(t[rows.to(t.device)] for t in tensors))
        return objective.to(device) if device is not None else objective

    return factory
