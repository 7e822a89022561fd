"""Numbers that check Proposition 1 (E Prop. 1, G Table 1) on a trained 2D discriminator ``D = sigmoid(f)``.

* D on the support: mean / std / min / max over held-out p_data samples (density-weighted) and over the grid
  points that lie on the support (uniform over the support).
* D off the support: the maximum (and where), the mean, and the fraction of off-support grid points with D > 1/2.
* Gradient ascent from random start points (uniform over the box): the fraction that ends on the support.
* Local maxima of D off the support, found by ascent from a dense grid of starts; an endpoint counts as a local
  maximum when the fine ascent has stopped moving there (the unit-length steps of :func:`atebm.pgd` never stall on
  a slope, only at a maximum or at the box edge), and endpoints closer than ``merge_radius`` are merged.
* For the minimax solver: the energy distance between particles and p_data.

The ascent protocol is two calls of the one sampler: ``coarse_steps`` steps of length ``coarse_step`` (total path
longer than the box diagonal) then ``fine_steps`` of length ``fine_step``; the box clamp applies throughout.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import Config, above, at_least, setting
from ..sampling import ScoreFn, eval_mode, per_sample_scores, pgd, pgd_trajectory
from .datasets import Toy2D, uniform_box

__all__ = ["AscentProtocol", "energy_distance", "grid_points", "ascend", "find_maxima", "local_maxima",
           "prop1_metrics", "evaluate_d"]


@dataclass(frozen=True)
class AscentProtocol(Config):
    """Gradient ascent used for the basin and local-maximum measurements (path 16 + 1 for the default box)."""

    coarse_steps: int = setting(160, at_least(1))
    coarse_step: float = setting(0.1, above(0))
    fine_steps: int = setting(100, at_least(1))
    fine_step: float = setting(0.01, above(0))
    # net displacement over the last half of the fine steps below this = stopped
    stationary_tol: float = setting(0.05, above(0))
    merge_radius: float = setting(0.3, above(0))


def grid_points(box: tuple[float, float], n: int) -> Tensor:
    """``n x n`` grid over the box, rows ordered by y then x, shape ``(n*n, 2)``."""
    axis = torch.linspace(float(box[0]), float(box[1]), n)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)


@torch.no_grad()
def evaluate_d(score: ScoreFn, x: Tensor, chunk: int = 8192) -> Tensor:
    """``D(x) = sigmoid(f(x))`` in chunks (model put in eval mode and restored)."""
    with eval_mode(score):
        return torch.cat([torch.sigmoid(per_sample_scores(score, c)) for c in x.split(chunk)])


def energy_distance(x: Tensor, y: Tensor) -> float:
    """Energy distance ``2 E||X - Y|| - E||X - X'|| - E||Y - Y'||`` (U-statistics for the within-set terms);
    0 iff the distributions are equal, >= 0 in expectation."""
    if x.shape[0] < 2 or y.shape[0] < 2:
        raise ValueError("energy_distance needs at least 2 points per set")
    x, y = x.detach().double().cpu(), y.detach().double().cpu()
    xy = torch.cdist(x, y).mean()
    xx = torch.cdist(x, x).sum() / (x.shape[0] * (x.shape[0] - 1))
    yy = torch.cdist(y, y).sum() / (y.shape[0] * (y.shape[0] - 1))
    return float(2 * xy - xx - yy)


def ascend(score: ScoreFn, x0: Tensor, box: tuple[float, float], protocol: AscentProtocol) -> tuple[Tensor, Tensor]:
    """Runs the ascent protocol; returns ``(endpoints, stationary_mask)``."""
    clamp = (float(box[0]), float(box[1]))
    x = pgd(score, x0, steps=protocol.coarse_steps, step_size=protocol.coarse_step, clamp=clamp)
    half = protocol.fine_steps // 2
    x_end, traj = pgd_trajectory(score, x, steps=protocol.fine_steps, step_size=protocol.fine_step, clamp=clamp,
                                 record=[half, protocol.fine_steps])
    stationary = (traj[1] - traj[0]).norm(dim=1) < protocol.stationary_tol
    return x_end, stationary


def _merge(points: Tensor, values: Tensor, radius: float) -> list[dict[str, Any]]:
    """Greedy clustering of maxima, highest D first."""
    order = torch.argsort(values, descending=True)
    centres: list[dict[str, Any]] = []
    for i in order.tolist():
        p = points[i]
        for c in centres:
            if (p - c["_p"]).norm() < radius:
                c["count"] += 1
                break
        else:
            centres.append({"_p": p, "x": float(p[0]), "y": float(p[1]), "d": float(values[i]), "count": 1})
    for c in centres:
        del c["_p"]
    return centres


def local_maxima(score: ScoreFn, box: tuple[float, float], *, grid: int = 21,
                 protocol: AscentProtocol = AscentProtocol()) -> list[dict[str, Any]]:
    """All local maxima of D in the box found by ascent from a ``grid x grid`` lattice (merged, highest first)."""
    ends, stationary = ascend(score, grid_points(box, grid), box, protocol)
    return _merge(ends[stationary], evaluate_d(score, ends[stationary]), protocol.merge_radius)


def find_maxima(score: ScoreFn, dataset: Toy2D, box: tuple[float, float], *, grid: int = 31,
                protocol: AscentProtocol = AscentProtocol()) -> dict[str, Any]:
    """Local maxima of D found by ascent from a ``grid x grid`` lattice of starts, split on/off the support."""
    starts = grid_points(box, grid)
    ends, stationary = ascend(score, starts, box, protocol)
    d_end = evaluate_d(score, ends)
    on = dataset.on_support(ends)
    off_max = _merge(ends[stationary & ~on], d_end[stationary & ~on], protocol.merge_radius)
    on_max = _merge(ends[stationary & on], d_end[stationary & on], protocol.merge_radius)
    return {
        "starts": int(starts.shape[0]),
        "ended_on_support": float(on.float().mean()),
        "not_stationary": int((~stationary).sum()),
        "n_off_support_maxima": len(off_max),
        "off_support_maxima": off_max,
        "n_on_support_maxima": len(on_max),
        "on_support_maxima_top": on_max[:10],
    }


def _stats(values: Tensor) -> dict[str, float]:
    if values.numel() == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    return {"n": int(values.numel()), "mean": float(values.mean()), "std": float(values.std()) if values.numel() > 1
            else 0.0, "min": float(values.min()), "max": float(values.max())}


@torch.no_grad()
def prop1_metrics(score: ScoreFn, dataset: Toy2D, box: tuple[float, float] = (-4.0, 4.0), *, seed: int = 12345,
                  n_data: int = 2000, grid: int = 161, n_ascent: int = 1000, maxima_grid: int = 31,
                  protocol: AscentProtocol = AscentProtocol(), particles: Tensor | None = None) -> dict[str, Any]:
    """All Proposition-1 numbers for one trained score (see the module doc). With ``particles`` (minimax), adds
    the energy distance between them and held-out p_data, and the two-sample floor of that distance."""
    g = torch.Generator().manual_seed(seed)
    data = dataset.sample(n_data, g)
    d_data = evaluate_d(score, data)
    pts = grid_points(box, grid)
    d_grid = evaluate_d(score, pts)
    on_grid = dataset.on_support(pts)
    off = d_grid[~on_grid]
    if off.numel():
        arg = int(torch.argmax(torch.where(~on_grid, d_grid, torch.full_like(d_grid, -1.0))))
        off_info: dict[str, Any] = {**_stats(off), "argmax": [float(pts[arg, 0]), float(pts[arg, 1])],
                    "frac_above_half": float((off > 0.5).float().mean()),
                    "frac_above_half_plus_0.05": float((off > 0.55).float().mean())}
    else:
        off_info = _stats(off)
    starts = uniform_box(n_ascent, box, g)
    ends, stationary = ascend(score, starts, box, protocol)
    on_end = dataset.on_support(ends)
    result: dict[str, Any] = {
        "support": f"within 3 sigma = {dataset.support_radius:g} of the {dataset.name} skeleton"
                   if dataset.sigma > 0 else "inside the filled squares",
        "d_on_support_data": _stats(d_data),
        "d_on_support_grid": _stats(d_grid[on_grid]),
        "d_off_support_grid": off_info,
        "grid": grid,
        "ascent": {"n": n_ascent, "start": "uniform over the box", "frac_end_on_support": float(on_end.float().mean()),
                   "frac_stationary": float(stationary.float().mean()),
                   "d_at_end": _stats(evaluate_d(score, ends)), "protocol": protocol.to_dict()},
        "maxima": find_maxima(score, dataset, box, grid=maxima_grid, protocol=protocol),
    }
    if particles is not None:
        ref = dataset.sample(particles.shape[0], g)
        floor = dataset.sample(particles.shape[0], g)
        result["particles"] = {
            "n": int(particles.shape[0]),
            "energy_distance_to_data": energy_distance(particles, ref),
            "energy_distance_floor": energy_distance(floor, ref),
            "frac_on_support": float(dataset.on_support(particles).float().mean()),
            "mean": [float(v) for v in particles.mean(0)],
            "std": [float(v) for v in particles.std(0)],
        }
    return result
