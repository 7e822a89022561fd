"""Image-to-image translation: images of a source domain pushed toward a target model's distribution
(E Sec. 5.2, Fig. 7, supp. Fig. 20; T Sec. 2.5.3, Fig. 2.11-2.12). The target model never saw the source
domain; the user picks the amount of transformation (steps) and can keep the intermediate images."""
from __future__ import annotations

import math
from typing import Sequence

from torch import Tensor

from ..sampling import ScoreFn, pgd
from ._images import check_images, conform, model_channels, model_device

__all__ = ["translate"]


def translate(
    model: ScoreFn,
    x: Tensor,
    steps: int,
    step_size: float,
    *,
    eps: float = math.inf,
    norm: str = "l2",
    channels: int | None = None,
    size: int | tuple[int, int] | None = None,
    record: Sequence[int] | None = None,
) -> Tensor | tuple[Tensor, Tensor]:
    """Translates source-domain images ``x`` toward the target model by PGD ascent on its score::

        x_0 = conform(x),   x_{i+1} = Proj_{B(x_0, eps) ∩ [0,1]}( x_i + λ · ∇f(x_i) / ||∇f(x_i)||_2 )

    ``conform`` converts channels (RGB <-> grey; by default to the model's recorded ``in_channels``) and resizes
    to ``size``, so faces or letters can be fed to a digit model. ``steps`` is the amount of transformation;
    ``record=[0, ...]`` returns ``(result, trajectory)`` with the intermediate images.
    """
    x = check_images(x, "source images")
    x = conform(x, channels if channels is not None else model_channels(model), size).to(model_device(model))
    return pgd(model, x, steps=steps, step_size=step_size, norm=norm, eps=eps, record=record)
