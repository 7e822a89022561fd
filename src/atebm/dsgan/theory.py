"""S Sec. 3 checked numerically on exact 2D densities (issue 26 item 4).

On a grid of cells of area ``h^2`` covering ``[-lim, lim]^2`` the densities p_d and p_dbar are exact (the blurred
mixtures of :mod:`atebm.dsgan.toy`) and every integral is a sum over cells, so each statement of S Sec. 3 becomes
a number that can be checked:

* **Prop. 1** - for a fixed generator the discriminator that maximises ``V(G, D)`` (S Eq. 2) is
  ``D*_G = p_dbar / (p_dbar + (1 - alpha) p_g + alpha p_d)`` (:func:`optimal_discriminator`): ``V`` at ``D*_G``
  is above ``V`` at any perturbed discriminator.
* **Eq. 3, Thm. 1** - ``C(G) = V(G, D*_G) = -log 4 + 2 JSD(p_dbar || (1 - alpha) p_g + alpha p_d)``
  (:func:`virtual_criterion`, :func:`jensen_shannon`); if ``alpha p_d <= p_dbar`` everywhere its minimum is
  ``-log 4``, reached at ``p_g = (p_dbar - alpha p_d) / (1 - alpha)``.
* **The minimiser when Thm. 1's assumption fails** (both 2D case studies: ``alpha p_d > p_dbar`` on the data).
  ``C`` is convex in p_g and ``dC/dp_g = (1 - alpha) log(1 - D*_G)``, so the KKT conditions give
  ``p_g* = (k p_dbar - alpha p_d)_+ / (1 - alpha)`` with the one ``k`` in (0, 1] that makes it integrate to 1
  (:func:`criterion_minimiser`; ``k = 1`` exactly when the assumption holds). This is S Eq. 1's target
  ``(p_dbar - alpha' p_d)_+ / Z`` (:func:`eq1_target`) with ``alpha' = alpha / k >= alpha``: a smaller support
  than S Eq. 1's ``(p_dbar - alpha p_d)_+``, inside Prop. 2's ``{p_dbar > alpha p_d}``; the 2D evaluation
  (:func:`atebm.dsgan.toy.evaluate_2d`) compares generators with it.
* **Prop. 3** - Alg. 1 in function space: the discriminator optimal at every step (Prop. 1), then a step of p_g
  down ``dV/dp_g = (1 - alpha) log(1 - D*_G)`` (mirror descent, which keeps p_g a density) converges to p_g*
  (:func:`function_space_alg1`).

:func:`check_theory` runs all of them on one pair of grid densities; :func:`energy_distances` compares a trained
generator's samples with exact samples of S Eq. 1's target and of p_g*, beside p_d's and p_dbar's
(``python benchmarks/dsgan_theory.py``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..toy2d.metrics import energy_distance, grid_points
from .losses import check_alpha
from .toy import BlurredMixture, minimiser_scale

__all__ = ["GridDensities", "optimal_discriminator", "discriminator_value", "virtual_criterion", "jensen_shannon",
           "eq1_target", "criterion_minimiser", "function_space_alg1", "total_variation", "check_theory",
           "energy_distances"]

_TINY = 1e-300  # keeps log() finite where a density underflows to 0 far from the data


@dataclass(frozen=True)
class GridDensities:
    """p_d and p_dbar on the cells of a square grid (``cell_area`` each), each normalised to sum to 1 over the
    grid (the mass the grid misses is in ``missing_mass``)."""

    points: Tensor
    cell_area: float
    p_d: Tensor
    p_dbar: Tensor
    missing_mass: dict[str, float]
    name: str = ""

    @classmethod
    def of(cls, p_d: BlurredMixture, p_dbar: BlurredMixture | None = None, *, tau: float = 0.0, lim: float = 4.0,
           cells: int = 101, name: str = "") -> GridDensities:
        """The densities of ``p_d`` and of ``p_dbar`` (default: ``p_d * N(0, tau^2 I)``, S Fig. 2-4) on a
        ``cells x cells`` grid over ``[-lim, lim]^2``."""
        if cells < 3 or not lim > 0:
            raise ValueError(f"need cells >= 3 and lim > 0, got {cells} and {lim}")
        if p_dbar is None and not tau > 0:
            raise ValueError("give p_dbar, or tau > 0 for p_dbar = p_d * N(0, tau^2 I)")
        points = grid_points((-lim, lim), cells)
        area = (2 * lim / (cells - 1)) ** 2
        pd = p_d.density(points).double()
        pbar = (p_dbar.density(points) if p_dbar is not None else p_d.density(points, extra_std=tau)).double()
        masses = {"p_d": float(pd.sum()) * area, "p_dbar": float(pbar.sum()) * area}
        return cls(points, area, pd / masses["p_d"], pbar / masses["p_dbar"],
                   {key: 1.0 - mass for key, mass in masses.items()}, name or p_d.name)

    def integral(self, values: Tensor) -> float:
        """``sum_cells values * cell_area``."""
        return float(values.sum()) * self.cell_area


def optimal_discriminator(p_dbar: Tensor, p_d: Tensor, p_g: Tensor, alpha: float) -> Tensor:
    """S Prop. 1: ``D*_G(x) = p_dbar / (p_dbar + (1 - alpha) p_g + alpha p_d)`` (1/2 where all three vanish)."""
    alpha = check_alpha(alpha)
    fake = (1 - alpha) * p_g + alpha * p_d
    total = p_dbar + fake
    return torch.where(total > 0, p_dbar / total.clamp_min(_TINY), torch.full_like(total, 0.5))


def discriminator_value(d: Tensor, grid: GridDensities, p_g: Tensor, alpha: float) -> float:
    """S Eq. 2 on the grid: ``V(G, D) = int p_dbar log D + ((1 - alpha) p_g + alpha p_d) log(1 - D)``."""
    fake = (1 - alpha) * p_g + grid.p_d * alpha
    d = d.clamp(_TINY, 1 - 1e-16)
    return grid.integral(torch.special.xlogy(grid.p_dbar, d) + torch.special.xlogy(fake, 1 - d))


def jensen_shannon(p: Tensor, q: Tensor, cell_area: float) -> float:
    """``JSD(p || q) = KL(p || m) / 2 + KL(q || m) / 2`` with ``m = (p + q) / 2``, for densities on grid cells."""
    m = (p + q) / 2
    xlogy = torch.special.xlogy
    kl = (xlogy(p, p) - xlogy(p, m)) + (xlogy(q, q) - xlogy(q, m))
    return float(kl.sum()) * cell_area / 2


def virtual_criterion(grid: GridDensities, p_g: Tensor, alpha: float) -> float:
    """S Eq. 3: ``C(G) = V(G, D*_G)``, which S Thm. 1's proof writes as ``-log 4 + 2 JSD(p_dbar || (1 - alpha) p_g
    + alpha p_d)``."""
    return discriminator_value(optimal_discriminator(grid.p_dbar, grid.p_d, p_g, alpha), grid, p_g, alpha)


def eq1_target(grid: GridDensities, alpha: float) -> Tensor:
    """S Eq. 1's target density ``(p_dbar - alpha p_d)_+ / Z`` (what :meth:`BlurredMixture.target_sample` draws)."""
    positive = (grid.p_dbar - check_alpha(alpha) * grid.p_d).clamp_min(0)
    mass = grid.integral(positive)
    if mass <= 0:
        raise ValueError(f"(p_dbar - {alpha} p_d)_+ has no mass on the grid: lower alpha or widen p_dbar")
    return positive / mass


