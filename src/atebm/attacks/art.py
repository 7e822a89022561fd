"""The one adapter to the Adversarial Robustness Toolbox (ART): APGD and Square (method ``square-art``, the
independent reference for atebm's own :mod:`atebm.attacks.square`) on any margin objective.

Every attack of atebm is phrased as a per-sample *margin* ``m(x')`` that is positive exactly when the attack has
succeeded (an OOD input scored above its clean score, a misclassified input accepted by a detector, a flipped
class). ART decides success by the argmax of a classifier's logits, so the margin is shown to ART as three logits

    logits(x') = [ 0,  m(x'),  -M ]      attacked *targeted at class 1*

Class 1 wins exactly when ``m(x') > 0`` (a tie goes to class 0, as our success test ``m > 0`` says), so ART's own
success test equals ours, including for inputs that are already misclassified but not yet accepted (ART attacks
every input whose argmax is not the target). ART's losses on this view depend on ``m`` only: cross-entropy
``≈ softplus(-m)`` and DLR ``-m / M`` for ``m <= 0`` (``-m / (m + M)`` above), so they fall as the margin rises
(``M = 1e4``; a margin at or below ``-M`` is refused rather than silently clipped).

ART attacks only the rows it finds unsuccessful at the start, and hands them to the model in their order; the
view maps a call of that length back to those rows (any other row count is refused, not misread). APGD's initial
step is 2·eps (Croce & Hein 2020); both the iterate ART returns and APGD's best-loss iterate ``x_max`` are handed
back as candidates, and the caller (:mod:`atebm.attacks.search`) keeps per sample whichever has the higher margin.
Python's, NumPy's and torch's generators are seeded for the call and restored afterwards; the model's parameters
are frozen meanwhile (ART back-propagates a loss).
"""
from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..sampling import ScoreFn, per_sample_scores
from .specs import AttackSpec, ThreatModel

__all__ = ["MarginLogits", "art_candidates", "art_classifier", "seeded", "parameters_frozen", "ART_PREDICT_BATCH",
           "art_version"]

#: Rows per forward pass of ART's ``PyTorchClassifier.predict`` when an attack calls it without a batch size (ART
#: 1.20): APGD chunks hold at most this many rows, so that every call the view sees covers a whole chunk.
ART_PREDICT_BATCH = 128
_ART_LOSS = {"ce": "cross_entropy", "dlr": "difference_logits_ratio"}

#: ``rows -> margin``: the margin objective bound to the given row indices of the attacked batch.
MarginFactory = Callable[[Tensor], ScoreFn]


def art_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("adversarial-robustness-toolbox")
    except PackageNotFoundError:
        return "not installed"


class MarginLogits(nn.Module):
    """A margin objective as ART's three-logit classifier ``[0, m(x), -M]`` (module docstring).

    :meth:`bind` attaches the margin of the rows ``rows`` of the attacked batch. The first call with all of them
    records which rows ART will attack (``m <= 0``); later calls must have either that many rows or all of them.
    Unbound (ART's shape probes while it builds an attack), it returns zeros.
    """

    margin_for: MarginFactory | None

    def __init__(self, margin: float = 1e4) -> None:
        super().__init__()
        self.bound_margin = float(margin)
        self.margin_for = None
        self.rows: Tensor | None = None
        self.attacked: Tensor | None = None

    def bind(self, margin_for: MarginFactory | None, rows: Tensor | None) -> None:
        self.margin_for, self.rows, self.attacked = margin_for, rows, None

    def forward(self, x: Tensor) -> Tensor:
        if self.margin_for is None or self.rows is None:
            zero = x.flatten(1)[:, 0] * 0
            return torch.stack([zero, zero, zero - self.bound_margin], dim=1)
        if len(x) == len(self.rows):
            rows = self.rows
        elif self.attacked is not None and len(x) == int(self.attacked.sum()):
            rows = self.rows[self.attacked]
        else:
            raise RuntimeError(f"MarginLogits: ART passed {len(x)} rows; the bound batch has {len(self.rows)} and "
                               f"{'?' if self.attacked is None else int(self.attacked.sum())} are attacked")
        m = per_sample_scores(self.margin_for(rows), x)
        if bool((m.detach() <= -self.bound_margin).any()):   # NaN rows pass: Square refuses its NaN proposals
            raise ValueError(f"a margin is at or below -{self.bound_margin:g}; check the model for divergence")
        if self.attacked is None and len(x) == len(self.rows):
            self.attacked = (m.detach() <= 0).cpu()
        zero = torch.zeros_like(m)
        return torch.stack([zero, m, zero - self.bound_margin], dim=1)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seeds Python's, NumPy's and torch's global generators (ART draws from all three) for the block, and puts
    them back afterwards."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextmanager
