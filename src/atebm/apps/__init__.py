"""Applications of a trained score model, all by PGD on the score through the one sampler :func:`atebm.pgd`
(METHOD Sec. 3; E Sec. 5.2 and supp. Fig. 11-20; T Sec. 2.5.3-2.5.4):

* :func:`generate` – ascend from (optionally blurred) p_0 seeds;
* :func:`denoise`, :func:`inpaint` – restoration, with the corruptions and masks that go with them;
* :func:`translate` – :func:`denoise` from images of another domain converted to the model's input format;
* :func:`interpolate` – sample along linear interpolations of two seeds;
* :func:`compose` / :class:`WeightedSum` – ascend a weighted sum of several models' scores;
* :func:`nn_patch_inpaint`, :func:`nn_image_inpaint` – the nearest-neighbour inpainting comparisons;
* :func:`save_trajectory` – any path as an image strip, an animated GIF and an NPZ.

One scheme for the results, the sampler's (:func:`atebm.pgd` / :func:`atebm.pgd_trajectory`): every
application returns a tensor and passes its ``trace=`` (:class:`atebm.sampling.PGDTrace`) on to the sampler; its
``*_trajectory`` twin, made from it by :func:`atebm.sampling.trajectory_twin`, takes ``record=steps`` and returns
``(result, path)`` with ``path[r]`` the iterate after ``record[r]`` steps. Inputs are float tensors in [0, 1],
NCHW; anything else raises TypeError / ValueError naming the problem.

The command pipelines (``atebm restore denoise|inpaint``, ``translate``, ``interpolate``, ``compose``) are
:func:`run_denoise`, :func:`run_inpaint`, :func:`run_translate`, :func:`run_interpolate` and
:func:`run_compose` (:mod:`atebm.apps.run`): models from run folders, images from files or data sets, outputs,
JSON and report in one call.
"""
from ._images import conform, model_channels, model_size
from .compose import WeightedSum, compose, compose_trajectory
from .generate import generate, generate_trajectory
from .interpolate import interpolate, interpolate_trajectory, interpolation_seeds
from .nearest_neighbour import masked_nearest, nn_image_inpaint, nn_patch_inpaint
from .quality import summarize
from .restore import (
    MASK_KINDS,
    NOISE_MODELS,
    add_gaussian_noise,
    add_salt_pepper,
    box_mask,
    center_mask,
    corrupt,
    denoise,
    denoise_trajectory,
    inpaint,
    inpaint_trajectory,
    load_mask,
    make_mask,
    occlude,
    pixel_mask,
)
from .run import AppRun, read_images, run_compose, run_denoise, run_inpaint, run_interpolate, run_translate
from .trajectory import parse_steps, save_trajectory
from .translate import to_model_format, translate, translate_trajectory

__all__ = [
    "generate", "generate_trajectory", "denoise", "denoise_trajectory", "inpaint", "inpaint_trajectory",
    "translate", "translate_trajectory", "to_model_format", "interpolate", "interpolate_trajectory",
    "interpolation_seeds", "compose", "compose_trajectory", "WeightedSum",
    "add_gaussian_noise", "add_salt_pepper", "corrupt", "center_mask", "box_mask", "pixel_mask", "load_mask",
    "make_mask", "occlude", "NOISE_MODELS", "MASK_KINDS", "nn_patch_inpaint", "nn_image_inpaint",
    "masked_nearest", "summarize", "save_trajectory", "parse_steps", "conform", "model_channels", "model_size",
    "AppRun", "read_images", "run_denoise", "run_inpaint", "run_translate", "run_interpolate", "run_compose",
]
