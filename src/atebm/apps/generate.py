"""Generation: unconstrained PGD ascent on the score from p_0 seeds (E Sec. 5.1, supp. Sec. 4.3).

Every application comes as a pair, like the sampler itself (:func:`atebm.pgd` / :func:`atebm.pgd_trajectory`):
the plain function returns the result tensor and passes its ``trace=`` (:class:`atebm.sampling.PGDTrace`) on to
the sampler; ``<name>_trajectory(..., record=steps)``, made from it by :func:`atebm.sampling.trajectory_twin`, runs
the same ascent and returns ``(result, path)`` with ``path[r]`` the iterate after ``record[r]`` steps.
"""
from __future__ import annotations

from torch import Tensor

from ..data import blur
from ..sampling import PGDTrace, ScoreFn, pgd, trajectory_twin
from ._images import check_images, model_device

__all__ = ["generate", "generate_trajectory"]


def _seeds(model: ScoreFn, seeds: Tensor, blur_sigma: float) -> Tensor:
    if not blur_sigma >= 0:
        raise ValueError(f"blur_sigma must be a number >= 0, got {blur_sigma}")
    seeds = check_images(seeds, "seeds").to(model_device(model))
    return blur(seeds, blur_sigma) if blur_sigma else seeds


def generate(
    model: ScoreFn,
    seeds: Tensor,
    steps: int,
    step_size: float,
    blur_sigma: float = 0.0,
    *,
    norm: str = "l2",
    clamp: tuple[float, float] | None = (0.0, 1.0),
    trace: PGDTrace | None = None,
) -> Tensor:
    """Samples by ascending the score from ``seeds`` (E Eq. 8, no eps-ball)::

        x_0 = G_σ * seed,   x_{i+1} = clamp( x_i + λ · ∇f(x_i) / ||∇f(x_i)||_2 ),   i < steps

    ``blur_sigma`` > 0 first smooths the seeds with a Gaussian of that standard deviation in pixels
    (:func:`atebm.data.blur`); the paper uses σ = 10 at 256 px and reports fewer artifacts at a slightly worse
    FID (E supp. Sec. 4.3, Fig. 5). The paper's settings are 32 steps x 0.2 on CIFAR-10 and 14-20 steps x 8.0
    at 256 px (METHOD Sec. 2). Seeds (in [0, 1], NCHW) are moved to the model's device; returns the samples.
    :func:`generate_trajectory` also returns the path (0 = the blurred seed).
    """
    return pgd(model, _seeds(model, seeds, blur_sigma), steps=steps, step_size=step_size, norm=norm, clamp=clamp,
               trace=trace)


generate_trajectory = trajectory_twin(generate)
