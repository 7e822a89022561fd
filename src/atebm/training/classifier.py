"""The classifier loop of the library: softmax classifiers trained with cross-entropy, optionally on adversarial
examples or with an extra loss term, the best validation weights kept.

:class:`~atebm.training.Trainer` trains one score per sample by binary adversarial training; a K-class classifier
is trained here. One step of :func:`train_classifier`::

    (x, y)  <- the next batch of a seeded permutation of the training set (one permutation per epoch)
    x       <- augment(x)                                  optional: random shifts, pixel noise, ...
    x       <- adversary(model, x, y)                      optional: e.g. Madry et al.'s PGD on the cross-entropy
    loss    =  CE(model(x), y) + extra_loss(model, x, y)   optional: e.g. the entropy term of S Eq. 9
    θ       <- Adam step on loss (only ``parameters``; the others are frozen)

Every ``select.every`` steps and at the last step the weights are offered to a :class:`SelectBest`
(:meth:`SelectBest.offer`); the best candidate's weights are loaded into the model at the end. Used by the digit
feature network of the Fréchet distances (:mod:`atebm.metrics.features`), the GAT softmax classifier and Madry
baseline (:mod:`atebm.gat.softmax_classifier`, :mod:`atebm.gat.robust_training`) and the DSGAN low-density
classifiers (:mod:`atebm.dsgan.low_density_at`).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from .selection import SelectBest

__all__ = ["train_classifier", "ClassifierRun", "accuracy", "batched_logits"]


@torch.no_grad()
def batched_logits(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    """``model(x)`` in eval mode and in batches, on the model's device; returns CPU logits (the mode is restored)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 500) -> float:
    """Fraction of ``x`` whose argmax logit is the label ``y``."""
    return float((batched_logits(model, x, batch_size).argmax(1) == torch.as_tensor(y).long().view(-1)).float().mean())


@dataclass
class ClassifierRun:
    """What :func:`train_classifier` did: the ``model`` (holding the selected weights when there was a selection,
    in eval mode), the optimiser ``steps`` taken, the ``last`` batch's loss terms (``ce`` and the extra term's
    statistics), the ``selection`` with its history, and the training time."""

    model: nn.Module
    steps: int
    last: dict[str, float] = field(default_factory=dict)
    selection: SelectBest | None = None
    seconds: float = 0.0
    cpu_seconds: float = 0.0


def _batch_starts(n: int, batch_size: int, drop_last: bool) -> range:
    """Where the batches of one permutation of ``range(n)`` start. ``drop_last`` skips the incomplete last batch
    (every batch full, unless ``n`` is smaller than one batch: then the one batch is the whole set)."""
    return range(0, ((n - n % batch_size) or n) if drop_last else n, batch_size)


def _batches(n: int, batch_size: int, generator: torch.Generator, drop_last: bool) -> Iterator[Tensor]:
    """Index batches of consecutive permutations of ``range(n)``, each drawn from ``generator`` when the previous
    one is used up."""
    starts = _batch_starts(n, batch_size, drop_last)
    while True:
        order = torch.randperm(n, generator=generator)
        for start in starts:
            yield order[start:start + batch_size]


def train_classifier(model: nn.Module, x: Tensor, y: Tensor, *, epochs: int | None = None,
                     iterations: int | None = None, batch_size: int = 64, lr: float = 1e-3,
                     parameters: Iterable[nn.Parameter] | None = None,
                     augment: Callable[[Tensor], Tensor] | None = None,
                     adversary: Callable[[nn.Module, Tensor, Tensor], Tensor] | None = None,
                     extra_loss: Callable[[nn.Module, Tensor, Tensor], tuple[Tensor, dict[str, float]]] | None = None,
                     select: SelectBest | None = None, drop_last: bool = False, seed: int = 0,
                     generator: torch.Generator | None = None,
                     progress: Callable[[str], None] | None = None) -> ClassifierRun:
    """Trains ``model`` (``model(x) -> (N, K)`` logits) with Adam at ``lr`` on the cross-entropy of ``(x, y)``
    (module docstring), for ``epochs`` passes over the data or ``iterations`` batches (exactly one of the two).

    ``parameters``: the ones to train (default: all); the model's others are frozen (no gradient) during the loop.
    ``augment(x)``, ``adversary(model, x, y)`` (called with the model in training mode) and
    ``extra_loss(model, x, y) -> (term, statistics)`` are applied in that order to each batch, on the model's
    device. ``select``: its candidates are the weights every ``select.every`` steps and the final ones, each
    judged on the last batch's loss terms as context; the best are loaded at the end. Batches come from a
    permutation per epoch drawn from ``generator`` (default: a new one seeded with ``seed``; pass the generator your
    hooks draw from to keep one random stream), the last incomplete batch of each permutation kept unless
    ``drop_last``; the global torch RNG is not used. ``progress`` receives one line per candidate."""
    if (epochs is None) == (iterations is None):
        raise ValueError("pass exactly one of epochs and iterations")
    x = torch.as_tensor(x)
    y = torch.as_tensor(y).long().view(-1)
    if len(x) != len(y) or len(x) < 1:
        raise ValueError(f"need at least 1 image with one label each, got {len(x)} images and {len(y)} labels")
    if batch_size < 1 or lr <= 0 or (epochs is not None and epochs < 1) or (iterations is not None and iterations < 1):
        raise ValueError(f"need epochs or iterations >= 1, batch_size >= 1 and lr > 0; got epochs={epochs}, "
                         f"iterations={iterations}, batch_size={batch_size}, lr={lr}")
    every = 0
    if select is not None:
        if not isinstance(select.every, int):
            raise ValueError("the classifier loop validates every select.every steps: give SelectBest an integer every")
        every = select.every
    generator = generator if generator is not None else torch.Generator().manual_seed(seed)
    total = iterations if iterations is not None else len(_batch_starts(len(x), batch_size, drop_last)) * (epochs or 0)
    trained = list(parameters) if parameters is not None else list(model.parameters())
    chosen = {id(p) for p in trained}
    frozen = [p for p in model.parameters() if id(p) not in chosen and p.requires_grad]
    optimiser = torch.optim.Adam(trained, lr=lr)
    device = next(model.parameters()).device
    batches = _batches(len(x), batch_size, generator, drop_last)
    last: dict[str, float] = {}
    start, cpu_start = time.perf_counter(), time.process_time()
    for p in frozen:
        p.requires_grad_(False)
    try:
        for step in range(1, total + 1):
            index = next(batches)
            xb, yb = x[index].to(device), y[index].to(device)
            if augment is not None:
                xb = augment(xb)
            model.train()
            if adversary is not None:
                xb = adversary(model, xb, yb)
            loss = F.cross_entropy(model(xb), yb)
            last = {"ce": float(loss.detach())}
            if extra_loss is not None:
                term, statistics = extra_loss(model, xb, yb)
                loss = loss + term
                last.update(statistics)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            if select is not None and (step % every == 0 or step == total):
                entry = select.offer(model, step, last)
                if progress is not None and entry is not None:
                    progress(", ".join(f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in entry.items())
                             + f" ({time.process_time() - cpu_start:.0f} CPU-s)")
    finally:
        for p in frozen:
            p.requires_grad_(True)
    if select is not None and select.best is not None and select.best.weights is not None:
        model.load_state_dict(select.best.weights)
    model.eval()
    return ClassifierRun(model, total, last, select, time.perf_counter() - start, time.process_time() - cpu_start)
