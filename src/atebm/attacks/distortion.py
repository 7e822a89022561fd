"""Minimum-L2-distortion search of Carlini & Wagner (2017), the protocol of T Tab. 3.6.

For a margin ``m(x')`` positive exactly when ``x'`` is a successful adversarial example (the convention of
:mod:`atebm.attacks`), and a constant c per sample, Adam minimises in the tanh space of CW

    ||x' - x||_2^2 + c · max(kappa - m(x'), 0),      x' = lo + (hi - lo) · (tanh(w) + 1) / 2,

and c is searched per sample as CW do: after a round with a success, c moves to the midpoint towards the last
failing c (binary search down); after a round without, to the midpoint towards the last succeeding c, or, if no
round has succeeded yet, ``c_growth`` times higher (geometric search up, without a ceiling below ``c_max``). So an
input that needs a large c is not given up at a fixed bound; one that never succeeds is a *failure*, counted as
such by the caller (T Tab. 3.6's mean at 1.0 FPR needs every input to succeed).

The start ``w`` is the image shrunk by ``1e-3`` of the box towards its centre: at the box's bounds tanh' is about 0,
and Adam would need tens of steps to move ``w`` back to where pixels can change (distances are measured from the
unshrunk image).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from ..sampling import AdamStep, ScoreFn, check_inputs, eval_mode, input_gradient, per_sample_scores

__all__ = ["min_distortion_l2"]


@torch.no_grad()
def min_distortion_l2(margin: ScoreFn, x: Tensor, *, steps: int = 500, lr: float = 0.1, c_init: float = 1.0,
                      c_growth: float = 10.0, c_max: float = 1e6, search_steps: int = 20, kappa: float = 0.0,
                      clamp: tuple[float, float] = (0.0, 1.0)) -> tuple[Tensor, Tensor, Tensor]:
    """Returns ``(x_adv, distortion, c_final)``: per sample the successful ``x'`` of smallest L2 distance met at any
    step of any round and that distance (``x`` and ``inf`` where no round succeeded), and the last c tried
    (module docstring). ``search_steps`` rounds of ``steps`` Adam steps of learning rate ``lr``."""
    check_inputs(x, box=clamp, score=margin)
    if steps < 1 or search_steps < 1 or lr <= 0:
        raise ValueError(f"steps and search_steps must be >= 1 and lr > 0, got {steps}, {search_steps}, {lr}")
    if not 0 < c_init <= c_max or c_growth <= 1:
        raise ValueError(f"need 0 < c_init <= c_max and c_growth > 1, got {c_init}, {c_max}, {c_growth}")
    box_lo, box_hi = clamp
    x0 = x.detach()
    n, view = x0.shape[0], (-1, *([1] * (x0.dim() - 1)))
    unit = ((x0 - box_lo) / (box_hi - box_lo) * 2 - 1) * (1 - 1e-3)
    w0 = torch.atanh(unit)

    def to_image(w: Tensor) -> Tensor:
        return box_lo + (box_hi - box_lo) * (torch.tanh(w) + 1) / 2

    c = torch.full((n,), float(c_init), device=x0.device)
    lower = torch.zeros(n, device=x0.device)
    upper = torch.full((n,), math.inf, device=x0.device)
    best_x, best_d = x0.clone(), torch.full((n,), math.inf, device=x0.device)
    seen: dict[str, Tensor] = {}

    def objective(w: Tensor) -> Tensor:  # ascended: minus the CW loss; records margin, distance and image
        image = to_image(w)
        m = per_sample_scores(margin, image)
        d2 = (image - x0).flatten(1).pow(2).sum(1)
        seen["margin"], seen["d2"], seen["x"] = m.detach(), d2.detach(), image.detach()
        return -(d2 + c * (kappa - m).clamp_min(0))

    with eval_mode(margin):
        for _ in range(search_steps):
            w = w0.clone()
            adam = AdamStep(w, lr)
            succeeded = torch.zeros(n, dtype=torch.bool, device=x0.device)
            for step in range(steps + 1):
                _, grad = input_gradient(objective, w)
                hit = seen["margin"] > 0
                dist = seen["d2"].sqrt()
                improve = hit & (dist < best_d)
                best_d = torch.where(improve, dist, best_d)
                best_x = torch.where(improve.view(view), seen["x"], best_x)
                succeeded |= hit
                if step < steps:
                    w = w + adam.update(grad)
            upper = torch.where(succeeded, torch.minimum(upper, c), upper)
            lower = torch.where(succeeded, lower, torch.maximum(lower, c))
            c = torch.where(torch.isfinite(upper), (lower + upper) / 2, (c * c_growth).clamp_max(c_max))
    return best_x, best_d, c
