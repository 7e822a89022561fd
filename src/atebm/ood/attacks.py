"""Worst-case OOD inputs: OOD samples perturbed to *maximise* the score inside an eps-ball (METHOD Sec. 3;
E Tab. 4 and supp. Tab. 8; G Sec. 5, App. G and Tab. 15).

    x_wc = argmax_{x' in B_p(x, eps) ∩ [0,1]^d}  f(x')

Independent attackers solve this, and every sample keeps the strongest result (the highest score) of all:

* ``"pgd"`` – :func:`atebm.pgd` (the sampler itself: normalised-gradient ascent with projection) over a grid of
  steps x step sizes (G Tab. 15, 22), from the start point and optionally from random starts in the ball;
* ``"apgd"`` – the Adversarial Robustness Toolbox's (ART) AutoProjectedGradientDescent (Croce & Hein 2020, the
  attack of E Tab. 4/8) with its own CE or DLR loss, through :class:`ScoreLogits`;
* ``"square"`` – ART's SquareAttack (Andriushchenko et al. 2020): random search that never reads a gradient, a
  check against gradient masking (a score whose gradients mislead PGD and APGD does not mislead it).

The clean input (or a given start point inside the ball) is always a candidate, so the worst case is never
weaker than the clean score nor than any attacker alone. A row an attacker returns with NaN or inf values
(ART's L2 Square attack can produce them for inputs at the [0, 1] bounds) counts as a failed attack for that
sample: the sample keeps its clean or best-so-far input, and the rows are counted (:attr:`WorstCase.failed_rows`).
"""
from __future__ import annotations

import math
import random
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..sampling import ScoreFn, check_inputs, eval_mode, per_sample_scores, pgd, project_onto_ball

__all__ = ["AttackConfig", "WorstCase", "ScoreLogits", "worst_case", "batched_scores", "checked_scores",
           "attack_protocol", "ATTACKERS"]

#: Every attacker :func:`worst_case` knows; :class:`AttackConfig` says which run by default.
ATTACKERS = ("pgd", "apgd", "square")
_APGD_LOSSES = {"dlr": "difference_logits_ratio", "ce": "cross_entropy"}
#: Square's tiles need images at least this many pixels high and wide.
_SQUARE_MIN_SIDE = 8
#: Rows per forward pass of ART's ``PyTorchClassifier.predict`` when an attack calls it without a batch size (its
#: default, ART 1.20). :class:`ScoreLogits` matches its reference by position, so one APGD call holds at most
#: this many rows (a mismatch would be refused by the view, not silently misread).
_ART_PREDICT_BATCH = 128


