"""2D case studies of DSGAN (S Sec. 2.2, Fig. 2-4) with exact densities.

Each 2D p_d here is a Gaussian-blurred mixture of fixed atoms, ``p_d(x) = sum_j w_j N(x; a_j, sigma^2 I)``, so
p_dbar = p_d * N(0, tau^2 I) is the same mixture with variance ``sigma^2 + tau^2`` and both densities are exact at
any point. S Eq. 1's target is ``p_t = (p_dbar - alpha p_d)_+ / Z``; :meth:`BlurredMixture.target_sample` draws
from it exactly by rejection from p_dbar (accept with probability ``1 - alpha p_d / p_dbar``). Where S Thm. 1's
assumption ``alpha p_d <= p_dbar`` fails (both case studies), the generator that minimises S's criterion is the
same target at ``alpha / k`` (:func:`minimiser_scale`), and that is what :func:`evaluate_2d` compares with.

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
from .losses import check_alpha

__all__ = ["BlurredMixture", "swissroll_mixture", "low_centre_disc", "minimiser_scale", "evaluate_2d", "TOY_MIXTURES",
           "PICTURE_RATIO"]


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

    def minimiser_scale(self, tau: float, alpha: float, n: int = 20000,
                        generator: torch.Generator | None = None) -> float:
        """The ``k`` of the generator that minimises S's criterion for ``p_dbar = p * N(0, tau^2 I)``
        (:func:`minimiser_scale`), estimated on ``n`` samples of p_dbar: ``int (k p_dbar - alpha p)_+ dx =
        E_{p_dbar}[(k - alpha p / p_dbar)_+]``, each sample weighted ``1 / n``."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        points = self.sample(n, generator, extra_std=tau)
        ratio = self.density(points).double() / self.density(points, extra_std=tau).double().clamp_min(1e-300)
        weights = torch.full((n,), 1.0 / n, dtype=torch.float64)
        return minimiser_scale(weights, weights * ratio, alpha)


def minimiser_scale(p_dbar_mass: Tensor, p_d_mass: Tensor, alpha: float) -> float:
    """The ``k`` in (0, 1] of the generator that minimises S's virtual criterion ``C(G)`` (S Eq. 3), given the
    masses of p_dbar and p_d on the same cells (grid cells, or samples of p_dbar weighted by ``1 / n`` with p_d's
    mass ``p_d / (n p_dbar)``): the solution of ``sum_i (k p_dbar_i - alpha p_d_i)_+ = 1 - alpha``.

    Why (S Sec. 3, App. B.3): ``C`` is convex in p_g and its derivative is ``(1 - alpha) log(1 - D*_G)`` with
    Prop. 1's ``D*_G = p_dbar / (p_dbar + (1 - alpha) p_g + alpha p_d)``; under ``int p_g = 1`` the KKT conditions
    hold ``1 - D*_G`` constant where ``p_g > 0``, so ``(1 - alpha) p_g* = (k p_dbar - alpha p_d)_+``: S Eq. 1's
    target ``(p_dbar - alpha' p_d)_+ / Z`` at ``alpha' = alpha / k``. ``k = 1`` exactly when S Thm. 1's assumption
    ``alpha p_d <= p_dbar`` holds; otherwise ``k < 1``. The mass is piecewise linear in ``k``, so the solution is
    exact (no iteration)."""
    alpha = check_alpha(alpha)
    p_dbar_mass = torch.as_tensor(p_dbar_mass).double().flatten()
    p_d_mass = torch.as_tensor(p_d_mass).double().flatten()
    if p_dbar_mass.shape != p_d_mass.shape:
        raise ValueError(f"p_dbar and p_d masses must be on the same cells, got {len(p_dbar_mass)} and "
                         f"{len(p_d_mass)}")
    keep = p_dbar_mass > 0  # cells without p_dbar mass add nothing at any k
    p_dbar_mass, p_d_mass = p_dbar_mass[keep], p_d_mass[keep]
    budget = 1.0 - alpha
    if float((p_dbar_mass - alpha * p_d_mass).clamp_min(0).sum()) <= budget + 1e-12:
        return 1.0
    onset, order = (alpha * p_d_mass / p_dbar_mass).sort()  # the k at which each cell starts to count
    slope = p_dbar_mass[order].cumsum(0)
    offset = (alpha * p_d_mass[order]).cumsum(0)
    # on [onset_j, onset_j+1] the mass is slope_j k - offset_j; the root lies in the first interval that reaches it
    candidates = (budget + offset) / slope
    upper = torch.cat([onset[1:], torch.tensor([math.inf], dtype=onset.dtype)])
    first = int(torch.nonzero(candidates <= upper)[0])
    return min(1.0, float(candidates[first]))


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


#: The 2D picture (S Fig. 2-4) is reproduced when the generated points are at most this fraction as far (energy
#: distance) from the exact target as from the nearer of p_d and p_dbar.
PICTURE_RATIO = 0.5


