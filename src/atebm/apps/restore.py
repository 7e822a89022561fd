"""Restoration by gradient ascent on the score (T Sec. 2.5.3, Fig. 2.13-2.14, Tab. 2.7-2.8; E supp. Fig. 18-19).

* **Denoising**: start at the noisy image and ascend; the number of steps sets the strength, and an optional
  eps-ball around the input keeps the result faithful to it.
* **Inpainting**: the same ascent with a mask, so only the missing pixels move; every other pixel keeps its
  input value bit for bit.

Corruptions (Gaussian and salt-and-pepper noise, occlusion) and masks (centre square, random boxes, random
pixels, a user's mask image) are here too, so that experiments and the command line share one definition.
Masks are boolean tensors of shape (N, 1, H, W), **True = missing** (to be restored).
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from ..data.core import DataFormatError
from ..data.readers import read_npy
from ..sampling import PGDTrace, ScoreFn, pgd, trajectory_twin
from ._images import check_images, model_device

__all__ = [
    "NOISE_MODELS", "MASK_KINDS", "add_gaussian_noise", "add_salt_pepper", "corrupt", "denoise",
    "denoise_trajectory", "center_mask", "box_mask", "pixel_mask", "load_mask", "make_mask", "occlude", "inpaint",
    "inpaint_trajectory",
]

NOISE_MODELS = ("gaussian", "salt-pepper")
MASK_KINDS = ("center", "boxes", "pixels", "file")


def _generator(seed: int | torch.Generator | None) -> torch.Generator:
    if isinstance(seed, torch.Generator):
        return seed
    return torch.Generator().manual_seed(0 if seed is None else int(seed))


# --------------------------------------------------------------------------------------------- noise
def add_gaussian_noise(x: Tensor, sigma: float, seed: int | torch.Generator | None = 0) -> Tensor:
    """``clip(x + σ·ξ, 0, 1)`` with ``ξ ~ N(0, I)`` drawn from ``seed`` (T Fig. 2.13 uses σ = 0.1)."""
    x = check_images(x)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"noise sigma must be a finite number >= 0, got {sigma}")
    noise = torch.randn(x.shape, generator=_generator(seed)).to(x)
    return (x + sigma * noise).clamp(0.0, 1.0)


def add_salt_pepper(x: Tensor, amount: float, seed: int | torch.Generator | None = 0, salt: float = 0.5) -> Tensor:
    """Replaces a fraction ``amount`` of the pixel positions (all channels together) by 1 (salt, with
    probability ``salt``) or 0 (pepper)."""
    x = check_images(x)
    if not 0 <= amount <= 1:
        raise ValueError(f"salt-and-pepper amount must lie in [0, 1], got {amount}")
    if not 0 <= salt <= 1:
        raise ValueError(f"salt fraction must lie in [0, 1], got {salt}")
    g = _generator(seed)
    shape = (x.shape[0], 1, *x.shape[2:])
    hit = torch.rand(shape, generator=g) < amount
    white = torch.rand(shape, generator=g) < salt
    value = white.to(x.dtype)
    return torch.where(hit.to(x.device), value.to(x).expand_as(x), x)


def corrupt(x: Tensor, noise: str, level: float, seed: int | torch.Generator | None = 0) -> Tensor:
    """Dispatches to a noise model: ``"gaussian"`` (``level`` = σ) or ``"salt-pepper"`` (``level`` = amount)."""
    if noise == "gaussian":
        return add_gaussian_noise(x, level, seed)
    if noise in ("salt-pepper", "salt_pepper", "sp"):
        return add_salt_pepper(x, level, seed)
    raise ValueError(f"unknown noise model {noise!r}; choose from {NOISE_MODELS}")


def _noisy_start(model: ScoreFn, x: Tensor, what: str) -> Tensor:
    return check_images(x, what).to(model_device(model))


def denoise(
    model: ScoreFn,
    x: Tensor,
    steps: int,
    step_size: float,
    *,
    eps: float = math.inf,
    norm: str = "l2",
    trace: PGDTrace | None = None,
) -> Tensor:
    """Denoises by PGD ascent from the noisy images ``x`` (T Sec. 2.5.3)::

        x_0 = x,   x_{i+1} = Proj_{B(x, eps) ∩ [0,1]}( x_i + λ · ∇f(x_i) / ||∇f(x_i)||_2 )

    ``steps`` is the strength (``||x_K - x||_2 <= λK``); a finite ``eps`` bounds the change outright. Returns the
    restored images on the model's device; :func:`denoise_trajectory` also returns the path. The same ascent from
    images of another domain is :func:`atebm.apps.translate`.
    """
    return pgd(model, _noisy_start(model, x, "noisy images"), steps=steps, step_size=step_size, norm=norm, eps=eps,
               trace=trace)


denoise_trajectory = trajectory_twin(denoise)


# --------------------------------------------------------------------------------------------- masks
def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    if len(shape) != 4:
        raise ValueError(f"mask shapes are given as the images' NCHW shape, got {tuple(shape)}")
    n, _, h, w = (int(s) for s in shape)
    if min(n, h, w) < 1:
        raise ValueError(f"empty image shape {tuple(shape)}")
    return n, h, w


def center_mask(shape: Sequence[int], size: float = 0.5) -> Tensor:
    """A centred square hole whose side is ``size`` times the smaller image side (at least one pixel)."""
    n, h, w = _check_shape(shape)
    if not 0 < size <= 1:
        raise ValueError(f"centre-square size must lie in (0, 1], got {size}")
    side = max(1, int(round(size * min(h, w))))
    top, left = (h - side) // 2, (w - side) // 2
    mask = torch.zeros(n, 1, h, w, dtype=torch.bool)
    mask[:, :, top:top + side, left:left + side] = True
    return mask


def box_mask(shape: Sequence[int], count: int = 3, min_size: float = 0.15, max_size: float = 0.35,
             seed: int | torch.Generator | None = 0) -> Tensor:
    """``count`` axis-aligned boxes per image at random positions; each side is a random fraction in
    [``min_size``, ``max_size``] of the image side. Boxes may overlap."""
    n, h, w = _check_shape(shape)
    if count < 1:
        raise ValueError(f"box count must be >= 1, got {count}")
    if not 0 < min_size <= max_size <= 1:
        raise ValueError(f"box sizes need 0 < min_size <= max_size <= 1, got {min_size}, {max_size}")
    g = _generator(seed)
    mask = torch.zeros(n, 1, h, w, dtype=torch.bool)
    frac = min_size + (max_size - min_size) * torch.rand(n, count, 2, generator=g)
    pos = torch.rand(n, count, 2, generator=g)
    for i in range(n):
        for j in range(count):
            bh = max(1, int(round(float(frac[i, j, 0]) * h)))
            bw = max(1, int(round(float(frac[i, j, 1]) * w)))
            top = int(float(pos[i, j, 0]) * (h - bh + 1))
            left = int(float(pos[i, j, 1]) * (w - bw + 1))
            mask[i, :, top:top + bh, left:left + bw] = True
    return mask


def pixel_mask(shape: Sequence[int], fraction: float = 0.5, seed: int | torch.Generator | None = 0) -> Tensor:
    """Each pixel position is missing independently with probability ``fraction``."""
    n, h, w = _check_shape(shape)
    if not 0 <= fraction <= 1:
        raise ValueError(f"missing-pixel fraction must lie in [0, 1], got {fraction}")
    return torch.rand(n, 1, h, w, generator=_generator(seed)) < fraction


def load_mask(path: str | os.PathLike, shape: Sequence[int], threshold: float = 0.5) -> Tensor:
    """Reads a user's mask: an image file (PNG, ...), or an NPY/NPZ array (key ``mask``, else ``x``).

    White (> ``threshold`` after scaling to [0, 1]) = missing. A single (H, W) mask is shared by every image; a
    stack (N, H, W) or (N, 1, H, W) gives one per image. The mask must have the images' height and width.
    """
    n, h, w = _check_shape(shape)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"mask file not found: {path}")
    if path.suffix.lower() == ".npy":
        array = read_npy(path)
    elif path.suffix.lower() == ".npz":
        try:
            array = read_npy(path, "mask")
        except DataFormatError as err:
            if "no array 'mask'" not in str(err):
                raise
            array = read_npy(path, "x")
    else:
        try:
            with Image.open(path) as image:
                array = np.asarray(image.convert("L"), dtype=np.float64) / 255.0
        except OSError as err:
            raise ValueError(f"{path} is not a readable image: {err}") from err
    if array.dtype == np.uint8:
        array = array / 255.0
    array = np.asarray(array, dtype=np.float64)
    if not np.isfinite(array).all():
        raise ValueError(f"mask {path} holds NaN or infinite values")
    if array.ndim == 2:
        array = array[None, None]
    elif array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4 or array.shape[1] != 1 or array.shape[2:] != (h, w) or array.shape[0] not in (1, n):
        raise ValueError(f"mask {path} has shape {array.shape}; expected (H, W), (N, H, W) or (N, 1, H, W) with "
                         f"H, W = {h}, {w} and N in (1, {n})")
    mask = torch.from_numpy(array > threshold)
    return mask.expand(n, 1, h, w).clone()


def make_mask(kind: str, shape: Sequence[int], *, size: float = 0.5, count: int = 3, min_size: float = 0.15,
              max_size: float = 0.35, fraction: float = 0.5, path: str | os.PathLike | None = None,
              seed: int | torch.Generator | None = 0) -> Tensor:
    """Builds a mask by name: ``center`` (``size``), ``boxes`` (``count``, ``min_size``, ``max_size``),
    ``pixels`` (``fraction``) or ``file`` (``path``)."""
    if kind == "center":
        return center_mask(shape, size)
    if kind == "boxes":
        return box_mask(shape, count, min_size, max_size, seed)
    if kind == "pixels":
        return pixel_mask(shape, fraction, seed)
    if kind == "file":
        if path is None:
            raise ValueError("mask kind 'file' needs a mask path")
        return load_mask(path, shape)
    raise ValueError(f"unknown mask kind {kind!r}; choose from {MASK_KINDS}")


def _mask_for(x: Tensor, mask: Tensor) -> Tensor:
    mask = torch.as_tensor(mask)
    if mask.dim() != 4 or mask.shape[1] not in (1, x.shape[1]) or mask.shape[2:] != x.shape[2:] \
            or mask.shape[0] not in (1, x.shape[0]):
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}; "
                         "expected (N or 1, 1 or C, H, W)")
    return (mask != 0).to(x.device)


def occlude(x: Tensor, mask: Tensor, fill: float | str = 0.0, seed: int | torch.Generator | None = 0) -> Tensor:
    """Replaces the missing pixels by ``fill``: a value in [0, 1], ``"noise"`` (uniform noise) or ``"mean"``
    (the mean of each image's visible pixels, per channel)."""
    x = check_images(x)
    m = _mask_for(x, mask).expand_as(x)
    if fill == "noise":
        value = torch.rand(x.shape, generator=_generator(seed)).to(x)
    elif fill == "mean":
        visible = (~m).to(x.dtype)
        mean = (x * visible).sum(dim=(2, 3), keepdim=True) / visible.sum(dim=(2, 3), keepdim=True).clamp_min(1)
        value = mean.expand_as(x)
    else:
        try:
            level = float(fill)
        except (TypeError, ValueError) as err:
            raise ValueError(f"fill must be a number in [0, 1], 'noise' or 'mean'; got {fill!r}") from err
        if not 0 <= level <= 1:
            raise ValueError(f"fill value must lie in [0, 1], got {level}")
        value = torch.full_like(x, level)
    return torch.where(m, value, x)


def _occluded_start(model: ScoreFn, x: Tensor, mask: Tensor) -> tuple[Tensor, Tensor]:
    x = check_images(x, "occluded images").to(model_device(model))
    return x, _mask_for(x, mask)


def inpaint(
    model: ScoreFn,
    x: Tensor,
    mask: Tensor,
    steps: int,
    step_size: float,
    *,
    norm: str = "l2",
    trace: PGDTrace | None = None,
) -> Tensor:
    """Inpaints by PGD ascent that moves only the missing pixels (``mask`` True) of ``x`` (T Sec. 2.5.3)::

        x_{i+1} = clamp( x_i + λ · M ⊙ ∇f(x_i) / ||M ⊙ ∇f(x_i)||_2 ),   visible pixels fixed

    ``x`` is the occluded image (see :func:`occlude` for the fill of the hole). Visible pixels are returned
    bit-identical to the input. ``mask`` has shape (N or 1, 1 or C, H, W). :func:`inpaint_trajectory` also returns
    the path.
    """
    x, m = _occluded_start(model, x, mask)
    return pgd(model, x, steps=steps, step_size=step_size, norm=norm, mask=m, trace=trace)


inpaint_trajectory = trajectory_twin(inpaint)
