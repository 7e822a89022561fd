"""2D data sets and p_0 distributions of the theory lab (E Sec. 4.2 / Fig. 1, G Sec. 3 / Fig. 2, 4-6).

Every data set lives in the box ``[-4, 4]^2`` and is a noiseless *skeleton* (a point, a curve, or filled squares)
blurred by isotropic Gaussian noise of standard deviation ``sigma``. Its **support** is defined concretely as

    Supp(p_data) = { x : dist(x, skeleton) <= 3 · sigma }

(for the papers' case, N(0, 0.5^2 I), the disc of radius 1.5 around the origin, which holds 1 - exp(-4.5) = 98.9 %
of the mass). The checkerboard has no noise: its support is the union of its filled squares. Proposition 1 (E) is
about this support: D* = 1/2 on it and <= 1/2 elsewhere.

p_0 (the seeds of the contrastive samples) is ``"uniform"`` over the box, ``"corner"`` (uniform in the lower-left
square ``[lo, lo + 1]^2`` of the box, the papers' concentrated case) or ``"mixture"`` (a user-given Gaussian
mixture, clamped to the box).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = ["Toy2D", "DATASETS", "P0_KINDS", "get_dataset", "sample_p0", "parse_mixture", "uniform_box"]

Box = tuple[float, float]
P0_KINDS = ("uniform", "corner", "mixture")


def _rand(n: int, generator: torch.Generator | None) -> Tensor:
    return torch.rand(n, generator=generator)


def _randn(shape: Sequence[int], generator: torch.Generator | None) -> Tensor:
    return torch.randn(*shape, generator=generator)


def _gaussian_skeleton(t: Tensor) -> Tensor:
    return torch.zeros(t.shape[0], 2)


def _ring_skeleton(t: Tensor) -> Tensor:
    angle = 2 * math.pi * t
    return 2.5 * torch.stack([torch.cos(angle), torch.sin(angle)], 1)


def _moons_skeleton(t: Tensor) -> Tensor:
    # two interleaved half circles of radius 1 (upper one centred at (0, 0), lower one at (1, 0.5)), centred on the
    # origin and scaled by 2
    upper = t < 0.5
    angle = torch.where(upper, 2 * t * math.pi, (2 * t - 1) * math.pi)
    ux, uy = torch.cos(angle), torch.sin(angle)
    lx, ly = 1 - torch.cos(angle), 0.5 - torch.sin(angle)
    x = torch.where(upper, ux, lx) - 0.5
    y = torch.where(upper, uy, ly) - 0.25
    return 2.0 * torch.stack([x, y], 1)


def _spirals_skeleton(t: Tensor) -> Tensor:
    # two Archimedean arms r = 3.4 · s, s in [0.1, 1], the second one rotated by pi
    second = t >= 0.5
    s = 0.1 + 0.9 * torch.where(second, 2 * t - 1, 2 * t)
    angle = 3 * math.pi * s + math.pi * second.float()
    return 3.4 * s.unsqueeze(1) * torch.stack([torch.cos(angle), torch.sin(angle)], 1)


def _swissroll_skeleton(t: Tensor) -> Tensor:
    # r proportional to the angle, angle in [1.5 pi, 4.5 pi], outer radius 3.5
    angle = 1.5 * math.pi + 3 * math.pi * t
    r = 3.5 * angle / (4.5 * math.pi)
    return r.unsqueeze(1) * torch.stack([torch.cos(angle), torch.sin(angle)], 1)


_CHECKER_SIDE = 1.5  # 4 x 4 squares over [-3, 3]^2, the "even" ones filled


def _checker_filled(x: Tensor) -> Tensor:
    cell = torch.floor((x + 2 * _CHECKER_SIDE) / _CHECKER_SIDE)
    inside = ((x >= -2 * _CHECKER_SIDE) & (x < 2 * _CHECKER_SIDE)).all(1)
    return inside & ((cell[:, 0] + cell[:, 1]) % 2 == 0)


def _checker_sample(n: int, generator: torch.Generator | None) -> Tensor:
    filled = [(i, j) for i in range(4) for j in range(4) if (i + j) % 2 == 0]
    which = torch.randint(len(filled), (n,), generator=generator)
    corners = torch.tensor(filled, dtype=torch.float32)[which] * _CHECKER_SIDE - 2 * _CHECKER_SIDE
    return corners + torch.rand(n, 2, generator=generator) * _CHECKER_SIDE


@dataclass(frozen=True)
class Toy2D:
    """A 2D data distribution: ``sample`` draws points, ``on_support`` tests the 3-sigma support (module doc)."""

    name: str
    sigma: float
    description: str
    skeleton_fn: Callable[[Tensor], Tensor] | None = None
    skeleton_points: int = 4000

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` points of p_data, shape ``(n, 2)``, float32."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if self.skeleton_fn is None:
            return _checker_sample(n, generator)
        base = self.skeleton_fn(_rand(n, generator))
        return base + self.sigma * _randn((n, 2), generator)

    def skeleton(self) -> Tensor:
        """A dense deterministic sample of the noiseless skeleton (``(M, 2)``); empty for the checkerboard."""
        if self.skeleton_fn is None:
            return torch.zeros(0, 2)
        return self.skeleton_fn(torch.linspace(0, 1, self.skeleton_points + 1)[:-1])

    @property
    def support_radius(self) -> float:
        """Distance from the skeleton that still counts as support: ``3 · sigma`` (0 for the checkerboard)."""
        return 3.0 * self.sigma

    def distance_to_support(self, x: Tensor) -> Tensor:
        """Euclidean distance of each point to the support (0 on it), shape ``(N,)``."""
        x = _check_points(x)
        if self.skeleton_fn is None:
            # distance to the nearest filled square (exact: squares are axis aligned)
            best = torch.full((x.shape[0],), float("inf"))
            for i in range(4):
                for j in range(4):
                    if (i + j) % 2:
                        continue
                    lo = torch.tensor([i, j], dtype=torch.float32) * _CHECKER_SIDE - 2 * _CHECKER_SIDE
                    hi = lo + _CHECKER_SIDE
                    gap = torch.maximum(lo - x, x - hi).clamp_min(0)
                    best = torch.minimum(best, gap.norm(dim=1))
            return best
        skeleton = self.skeleton()
        dist = torch.cat([torch.cdist(chunk, skeleton).min(1).values for chunk in x.split(4096)])
        return (dist - self.support_radius).clamp_min(0)

    def on_support(self, x: Tensor) -> Tensor:
        """Boolean mask: is each point in Supp(p_data) (within 3 sigma of the skeleton)?"""
        x = _check_points(x)
        if self.skeleton_fn is None:
            return _checker_filled(x)
        return self.distance_to_support(x) <= 0


def _check_points(x: Tensor) -> Tensor:
    if not isinstance(x, Tensor) or x.dim() != 2 or x.shape[1] != 2:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected 2D points of shape (N, 2), got {shape}")
    return x.detach().float().cpu()


DATASETS: dict[str, Toy2D] = {
    "gaussian": Toy2D("gaussian", 0.5, "N(0, 0.5^2 I) at the origin (the papers' case)", _gaussian_skeleton),
    "ring": Toy2D("ring", 0.1, "circle of radius 2.5, noise 0.1", _ring_skeleton),
    "moons": Toy2D("moons", 0.1, "two interleaved half circles (radius 2), noise 0.1", _moons_skeleton),
    "spirals": Toy2D("spirals", 0.1, "two Archimedean arms, 1.5 turns, noise 0.1", _spirals_skeleton),
    "checkerboard": Toy2D("checkerboard", 0.0, "8 filled squares of side 1.5 in a 4x4 board over [-3, 3]^2"),
    "swissroll": Toy2D("swissroll", 0.1, "swiss roll, 1.5 turns, outer radius 3.5, noise 0.1", _swissroll_skeleton),
}


def get_dataset(name: str) -> Toy2D:
    if name not in DATASETS:
        raise ValueError(f"unknown 2D data set {name!r}; choose from {sorted(DATASETS)}")
    return DATASETS[name]


def uniform_box(n: int, box: Box, generator: torch.Generator | None = None) -> Tensor:
    lo, hi = _check_box(box)
    return lo + (hi - lo) * torch.rand(n, 2, generator=generator)


def _check_box(box: Box) -> Box:
    lo, hi = float(box[0]), float(box[1])
    if not hi > lo:
        raise ValueError(f"the box must satisfy lo < hi, got {box}")
    return lo, hi


def parse_mixture(text: str) -> list[tuple[float, float, float, float]]:
    """Parses ``"x,y,std,weight; x,y,std,weight; ..."`` (weight optional, default 1) into components."""
    components = []
    for part in text.split(";"):
        part = part.strip()
        if not part:
            continue
        try:
            values = [float(v) for v in part.split(",")]
        except ValueError as err:
            raise ValueError(f"mixture component {part!r} is not 'x,y,std[,weight]' numbers") from err
        if len(values) == 3:
            values.append(1.0)
        if len(values) != 4:
            raise ValueError(f"mixture component {part!r} needs 3 or 4 numbers: x,y,std[,weight]")
        if values[2] <= 0 or values[3] <= 0:
            raise ValueError(f"mixture component {part!r}: std and weight must be > 0")
        components.append(tuple(values))
    if not components:
        raise ValueError("the mixture is empty; give components as 'x,y,std[,weight]; ...'")
    return components  # type: ignore[return-value]


def sample_p0(kind: str, n: int, box: Box = (-4.0, 4.0), *, generator: torch.Generator | None = None,
              mixture: Sequence[tuple[float, float, float, float]] | None = None) -> Tensor:
    """``n`` seeds of p_0 (``(n, 2)``): ``uniform`` over the box, ``corner`` = uniform in ``[lo, lo + 1]^2``, or a
    Gaussian ``mixture`` of ``(x, y, std, weight)`` components clamped to the box."""
    lo, hi = _check_box(box)
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if kind == "uniform":
        return uniform_box(n, (lo, hi), generator)
    if kind == "corner":
        side = min(1.0, hi - lo)
        return lo + side * torch.rand(n, 2, generator=generator)
    if kind == "mixture":
        if not mixture:
            raise ValueError("p0 'mixture' needs components, e.g. '-3,3,0.3; 3,-3,0.3,2'")
        comps = torch.tensor([list(c) for c in mixture], dtype=torch.float32)
        which = torch.multinomial(comps[:, 3] / comps[:, 3].sum(), n, replacement=True, generator=generator)
        points = comps[which, :2] + comps[which, 2:3] * torch.randn(n, 2, generator=generator)
        return points.clamp(lo, hi)
    raise ValueError(f"unknown p0 kind {kind!r}; choose from {P0_KINDS}")
