"""Worst-case OOD inputs: OOD samples perturbed to *maximise* the score inside an eps-ball (METHOD Sec. 3;
E Tab. 4 and supp. Tab. 8; G Sec. 5, App. G and Tab. 15).

    x_wc = argmax_{x' in B_p(x, eps) ∩ [0,1]^d}  f(x')

Independent attackers solve this, and every sample keeps the strongest result (the highest score) of all:

* ``"pgd"`` – :func:`atebm.pgd` (the sampler itself: normalised-gradient ascent with projection) over a grid of
  steps x step sizes (G Tab. 15, 22), from the start point and optionally from random starts in the ball, keeping
  the best iterate of every run;
* ``"apgd"`` – the Adversarial Robustness Toolbox's (ART) AutoProjectedGradientDescent (Croce & Hein 2020, the
  attack of E Tab. 4/8) with its own CE or DLR loss on the margin ``f(x') - f(x)``;
* ``"square"`` – atebm's Square attack (:mod:`atebm.attacks.square`, Andriushchenko et al. 2020): random search
  that never reads a gradient, a check against gradient masking (a score whose gradients mislead PGD and APGD
  does not mislead it).

The clean input (or a given start point inside the ball) is always a candidate, so the worst case is never
weaker than the clean score nor than any attacker alone. A row an attacker returns with NaN or inf values (an ART
attack can return them) counts as a failed attack for that sample: the sample keeps its clean or best-so-far
input, and the rows are counted (:attr:`WorstCase.failed_rows`).

Everything runs through the attack layer (:func:`atebm.attacks.search`): the margin is
:class:`~atebm.attacks.ScoreAbove` (the score minus the clean score), each attacker searches independently
(``cascade=False``, so each attacker's own numbers stay comparable), and the one ART adapter makes ART's success
test "the score went up".
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import AttackSpec, ScoreAbove, ThreatModel, rows_of, search
from ..attacks.art import art_version
from ..attacks.search import SQUARE_MIN_SIDE
from ..config import Config, above, at_least, distinct, each, in_range, non_empty, one_of, setting
from ..sampling import ScoreFn, check_inputs, eval_mode, per_sample_scores

__all__ = ["AttackConfig", "WorstCase", "worst_case", "batched_scores", "checked_scores", "attack_protocol",
           "ATTACKERS"]

#: Every attacker :func:`worst_case` knows; :class:`AttackConfig` says which run by default.
ATTACKERS = ("pgd", "apgd", "square")
_APGD_LOSSES = {"dlr": "difference_logits_ratio", "ce": "cross_entropy"}


@dataclass(frozen=True)
class AttackConfig(Config):
    """Every setting (and the only defaults) of the worst-case search; stored in every protocol.

    ``attackers``: which run (default PGD and APGD; ``"square"`` is opt-in, see below). ``pgd_steps`` x
    ``pgd_step_sizes`` is the PGD grid; a step size ``None`` means ``pgd_step_factor * eps / steps`` (so the path
    can cross the ball ``pgd_step_factor`` times). Every grid point runs once from the start point and
    ``pgd_random_restarts`` more times from uniform random points in the ball (the best per sample is kept).
    APGD runs ``apgd_steps`` steps from ``apgd_restarts`` random starts with ART's loss ``apgd_loss`` (``"dlr"``
    or ``"ce"``, see :class:`atebm.attacks.art.MarginLogits`) and the initial step 2 eps of Croce & Hein. Square runs
    ``square_steps`` iterations (3 forward passes each, no gradient) from ``square_restarts`` starts with the
    initial tile fraction ``square_p_init``. ``early_stop``: samples whose score already exceeds ``stop_above``
    (in :func:`atebm.ood.evaluate`: the highest in-distribution score) are not attacked further; ranking metrics
    (AUROC, AUPR, FPR@95) are unchanged by this, reported mean scores become lower bounds. ``batch_size``:
    samples per attack call and per scoring pass.

    Square is not in the default set: its 100 iterations made the demo model's evaluation 2.5 times as long on CPU
    and found nothing PGD + APGD had missed (``benchmarks/results/ood_attack_strength.json``).
    """

    attackers: tuple[str, ...] = setting(("pgd", "apgd"), non_empty(), distinct(), each(one_of(*ATTACKERS)))
    pgd_steps: tuple[int, ...] = setting((10,), non_empty(), each(at_least(1)))
    pgd_step_sizes: tuple[float | None, ...] = setting((None,), non_empty(), each(above(0)))
    pgd_step_factor: float = setting(2.5, above(0))
    pgd_random_restarts: int = setting(0, at_least(0))
    apgd_steps: int = setting(10, at_least(1))
    apgd_restarts: int = setting(1, at_least(1))
    apgd_loss: str = setting("dlr", one_of(*_APGD_LOSSES))
    square_steps: int = setting(100, at_least(1))
    square_restarts: int = setting(1, at_least(1))
    square_p_init: float = setting(0.3, in_range(0, 1, lo_open=True, hi_open=True))
    early_stop: bool = True
    batch_size: int = setting(256, at_least(1))

    def grid(self, eps: float) -> list[tuple[int, float]]:
        """The (steps, step size) pairs PGD runs at radius ``eps``, each once: a relative step (``None``) that
        equals an explicit one at this radius is the same attack and runs once."""
        return list(dict.fromkeys((steps, float(size) if size is not None else self.pgd_step_factor * eps / steps)
                                  for steps in self.pgd_steps for size in self.pgd_step_sizes))

    def specs(self, eps: float) -> list[tuple[str, AttackSpec]]:
        """The attack layer's specs at radius ``eps``, each with the attacker name it reports under."""
        out: list[tuple[str, AttackSpec]] = []
        for name in self.attackers:
            if name == "pgd":
                out += [("pgd", AttackSpec("pgd", steps=steps, step_size=size, restarts=1 + self.pgd_random_restarts,
                                           random_start=False, label=f"pgd:{steps}x{size:.6g}"))
                        for steps, size in self.grid(eps)]
            elif name == "apgd":
                out.append(("apgd", AttackSpec("apgd", steps=self.apgd_steps, restarts=self.apgd_restarts,
                                               loss=self.apgd_loss, label="apgd")))
            else:
                out.append(("square", AttackSpec("square", steps=self.square_steps, restarts=self.square_restarts,
                                                 p_init=self.square_p_init, label="square")))
        return out


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


