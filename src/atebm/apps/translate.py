"""Image-to-image translation: images of a source domain pushed toward a target model's distribution
(E Sec. 5.2, Fig. 7, supp. Fig. 20; T Sec. 2.5.3, Fig. 2.11-2.12). The target model never saw the source
domain; the user picks the amount of transformation (steps) and can keep the intermediate images.

Translation is denoising (:func:`atebm.apps.denoise`, the same eps-bounded ascent) from images first converted
to the model's input format."""
from __future__ import annotations

from typing import Any

from torch import Tensor

from ..sampling import ScoreFn, trajectory_twin
from ._images import check_images, conform, model_channels, model_size
from .restore import denoise

__all__ = ["translate", "translate_trajectory", "to_model_format"]


def to_model_format(model: ScoreFn, x: Tensor, channels: int | None = None,
                    size: int | tuple[int, int] | None = None) -> Tensor:
    """``x`` converted to ``channels`` and ``size``, by default those the model records (``model.meta``; see
    :func:`atebm.apps.conform`); a property the model does not record is kept."""
    x = check_images(x, "source images")
    return conform(x, channels if channels is not None else model_channels(model),
                   size if size is not None else model_size(model))


def translate(
    model: ScoreFn,
    x: Tensor,
    steps: int,
    step_size: float,
    *,
    channels: int | None = None,
    size: int | tuple[int, int] | None = None,
    **denoise_options: Any,
) -> Tensor:
    """Translates source-domain images ``x`` toward the target model by PGD ascent on its score::

        x_0 = conform(x),   x_{i+1} = Proj_{B(x_0, eps) ∩ [0,1]}( x_i + λ · ∇f(x_i) / ||∇f(x_i)||_2 )

    ``conform`` converts channels (RGB <-> grey) and resizes, by default to the model's recorded input format
    (:func:`to_model_format`), so faces or letters can be fed to a digit model. The ascent is :func:`denoise` from
    ``x_0``, and ``denoise_options`` are its options (``eps``, default unbounded; ``norm``; ``trace``). ``steps`` is
    the amount of transformation; :func:`translate_trajectory` keeps the intermediate images (``record`` step 0 is
    the converted source).
    """
    return denoise(model, to_model_format(model, x, channels, size), steps, step_size, **denoise_options)


translate_trajectory = trajectory_twin(translate)
