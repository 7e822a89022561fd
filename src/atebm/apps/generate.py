"""Generation: unconstrained PGD ascent on the score from p_0 seeds (E Sec. 5.1, supp. Sec. 4.3)."""
from __future__ import annotations

from typing import Sequence

from torch import Tensor

from ..sampling import ScoreFn, pgd
from ..data import blur
from ._images import check_images, model_device

__all__ = ["generate"]


def generate(
    model: ScoreFn,
    seeds: Tensor,
    steps: int,
    step_size: float,
    blur_sigma: float = 0.0,
    *,
    norm: str = "l2",
    clamp: tuple[float, float] | None = (0.0, 1.0),
    record: Sequence[int] | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Samples by ascending the score from ``seeds`` (E Eq. 8, no eps-ball)::

        x_0 = G_σ * seed,   x_{i+1} = clamp( x_i + λ · ∇f(x_i) / ||∇f(x_i)||_2 ),   i < steps

    ``blur_sigma`` > 0 first smooths the seeds with a Gaussian of that standard deviation in pixels
    (:func:`atebm.data.blur`); the paper
    uses σ = 10 at 256 px and reports fewer artifacts at a slightly worse FID (E supp. Sec. 4.3, Fig. 5).
    The paper's settings are 32 steps x 0.2 on CIFAR-10 and 14-20 steps x 8.0 at 256 px (METHOD Sec. 2).
    Seeds are moved to the model's device. Returns the samples, or ``(samples, trajectory)`` when ``record``
    lists step counts (0 = the blurred seed), as :func:`atebm.pgd` does.
    """
    seeds = check_images(seeds, "seeds").to(model_device(model))
    x0 = blur(seeds, blur_sigma) if blur_sigma else seeds
    return pgd(model, x0, steps=steps, step_size=step_size, norm=norm, clamp=clamp, record=record)