def evaluate_2d(samples: Tensor, mixture: BlurredMixture, tau: float, alpha: float, *, n_reference: int = 2000,
                n_scale: int = 20000, seed: int = 0, centre_radius: float = 1.0) -> dict[str, Any]:
    """Where the generated points lie, measured against the exact target that training approaches (S Fig. 2-4).

    ``alpha`` is the weight of p_d in the fake mixture the discriminator was trained against
    (:attr:`atebm.dsgan.DSGAN.mixture_alpha`: S Eq. 10's share of p_d rows). The target is the minimiser of S's
    criterion (S Sec. 3, Prop. 1-3; :func:`minimiser_scale`)::

        p_g* = (k p_dbar - alpha p_d)_+ / (1 - alpha) = (p_dbar - alpha' p_d)_+ / Z,   alpha' = alpha / k,

    with ``k`` in (0, 1] estimated on ``n_scale`` samples of p_dbar. S Eq. 1's ``(p_dbar - alpha p_d)_+`` is this
    target only when S Thm. 1's assumption ``alpha p_d <= p_dbar`` holds (``k = 1``); in both 2D case studies it
    fails and ``alpha' > alpha`` (a smaller support, inside Prop. 2's ``{p_dbar > alpha p_d}``).

    For the generated points and, as references, for samples of p_d, p_dbar and the exact target: the fraction in
    the target's support ``{p_dbar > alpha' p_d}``; the fraction where p_dbar has mass (``p_dbar(x)`` at least its
    1 % quantile over p_dbar samples) and p_d has little (``p_d(x)`` at most its 5 % quantile over p_d samples);
    the median of ``p_d / p_dbar``; mean log densities; the fraction within ``centre_radius`` of the origin; the
    energy distances to held-out samples of the target, p_d and p_dbar (``n_reference`` points each), and
    ``closer_to_target_ratio`` = the first over the smaller of the other two. ``picture``: ``reproduced`` when the
    generated points' ratio is at most :data:`PICTURE_RATIO`; ``noise``, the largest ``|energy distance|`` between
    two samples of one reference distribution (what a perfect generator scores); ``target_separation``, the exact
    target's smaller distance to p_d and p_dbar; ``resolvable`` when ``PICTURE_RATIO * target_separation >=
    noise``, i.e. a generator equal to the target would pass at this ``n_reference`` (when it is false the energy
    distance cannot tell the target from p_d or p_dbar, whatever the generator does)."""
    alpha = check_alpha(alpha)
    g = torch.Generator().manual_seed(seed)
    k = mixture.minimiser_scale(tau, alpha, n_scale, g)
    target_alpha = alpha / k
    refs = {"p_d": mixture.sample(n_reference, g), "p_dbar": mixture.sample(n_reference, g, extra_std=tau),
            "target": mixture.target_sample(n_reference, tau, target_alpha, g)}
    held_out = {"target": mixture.target_sample(n_reference, tau, target_alpha, g),
                "p_d": mixture.sample(n_reference, g), "p_dbar": mixture.sample(n_reference, g, extra_std=tau)}
    pd_at_pd = mixture.density(refs["p_d"])
    pbar_at_pbar = mixture.density(refs["p_dbar"], extra_std=tau)
    pbar_floor = float(pbar_at_pbar.quantile(0.01))
    pd_ceiling = float(pd_at_pd.quantile(0.05))

    def describe(points: Tensor) -> dict[str, Any]:
        points = points.detach().float().cpu()
        pd, pbar = mixture.density(points), mixture.density(points, extra_std=tau)
        distances = {name: energy_distance(points[:n_reference], reference) for name, reference in held_out.items()}
        nearer_other = min(distances["p_d"], distances["p_dbar"])
        return {
            "n": len(points),
            "in_target_support": float((pbar > target_alpha * pd).float().mean()),
            "pbar_has_mass_and_pd_little": float(((pbar >= pbar_floor) & (pd <= pd_ceiling)).float().mean()),
            "median_pd_over_pbar": float((pd / pbar.clamp_min(1e-30)).median()),
            "mean_log_pd": float(pd.clamp_min(1e-30).log().mean()),
            "mean_log_pbar": float(pbar.clamp_min(1e-30).log().mean()),
            "centre_fraction": float((points.norm(dim=1) < centre_radius).float().mean()),
            **{f"energy_distance_to_{name}": value for name, value in distances.items()},
            # None: p_d or p_dbar is no farther than a sample of itself, so no ratio can be formed
            "closer_to_target_ratio": distances["target"] / nearer_other if nearer_other > 0 else None,
        }

    result: dict[str, Any] = {"generated": describe(samples)}
    result.update({name: describe(points) for name, points in refs.items()})
    ratio = result["generated"]["closer_to_target_ratio"]
    noise = max(abs(float(result[name][f"energy_distance_to_{name}"])) for name in refs)
    separation = min(float(result["target"]["energy_distance_to_p_d"]),
                     float(result["target"]["energy_distance_to_p_dbar"]))
    result["picture"] = {
        "rule": f"energy distance to the target <= {PICTURE_RATIO} x the smaller of those to p_d and p_dbar",
        "reproduced": ratio is not None and ratio <= PICTURE_RATIO,
        "noise": noise, "target_separation": separation,
        "resolvable": PICTURE_RATIO * separation >= noise}
    result["thresholds"] = {"pbar_floor (1% quantile of p_dbar at p_dbar samples)": pbar_floor,
                            "pd_ceiling (5% quantile of p_d at p_d samples)": pd_ceiling,
                            "centre_radius": centre_radius, "alpha": alpha, "minimiser_k": k,
                            "target_alpha": target_alpha, "n_scale": n_scale, "tau": tau}
    return result