def parameters_frozen(*models: Any) -> Iterator[None]:
    """Keeps the parameters' ``.grad`` untouched while an attack back-propagates through ``models``."""
    params = [p for model in models if isinstance(model, nn.Module) for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def art_classifier(view: MarginLogits, shape: tuple[int, ...], device: torch.device) -> Any:
    """ART's ``PyTorchClassifier`` over the margin view (three classes, inputs clipped to [0, 1])."""
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(view, loss=nn.CrossEntropyLoss(), input_shape=shape, nb_classes=3,
                             clip_values=(0.0, 1.0), device_type="gpu" if device.type == "cuda" else "cpu")


def art_candidates(spec: AttackSpec, margin_for: MarginFactory, x0: Tensor, rows: Tensor, threat: ThreatModel, *,
                   seed: int, device: torch.device) -> tuple[list[tuple[Tensor, Tensor]], int]:
    """One run of ART's APGD or Square (``spec.method`` ``apgd`` or ``square-art``) on the rows ``rows`` of the
    attacked batch, whose clean inputs are ``x0`` (CPU, one row per entry of ``rows``). Returns the candidates as
    ``(row positions into x0, inputs)`` pairs and the number of NaN/inf proposals Square's loss refused."""
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack

    view = MarginLogits()
    classifier = art_classifier(view, tuple(x0.shape[1:]), device)
    art_norm = np.inf if threat.norm == "linf" else 2
    x_np = x0.numpy().astype(np.float32)
    target = np.ones(len(x0), dtype=np.int64)
    refused = 0
    attack: Any
    if spec.method == "apgd":
        if len(x0) > ART_PREDICT_BATCH:
            raise ValueError(f"APGD chunks hold at most {ART_PREDICT_BATCH} rows, got {len(x0)}")
        attack = AutoProjectedGradientDescent(
            classifier, norm=art_norm, eps=threat.eps, eps_step=2 * threat.eps, max_iter=spec.steps, targeted=True,
            nb_random_init=1, batch_size=len(x0), loss_type=_ART_LOSS[spec.loss], verbose=False)
    elif spec.method == "square-art":
        def loss(inputs: np.ndarray, _labels: np.ndarray) -> np.ndarray:
            """Square minimises ``-m``; NaN/inf proposals are refused (+inf)."""
            nonlocal refused
            value = -classifier.predict(inputs, batch_size=len(inputs))[:, 1]
            bad = ~(np.isfinite(value) & np.isfinite(inputs.reshape(len(inputs), -1)).all(axis=1))
            refused += int(bad.sum())
            return np.where(bad, np.inf, value)

        def never_done(predictions: np.ndarray, _labels: np.ndarray) -> np.ndarray:
            return np.zeros(len(predictions), dtype=bool)   # every row stays in the search, in its order

        attack = SquareAttack(classifier, norm=art_norm, adv_criterion=never_done, loss=loss, max_iter=spec.steps,
                              eps=threat.eps, p_init=spec.p_init, nb_restarts=1, batch_size=len(x0), verbose=False)
    else:
        raise ValueError(f"ART runs apgd and square-art, not {spec.method!r}")
    positions = torch.arange(len(x0))
    view.bind(margin_for, rows)
    try:
        with seeded(seed), np.errstate(divide="ignore", invalid="ignore"):
            adv = attack.generate(x_np, target)
    finally:
        attacked = view.attacked
        view.bind(None, None)
    candidates = [(positions, torch.from_numpy(adv))]
    best_iterate = getattr(attack, "x_max", None)   # APGD's best-loss iterate of the rows it attacked
    if isinstance(best_iterate, np.ndarray) and attacked is not None and len(best_iterate) == int(attacked.sum()):
        candidates.append((positions[attacked], torch.from_numpy(best_iterate)))
    return candidates, refused
