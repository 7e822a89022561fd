"""The two 2D solvers of the theory lab (METHOD Sec. 4).

**Maximin** (E Alg. 1, G Alg. 1/3, E Eq. 12): ``max_D min_{p_T} E_data[log D] + E_{p_T}[log(1 - D)]``. It *is*
:class:`atebm.Trainer` on the ``mlp2d`` score model with unconstrained PGD (``pgd_eps = inf``; the only projection
is the box clamp): every iteration draws m data points and m p_0 seeds, moves the seeds K unit-length steps up f
(E Eq. 8) and takes one optimiser step on the binary cross-entropy. There is no second training loop here; this
module only configures the trainer, gives D its starting landscape (:func:`bumpy_init`: random local maxima, as
the randomly initialised D of E Sec. 4.2) and records snapshots through a callback.

**Minimax** (G Alg. 2, E supp. Alg. 3): the GAN game without a generator,
``min_{p_t} max_D U(D, p_t)``::

    particles <- m seeds of p_0;  data <- m samples of p_data      (fixed for the whole run)
    repeat
        train D on (data = 1, particles = 0) until the BCE stops improving       (the inner max)
        particles <- particles + lambda · grad D / ||grad D||_2               (one step, atebm.pgd(steps=1))
    until the particles stop moving

"Stop moving" is measured per particle: a particle is still moving when its net displacement over the last
``window`` rounds exceeds ``stop_fraction · lambda · window`` (a drifting particle moves about ``lambda · window``,
one jittering in place about ``lambda · sqrt(window)``, since every step has length lambda); the run ends when at
most ``stop_moving`` of the particles are still moving, or after ``max_rounds``.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..config import Config, above, at_least, checked_by, in_range, setting
from ..models import ScoreModel, build_score_model, make_activation
from ..sampling import pgd
from ..training import TrainConfig, Trainer
from .metrics import evaluate_d, grid_points, local_maxima

__all__ = ["MaximinSettings", "MinimaxSettings", "Snapshot", "SolverResult", "mlp2d_spec", "bumpy_init",
           "solve_maximin", "solve_minimax"]


def mlp2d_spec(hidden: int = 64, depth: int = 3, activation: str = "silu", box: tuple[float, float] = (-4.0, 4.0)
               ) -> dict[str, Any]:
    """Model spec of the 2D score network; inputs are standardised inside the model to about [-1, 1]."""
    centre, half = (box[0] + box[1]) / 2, (box[1] - box[0]) / 2
    return {"arch": "mlp2d", "kwargs": {"in_dim": 2, "hidden": hidden, "depth": depth, "activation": activation},
            "mean": centre, "std": half}


def bumpy_init(model: ScoreModel, box: tuple[float, float], bumps: int, seed: int, *, steps: int = 300,
               width: float = 0.5, heights: tuple[float, float] = (2.0, 4.0), base: float = -1.0) -> dict[str, Any]:
    """Starts D with ``bumps`` random local maxima. E Sec. 4.2 reasons about a randomly initialised D that "has many
    local maxima outside the support"; a small MLP at its default initialisation is nearly linear over the box
    (its only maximum sits on the box edge), so the lab instead fits the network, before the solver starts, to
    ``f0(x) = base + sum_j a_j exp(-||x - c_j||^2 / (2 width^2))`` with centres ``c_j`` uniform in the box and
    heights ``a_j`` uniform in ``heights`` (mean-squared error on uniform points, Adam, ``steps`` full batches).
    Returns the bump centres and heights and the final fit error."""
    g = torch.Generator().manual_seed(10_000 + seed)
    lo, hi = float(box[0]), float(box[1])
    centres = lo + (hi - lo) * torch.rand(bumps, 2, generator=g)
    amp = heights[0] + (heights[1] - heights[0]) * torch.rand(bumps, generator=g)

    def target(x: Tensor) -> Tensor:
        d2 = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
        return base + (amp * torch.exp(-d2 / (2 * width ** 2))).sum(1)

    points = lo + (hi - lo) * torch.rand(1024, 2, generator=g)
    goal = target(points)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    was_training = model.training
    model.train()
    for _ in range(steps):
        loss = F.mse_loss(model(points), goal)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.train(was_training)
    return {"bumps": bumps, "centres": centres.tolist(), "heights": amp.tolist(), "width": width, "base": base,
            "fit_mse": float(loss.detach())}


@dataclass(frozen=True)
class SolverSettings(Config):
    """What both solvers share: the particles' ``step_size``, D (an MLP of ``depth`` layers of ``hidden`` units
    with ``activation``, trained at ``lr``, started with ``init_bumps`` random local maxima by :func:`bumpy_init`;
    0 = the network's default initialisation) and the ``seed``."""

    step_size: float = setting(0.2, above(0))
    lr: float = setting(2e-3, above(0))
    init_bumps: int = setting(0, at_least(0))
    hidden: int = setting(64, at_least(1))
    depth: int = setting(3, at_least(1))
    activation: str = setting("silu", checked_by(make_activation))
    seed: int = 0


