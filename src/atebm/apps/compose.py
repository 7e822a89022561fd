"""Compositional generation: several score models combined into one score (E supp. Fig. 17, after the concept
conjunction of Du et al.). The sampler sees a single callable, :class:`WeightedSum`."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..sampling import PGDTrace, ScoreFn, per_sample_scores, trajectory_twin
from .generate import generate

__all__ = ["WeightedSum", "compose", "compose_trajectory"]

_MODES = ("score", "log_prob")


class WeightedSum(nn.Module):
    """One score from several: ``f(x) = Σ_i w_i · g_i(x)``.

    With ``mode="score"`` (default) ``g_i = f_i``, the sum of the models' scores, i.e. the product of the
    unnormalised densities ``exp(-E_i)`` (concept conjunction, E supp. Fig. 17). With ``mode="log_prob"``
    ``g_i = log σ(f_i) = log D_i``, so that a model already satisfied (``D_i -> 1``) stops pulling and ascent
    works on the least satisfied one. Every model is evaluated, even at weight 0, so a weight of 0 changes the
    gradient by exactly 0. Models that are ``nn.Module`` are registered as submodules, so the sampler puts
    them all in eval mode.
    """

    def __init__(self, models: Sequence[ScoreFn], weights: Sequence[float] | None = None, mode: str = "score"):
        super().__init__()
        models = list(models)
        if not models:
            raise ValueError("WeightedSum needs at least one model")
        weights = [1.0] * len(models) if weights is None else [float(w) for w in weights]
        if len(weights) != len(models):
            raise ValueError(f"{len(weights)} weights for {len(models)} models")
        if not all(torch.isfinite(torch.tensor(weights))):
            raise ValueError(f"weights must be finite, got {weights}")
        if mode not in _MODES:
            raise ValueError(f"mode must be one of {_MODES}, got {mode!r}")
        self.mode = mode
        self.models = nn.ModuleList([m if isinstance(m, nn.Module) else _Callable(m) for m in models])
        self.weights: list[float] = weights

    def forward(self, x: Tensor) -> Tensor:
        terms = []
        for weight, model in zip(self.weights, self.models):
            s = per_sample_scores(model, x)
            terms.append(weight * (F.logsigmoid(s) if self.mode == "log_prob" else s))
        return torch.stack(terms).sum(0)


class _Callable(nn.Module):
    """Holds a plain callable score inside the module tree."""

    def __init__(self, fn: ScoreFn):
        super().__init__()
        if not callable(fn):
            raise TypeError(f"a composed model must be callable, got {type(fn).__name__}")
        self.fn = fn

    def forward(self, x: Tensor) -> Tensor:
        return self.fn(x)


def compose(
    models: Sequence[ScoreFn],
    seeds: Tensor,
    steps: int,
    step_size: float,
    weights: Sequence[float] | None = None,
    *,
    mode: str = "score",
    blur_sigma: float = 0.0,
    norm: str = "l2",
    trace: PGDTrace | None = None,
) -> Tensor:
    """Generates from the composition ``Σ_i w_i f_i`` (see :class:`WeightedSum`) with :func:`generate`;
    :func:`compose_trajectory` also returns the path."""
    return generate(WeightedSum(models, weights, mode=mode), seeds, steps, step_size, blur_sigma, norm=norm,
                    trace=trace)


compose_trajectory = trajectory_twin(compose)