def criterion_minimiser(grid: GridDensities, alpha: float) -> tuple[Tensor, float]:
    """``(p_g*, k)``: the density that minimises ``C(G)``, ``p_g* = (k p_dbar - alpha p_d)_+ / (1 - alpha)``, with
    ``k`` in (0, 1] the one that makes p_g* integrate to 1 (:func:`atebm.dsgan.toy.minimiser_scale`, exact; module
    doc: the KKT conditions of the convex problem; ``k = 1`` iff ``alpha p_d <= p_dbar`` everywhere, S Thm. 1)."""
    alpha = check_alpha(alpha)
    k = minimiser_scale(grid.p_dbar * grid.cell_area, grid.p_d * grid.cell_area, alpha)
    p_g = (k * grid.p_dbar - alpha * grid.p_d).clamp_min(0)
    return p_g / grid.integral(p_g), k


def function_space_alg1(grid: GridDensities, alpha: float, *, steps: int = 3000, step_size: float = 1.0,
                        start: Tensor | None = None, record_every: int = 100) -> tuple[Tensor, list[float]]:
    """S Alg. 1 with unlimited capacity (Prop. 3): at every step the optimal discriminator ``D*_G`` (Prop. 1),
    then ``p_g <- p_g exp(-step_size log(1 - D*_G)) / normaliser`` (mirror descent along ``dV/dp_g``, the factor
    ``1 - alpha`` folded into the step). Starts from ``start`` (default p_dbar: an ordinary GAN's solution).
    Returns the final p_g and ``C(G)`` every ``record_every`` steps and at the end."""
    alpha = check_alpha(alpha)
    if steps < 1 or not step_size > 0:
        raise ValueError(f"need steps >= 1 and step_size > 0, got {steps} and {step_size}")
    log_p = (grid.p_dbar if start is None else start).clamp_min(_TINY).log()
    trace: list[float] = []
    for step in range(steps + 1):
        p_g = torch.softmax(log_p, 0) / grid.cell_area
        if step % record_every == 0 or step == steps:
            trace.append(virtual_criterion(grid, p_g, alpha))
        if step == steps:
            return p_g, trace
        d = optimal_discriminator(grid.p_dbar, grid.p_d, p_g, alpha)
        log_p = log_p - step_size * (1 - d).clamp_min(_TINY).log()
    raise AssertionError("unreachable")