@dataclass(frozen=True)
class MaximinSettings(SolverSettings):
    """Algorithm 1 (E) with unit-length PGD steps, D started with ``init_bumps`` random local maxima
    (:func:`bumpy_init`, the randomly initialised D of E Sec. 4.2); K grows from ``k_start`` to ``k`` as in E Alg. 2
    (set ``k_start = k`` for a fixed K): one more step when the AUC gate opens or, at the latest, every
    ``k_ramp · iters / (k - k_start)`` iterations, so that K reaches ``k`` after ``k_ramp`` of the run. The last K
    runs until ``iters`` iterations in total."""

    init_bumps: int = 8
    iters: int = setting(1200, at_least(1))
    k: int = setting(40, at_least(0))
    k_start: int = setting(0, at_least(0))
    k_ramp: float = setting(0.5, in_range(0, 1, lo_open=True))
    auc_window: int = setting(20, at_least(1))
    auc_threshold: float = setting(0.8, in_range(0, 1))
    batch_size: int = setting(128, at_least(2))
    snapshot_steps: tuple[int, ...] = (0, 10, 25, 50, 100, 200, 400, 800)

    def check(self) -> Iterator[str]:
        if self.k_start > self.k:
            yield f"maximin needs k_start <= k, got k_start={self.k_start}, k={self.k}"


@dataclass(frozen=True)
class MinimaxSettings(SolverSettings):
    """G Alg. 2 / E supp. Alg. 3. D starts from the network's default initialisation (``init_bumps = 0``): the
    first round fits D to convergence anyway, and starting from :func:`bumpy_init` leaves some particles trapped
    at the remains of the bumps when the cloud stops moving (seed 0, 256 particles, step 0.08: energy distance
    0.048 with 88 % of the particles on the support, against 0.002 and 99 % from the default start)."""

    step_size: float = 0.05
    particles: int = setting(512, at_least(1))
    max_rounds: int = setting(400, at_least(1))
    d_steps_first: int = setting(400, at_least(1))
    d_steps: int = setting(60, at_least(1))
    d_min_steps: int = setting(20, at_least(0))
    # the inner max stops when the BCE improved by less than d_tol over 10 steps
    d_tol: float = setting(1e-4, at_least(0))
    window: int = setting(20, at_least(1))
    stop_fraction: float = setting(0.5, in_range(0, 1))
    stop_moving: float = setting(0.01, at_least(0))
    snapshot_rounds: tuple[int, ...] = (0, 5, 10, 20, 40, 60, 80, 120, 160, 240, 320)


@dataclass
class Snapshot:
    """State at one moment of a run: D on a grid and the (perturbed) p_0 particles."""

    step: int
    d_grid: Tensor          # (grid, grid), D = sigmoid(f), rows = y
    particles: Tensor       # (n, 2): perturbed p_0 (maximin) or current particles (minimax)
    seeds: Tensor | None = None


@dataclass
class SolverResult:
    model: ScoreModel
    history: list[dict[str, Any]]
    snapshots: list[Snapshot]
    particles: Tensor
    seconds: float
    config: dict[str, Any] = field(default_factory=dict)


def _snapshot(model: ScoreModel, step: int, box: tuple[float, float], grid: int, particles: Tensor,
              seeds: Tensor | None = None) -> Snapshot:
    d = evaluate_d(model, grid_points(box, grid)).view(grid, grid)
    return Snapshot(step, d, particles.detach().clone(), None if seeds is None else seeds.detach().clone())


