"""Robust accuracy of the generative classifier and of softmax classifiers (T Sec. 3.4.3, Eq. 3.46-3.48,
Tab. 3.14, Fig. 3.7), worst case over several attackers per sample.

Every model is read as K logits: the committee gives d_k(x) + c_k (its argmax is the calibrated generative
classifier g, T Eq. 3.43), a softmax classifier gives z_f(x). Attackers (all through :func:`atebm.pgd` via
:func:`~atebm.gat.attacks.run_attack`, except the independent ART ones):

=================  ==========================================================================================
``per_class``      committee only, T Eq. 3.47-3.48: raise each wrong detector d_k alone, keep the best candidate
                   (the thesis's own evaluation of the generative classifier)
``ce``             T Eq. 3.46: ascend the cross-entropy of softmax(logits) (the thesis's evaluation of the
                   softmax robust classifier), random start
``margin``         untargeted full margin max_{t != y} z_t - z_y, random starts, ``restarts`` of them
``targeted``       z_t - z_y for the ``targets`` wrong classes with the highest clean logits, one run each
``apgd-ce``        adversarial-robustness-toolbox APGD, cross-entropy loss, on the K logits
``apgd-dlr``       ART APGD, difference-of-logits-ratio loss
``square``         ART Square (gradient-free, margin loss), optional
=================  ==========================================================================================

The attackers run as a cascade: each one attacks only the inputs that every earlier attacker failed on (and
that are classified correctly when clean); an input counts as robust when no attacker flipped it, so the
final robust accuracy is the worst case over all attackers per sample. The first attacker's number is also its
own robust accuracy (it saw every correctly classified input); later attackers report how many more inputs
they broke.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..sampling import project_onto_ball
from .attacks import ClassifierAttack, TargetedMargin, per_class_attack, run_attack
from .classifier import batched_logits
from .committee import Committee
from .evaluate import stratified_subset
from .robust import CrossEntropyObjective

__all__ = ["ClassifyEvalConfig", "CLASSIFY_PROTOCOLS", "ATTACKERS", "robust_accuracy", "accuracy_grid"]

#: Every attacker name, in the default cascade order.
ATTACKERS = ("per_class", "ce", "margin", "targeted", "apgd-ce", "apgd-dlr", "square")
_ART = ("apgd-ce", "apgd-dlr", "square")


@dataclasses.dataclass(frozen=True)
class ClassifyEvalConfig:
    """The evaluation protocol. Step size of the PGD attackers: ``step_factor * eps / steps`` (Madry et al.'s
    2.5 eps / steps), sign steps for Linf and unit-L2 steps for L2."""

    n: int | None = 200
    linf_eps: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4)
    l2_eps: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0)
    attackers: tuple[str, ...] = ("per_class", "ce", "margin", "targeted", "apgd-ce", "apgd-dlr")
    steps: int = 40
    step_factor: float = 2.5
    restarts: int = 2
    targets: int = 3
    art_steps: int = 40
    art_restarts: int = 1
    square_queries: int = 1000
    #: (norm, eps) points where the ART attackers run (None: every point); the reduced protocol keeps them to
    #: the headline points to fit the CPU budget.
    art_only_at: tuple[tuple[str, float], ...] | None = (("linf", 0.3), ("linf", 0.4), ("l2", 2.0))
    batch_size: int = 250
    seed: int = 0

    def __post_init__(self) -> None:
        bad = sorted(set(self.attackers) - set(ATTACKERS))
        if bad:
            raise ValueError(f"unknown attackers {bad}; choose from {', '.join(ATTACKERS)}")
        if self.steps < 1 or self.restarts < 1 or self.targets < 0 or self.art_steps < 1:
            raise ValueError("steps, restarts and art_steps must be >= 1 and targets >= 0")
        if any(e < 0 or not math.isfinite(e) for e in (*self.linf_eps, *self.l2_eps)):
            raise ValueError("every eps must be a finite number >= 0")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: ``mnist``: the reduced CPU protocol of benchmarks/gat_classify.py; ``full``: more inputs, steps, restarts.
CLASSIFY_PROTOCOLS: dict[str, ClassifyEvalConfig] = {
    "mnist": ClassifyEvalConfig(),
    "full": ClassifyEvalConfig(n=None, steps=100, restarts=5, targets=9, art_steps=100, art_restarts=5,
                               attackers=ATTACKERS, art_only_at=None),
}


def _predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    return batched_logits(model, x, batch_size).argmax(1)


def _art_attack(model: nn.Module, name: str, x: Tensor, y: Tensor, *, norm: str, eps: float,
                config: ClassifyEvalConfig) -> Tensor:
    """ART APGD-CE / APGD-DLR / Square on ``model`` seen as a K-logit PyTorchClassifier."""
    from art.attacks.evasion import AutoProjectedGradientDescent, SquareAttack
    from art.estimators.classification import PyTorchClassifier

    device = next(model.parameters()).device
    k = int(batched_logits(model, x[:1]).shape[1])
    estimator = PyTorchClassifier(model=model, loss=nn.CrossEntropyLoss(), input_shape=tuple(x.shape[1:]),
                                  nb_classes=k, clip_values=(0.0, 1.0),
                                  device_type="gpu" if device.type == "cuda" else "cpu")
    art_norm: float | int = np.inf if norm == "linf" else 2
    attack: Any
    if name == "square":
        attack = SquareAttack(estimator, norm=art_norm, eps=eps, max_iter=config.square_queries, p_init=0.8,
                              nb_restarts=1, batch_size=config.batch_size, verbose=False)
    else:
        loss = "cross_entropy" if name == "apgd-ce" else "difference_logits_ratio"
        attack = AutoProjectedGradientDescent(estimator, norm=art_norm, eps=eps, eps_step=2 * eps / 10,
                                              max_iter=config.art_steps, targeted=False,
                                              nb_random_init=config.art_restarts, batch_size=config.batch_size,
                                              loss_type=loss, verbose=False)
    rng_state = np.random.get_state()
    np.random.seed(config.seed)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)
            adv = torch.from_numpy(attack.generate(x.numpy().astype(np.float32), y=y.numpy()))
    finally:
        np.random.set_state(rng_state)
    return project_onto_ball(adv, x, norm=norm, eps=eps)  # ART's float32 rounding


def _run_attacker(name: str, model: nn.Module, x: Tensor, y: Tensor, *, norm: str, eps: float,
                  config: ClassifyEvalConfig, generator: torch.Generator) -> list[Tensor]:
    """Candidate adversarial inputs of one attacker (one tensor per run; an input is broken when any run
    flips it)."""
    device = next(model.parameters()).device
    options: dict[str, Any] = dict(norm=norm, eps=eps, steps=config.steps,
                                   step_size=config.step_factor * eps / config.steps, batch_size=config.batch_size,
                                   generator=generator, device=device)
    if name == "per_class":
        return [per_class_attack(model, x, y, **options)]
    if name == "ce":
        return [run_attack(lambda yb: CrossEntropyObjective(model, yb), x, y, random_start=True, **options)]
    if name == "margin":
        return [run_attack(lambda yb: ClassifierAttack(model, yb), x, y, random_start=True,
                           restarts=config.restarts, **options)]
    if name == "targeted":
        logits = batched_logits(model, x, config.batch_size)
        logits[torch.arange(len(y)), y] = -math.inf
        order = logits.argsort(dim=1, descending=True)[:, :config.targets]
        runs = []
        for j in range(order.shape[1]):
            pairs = torch.stack([y, order[:, j]], dim=1)
            runs.append(run_attack(lambda yt: TargetedMargin(model, yt[:, 0], yt[:, 1]), x, pairs,
                                   random_start=True, **options))
        return runs
    return [_art_attack(model, name, x, y, norm=norm, eps=eps, config=config)]


def robust_accuracy(model: nn.Module, x: Tensor, y: Tensor, *, norm: str, eps: float,
                    config: ClassifyEvalConfig = CLASSIFY_PROTOCOLS["mnist"],
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Clean and worst-case robust accuracy of ``model`` (K logits) on ``(x, y)`` inside the ``norm`` ball of
    radius ``eps``, the attackers of ``config`` run as a cascade (module docstring). Returns the accuracies,
    per attacker the inputs it broke that earlier ones did not (and, for the first, its own accuracy), seconds,
    and ``robust`` (0/1 per input)."""
    y = torch.as_tensor(y).long()
    model.eval()
    alive = _predict(model, x, config.batch_size) == y
    clean = float(alive.float().mean())
    result: dict[str, Any] = {"norm": norm, "eps": eps, "n": len(y), "clean_accuracy": clean, "attackers": {}}
    if eps > 0:
        generator = torch.Generator().manual_seed(config.seed)
        first = True
        for name in config.attackers:
            if name == "per_class" and not isinstance(model, Committee):
                continue
            if name in _ART and config.art_only_at is not None and \
                    not any(n == norm and math.isclose(e, eps) for n, e in config.art_only_at):
                continue
            start = time.perf_counter()
            rows = torch.nonzero(alive)[:, 0]
            broken = torch.zeros(len(rows), dtype=torch.bool)
            if len(rows):
                for adv in _run_attacker(name, model, x[rows], y[rows], norm=norm, eps=eps, config=config,
                                         generator=generator):
                    broken |= _predict(model, adv, config.batch_size) != y[rows]
            alive[rows[broken]] = False
            entry: dict[str, Any] = {"attacked": len(rows), "broke": int(broken.sum()),
                                     "seconds": round(time.perf_counter() - start, 1)}
            if first:
                entry["own_robust_accuracy"] = float((len(rows) - int(broken.sum())) / len(y))
                first = False
            result["attackers"][name] = entry
            if progress is not None:
                progress(f"  {norm} {eps:g} {name}: broke {entry['broke']} of {entry['attacked']} "
                         f"({entry['seconds']:.0f} s)")
    result["robust_accuracy"] = float(alive.float().mean())
    result["robust"] = alive.int().tolist()
    return result