def total_variation(p: Tensor, q: Tensor, cell_area: float) -> float:
    """``int |p - q| / 2`` over the grid cells."""
    return float((p - q).abs().sum()) * cell_area / 2


def check_theory(grid: GridDensities, alpha: float, *, steps: int = 3000, step_size: float = 1.0,
                 perturbations: int = 16, seed: int = 0) -> dict[str, Any]:
    """Every statement of the module doc measured on ``grid`` at ``alpha``; the returned dict holds the numbers
    and, under ``holds``, whether each statement held up to round-off (tolerances in ``tolerances``)."""
    alpha = check_alpha(alpha)
    g = torch.Generator().manual_seed(seed)
    minus_log_4 = -math.log(4)
    target = eq1_target(grid, alpha)
    minimiser, k = criterion_minimiser(grid, alpha)
    # Prop. 1 at two generators: p_g = p_dbar (an ordinary GAN's solution) and p_g = S Eq. 1's target
    prop1 = {}
    for which, p_g in (("p_g = p_dbar", grid.p_dbar), ("p_g = eq1 target", target)):
        d_star = optimal_discriminator(grid.p_dbar, grid.p_d, p_g, alpha)
        at_optimum = discriminator_value(d_star, grid, p_g, alpha)
        logit = torch.logit(d_star.clamp(1e-12, 1 - 1e-12))
        perturbed = [discriminator_value(torch.sigmoid(logit + 0.5 * torch.randn(logit.shape, generator=g,
                                                                               dtype=logit.dtype)), grid, p_g, alpha)
                     for _ in range(perturbations)]
        jsd = jensen_shannon(grid.p_dbar, (1 - alpha) * p_g + alpha * grid.p_d, grid.cell_area)
        prop1[which] = {"value_at_optimal_d": at_optimum, "best_perturbed_value": max(perturbed),
                        "eq3_identity_gap": abs(at_optimum - (minus_log_4 + 2 * jsd))}
    final, trace = function_space_alg1(grid, alpha, steps=steps, step_size=step_size)
    assumption = bool((alpha * grid.p_d <= grid.p_dbar * (1 + 1e-9)).all())
    criterion = {"p_dbar": virtual_criterion(grid, grid.p_dbar, alpha),
                 "eq1_target": virtual_criterion(grid, target, alpha),
                 "minimiser": virtual_criterion(grid, minimiser, alpha),
                 "alg1_final": trace[-1], "minus_log_4": minus_log_4}
    outside = (alpha * grid.p_d >= grid.p_dbar)
    result: dict[str, Any] = {
        "name": grid.name, "alpha": alpha, "cells": int(round(math.sqrt(len(grid.points)))),
        "cell_area": grid.cell_area, "missing_mass": grid.missing_mass,
        "thm1_assumption_holds": assumption, "k": k, "effective_alpha_of_minimiser": alpha / k,
        "criterion": criterion, "prop1": prop1,
        "tv_minimiser_vs_eq1_target": total_variation(minimiser, target, grid.cell_area),
        "alg1": {"steps": steps, "step_size": step_size, "start": "p_dbar",
                 "tv_to_minimiser": total_variation(final, minimiser, grid.cell_area),
                 "mass_where_alpha_pd_ge_pdbar": grid.integral(final * outside),
                 "criterion_trace": trace,
                 "monotone": all(b <= a + 1e-12 for a, b in zip(trace, trace[1:]))},
    }
    tolerance = {"criterion": 1e-6, "tv": 1e-3}
    result["tolerances"] = tolerance
    result["holds"] = {
        "prop1_optimal_d_is_best": all(v["value_at_optimal_d"] >= v["best_perturbed_value"] for v in prop1.values()),
        "eq3_identity": all(v["eq3_identity_gap"] < tolerance["criterion"] for v in prop1.values()),
        "thm1_minimum_is_minus_log_4": (abs(criterion["minimiser"] - minus_log_4) < tolerance["criterion"])
        == assumption,
        "minimiser_is_the_lowest": criterion["minimiser"] <= min(criterion["p_dbar"], criterion["eq1_target"],
                                                                 criterion["alg1_final"]) + 1e-12,
        "prop2_support": result["alg1"]["mass_where_alpha_pd_ge_pdbar"] < tolerance["tv"],
        "prop3_alg1_converges": result["alg1"]["tv_to_minimiser"] < tolerance["tv"] and result["alg1"]["monotone"],
    }
    return result