def solve_maximin(data: Tensor, p0: Tensor, settings: MaximinSettings | None = None, *,
                  box: tuple[float, float] = (-4.0, 4.0), snapshot_grid: int = 80, n_show: int = 300,
                  progress: bool = False, device: str = "cpu",
                  callbacks: tuple[Callable[[Trainer, dict[str, Any]], None], ...] = ()) -> SolverResult:
    """Maximin = :class:`atebm.Trainer` (mlp2d, unconstrained PGD, box clamp). Snapshots at
    ``settings.snapshot_steps`` show D and where K PGD steps put ``n_show`` fixed p_0 seeds (G Fig. 4)."""
    s = settings if settings is not None else MaximinSettings()
    if s.iters < 1 or not 0 <= s.k_start <= s.k:
        raise ValueError(f"maximin needs iters >= 1 and 0 <= k_start <= k, got iters={s.iters}, "
                         f"k_start={s.k_start}, k={s.k}")
    if not 0 < s.k_ramp <= 1:
        raise ValueError(f"k_ramp must lie in (0, 1], got {s.k_ramp}")
    iters_per_epoch = max(1, math.ceil(data.shape[0] / s.batch_size))
    iters_per_k = max(1.0, s.k_ramp * s.iters / max(1, s.k - s.k_start))
    # log (and so call the snapshot callback) often enough to hit every snapshot step
    wanted = sorted({int(t) for t in s.snapshot_steps if 0 < t <= s.iters} | {s.iters})
    config = TrainConfig(
        model=mlp2d_spec(s.hidden, s.depth, s.activation, box), batch_size=s.batch_size, lr=s.lr,
        k_start=s.k_start, k_max=s.k, epochs_per_k=iters_per_k / iters_per_epoch, auc_window=s.auc_window,
        auc_threshold=s.auc_threshold, final_iters=s.iters, max_iters=s.iters, step_size=s.step_size,
        pgd_norm="l2", pgd_eps=math.inf, loss="bce", log_every=math.gcd(*wanted), ckpt_every=10 ** 9,
        seed=s.seed, device=device, progress=progress)
    clamp = (float(box[0]), float(box[1]))
    g = torch.Generator().manual_seed(s.seed + 99)
    seeds = p0[torch.randperm(p0.shape[0], generator=g)[:n_show]].clone()
    snapshots: list[Snapshot] = []

    def record(trainer: Trainer, rec: dict[str, Any]) -> None:
        if trainer.step in wanted:
            moved = trainer.sample_p0(seeds, trainer.k) if trainer.k > 0 else seeds
            snapshots.append(_snapshot(trainer.model, trainer.step, box, snapshot_grid, moved, seeds))

    trainer = Trainer(config, data, p0, extra={"clamp": clamp}, callbacks=(record, *callbacks))
    init: dict[str, Any] = bumpy_init(trainer.model, box, s.init_bumps, s.seed) if s.init_bumps > 0 else {"bumps": 0}
    init["maxima"] = local_maxima(trainer.model, box)
    if 0 in s.snapshot_steps:
        moved = trainer.sample_p0(seeds, s.k_start) if s.k_start > 0 else seeds
        snapshots.append(_snapshot(trainer.model, 0, box, snapshot_grid, moved, seeds))
    start = time.perf_counter()
    history = trainer.fit()
    seconds = time.perf_counter() - start
    trainer.model.eval()
    final = trainer.sample_p0(seeds, trainer.k) if trainer.k > 0 else seeds
    if not snapshots or snapshots[-1].step != trainer.step:
        snapshots.append(_snapshot(trainer.model, trainer.step, box, snapshot_grid, final, seeds))
    return SolverResult(trainer.model, history, snapshots, final, seconds,
                        {"solver": "maximin", "settings": s.to_dict(), "train_config": config.to_dict(),
                         "box": list(clamp), "init": init})


def _bce(model: ScoreModel, data: Tensor, particles: Tensor) -> Tensor:
    s = model(torch.cat([data, particles]))
    m = data.shape[0]
    return F.binary_cross_entropy_with_logits(s[:m], torch.ones(m)) + \
        F.binary_cross_entropy_with_logits(s[m:], torch.zeros(particles.shape[0]))


