"""Applications of a trained score model, all by PGD on the score through the one sampler :func:`atebm.pgd`
(METHOD Sec. 3; E Sec. 5.2 and supp. Fig. 11-20; T Sec. 2.5.3-2.5.4):

* :func:`generate` – ascend from (optionally blurred) p_0 seeds;
* :func:`denoise`, :func:`inpaint` – restoration, with the corruptions and masks that go with them;
* :func:`translate` – push images of another domain toward the model's distribution;
* :func:`interpolate` – sample along linear interpolations of two seeds;
* :func:`compose` / :class:`WeightedSum` – ascend a weighted sum of several models' scores;
* :func:`save_trajectory` – any path as an image strip, an animated GIF and an NPZ.

The command-line front end is :mod:`atebm.apps.cli` (``atebm restore denoise|inpaint``, ``atebm translate``,
``atebm interpolate``, ``atebm compose``).
"""
from ._images import conform
from .baselines import masked_nearest, nn_image_inpaint, nn_patch_inpaint
from .compose import WeightedSum, compose
from .generate import generate
from .interpolate import interpolate, interpolation_seeds
from .quality import summarize
from .restore import (
    MASK_KINDS, NOISE_MODELS, add_gaussian_noise, add_salt_pepper, box_mask, center_mask, corrupt, denoise,
    inpaint, load_mask, make_mask, occlude, pixel_mask,
)
from .trajectory import parse_steps, save_trajectory
from .translate import translate

__all__ = [
    "generate", "denoise", "inpaint", "translate", "interpolate", "interpolation_seeds", "compose", "WeightedSum",
    "add_gaussian_noise", "add_salt_pepper", "corrupt", "center_mask", "box_mask", "pixel_mask", "load_mask",
    "make_mask", "occlude", "NOISE_MODELS", "MASK_KINDS", "nn_patch_inpaint", "nn_image_inpaint",
    "masked_nearest", "summarize", "save_trajectory", "parse_steps", "conform",
]
