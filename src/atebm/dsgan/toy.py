"""2D case studies of DSGAN (S Sec. 2.2, Fig. 2-4) with exact densities.

Each 2D p_d here is a Gaussian-blurred mixture of fixed atoms, ``p_d(x) = sum_j w_j N(x; a_j, sigma^2 I)``, so
p_dbar = p_d * N(0, tau^2 I) is the same mixture with variance ``sigma^2 + tau^2`` and both densities are exact at
any point. The DSGAN target (S Eq. 1) is ``p_t = (p_dbar - alpha p_d)_+ / Z``; :meth:`BlurredMixture.target_sample`
draws from it exactly by rejection from p_dbar (accept with probability ``1 - alpha p_d / p_dbar``).

* ``swissroll``: the swiss roll of the theory lab (:data:`atebm.toy2d.DATASETS`, skeleton uniform in its
  parameter, sigma 0.1); its atoms are 4,000 skeleton points (spacing < 0.01, far below sigma).
* ``disc``: a disc of radius 2 whose density grows as ``r^2`` (low in the centre, S Fig. 3), blurred by 0.06.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..toy2d import get_dataset
from ..toy2d.metrics import energy_distance

__all__ = ["BlurredMixture", "swissroll_mixture", "low_centre_disc", "evaluate_2d", "TOY_MIXTURES"]


@dataclass(frozen=True)
class BlurredMixture:
    """``p(x) = sum_j w_j N(x; atoms_j, sigma^2 I)`` in 2D (module doc)."""

    atoms: Tensor
    weights: Tensor
    sigma: float
    name: str = ""

    def sample(self, n: int, generator: torch.Generator | None = None, extra_std: float = 0.0) -> Tensor:
        """``n`` points of p (of p * N(0, extra_std^2 I) with ``extra_std``)."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        which = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        std = math.sqrt(self.sigma ** 2 + extra_std ** 2)
        return self.atoms[which] + std * torch.randn(n, 2, generator=generator)

    @torch.no_grad()
    def density(self, x: Tensor, extra_std: float = 0.0, chunk: int = 512) -> Tensor:
        """Exact density of p (or of p * N(0, extra_std^2 I)) at the rows of ``x`` (N, 2)."""
        x = torch.as_tensor(x).detach().double().cpu()
        if x.dim() != 2 or x.shape[1] != 2:
            raise ValueError(f"expected 2D points of shape (N, 2), got {tuple(x.shape)}")
        var = self.sigma ** 2 + extra_std ** 2
        atoms, log_w = self.atoms.double(), self.weights.double().log()
        out = []
        for block in x.split(chunk):
            d2 = torch.cdist(block, atoms).pow(2)
            out.append(torch.logsumexp(log_w - d2 / (2 * var), dim=1).exp() / (2 * math.pi * var))
        return torch.cat(out).float() if out else torch.zeros(0)

    def target_sample(self, n: int, tau: float, alpha: float, generator: torch.Generator | None = None) -> Tensor:
        """``n`` exact samples of the DSGAN target ``(p_dbar - alpha p_d)_+ / Z`` with ``p_dbar = p * N(0, tau^2)``
        (rejection from p_dbar)."""
        kept: list[Tensor] = []
        total = 0
        for _ in range(1000):
            proposal = self.sample(max(4 * n, 1024), generator, extra_std=tau)
            ratio = self.density(proposal) / self.density(proposal, extra_std=tau).clamp_min(1e-30)
            accept = torch.rand(len(proposal), generator=generator) < (1 - alpha * ratio).clamp(0, 1)
            kept.append(proposal[accept])
            total += int(accept.sum())
            if total >= n:
                return torch.cat(kept)[:n]
        raise RuntimeError(f"the target (p_dbar - {alpha} p_d)_+ has almost no mass: increase tau or lower alpha")


def swissroll_mixture() -> BlurredMixture:
    """The theory lab's swiss roll as a blurred mixture of its skeleton (module doc)."""
    ds = get_dataset("swissroll")
    atoms = ds.skeleton()
    return BlurredMixture(atoms, torch.full((len(atoms),), 1.0 / len(atoms)), ds.sigma, "swissroll")