def _train_d(model: ScoreModel, opt: torch.optim.Optimizer, data: Tensor, particles: Tensor, max_steps: int,
             tol: float, min_steps: int = 10) -> tuple[float, int]:
    """The inner max of the minimax game: full-batch BCE for at least ``min_steps`` steps and then until it improves
    by less than ``tol`` over 10 steps (or ``max_steps``)."""
    model.train()
    losses: list[float] = []
    for step in range(max_steps):
        loss = _bce(model, data, particles)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        if len(losses) > max(10, min_steps) and losses[-11] - losses[-1] < tol:
            return losses[-1], step + 1
    return losses[-1], max_steps


def solve_minimax(data: Tensor, p0: Tensor, settings: MinimaxSettings | None = None, *,
                  box: tuple[float, float] = (-4.0, 4.0), snapshot_grid: int = 80) -> SolverResult:
    """G Alg. 2 / E supp. Alg. 3 (module doc): alternate "train D to convergence" and "move every particle one
    unit-length step up D" until the particles stop moving. ``data`` and ``p0`` give the m fixed data points and
    the m starting particles (the first ``settings.particles`` rows of each are used)."""
    s = settings if settings is not None else MinimaxSettings()
    m = s.particles
    if data.shape[0] < m or p0.shape[0] < m:
        raise ValueError(f"minimax needs at least {m} data points and p0 seeds, got {data.shape[0]} and {p0.shape[0]}")
    if s.max_rounds < 1 or s.step_size <= 0 or s.window < 1:
        raise ValueError("minimax needs max_rounds >= 1, step_size > 0 and window >= 1")
    torch.manual_seed(s.seed)
    spec = mlp2d_spec(s.hidden, s.depth, s.activation, box)
    model = build_score_model(spec)
    init: dict[str, Any] = bumpy_init(model, box, s.init_bumps, s.seed) if s.init_bumps > 0 else {"bumps": 0}
    init["maxima"] = local_maxima(model, box)
    opt = torch.optim.Adam(model.parameters(), lr=s.lr)
    clamp = (float(box[0]), float(box[1]))
    x_data = data[:m].float()
    particles = p0[:m].float().clone()
    history: list[dict[str, Any]] = []
    positions = [particles.clone()]
    snapshots = [_snapshot(model, 0, box, snapshot_grid, particles)] if 0 in s.snapshot_rounds else []
    start = time.perf_counter()
    rounds, stop_reason = 0, "max_rounds reached"
    for rounds in range(1, s.max_rounds + 1):
        loss, inner = _train_d(model, opt, x_data, particles, s.d_steps_first if rounds == 1 else s.d_steps, s.d_tol,
                               s.d_min_steps)
        moved = pgd(model, particles, steps=1, step_size=s.step_size, clamp=clamp)
        step_len = float((moved - particles).norm(dim=1).mean())
        particles = moved
        positions.append(particles.clone())
        if len(positions) > s.window + 1:
            positions.pop(0)
        if len(positions) == s.window + 1:
            net = (positions[-1] - positions[0]).norm(dim=1)
            drift = float(net.mean())
            still_moving = float((net > s.stop_fraction * s.step_size * s.window).float().mean())
        else:
            drift, still_moving = math.nan, math.nan
        d_data = float(evaluate_d(model, x_data).mean())
        d_part = float(evaluate_d(model, particles).mean())
        history.append({"round": rounds, "loss": loss, "inner_steps": inner, "d_data": d_data, "d_particles": d_part,
                        "step_length": step_len, "drift": drift, "moving": still_moving,
                        "elapsed_s": time.perf_counter() - start})
        if rounds in s.snapshot_rounds:
            snapshots.append(_snapshot(model, rounds, box, snapshot_grid, particles))
        if not math.isnan(still_moving) and still_moving <= s.stop_moving:
            stop_reason = (f"particles stopped moving ({still_moving:.1%} moved more than "
                           f"{s.stop_fraction * s.step_size * s.window:.3g} in the last {s.window} rounds)")
            break
    # a last D fit against the final particles, as at the start of every round
    _train_d(model, opt, x_data, particles, s.d_steps, s.d_tol, s.d_min_steps)
    model.eval()
    seconds = time.perf_counter() - start
    if not snapshots or snapshots[-1].step != rounds:
        snapshots.append(_snapshot(model, rounds, box, snapshot_grid, particles))
    return SolverResult(model, history, snapshots, particles, seconds,
                        {"solver": "minimax", "settings": s.to_dict(), "model_spec": spec, "box": list(clamp),
                         "init": init, "rounds": rounds, "stop_reason": stop_reason})