def energy_distances(samples: Tensor, mixture: BlurredMixture, tau: float, alpha: float, k: float, *,
                     n_reference: int = 2000, seed: int = 0) -> dict[str, float]:
    """Energy distances to exact samples of S Eq. 1's target ``(p_dbar - alpha p_d)_+`` and of the minimiser p_g*
    (the same target at ``alpha / k``, :func:`criterion_minimiser`) for ``samples`` (a trained generator's) and,
    beside them, for samples of p_d and p_dbar (``mixture`` blurred by ``tau``) and of each target against the
    other. ``n_reference`` points per set."""
    g = torch.Generator().manual_seed(seed)
    sets = {"generated": samples.detach().float().cpu()[:n_reference], "p_d": mixture.sample(n_reference, g),
            "p_dbar": mixture.sample(n_reference, g, extra_std=tau),
            "eq1_target": mixture.target_sample(n_reference, tau, alpha, g),
            "minimiser": mixture.target_sample(n_reference, tau, alpha / k, g)}
    references = {"eq1_target": mixture.target_sample(n_reference, tau, alpha, g),
                  "minimiser": mixture.target_sample(n_reference, tau, alpha / k, g)}
    return {f"{name}_to_{ref}": energy_distance(points, reference)
            for ref, reference in references.items() for name, points in sets.items()}