@dataclass
class AttackConfig:
    """Every setting (and the only defaults) of the worst-case search; stored in every protocol.

    ``attackers``: which run (default PGD and APGD; ``"square"`` is opt-in, see below). ``pgd_steps`` x
    ``pgd_step_sizes`` is the PGD grid; a step size ``None`` means ``pgd_step_factor * eps / steps`` (so the path
    can cross the ball ``pgd_step_factor`` times). Every grid point runs once from the start point and
    ``pgd_random_restarts`` more times from uniform random points in the ball (the best per sample is kept).
    APGD runs ``apgd_steps`` steps from ``apgd_restarts`` random starts with ART's loss ``apgd_loss`` (``"dlr"``
    or ``"ce"``, see :class:`ScoreLogits`) and the initial step 2 eps of Croce & Hein. Square runs
    ``square_steps`` iterations (3 forward passes each, no gradient) from ``square_restarts`` starts with the
    initial tile fraction ``square_p_init``. ``early_stop``: samples whose score already exceeds ``stop_above``
    (in :func:`atebm.ood.evaluate`: the highest in-distribution score) are not attacked further; ranking metrics
    (AUROC, AUPR, FPR@95) are unchanged by this, reported mean scores become lower bounds. ``batch_size``:
    samples per attack call and per scoring pass.

    Square is not in the default set: at the default protocol (128 samples per set, 7 sets, 5 radii, 2 models)
    its 100 iterations cost several times PGD + APGD together on CPU (``benchmarks/ood_attack_strength.py``).
    """

    attackers: tuple[str, ...] = ("pgd", "apgd")
    pgd_steps: tuple[int, ...] = (10,)
    pgd_step_sizes: tuple[float | None, ...] = (None,)
    pgd_step_factor: float = 2.5
    pgd_random_restarts: int = 0
    apgd_steps: int = 10
    apgd_restarts: int = 1
    apgd_loss: str = "dlr"
    square_steps: int = 100
    square_restarts: int = 1
    square_p_init: float = 0.3
    early_stop: bool = True
    batch_size: int = 256

    def __post_init__(self) -> None:
        self.attackers = tuple(self.attackers)
        self.pgd_steps = tuple(int(s) for s in self.pgd_steps)
        self.pgd_step_sizes = tuple(None if s is None else float(s) for s in self.pgd_step_sizes)
        problems = []
        unknown = [a for a in self.attackers if a not in ATTACKERS]
        if unknown or not self.attackers or len(set(self.attackers)) != len(self.attackers):
            problems.append(f"attackers must be distinct names from {ATTACKERS}, got {self.attackers}")
        if not self.pgd_steps or min(self.pgd_steps) < 1 or not self.pgd_step_sizes:
            problems.append(f"pgd_steps must be positive integers and pgd_step_sizes non-empty, got "
                            f"{self.pgd_steps} / {self.pgd_step_sizes}")
        if any(s is not None and s <= 0 for s in self.pgd_step_sizes) or self.pgd_step_factor <= 0:
            problems.append("PGD step sizes and pgd_step_factor must be positive")
        if self.pgd_random_restarts < 0:
            problems.append(f"pgd_random_restarts must be >= 0, got {self.pgd_random_restarts}")
        if self.apgd_steps < 1 or self.apgd_restarts < 1:
            problems.append(f"apgd_steps and apgd_restarts must be >= 1, got {self.apgd_steps}, {self.apgd_restarts}")
        if self.apgd_loss not in _APGD_LOSSES:
            problems.append(f"apgd_loss must be one of {tuple(_APGD_LOSSES)}, got {self.apgd_loss!r}")
        if self.square_steps < 1 or self.square_restarts < 1:
            problems.append(f"square_steps and square_restarts must be >= 1, got {self.square_steps}, "
                            f"{self.square_restarts}")
        if not 0 < self.square_p_init < 1:
            problems.append(f"square_p_init must lie in (0, 1), got {self.square_p_init}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if problems:
            raise ValueError("invalid attack config: " + "; ".join(problems))

    def grid(self, eps: float) -> list[tuple[int, float]]:
        """The (steps, step size) pairs PGD runs at radius ``eps``."""
        return [(steps, float(size) if size is not None else self.pgd_step_factor * eps / steps)
                for steps in self.pgd_steps for size in self.pgd_step_sizes]

    def replace(self, **changes: Any) -> AttackConfig:
        """A copy with ``changes`` applied (validated again)."""
        known = {f.name for f in fields(self)}
        unknown = sorted(set(changes) - known)
        if unknown:
            raise TypeError(f"unknown attack setting(s) {unknown}; AttackConfig has {sorted(known)}")
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WorstCase:
    """Result of :func:`worst_case`. ``x``: per sample the strongest input found; ``scores``: its score;
    ``clean_scores``: scores of the unperturbed inputs; ``by_attacker[name]``: each attacker's own best score
    per sample (the start point included) and ``x_by_attacker[name]`` its input; ``failed_rows[name]``: rows the
    attacker returned with NaN/inf values (those samples kept their clean or best-so-far input);
    ``nan_proposals[name]``: candidate rows with NaN/inf values an ART attack proposed during its search and its
    loss refused; ``protocol``: how."""

    x: Tensor
    scores: Tensor
    clean_scores: Tensor
    by_attacker: dict[str, Tensor]
    x_by_attacker: dict[str, Tensor]
    failed_rows: dict[str, int] = field(default_factory=dict)
    nan_proposals: dict[str, int] = field(default_factory=dict)
    protocol: dict[str, Any] = field(default_factory=dict)


def _device_of(score: Any, fallback: torch.device) -> torch.device:
    if isinstance(score, nn.Module):
        for tensor in list(score.parameters()) + list(score.buffers()):
            return tensor.device
    return fallback


@torch.no_grad()
def batched_scores(score: ScoreFn, x: Tensor, batch_size: int = AttackConfig.batch_size) -> Tensor:
    """Scores of ``x`` in batches, in eval mode, on the score's device; returns a CPU float tensor ``(N,)``."""
    device = _device_of(score, x.device)
    with eval_mode(score):
        out = [per_sample_scores(score, x[i:i + batch_size].to(device)).detach().float().cpu()
               for i in range(0, len(x), batch_size)]
    return torch.cat(out) if out else torch.zeros(0)


def checked_scores(score: ScoreFn, x: Tensor, batch_size: int, what: str) -> Tensor:
    """:func:`batched_scores` at an entry point: a model that cannot take ``x`` (a shape it was not built for) or
    returns NaN/inf is a one-line ValueError naming ``what``."""
    try:
        scores = batched_scores(score, x, batch_size)
    except RuntimeError as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ValueError(f"the model cannot score {what} of shape {tuple(x.shape)}: {first_line}") from err
    if not torch.isfinite(scores).all():
        raise ValueError(f"the model returns non-finite scores on {what}; the checkpoint is unusable")
    return scores


class ScoreLogits(nn.Module):
    """A score ``f`` presented to ART as a three-class classifier (ART's ``PyTorchClassifier`` needs >= 2
    logits, APGD's DLR loss >= 3)::

        logits(x) = [ r,  f(x),  r - margin ]
                      |   |      └ class 2: never wins (the third-largest logit DLR divides by)
                      |   └ class 1, "in-distribution": the attack's *target* class, its logit is the score
                      └ class 0, "stays OOD": a constant per sample, ``reference`` (its clean score) or 0

    Attacked *targeted at class 1*, ART's losses depend on ``d = f(x) - r`` only and fall as the score rises:

    * cross-entropy ``-log softmax_1 = log(1 + e^{-d} + e^{-margin - d}) ≈ softplus(-d)``;
    * DLR (targeted; ART negates its untargeted formula) ``-d / margin`` for ``d <= 0`` and ``-d / (d + margin)``
      for ``d > 0``: strictly decreasing with a gradient that never vanishes, however far the score is from
      ``r`` (``d > -margin`` is checked).

    Class 1 wins exactly when ``f(x) > r``, so with ``r`` the clean score ART's success test ("the target class
    wins") means "the attack raised the score"; ART's APGD keeps its iterate only for such samples. ART hands
    the rows of one call back in their order, so ``reference`` is matched by position; a batch of another length
    is refused.
    """

    score: ScoreFn

    def __init__(self, score: ScoreFn, margin: float = 1e4) -> None:
        super().__init__()
        # Not registered as a submodule: ART's zero_grad() and .to() must not touch the user's model.
        object.__setattr__(self, "score", score)
        self.margin = float(margin)
        self.reference: Tensor | None = None

    def forward(self, x: Tensor) -> Tensor:
        f = per_sample_scores(self.score, x)
        if self.reference is None:     # predictions only (Square's loss, ART's probes): no loss-shape guarantee
            return torch.stack([torch.zeros_like(f), f, torch.full_like(f, -self.margin)], dim=1)
        if len(self.reference) != len(f):
            raise RuntimeError(f"ScoreLogits: ART passed {len(f)} rows, the reference has {len(self.reference)}")
        r = self.reference.to(f)
        if not bool(torch.isfinite(f).all()) or bool(((f - r).detach() <= -self.margin).any()):
            raise ValueError(f"ScoreLogits: scores fall {self.margin:g} or more below their reference (or are not "
                             "finite); pass a larger margin or check the model for divergence")
        return torch.stack([r, f, r - self.margin], dim=1)


@contextmanager
def _seeded_numpy(seed: int) -> Iterator[None]:
    """ART draws from NumPy's and Python's global generators: seed them, and restore them afterwards."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


@contextmanager
def _parameters_frozen(score: ScoreFn) -> Iterator[None]:
    """ART back-propagates a loss; this keeps the model's parameter ``.grad`` untouched meanwhile."""
    params = [p for p in score.parameters() if p.requires_grad] if isinstance(score, nn.Module) else []
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


def _art_classifier(view: ScoreLogits, shape: Sequence[int], device: torch.device) -> Any:
    from art.estimators.classification import PyTorchClassifier

    return PyTorchClassifier(view, loss=nn.CrossEntropyLoss(), input_shape=tuple(shape), nb_classes=3,
                             clip_values=(0.0, 1.0), device_type="gpu" if device.type == "cuda" else "cpu")


def _art_norm(norm: str) -> float:
    return 2 if norm == "l2" else np.inf


def _finite_rows(x: Tensor) -> Tensor:
    return torch.isfinite(x.flatten(1)).all(dim=1)


class _Search:
    """Per-sample best input and score of one attacker, updated from candidate batches."""

    def __init__(self, score: ScoreFn, x0: Tensor, clean: Tensor, norm: str, eps: float, batch_size: int) -> None:
        self.score, self.x0, self.norm, self.eps, self.batch_size = score, x0, norm, eps, batch_size
        self.best_x, self.best_s = x0.clone(), clean.clone()
        self.failed_rows = 0
        self.nan_proposals = 0

    def active(self, stop_above: float | None) -> Tensor:
        if stop_above is None:
            return torch.arange(len(self.best_s))
        return torch.nonzero(self.best_s <= stop_above).view(-1)

    def offer(self, candidates: Tensor, index: Tensor) -> None:
        """Keeps each candidate that scores higher than the sample's best; rows with NaN/inf are failed attacks.
        Candidates are projected onto the ball and box first (a no-op for a correct attacker)."""
        candidates = candidates.detach().float().cpu()
        finite = _finite_rows(candidates)
        self.failed_rows += int((~finite).sum())
        if not bool(finite.any()):
            return
        index, candidates = index[finite], candidates[finite]
        candidates = project_onto_ball(candidates, self.x0[index], norm=self.norm, eps=self.eps)
        scores = batched_scores(self.score, candidates, self.batch_size)
        better = scores > self.best_s[index]
        self.best_x[index[better]] = candidates[better]
        self.best_s[index[better]] = scores[better]


def _run_pgd(search: _Search, start: Tensor, config: AttackConfig, stop_above: float | None,
             generator: torch.Generator, device: torch.device) -> None:
    for steps, step_size in config.grid(search.eps):
        for random_start in [False] + [True] * config.pgd_random_restarts:
            index = search.active(stop_above)
            for i in range(0, len(index), config.batch_size):
                chunk = index[i:i + config.batch_size]
                origin = search.x0[chunk].to(device)
                begin = origin if random_start else start[chunk].to(device)
                out = pgd(search.score, begin, origin=origin, steps=steps, step_size=step_size, norm=search.norm,
                          eps=search.eps, random_start=random_start, generator=generator)
                search.offer(out, chunk)


def _run_apgd(search: _Search, config: AttackConfig, stop_above: float | None, seed: int,
              device: torch.device) -> None:
    from art.attacks.evasion import AutoProjectedGradientDescent

    view = ScoreLogits(search.score)
    classifier = _art_classifier(view, search.x0.shape[1:], device)
    rows = min(config.batch_size, _ART_PREDICT_BATCH)
    for restart in range(config.apgd_restarts):
        index = search.active(stop_above)
        for i in range(0, len(index), rows):
            chunk = index[i:i + rows]
            x_np = search.x0[chunk].numpy()
            attack = AutoProjectedGradientDescent(
                classifier, norm=_art_norm(search.norm), eps=search.eps, eps_step=2 * search.eps,
                max_iter=config.apgd_steps, targeted=True, nb_random_init=1, batch_size=len(chunk),
                loss_type=_APGD_LOSSES[config.apgd_loss], verbose=False)
            # The reference is the clean score as ART itself computes it (same batches, so the start test sees
            # a tie, which class 0 wins), raised by a hair of float tolerance.
            view.reference = None
            clean = torch.from_numpy(attack.estimator.predict(x_np)[:, 1])
            view.reference = clean + 1e-6 * clean.abs().clamp_min(1.0)
            target = np.ones(len(chunk), dtype=np.int64)
            try:
                with _seeded_numpy(seed + 7919 * restart + i):
                    adv = attack.generate(x_np, target)
            finally:
                view.reference = None
            search.offer(torch.from_numpy(adv), chunk)
            best_iterate = getattr(attack, "x_max", None)   # APGD's best iterate; its return is the last one
            if isinstance(best_iterate, np.ndarray) and best_iterate.shape == x_np.shape:
                search.offer(torch.from_numpy(best_iterate), chunk)


def _run_square(search: _Search, config: AttackConfig, stop_above: float | None, seed: int,
                device: torch.device) -> None:
    from art.attacks.evasion import SquareAttack

    classifier = _art_classifier(ScoreLogits(search.score), search.x0.shape[1:], device)

    def loss(x_np: np.ndarray, _labels: np.ndarray) -> np.ndarray:
        """Square minimises this: ``r - f(x)`` with ``r = 0``; NaN/inf proposals are refused (+inf)."""
        logits = classifier.predict(x_np, batch_size=len(x_np))
        value = logits[:, 0] - logits[:, 1]
        bad = ~(np.isfinite(value) & np.isfinite(x_np.reshape(len(x_np), -1)).all(axis=1))
        search.nan_proposals += int(bad.sum())
        return np.where(bad, np.inf, value)

    def never_done(predictions: np.ndarray, _labels: np.ndarray) -> np.ndarray:
        return np.zeros(len(predictions), dtype=bool)    # keep searching every sample for all iterations

    for restart in range(config.square_restarts):
        index = search.active(stop_above)
        for i in range(0, len(index), config.batch_size):
            chunk = index[i:i + config.batch_size]
            attack = SquareAttack(classifier, norm=_art_norm(search.norm), adv_criterion=never_done, loss=loss,
                                  max_iter=config.square_steps, eps=search.eps, p_init=config.square_p_init,
                                  nb_restarts=1, batch_size=len(chunk), verbose=False)
            with _seeded_numpy(seed + 104729 * restart + i), np.errstate(divide="ignore", invalid="ignore"):
                adv = attack.generate(search.x0[chunk].numpy(), np.ones(len(chunk), dtype=np.int64))
            search.offer(torch.from_numpy(adv), chunk)


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    from .. import __version__

    versions = {"atebm": __version__, "torch": torch.__version__}
    try:
        versions["art"] = version("adversarial-robustness-toolbox")
    except PackageNotFoundError:
        versions["art"] = "not installed"
    return versions


def attack_protocol(config: AttackConfig, norm: str, eps: float) -> dict[str, Any]:
    """The attack settings at one radius, as printed next to the numbers."""
    versions = _versions()
    protocol: dict[str, Any] = {"objective": "maximise the score f(x') over x' in B(x, eps) ∩ [0,1]^d; per sample "
                                             "the best of the clean input and all attackers",
                                "norm": norm, "eps": eps}
    if "pgd" in config.attackers:
        protocol["pgd"] = {"implementation": f"atebm.pgd (atebm {versions['atebm']})",
                           "grid_steps_x_step_size": [[s, round(z, 6)] for s, z in config.grid(eps)],
                           "runs_per_grid_point": 1 + config.pgd_random_restarts,
                           "starts": "start point" + (f" + {config.pgd_random_restarts} uniform random"
                                                      if config.pgd_random_restarts else "")}
    view = "ScoreLogits [r, f, r - 1e4], targeted at class 1 (f)"
    if "apgd" in config.attackers:
        protocol["apgd"] = {"implementation": f"ART AutoProjectedGradientDescent {versions['art']}",
                            "steps": config.apgd_steps, "restarts": config.apgd_restarts,
                            "loss": f"ART {_APGD_LOSSES[config.apgd_loss]} on {view}, r = clean score",
                            "initial_step": 2 * eps, "rho": 0.75,
                            "candidates": "ART's returned iterate and its best iterate (x_max)"}
    if "square" in config.attackers:
        protocol["square"] = {"implementation": f"ART SquareAttack {versions['art']}",
                              "iterations": config.square_steps, "restarts": config.square_restarts,
                              "p_init": config.square_p_init, "loss": f"-f(x) from {view}, r = 0; NaN proposals "
                                                                      "refused", "gradient_free": True}
    return protocol


def _check_attack_arguments(score: ScoreFn, x_ood: Any, norm: str, eps: float, config: AttackConfig) -> Tensor:
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
    if isinstance(eps, bool) or not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    check_inputs(x_ood, what="x_ood", score=score)
    if len(x_ood) == 0:
        raise ValueError(f"x_ood is empty (shape {tuple(x_ood.shape)})")
    if "square" in config.attackers and (x_ood.dim() != 4 or min(x_ood.shape[-2:]) < _SQUARE_MIN_SIDE):
        raise ValueError(f"the square attacker needs NCHW images of at least {_SQUARE_MIN_SIDE}x{_SQUARE_MIN_SIDE} "
                         f"px, got shape {tuple(x_ood.shape)}")
    return x_ood.detach().float().cpu()


def worst_case(score: ScoreFn, x_ood: Tensor, *, norm: str = "l2", eps: float,
               attackers: Sequence[str] | None = None, config: AttackConfig | None = None,
               start: Tensor | Mapping[str, Tensor] | None = None, stop_above: float | None = None,
               seed: int = 0, device: str | torch.device | None = None) -> WorstCase:
    """Maximises ``score`` around each OOD input inside the ``norm`` ball of radius ``eps`` and the [0, 1] box.

    ``score`` is any callable returning one score per sample (higher = more in-distribution), e.g. a
    :class:`~atebm.models.ScoreModel`. ``attackers`` (default ``config.attackers``) picks from :data:`ATTACKERS`.
    ``start`` optionally gives start points (one tensor for all attackers, or one per attacker name), e.g. the
    worst case found at a smaller eps: they are projected onto the ball, count as candidates, and PGD continues
    from them. ``stop_above`` stops attacking samples once their score exceeds it (see :class:`AttackConfig`).
    Deterministic for a given ``seed`` (on CUDA with ``torch.backends.cudnn.deterministic = True``; otherwise
    cuDNN's gradient kernels differ in the last bits); the global RNGs (torch, NumPy, Python) are left as they were.

    Bad inputs (non-tensor, integer dtype, not batched, empty, NaN/inf, outside [0, 1], another shape than a
    loaded model takes) are refused with a one-line ``TypeError``/``ValueError``.
    """
    config = config or AttackConfig()
    if attackers is not None:
        config = config.replace(attackers=tuple(attackers))
    x0 = _check_attack_arguments(score, x_ood, norm, eps, config)
    run_device = torch.device(device) if device is not None else _device_of(score, torch.device("cpu"))
    clean = checked_scores(score, x0, config.batch_size, "the OOD inputs")

    starts = {}
    for name in config.attackers:
        given = start.get(name) if isinstance(start, Mapping) else start
        if given is None:
            starts[name] = x0
            continue
        check_inputs(given, what=f"start[{name!r}]", box=None)
        if given.shape != x0.shape:
            raise ValueError(f"start points must have the shape of x_ood {tuple(x0.shape)}, got {tuple(given.shape)}")
        starts[name] = project_onto_ball(given.detach().float().cpu(), x0, norm=norm, eps=float(eps))

    searches = {}
    generator = torch.Generator().manual_seed(seed)
    device_context = torch.cuda.device(run_device) if run_device.type == "cuda" else nullcontext()
    # ART's predictions draw torch's global generator (DataLoader seeds): fork it, so the caller's is untouched
    rng = torch.random.fork_rng(devices=[run_device] if run_device.type == "cuda" else [])
    with eval_mode(score), _parameters_frozen(score), device_context, rng:
        for name in config.attackers:
            search = _Search(score, x0, clean, norm, float(eps), config.batch_size)
            if eps > 0:
                if not torch.equal(starts[name], x0):
                    search.offer(starts[name], torch.arange(len(x0)))
                if name == "pgd":
                    _run_pgd(search, starts[name], config, stop_above, generator, run_device)
                elif name == "apgd":
                    _run_apgd(search, config, stop_above, seed, run_device)
                else:
                    _run_square(search, config, stop_above, seed, run_device)
            searches[name] = search

    stacked = torch.stack([searches[n].best_s for n in config.attackers]).max(dim=0)
    x_best = torch.stack([searches[n].best_x for n in config.attackers])[stacked.indices, torch.arange(len(x0))]
    protocol = attack_protocol(config, norm, float(eps))
    protocol.update({"n": len(x0), "seed": seed, "stop_above": stop_above,
                     "warm_start": start is not None, "early_stop": stop_above is not None})
    return WorstCase(x=x_best, scores=stacked.values, clean_scores=clean,
                     by_attacker={n: s.best_s for n, s in searches.items()},
                     x_by_attacker={n: s.best_x for n, s in searches.items()},
                     failed_rows={n: s.failed_rows for n, s in searches.items()},
                     nan_proposals={n: s.nan_proposals for n, s in searches.items() if n != "pgd"},
                     protocol=protocol)