def _versions() -> dict[str, str]:
    from .. import __version__

    return {"atebm": __version__, "torch": torch.__version__, "art": art_version()}


def attack_protocol(config: AttackConfig, norm: str, eps: float) -> dict[str, Any]:
    """The attack settings at one radius, as printed next to the numbers."""
    versions = _versions()
    protocol: dict[str, Any] = {"objective": "maximise the score f(x') over x' in B(x, eps) ∩ [0,1]^d; per sample "
                                             "the best of the clean input and all attackers",
                                "norm": norm, "eps": eps}
    if "pgd" in config.attackers:
        protocol["pgd"] = {"implementation": f"atebm.pgd (atebm {versions['atebm']})",
                           "grid_steps_x_step_size": [[s, round(z, 6)] for s, z in config.grid(eps)],
                           "runs_per_grid_point": 1 + config.pgd_random_restarts, "kept": "best iterate of each run",
                           "starts": "start point" + (f" + {config.pgd_random_restarts} uniform random"
                                                      if config.pgd_random_restarts else "")}
    view = "atebm.attacks.art.MarginLogits [0, f - r, -1e4], targeted at class 1"
    if "apgd" in config.attackers:
        protocol["apgd"] = {"implementation": f"ART AutoProjectedGradientDescent {versions['art']}",
                            "steps": config.apgd_steps, "restarts": config.apgd_restarts,
                            "loss": f"ART {_APGD_LOSSES[config.apgd_loss]} on {view}, r = clean score",
                            "initial_step": 2 * eps, "rho": 0.75,
                            "candidates": "ART's returned iterate and its best iterate (x_max)"}
    if "square" in config.attackers:
        protocol["square"] = {"implementation": "atebm.attacks.square (vectorised, per-sample windows)",
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
    if "square" in config.attackers and (x_ood.dim() != 4 or min(x_ood.shape[-2:]) < SQUARE_MIN_SIDE):
        raise ValueError(f"the square attacker needs NCHW images of at least {SQUARE_MIN_SIDE}x{SQUARE_MIN_SIDE} "
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
    threat = ThreatModel(norm, float(eps))
    run_device = torch.device(device) if device is not None else _device_of(score, torch.device("cpu"))
    clean = checked_scores(score, x0, config.batch_size, "the OOD inputs")
    # success = "the score went up": above the clean score raised by a hair of float tolerance
    reference = clean + 1e-6 * clean.abs().clamp_min(1.0)
    named = config.specs(float(eps))
    starts: dict[str, Tensor] = {}
    for name, spec in named:
        given = start.get(name) if isinstance(start, Mapping) else start
        if given is not None:
            if given.shape != x0.shape:
                raise ValueError(f"start points must have the shape of x_ood {tuple(x0.shape)}, got "
                                 f"{tuple(given.shape)}")
            starts[spec.name] = given
    result = search(rows_of(lambda r: ScoreAbove(score, r), reference, device=run_device), x0, threat=threat,
                    attackers=[spec for _, spec in named], start=starts or None,
                    stop_at=None if stop_above is None else float(stop_above) - reference, cascade=False,
                    seed=seed, batch_size=config.batch_size, device=run_device, model=score,
                    clean_margin=clean - reference)

    by_attacker: dict[str, Tensor] = {}
    x_by_attacker: dict[str, Tensor] = {}
    failed: dict[str, int] = {}
    refused: dict[str, int] = {}
    for name, spec in named:
        record = result.by_attacker[spec.name]
        scores = record.margin + reference
        assert record.x is not None
        if name not in by_attacker:
            by_attacker[name], x_by_attacker[name] = scores, record.x
        else:
            better = scores > by_attacker[name]
            by_attacker[name] = torch.where(better, scores, by_attacker[name])
            x_by_attacker[name] = torch.where(better.view(-1, *([1] * (x0.dim() - 1))), record.x,
                                              x_by_attacker[name])
        failed[name] = failed.get(name, 0) + record.failed_rows
        if name != "pgd":
            refused[name] = refused.get(name, 0) + record.refused_proposals
    protocol = attack_protocol(config, norm, float(eps))
    protocol.update({"n": len(x0), "seed": seed, "stop_above": stop_above, "warm_start": start is not None,
                     "early_stop": stop_above is not None, "search": result.protocol})
    return WorstCase(x=result.x, scores=result.margin + reference, clean_scores=clean, by_attacker=by_attacker,
                     x_by_attacker=x_by_attacker, failed_rows=failed, nan_proposals=refused, protocol=protocol)