def accuracy_grid(models: dict[str, nn.Module], x: Tensor, y: Tensor, *,
                  config: ClassifyEvalConfig = CLASSIFY_PROTOCOLS["mnist"], norms: Sequence[str] = ("linf", "l2"),
                  progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Accuracy vs test eps (T Fig. 3.7) for every model over the protocol's Linf and L2 grids, on the
    stratified test subset of ``config.n`` inputs. Returns ``{model: {norm: [robust_accuracy(...) per eps]}}``
    plus the subset indices."""
    subset = stratified_subset(y, config.n, config.seed)
    xs, ys = x[subset], torch.as_tensor(y)[subset].long()
    out: dict[str, Any] = {"subset": subset.tolist(), "models": {}}
    for name, model in models.items():
        rows: dict[str, list[dict[str, Any]]] = {}
        for norm in norms:
            grid = config.linf_eps if norm == "linf" else config.l2_eps
            rows[norm] = []
            for eps in grid:
                start = time.perf_counter()
                r = robust_accuracy(model, xs, ys, norm=norm, eps=float(eps), config=config, progress=progress)
                r["seconds"] = round(time.perf_counter() - start, 1)
                rows[norm].append(r)
                if progress is not None:
                    progress(f"{name} {norm} eps {eps:g}: clean {r['clean_accuracy']:.3f} robust "
                             f"{r['robust_accuracy']:.3f} ({r['seconds']:.0f} s)")
        out["models"][name] = rows
    return out
