"""Interpolation: the sampler run on linear interpolations between two seeds (E supp. Fig. 11-13, T Fig. 2.16)."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from ..sampling import ScoreFn
from ._images import check_images, model_device
from .generate import generate

__all__ = ["interpolate", "interpolation_seeds"]


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
    record: Sequence[int] | None = None,
) -> tuple[Tensor, Tensor] | tuple[Tensor, Tensor, Tensor]:
    """Generates from ``num`` evenly spaced linear interpolations of each seed pair ``(a[m], b[m])``.

    Every interpolated seed is sampled exactly as :func:`atebm.apps.generate` would sample it alone (blur, then
    ``steps`` PGD ascent steps), so the first and last columns are the samples of ``a`` and ``b``.
    Returns ``(samples, seeds)``, both (M, num, C, H, W), plus the trajectory (T, M, num, C, H, W) when
    ``record`` is given.
    """
    seeds = interpolation_seeds(a, b, num).to(model_device(model))
    m = seeds.shape[0]
    flat = seeds.reshape(m * num, *seeds.shape[2:])
    out = generate(model, flat, steps, step_size, blur_sigma, norm=norm, record=record)
    if record is None:
        return out.reshape(seeds.shape), seeds
    samples, trajectory = out
    return samples.reshape(seeds.shape), seeds, trajectory.reshape(len(trajectory), *seeds.shape)
