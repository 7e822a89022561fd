"""The DSGAN losses (S Eq. 1-2, 10, Alg. 1) and the WGAN-GP penalty (Gulrajani et al. 2017; S Sec. 5).

Scores ``f`` are logits: ``D(x) = sigmoid(f(x))``. The discriminator treats p_dbar as real and the mixture
``(1 - alpha) p_g + alpha p_d`` as fake (S Eq. 2)::

    max_D  E_{p_dbar}[log D(x)] + (1 - alpha) E_z[log(1 - D(G(z)))] + alpha E_{p_d}[log(1 - D(x))]

With the sampling trick (S App. C, Eq. 10) a fake batch of ``m`` holds ``round((1 - alpha) m)`` generator samples
and the rest p_d samples, averaged with equal weights; without it (Alg. 1 as written) ``m`` of each, weighted
``1 - alpha`` and ``alpha``. :func:`fake_weights` gives the per-row weights of either batch, so one loss serves
both. The WGAN-GP critic replaces ``log D`` by ``f`` and adds ``lambda E[(||grad f(x_hat)|| - 1)^2]`` on
interpolates ``x_hat`` between real and fake rows.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor
from torch.nn import functional as F

from ..sampling import input_gradient

__all__ = ["mixture_sizes", "fake_weights", "discriminator_loss", "generator_loss", "gradient_penalty",
           "DISCRIMINATOR_LOSSES", "GENERATOR_LOSSES", "check_alpha"]

#: ``gan``: the log-loss of S Eq. 2; ``wgan-gp``: the Wasserstein critic with gradient penalty (S Sec. 5).
DISCRIMINATOR_LOSSES = ("gan", "wgan-gp")
#: ``minimax``: descend ``log(1 - D(G(z)))`` (S Alg. 1 line 9); ``non-saturating``: descend ``-log D(G(z))``
#: (same fixed point, stronger gradients early; Goodfellow et al. 2014); ``wgan``: descend ``-f(G(z))``.
GENERATOR_LOSSES = ("minimax", "non-saturating", "wgan")


def check_alpha(alpha: float) -> float:
    """``alpha`` must lie in [0, 1): at 1 the fake batch holds no generator sample and G learns nothing."""
    alpha = float(alpha)
    if not 0.0 <= alpha < 1.0:
        raise ValueError(f"alpha must lie in [0, 1) (the weight of p_d in the fake mixture, S Eq. 1), got {alpha}")
    return alpha


def mixture_sizes(m: int, alpha: float) -> tuple[int, int]:
    """S Eq. 10: ``(n_gen, n_data)`` of a fake batch of ``m``: ``round((1 - alpha) m)`` generator samples (at
    least one) and the rest from p_d."""
    alpha = check_alpha(alpha)
    if m < 1:
        raise ValueError(f"the batch must hold at least one sample, got {m}")
    n_gen = min(m, max(1, int(round((1.0 - alpha) * m))))
    return n_gen, m - n_gen


def fake_weights(n_gen: int, n_data: int, alpha: float, trick: bool) -> Tensor:
    """Per-row weights (summing to 1) of a fake batch laid out as ``[n_gen generator rows, n_data p_d rows]``:
    equal with the sampling trick (the rows are already in proportion), ``(1 - alpha) / n_gen`` and
    ``alpha / n_data`` without it."""
    alpha = check_alpha(alpha)
    if trick or n_data == 0:
        return torch.full((n_gen + n_data,), 1.0 / (n_gen + n_data))
    return torch.cat([torch.full((n_gen,), (1.0 - alpha) / n_gen), torch.full((n_data,), alpha / n_data)])


def discriminator_loss(s_real: Tensor, s_fake: Tensor, weights: Tensor, kind: str = "gan") -> Tensor:
    """The discriminator's loss (to minimise) for real scores ``s_real`` (p_dbar) and fake scores ``s_fake``
    weighted by ``weights`` (:func:`fake_weights`): ``gan``: ``-mean log D(real) - sum_i w_i log(1 - D(fake_i))``;
    ``wgan-gp``: ``sum_i w_i f(fake_i) - mean f(real)`` (the penalty is :func:`gradient_penalty`)."""
    weights = weights.to(s_fake)
    if weights.shape != s_fake.shape:
        raise ValueError(f"{len(weights)} weights for {len(s_fake)} fake scores")
    if kind == "gan":
        return F.softplus(-s_real).mean() + (weights * F.softplus(s_fake)).sum()
    if kind == "wgan-gp":
        return (weights * s_fake).sum() - s_real.mean()
    raise ValueError(f"discriminator loss must be one of {DISCRIMINATOR_LOSSES}, got {kind!r}")


def generator_loss(s_gen: Tensor, kind: str = "non-saturating") -> Tensor:
    """The generator's loss (to minimise) on the scores of its samples (see :data:`GENERATOR_LOSSES`)."""
    if kind == "minimax":
        return -F.softplus(s_gen).mean()  # = mean log(1 - D(G(z)))
    if kind == "non-saturating":
        return F.softplus(-s_gen).mean()  # = -mean log D(G(z))
    if kind == "wgan":
        return -s_gen.mean()
    raise ValueError(f"generator loss must be one of {GENERATOR_LOSSES}, got {kind!r}")


def gradient_penalty(score: Callable[[Tensor], Tensor], real: Tensor, fake: Tensor, weights: Tensor,
                     generator: torch.Generator | None = None) -> Tensor:
    """``sum_i w_i (||grad_x f(x_hat_i)||_2 - 1)^2`` with ``x_hat_i = e_i real_j + (1 - e_i) fake_i``,
    ``e_i ~ U(0, 1)``, real rows paired with fake rows in order (cycled when there are more fake rows). The input
    gradient is the sampler's (:func:`atebm.sampling.input_gradient`) with ``create_graph=True``, so that the
    penalty's gradient reaches the critic's parameters (multiply by lambda = 10)."""
    if len(real) < 1 or len(fake) < 1:
        raise ValueError("the gradient penalty needs real and fake rows")
    index = torch.arange(len(fake), device=real.device) % len(real)
    e = torch.rand(len(fake), generator=generator).to(real).view(-1, *([1] * (real.dim() - 1)))
    x_hat = e * real[index].detach() + (1 - e) * fake.detach()
    _, grad = input_gradient(score, x_hat, create_graph=True)
    norms = (grad.flatten(1).pow(2).sum(1) + 1e-12).sqrt()  # finite gradient at a zero input gradient
    return (weights.to(norms) * (norms - 1).pow(2)).sum()