def low_centre_disc(radius: float = 2.0, sigma: float = 0.06, rings: int = 60, spokes: int = 180) -> BlurredMixture:
    """A disc of ``radius`` with density proportional to ``r^2`` (low in the centre, S Fig. 3): atoms on a regular
    polar grid (``rings`` radii at the cell midpoints, ``spokes`` angles) weighted by ``r^3`` (density ``r^2``
    times the area element ``r dr dtheta``), blurred by ``sigma`` (larger than the grid spacing, so the density is
    smooth)."""
    r = radius * (torch.arange(rings, dtype=torch.float64) + 0.5) / rings
    theta = 2 * math.pi * (torch.arange(spokes, dtype=torch.float64) + 0.5) / spokes
    rr, tt = torch.meshgrid(r, theta, indexing="ij")
    atoms = torch.stack([rr * torch.cos(tt), rr * torch.sin(tt)], -1).reshape(-1, 2).float()
    weights = rr.pow(3).reshape(-1)
    return BlurredMixture(atoms, (weights / weights.sum()).float(), sigma, "disc")


TOY_MIXTURES = {"swissroll": swissroll_mixture, "disc": low_centre_disc}


def evaluate_2d(samples: Tensor, mixture: BlurredMixture, tau: float, alpha: float, *, n_reference: int = 2000,
                seed: int = 0, centre_radius: float = 1.0) -> dict[str, Any]:
    """Where the generated points lie, measured with the exact densities (S Fig. 2-3, Prop. 2).

    For the generated points and, as references, for samples of p_d, p_dbar and the exact target: the fraction in
    the target's support ``{p_dbar > alpha p_d}``; the fraction where p_dbar has mass (``p_dbar(x)`` at least its
    1 % quantile over p_dbar samples) and p_d has little (``p_d(x)`` at most its 5 % quantile over p_d samples);
    the median of ``p_d / p_dbar``; mean log densities; the fraction within ``centre_radius`` of the origin; and
    the energy distance to a fresh target sample (0 = the target itself)."""
    g = torch.Generator().manual_seed(seed)
    refs = {"p_d": mixture.sample(n_reference, g), "p_dbar": mixture.sample(n_reference, g, extra_std=tau),
            "target": mixture.target_sample(n_reference, tau, alpha, g)}
    held_target = mixture.target_sample(n_reference, tau, alpha, g)
    pd_at_pd = mixture.density(refs["p_d"])
    pbar_at_pbar = mixture.density(refs["p_dbar"], extra_std=tau)
    pbar_floor = float(pbar_at_pbar.quantile(0.01))
    pd_ceiling = float(pd_at_pd.quantile(0.05))

    def describe(points: Tensor) -> dict[str, float]:
        points = points.detach().float().cpu()
        pd, pbar = mixture.density(points), mixture.density(points, extra_std=tau)
        return {
            "n": len(points),
            "in_target_support": float((pbar > alpha * pd).float().mean()),
            "pbar_has_mass_and_pd_little": float(((pbar >= pbar_floor) & (pd <= pd_ceiling)).float().mean()),
            "median_pd_over_pbar": float((pd / pbar.clamp_min(1e-30)).median()),
            "mean_log_pd": float(pd.clamp_min(1e-30).log().mean()),
            "mean_log_pbar": float(pbar.clamp_min(1e-30).log().mean()),
            "centre_fraction": float((points.norm(dim=1) < centre_radius).float().mean()),
            "energy_distance_to_target": energy_distance(points[:n_reference], held_target),
        }

    result = {"generated": describe(samples)}
    result.update({name: describe(points) for name, points in refs.items()})
    result["thresholds"] = {"pbar_floor (1% quantile of p_dbar at p_dbar samples)": pbar_floor,
                            "pd_ceiling (5% quantile of p_d at p_d samples)": pd_ceiling,
                            "centre_radius": centre_radius, "alpha": alpha, "tau": tau}
    return result
