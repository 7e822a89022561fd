"""Worst-case OOD inputs: OOD samples perturbed to *maximise* the score inside an eps-ball (METHOD Sec. 3;
E Tab. 4 and supp. Tab. 8; G Sec. 5, App. G and Tab. 15).

    x_wc = argmax_{x' in B_p(x, eps) ∩ [0,1]^d}  f(x')

Two independent attackers solve this, and every sample keeps the strongest result (the highest score) of all:

* ``"pgd"`` – :func:`atebm.pgd` (the sampler itself: normalised-gradient ascent with projection) over a grid of
  steps x step sizes (G Tab. 15, 22), from the start point and optionally from random starts in the ball;
* ``"apgd"`` – torchattacks' APGD (Croce & Hein 2020, the attack of E Tab. 4/8) through :class:`TwoClassAdapter`,
  which presents the score as a classifier whose attacked loss increases monotonically with ``f``.

The clean input (or a given start point inside the ball) is always a candidate, so the worst case is never
weaker than the clean score nor than either attacker alone.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor, nn

from ..sampling import eval_mode

__all__ = ["AttackConfig", "WorstCase", "TwoClassAdapter", "worst_case", "batched_scores", "ATTACKERS"]

ATTACKERS = ("pgd", "apgd")
ScoreFn = Callable[[Tensor], Tensor]


@dataclass
class AttackConfig:
    """Settings of the worst-case search (stored in every protocol).

    ``pgd_steps`` x ``pgd_step_sizes`` is the PGD grid; a step size ``None`` means ``pgd_step_factor * eps /
    steps`` (so the path can cross the ball ``pgd_step_factor`` times). Every grid point runs once from the
    start point and ``pgd_random_restarts`` more times from uniform random points in the ball (the best per
    sample is kept). APGD runs ``apgd_steps`` steps with ``apgd_restarts`` random restarts and the loss
    ``apgd_loss`` (see :class:`TwoClassAdapter`). ``early_stop``: samples whose score already exceeds
    ``stop_above`` (in :func:`atebm.ood.evaluate`: the highest in-distribution score) are not attacked further;
    ranking metrics (AUROC, AUPR, FPR@95) are unchanged by this, reported mean scores become lower bounds.
    """

    attackers: tuple[str, ...] = ATTACKERS
    pgd_steps: tuple[int, ...] = (10,)
    pgd_step_sizes: tuple[float | None, ...] = (None,)
    pgd_step_factor: float = 2.5
    pgd_random_restarts: int = 0
    apgd_steps: int = 10
    apgd_restarts: int = 1
    apgd_loss: str = "dlr"
    early_stop: bool = True
    batch_size: int = 256

    def __post_init__(self) -> None:
        self.attackers = tuple(self.attackers)
        self.pgd_steps = tuple(int(s) for s in self.pgd_steps)
        self.pgd_step_sizes = tuple(None if s is None else float(s) for s in self.pgd_step_sizes)
        problems = []
        unknown = [a for a in self.attackers if a not in ATTACKERS]
        if unknown or not self.attackers:
            problems.append(f"attackers must be a non-empty subset of {ATTACKERS}, got {self.attackers}")
        if "pgd" in self.attackers and (not self.pgd_steps or min(self.pgd_steps) < 1 or not self.pgd_step_sizes):
            problems.append(f"pgd_steps must be positive integers and pgd_step_sizes non-empty, got "
                            f"{self.pgd_steps} / {self.pgd_step_sizes}")
        if any(s is not None and s <= 0 for s in self.pgd_step_sizes) or self.pgd_step_factor <= 0:
            problems.append("PGD step sizes and pgd_step_factor must be positive")
        if self.pgd_random_restarts < 0:
            problems.append(f"pgd_random_restarts must be >= 0, got {self.pgd_random_restarts}")
        if self.apgd_steps < 1 or self.apgd_restarts < 1:
            problems.append(f"apgd_steps and apgd_restarts must be >= 1, got {self.apgd_steps}, {self.apgd_restarts}")
        if self.apgd_loss not in ("dlr", "ce"):
            problems.append(f"apgd_loss must be 'dlr' or 'ce', got {self.apgd_loss!r}")
        if self.batch_size < 1:
            problems.append(f"batch_size must be >= 1, got {self.batch_size}")
        if problems:
            raise ValueError("invalid attack config: " + "; ".join(problems))

    def grid(self, eps: float) -> list[tuple[int, float]]:
        """The (steps, step size) pairs PGD runs at radius ``eps``."""
        pairs = []
        for steps in self.pgd_steps:
            for size in self.pgd_step_sizes:
                pairs.append((steps, float(size) if size is not None else self.pgd_step_factor * eps / steps))
        return pairs

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class WorstCase:
    """Result of :func:`worst_case`. ``x``: per sample the strongest input found; ``scores``: its score;
    ``clean_scores``: scores of the unperturbed inputs; ``by_attacker[name]``: each attacker's own best score
    per sample (the start point included) and ``x_by_attacker[name]`` its input; ``protocol``: how."""

    x: Tensor
    scores: Tensor
    clean_scores: Tensor
    by_attacker: dict[str, Tensor]
    x_by_attacker: dict[str, Tensor]
    protocol: dict[str, Any] = field(default_factory=dict)


def _device_of(score: Any, fallback: torch.device) -> torch.device:
    if isinstance(score, nn.Module):
        for tensor in list(score.parameters()) + list(score.buffers()):
            return tensor.device
    return fallback


@torch.no_grad()
def batched_scores(score: ScoreFn, x: Tensor, batch_size: int = 512) -> Tensor:
    """Scores of ``x`` in batches, in eval mode, on the score's device; returns a CPU float tensor ``(N,)``."""
    device = _device_of(score, x.device)
    out = []
    with eval_mode(score):
        for i in range(0, len(x), batch_size):
            s = score(x[i:i + batch_size].to(device))
            if s.dim() == 2 and s.shape[1] == 1:
                s = s[:, 0]
            if s.shape != (min(batch_size, len(x) - i),):
                raise ValueError(f"the score must return one value per sample; got shape {tuple(s.shape)}")
            out.append(s.detach().float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


class TwoClassAdapter(nn.Module):
    """Presents a score ``f`` as a classifier for torchattacks' APGD, attacked with the label 0 for every sample,
    so that maximising APGD's loss maximises ``f``.

    * ``loss="dlr"`` (default): logits ``[0, f, -margin]``. APGD's DLR loss for label 0 is then ``f / margin``
      for ``-margin < f <= 0`` and ``f / (f + margin)`` for ``f > 0``: strictly increasing in ``f`` with a
      gradient that never vanishes, however negative the score (``|f| < margin`` is checked).
    * ``loss="ce"``: logits ``[0, f]``. Cross-entropy for label 0 is ``softplus(f)``, also increasing, but its
      gradient ``sigmoid(f) ∇f`` underflows for very negative scores, where APGD then stalls.

    Inputs of any shape are handed to APGD as ``(N, D, 1, 1)`` (APGD works on 4-D tensors) and reshaped back.
    """

    def __init__(self, score: ScoreFn, shape: Sequence[int], loss: str = "dlr", margin: float = 1e4,
                 device: torch.device | str = "cpu") -> None:
        super().__init__()
        if loss not in ("dlr", "ce"):
            raise ValueError(f"loss must be 'dlr' or 'ce', got {loss!r}")
        self.score, self.shape, self.loss, self.margin = score, tuple(shape), loss, float(margin)
        # torchattacks reads the device from the first parameter; an empty one says where to run.
        self.anchor = nn.Parameter(torch.zeros(0, device=device), requires_grad=False)

    def to_attack(self, x: Tensor) -> Tensor:
        return x if x.dim() == 4 else x.reshape(len(x), -1, 1, 1)

    def from_attack(self, x: Tensor) -> Tensor:
        return x.reshape(len(x), *self.shape)

    def forward(self, x: Tensor) -> Tensor:
        f = self.score(self.from_attack(x))
        if f.dim() == 2 and f.shape[1] == 1:
            f = f[:, 0]
        zero = torch.zeros_like(f)
        if self.loss == "ce":
            return torch.stack([zero, f], dim=1)
        if not torch.isfinite(f).all() or bool((f.detach().abs() >= self.margin).any()):
            raise ValueError(f"APGD adapter: scores reach {float(f.detach().abs().max()):.3g}, beyond the margin "
                             f"{self.margin:g}; pass a larger margin (or check the model for divergence)")
        return torch.stack([zero, f, torch.full_like(f, -self.margin)], dim=1)


def _project(x: Tensor, x0: Tensor, norm: str, eps: float) -> Tensor:
    delta = x - x0
    if norm == "linf":
        delta = delta.clamp(-eps, eps)
    else:
        length = delta.flatten(1).norm(dim=1).view(-1, *([1] * (x.dim() - 1)))
        delta = delta * torch.clamp(eps / length.clamp_min(1e-12), max=1.0)
    return (x0 + delta).clamp(0, 1)


def _keep_best(best_x: Tensor, best_s: Tensor, x: Tensor, s: Tensor, index: Tensor) -> None:
    better = s > best_s[index]
    chosen = index[better]
    best_x[chosen] = x[better]
    best_s[chosen] = s[better]


def _active(best_s: Tensor, stop_above: float | None) -> Tensor:
    if stop_above is None:
        return torch.arange(len(best_s))
    return torch.nonzero(best_s <= stop_above).view(-1)


def _run_pgd(score: ScoreFn, x0: Tensor, start: Tensor, best_x: Tensor, best_s: Tensor, norm: str, eps: float,
             config: AttackConfig, stop_above: float | None, generator: torch.Generator, device: torch.device) -> None:
    from ..sampling import pgd

    for steps, step_size in config.grid(eps):
        runs = [False] + [True] * config.pgd_random_restarts
        for random_start in runs:
            index = _active(best_s, stop_above)
            for i in range(0, len(index), config.batch_size):
                chunk = index[i:i + config.batch_size]
                origin = x0[chunk].to(device)
                if random_start:
                    out = pgd(score, origin, steps=steps, step_size=step_size, norm=norm, eps=eps,
                              random_start=True, generator=generator)
                else:
                    out = _pgd_from(score, origin, start[chunk].to(device), steps, step_size, norm, eps)
                out = out.cpu()
                _keep_best(best_x, best_s, out, batched_scores(score, out, config.batch_size), chunk)


def _pgd_from(score: ScoreFn, x0: Tensor, start: Tensor, steps: int, step_size: float, norm: str,
              eps: float) -> Tensor:
    """PGD ascent inside B(x0, eps) started from ``start`` (a point inside the ball, e.g. the worst case at a
    smaller eps). ``atebm.pgd`` projects around its own start; here each step is projected around ``x0``."""
    from ..sampling import pgd

    if torch.equal(start, x0):
        return pgd(score, x0, steps=steps, step_size=step_size, norm=norm, eps=eps)
    x = start
    for _ in range(steps):
        x = pgd(score, x, steps=1, step_size=step_size, norm=norm)
        x = _project(x, x0, norm, eps)
    return x


def _run_apgd(score: ScoreFn, x0: Tensor, best_x: Tensor, best_s: Tensor, norm: str, eps: float,
              config: AttackConfig, stop_above: float | None, seed: int, device: torch.device) -> None:
    try:
        import torchattacks
    except ImportError as err:
        raise RuntimeError("the APGD attacker needs torchattacks: pip install 'atebm[eval]' (or run only "
                           "attackers=('pgd',), --attackers pgd)") from err

    adapter = TwoClassAdapter(score, x0.shape[1:], loss=config.apgd_loss, device=device)
    attack = torchattacks.APGD(adapter, norm="L2" if norm == "l2" else "Linf", eps=eps, steps=config.apgd_steps,
                               n_restarts=config.apgd_restarts, seed=seed, loss=config.apgd_loss)
    attack.set_device(device)
    index = _active(best_s, stop_above)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        for i in range(0, len(index), config.batch_size):
            chunk = index[i:i + config.batch_size]
            images = adapter.to_attack(x0[chunk].to(device))
            labels = torch.zeros(len(chunk), dtype=torch.long, device=device)
            with torch.enable_grad():
                _, adv = attack.perturb(images, labels, best_loss=True)
            out = _project(adapter.from_attack(adv.detach()).cpu(), x0[chunk], norm, eps)
            _keep_best(best_x, best_s, out, batched_scores(score, out, config.batch_size), chunk)


def _versions() -> dict[str, str]:
    from .. import __version__

    versions = {"atebm": __version__, "torch": torch.__version__}
    try:
        import torchattacks

        versions["torchattacks"] = torchattacks.__version__
    except ImportError:
        versions["torchattacks"] = "not installed"
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
    if "apgd" in config.attackers:
        protocol["apgd"] = {"implementation": f"torchattacks.APGD {versions['torchattacks']}",
                            "steps": config.apgd_steps, "restarts": config.apgd_restarts,
                            "loss": "DLR on logits [0, f, -1e4], label 0" if config.apgd_loss == "dlr"
                            else "CE on logits [0, f], label 0", "rho": 0.75}
    return protocol


def worst_case(score: ScoreFn, x_ood: Tensor, *, norm: str = "l2", eps: float,
               attackers: Sequence[str] | None = None, config: AttackConfig | None = None,
               start: Tensor | Mapping[str, Tensor] | None = None, stop_above: float | None = None,
               seed: int = 0, device: str | torch.device | None = None) -> WorstCase:
    """Maximises ``score`` around each OOD input inside the ``norm`` ball of radius ``eps`` and the [0, 1] box.

    ``score`` is any callable returning one score per sample (higher = more in-distribution), e.g. a
    :class:`~atebm.models.ScoreModel`. ``attackers`` (default ``config.attackers``) picks ``"pgd"`` and/or
    ``"apgd"``. ``start`` optionally gives start points inside the ball (one tensor for all attackers, or one
    per attacker name), e.g. the worst case found at a smaller eps: PGD continues from it and it counts as a
    candidate. ``stop_above`` stops attacking samples once their score exceeds it (see :class:`AttackConfig`).
    Deterministic for a given ``seed``; the global RNG is left as it was.
    """
    config = config or AttackConfig()
    if attackers is not None:
        config = AttackConfig(**{**config.to_dict(), "attackers": tuple(attackers)})
    if norm not in ("l2", "linf"):
        raise ValueError(f"norm must be 'l2' or 'linf', got {norm!r}")
    if not (isinstance(eps, (int, float)) and math.isfinite(eps) and eps >= 0):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    x0 = torch.as_tensor(x_ood).detach().float().cpu()
    if x0.dim() < 2 or len(x0) == 0:
        raise ValueError(f"x_ood must be a non-empty batch (N, ...), got shape {tuple(x0.shape)}")
    if float(x0.min()) < 0 or float(x0.max()) > 1:
        raise ValueError("x_ood must lie in [0, 1] (inputs are images in [0, 1]; normalise inside the model)")
    run_device = torch.device(device) if device is not None else _device_of(score, torch.device("cpu"))

    clean = batched_scores(score, x0, config.batch_size)
    if not torch.isfinite(clean).all():
        raise ValueError("the model returns non-finite scores on the clean OOD inputs; the checkpoint is unusable")
    starts = {}
    for name in config.attackers:
        given = start.get(name) if isinstance(start, Mapping) else start
        starts[name] = x0 if given is None else _project(torch.as_tensor(given).detach().float().cpu(), x0, norm, eps)

    by_attacker, x_by_attacker = {}, {}
    generator = torch.Generator().manual_seed(seed)
    with eval_mode(score):
        for name in config.attackers:
            best_x = x0.clone()
            best_s = clean.clone()
            if eps > 0:
                if not torch.equal(starts[name], x0):
                    _keep_best(best_x, best_s, starts[name], batched_scores(score, starts[name], config.batch_size),
                               torch.arange(len(x0)))
                if name == "pgd":
                    _run_pgd(score, x0, starts[name], best_x, best_s, norm, float(eps), config, stop_above,
                             generator, run_device)
                else:
                    _run_apgd(score, x0, best_x, best_s, norm, float(eps), config, stop_above, seed, run_device)
            by_attacker[name], x_by_attacker[name] = best_s, best_x

    scores = torch.stack([by_attacker[n] for n in config.attackers]).max(dim=0)
    which = scores.indices
    x_best = torch.stack([x_by_attacker[n] for n in config.attackers])[which, torch.arange(len(x0))]
    protocol = attack_protocol(config, norm, float(eps))
    protocol.update({"n": len(x0), "seed": seed, "stop_above": stop_above,
                     "warm_start": start is not None, "early_stop": stop_above is not None})
    return WorstCase(x=x_best, scores=scores.values, clean_scores=clean, by_attacker=by_attacker,
                     x_by_attacker=x_by_attacker, protocol=protocol)
