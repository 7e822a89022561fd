"""Interpolation: the sampler run on linear interpolations between two seeds (E supp. Fig. 11-13, T Fig. 2.16)."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..sampling import PGDTrace, ScoreFn, trajectory_twin
from ._images import check_images
from .generate import generate

__all__ = ["interpolate", "interpolate_trajectory", "interpolation_seeds", "measure_interpolation"]


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
    trace: PGDTrace | None = None,
    **generate_options: Any,
) -> Tensor:
    """Generates from ``num`` evenly spaced linear interpolations of each seed pair ``(a[m], b[m])``.

    Every interpolated seed is sampled exactly as :func:`atebm.apps.generate` would sample it alone (blur, then
    ``steps`` PGD ascent steps; ``generate_options`` are its ``norm`` and ``clamp``), so the first and last columns
    are the samples of ``a`` and ``b``. Returns the samples, shape (M, num, C, H, W); the seeds they started from
    are :func:`interpolation_seeds`. A ``trace`` path (:func:`interpolate_trajectory`) has the samples' shape
    behind its step axis, (T, M, num, C, H, W).
    """
    seeds = interpolation_seeds(a, b, num)
    samples = generate(model, seeds.flatten(0, 1), steps, step_size, blur_sigma, trace=trace, **generate_options)
    if trace is not None and trace.path is not None:
        trace.path = trace.path.reshape(len(trace.path), *seeds.shape)
    return samples.reshape(seeds.shape)


interpolate_trajectory = trajectory_twin(interpolate)


def measure_interpolation(samples: Tensor, classifier: Any, reference_features: Any) -> dict[str, Any]:
    """What happens along the paths of :func:`interpolate` (E supp. Fig. 11-13): ``samples`` of shape
    (M, num, C, H, W), ``classifier`` with ``predict_proba`` and ``features`` (e.g. :func:`atebm.metrics.
    digit_features`), ``reference_features`` the real images' features (rows).

    Per position ``t_j`` (over the M paths): the Fréchet distance of the M samples to the reference (``fd``; the
    same sample count at every position, so the values compare), the classifier's mean top probability
    (``confidence``) and class histogram. Per path: the class at each position, the number of class changes, and
    whether the class at the midpoint is the class of one of the two ends. ``fd_midpoint`` vs ``fd_endpoints`` (the
    mean of the two ends) says whether the middle of a path is as realistic as its ends."""
    from ..metrics import frechet_distance

    if samples.dim() != 5:
        raise ValueError(f"samples must have shape (M, num, C, H, W) as interpolate() returns, "
                         f"got {tuple(samples.shape)}")
    m, num = samples.shape[:2]
    if m < 2 or num < 3:
        raise ValueError(f"need at least 2 paths of at least 3 points, got {m} paths of {num}")
    flat = samples.detach().cpu().reshape(m * num, *samples.shape[2:])
    proba = torch.as_tensor(classifier.predict_proba(flat)).reshape(m, num, -1)
    features = np.asarray(classifier.features(flat)).reshape(m, num, -1)
    classes = proba.argmax(-1)
    fd = [frechet_distance(features[:, j], reference_features) for j in range(num)]
    middle = num // 2
    ends = classes[:, [0, -1]]
    changes = (classes[:, 1:] != classes[:, :-1]).sum(1)
    return {
        "t": [j / (num - 1) for j in range(num)],
        "paths": m,
        "fd": fd,
        "fd_midpoint": fd[middle],
        "fd_endpoints": 0.5 * (fd[0] + fd[-1]),
        "midpoint_over_endpoints": fd[middle] / (0.5 * (fd[0] + fd[-1])),
        "confidence": proba.max(-1).values.mean(0).tolist(),
        "class_histogram": [torch.bincount(classes[:, j], minlength=proba.shape[-1]).tolist() for j in range(num)],
        "classes": classes.tolist(),
        "class_changes_mean": float(changes.float().mean()),
        "ends_differ": float((ends[:, 0] != ends[:, 1]).float().mean()),
        "midpoint_class_is_an_end_class": float(((classes[:, middle] == ends[:, 0]) |
                                                 (classes[:, middle] == ends[:, 1])).float().mean()),
    }
