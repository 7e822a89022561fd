"""Constructors of p_dbar, the distribution DSGAN's discriminator treats as real (S Sec. 2.2, 4, 5).

DSGAN learns ``p_g ~ (p_dbar - alpha p_d) / (1 - alpha)`` (S Eq. 1), so p_dbar decides which "difference" the
generator produces:

* :class:`NoisySource` - p_d convolved with Gaussian or uniform noise (S Fig. 2-4: the boundary and the
  low-density regions of p_d; S Sec. 5.2: uniform noise for adversarial training). Works on any tensor rows:
  images (pixel space) or feature vectors (feature space, see :func:`feature_space`). Optionally clamped to a
  box (``atebm dsgan train --pbar gaussian:STD`` clamps to [0, 1] so that p_dbar holds valid images): a
  departure from S, whose p_dbar is the convolution itself, because the clamp puts point masses on the bounds
  (about half the background pixels of a noisy MNIST digit become exactly 0).
* :func:`class_subset` - a superset data set, e.g. digits {1, 7} as p_dbar when p_d is digit 1 (S Fig. 5-6).
* :class:`InterpolationSource` - convex combinations ``beta x_1 + (1 - beta) x_2`` of rows of two sources,
  ``beta ~ U(lo, hi)`` (S Eq. 8: complement samples for semi-supervised learning; beta <= 0.3 on MNIST, Tab. 3).

The sources follow the trainer's data protocol (``len`` and ``get_batch(indices)``) and draw their noise from the
global torch RNG, which :class:`atebm.Trainer` checkpoints, so a resumed run draws the same noise.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

from ..data import ImageSet
from ..training.trainer import fetch_batch

__all__ = ["NOISE_KINDS", "add_noise", "NoisySource", "interpolate", "InterpolationSource", "class_subset",
           "feature_space", "check_weight_range"]

NOISE_KINDS = ("gaussian", "uniform")


def add_noise(x: Tensor, kind: str, scale: float, generator: torch.Generator | None = None) -> Tensor:
    """``x + scale * N(0, I)`` (``gaussian``: scale is the standard deviation) or ``x + U(-scale, scale)``
    (``uniform``: scale is the half-width, the L-infinity radius of S Sec. 5.2)."""
    if kind not in NOISE_KINDS:
        raise ValueError(f"noise must be one of {NOISE_KINDS}, got {kind!r}")
    if not scale > 0:
        raise ValueError(f"the noise scale must be > 0, got {scale}")
    if kind == "gaussian":
        noise = torch.randn(x.shape, generator=generator)
    else:
        noise = torch.rand(x.shape, generator=generator) * 2 - 1
    return x + scale * noise.to(x)


class NoisySource:
    """``p_dbar = p_d * noise``: each ``get_batch`` returns the rows of ``base`` plus fresh noise (module doc),
    clamped to ``clamp`` when given (``(0, 1)`` keeps images valid model inputs)."""

    def __init__(self, base: Any, kind: str = "gaussian", scale: float = 0.5,
                 clamp: tuple[float, float] | None = None) -> None:
        add_noise(torch.zeros(1), kind, scale)  # validates kind and scale
        if len(base) < 1:
            raise ValueError("the base data source is empty")
        if clamp is not None and not clamp[0] < clamp[1]:
            raise ValueError(f"clamp must be (low, high) with low < high, got {clamp}")
        self.base, self.kind, self.scale, self.clamp = base, kind, float(scale), clamp

    def __len__(self) -> int:
        return len(self.base)

    def get_batch(self, indices: Tensor) -> Tensor:
        x = add_noise(fetch_batch(self.base, indices).float(), self.kind, self.scale)
        return x.clamp(*self.clamp) if self.clamp is not None else x

    def describe(self) -> str:
        """One line for run records; names the clamp, the departure from S's ``p_d * noise``."""
        text = f"p_d + {self.kind} noise (scale {self.scale:g})"
        if self.clamp is None:
            return text
        low, high = self.clamp
        return (f"{text}, clamped to [{low:g}, {high:g}]: point masses at {low:g} and {high:g}, not the convolution "
                f"p_d * noise of S")


