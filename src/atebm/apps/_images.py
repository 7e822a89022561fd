"""Shared image plumbing for the applications: input checks, device placement, channel/size conversion and
the Gaussian blur used for blurred generation seeds (E supp. Sec. 4.3)."""
from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["check_images", "model_device", "model_channels", "conform", "gaussian_blur"]


def check_images(x: Tensor, what: str = "images") -> Tensor:
    """Returns ``x`` as a detached floating tensor, shape (N, C, H, W); raises ValueError otherwise."""
    if not isinstance(x, Tensor):
        x = torch.as_tensor(x)
    if not torch.is_floating_point(x):
        raise ValueError(f"{what} must be floating-point in [0, 1], got dtype {x.dtype}")
    if x.dim() != 4:
        raise ValueError(f"{what} must be NCHW, got shape {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{what} is empty")
    return x.detach()


def model_device(score: object) -> torch.device:
    """The device of the first parameter or buffer of an ``nn.Module`` score (CPU for plain callables)."""
    if isinstance(score, nn.Module):
        for tensor in list(score.parameters()) + list(score.buffers()):
            return tensor.device
    return torch.device("cpu")


def model_channels(score: object) -> int | None:
    """Input channels recorded in a score model's spec (``kwargs.in_channels``), or None when unknown."""
    spec = getattr(score, "spec", None)
    if isinstance(spec, dict):
        value = (spec.get("kwargs") or {}).get("in_channels")
        if value is not None:
            return int(value)
    models = getattr(score, "models", None)
    if models is not None:
        found = {model_channels(m) for m in models} - {None}
        if len(found) == 1:
            return found.pop()
    return None


def conform(x: Tensor, channels: int | None = None, size: int | tuple[int, int] | None = None) -> Tensor:
    """Converts images from another domain to a model's input format.

    RGB -> grey uses the ITU-R 601 luma weights (0.299, 0.587, 0.114); grey -> RGB repeats the channel; other
    channel changes are refused. ``size`` (an int for square images, or (H, W)) resizes with area averaging
    when shrinking and bilinear interpolation when enlarging.
    """
    x = check_images(x)
    c = x.shape[1]
    if channels is not None and channels != c:
        if c == 3 and channels == 1:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
            x = (x * weights).sum(dim=1, keepdim=True)
        elif c == 1 and channels == 3:
            x = x.repeat(1, 3, 1, 1)
        else:
            raise ValueError(f"cannot convert {c}-channel images to {channels} channels (only RGB <-> grey)")
    if size is not None:
        target = (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))
        if min(target) < 1:
            raise ValueError(f"size must be positive, got {size}")
        if tuple(x.shape[-2:]) != target:
            shrinking = target[0] <= x.shape[-2] and target[1] <= x.shape[-1]
            if shrinking:
                x = F.interpolate(x, size=target, mode="area")
            else:
                x = F.interpolate(x, size=target, mode="bilinear", align_corners=False)
    return x.clamp(0.0, 1.0)


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur of NCHW images with standard deviation ``sigma`` pixels.

    The kernel ``k(t) ∝ exp(-t² / 2σ²)`` is truncated at ``±ceil(3σ)`` (and at the image size) and normalised to
    sum 1; borders are replicated, so a constant image stays constant. ``sigma = 0`` returns ``x`` unchanged.
    Used for the blurred generation seeds of E supp. Sec. 4.3 (σ = 10 at 256 px).
    """
    x = check_images(x)
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"blur sigma must be a finite number >= 0, got {sigma}")
    if sigma == 0:
        return x
    n, c, h, w = x.shape
    out = x.reshape(n * c, 1, h, w)
    for dim, length in ((2, h), (3, w)):
        radius = min(int(math.ceil(3 * sigma)), length - 1)
        if radius < 1:
            continue
        t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
        kernel = torch.exp(-0.5 * (t / sigma) ** 2)
        kernel = kernel / kernel.sum()
        if dim == 2:
            out = F.conv2d(F.pad(out, (0, 0, radius, radius), mode="replicate"), kernel.view(1, 1, -1, 1))
        else:
            out = F.conv2d(F.pad(out, (radius, radius, 0, 0), mode="replicate"), kernel.view(1, 1, 1, -1))
    return out.reshape(n, c, h, w)
