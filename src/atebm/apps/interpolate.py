"""Interpolation: the sampler run on linear interpolations between two seeds (E supp. Fig. 11-13, T Fig. 2.16)."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from ..sampling import ScoreFn
from ._images import check_images
from .generate import generate, generate_trajectory

__all__ = ["interpolate", "interpolate_trajectory", "interpolation_seeds"]


def interpolation_seeds(a: Tensor, b: Tensor, num: int) -> Tensor:
    """``s_j = (1 - t_j)·a + t_j·b`` with ``t_j = j / (num - 1)``, shape (M, num, C, H, W) for M pairs.

    The ends are exactly ``a`` (t = 0) and ``b`` (t = 1).
    """
    a, b = check_images(a, "first seeds"), check_images(b, "second seeds")
    if a.shape != b.shape:
        raise ValueError(f"the two seed batches must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    if num < 2:
        raise ValueError(f"an interpolation needs num >= 2 points, got {num}")
    t = torch.linspace(0.0, 1.0, num, dtype=a.dtype, device=a.device).view(1, num, 1, 1, 1)
    t[:, -1] = 1.0
    return (1 - t) * a[:, None] + t * b.to(a)[:, None]


def _flat_seeds(a: Tensor, b: Tensor, num: int) -> tuple[Tensor, tuple[int, ...]]:
    seeds = interpolation_seeds(a, b, num)
    return seeds.reshape(-1, *seeds.shape[2:]), tuple(seeds.shape)


def interpolate(
    model: ScoreFn,
    a: Tensor,
    b: Tensor,
    num: int,
    steps: int,
    step_size: float,
    blur_sigma: float = 0.0,
    *,
    norm: str = "l2",
) -> Tensor:
    """Generates from ``num`` evenly spaced linear interpolations of each seed pair ``(a[m], b[m])``.

    Every interpolated seed is sampled exactly as :func:`atebm.apps.generate` would sample it alone (blur, then
    ``steps`` PGD ascent steps), so the first and last columns are the samples of ``a`` and ``b``. Returns the
    samples, shape (M, num, C, H, W); the seeds they started from are :func:`interpolation_seeds`.
    """
    flat, shape = _flat_seeds(a, b, num)
    return generate(model, flat, steps, step_size, blur_sigma, norm=norm).reshape(shape)


def interpolate_trajectory(
    model: ScoreFn,
    a: Tensor,
    b: Tensor,
    num: int,
    steps: int,
    step_size: float,
    blur_sigma: float = 0.0,
    *,
    record: Sequence[int],
    norm: str = "l2",
) -> tuple[Tensor, Tensor]:
    """:func:`interpolate` that also returns the path: ``(samples, path)`` with ``path`` of shape
    (T, M, num, C, H, W), ``path[r]`` after ``record[r]`` steps."""
    flat, shape = _flat_seeds(a, b, num)
    samples, path = generate_trajectory(model, flat, steps, step_size, blur_sigma, record=record, norm=norm)
    return samples.reshape(shape), path.reshape(len(path), *shape)