def check_weight_range(weight_range: Sequence[float]) -> tuple[float, float]:
    lo, hi = (float(v) for v in weight_range)
    if not 0.0 <= lo <= hi <= 1.0:
        raise ValueError(f"the interpolation weight range must satisfy 0 <= low <= high <= 1, got {weight_range}")
    return lo, hi


def interpolate(first: Tensor, second: Tensor, weight_range: Sequence[float] = (0.0, 0.3),
                generator: torch.Generator | None = None) -> Tensor:
    """``beta_i first_i + (1 - beta_i) second_i`` with ``beta_i ~ U(low, high)`` per row (S Eq. 8)."""
    lo, hi = check_weight_range(weight_range)
    if first.shape != second.shape:
        raise ValueError(f"interpolated rows must have the same shape, got {tuple(first.shape)} and "
                         f"{tuple(second.shape)}")
    beta = (lo + (hi - lo) * torch.rand(len(first), generator=generator)).to(first)
    beta = beta.view(-1, *([1] * (first.dim() - 1)))
    return beta * first + (1 - beta) * second


class InterpolationSource:
    """Convex combinations of two sources (S Eq. 8): row ``i`` of ``first`` with a uniformly drawn row of
    ``second``, weight ``beta ~ U(weight_range)`` on ``first``."""

    def __init__(self, first: Any, second: Any, weight_range: Sequence[float] = (0.0, 0.3)) -> None:
        self.weight_range = check_weight_range(weight_range)
        if len(first) < 1 or len(second) < 1:
            raise ValueError("both sources of an interpolation must be non-empty")
        self.first, self.second = first, second

    def __len__(self) -> int:
        return len(self.first)

    def get_batch(self, indices: Tensor) -> Tensor:
        a = fetch_batch(self.first, indices).float()
        b = fetch_batch(self.second, torch.randint(len(self.second), (len(a),))).float()
        return interpolate(a, b, self.weight_range)

    def describe(self) -> str:
        lo, hi = self.weight_range
        return f"beta x1 + (1 - beta) x2, beta ~ U({lo:g}, {hi:g})"


def class_subset(images: ImageSet, classes: Sequence[int]) -> ImageSet:
    """The images of ``images`` whose label is in ``classes`` (order kept), e.g. digits {1, 7} (S Fig. 5)."""
    if images.y is None:
        raise ValueError(f"{images.name or 'the data set'} has no labels, so classes cannot be selected")
    wanted = sorted({int(c) for c in classes})
    if not wanted:
        raise ValueError("choose at least one class")
    present = set(images.y.unique().tolist())
    missing = [c for c in wanted if c not in present]
    if missing:
        raise ValueError(f"{images.name or 'the data set'} has no images of class(es) {missing} "
                         f"(classes present: {sorted(present)})")
    keep = torch.isin(images.y, torch.tensor(wanted))
    name = f"{images.name}[classes {','.join(map(str, wanted))}]"
    return ImageSet(images.x[keep].contiguous(), images.y[keep].contiguous(), name,
                    {**images.meta, "classes": wanted})


@torch.no_grad()
def feature_space(images: Tensor, feature_net: Any, batch_size: int = 500) -> Tensor:
    """The rows ``feature_net.features(images)`` ((N, D), e.g. the 64-d digit-classifier features of
    :func:`atebm.metrics.digit_features`): DSGAN on these vectors is DSGAN in feature space (S Sec. 5.1-5.2)."""
    if not hasattr(feature_net, "features"):
        raise TypeError(f"{type(feature_net).__name__} has no features(x) method")
    return feature_net.features(images, batch_size=batch_size).float()
