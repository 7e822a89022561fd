"""Shared image plumbing for the applications: input checks, device placement and conversion of images from
another domain to a model's input format (channels, size)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from ..data import resize, to_channels

__all__ = ["check_images", "model_device", "model_channels", "conform"]


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
    """Input channels recorded in a score model's spec (``kwargs.in_channels``), or None when unknown. For a
    composition, the channels its models agree on."""
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
    """Converts images from another domain to a model's input format: RGB -> grey by BT.601 luma or
    grey -> RGB by repetition (:func:`atebm.data.to_channels`), then antialiased bilinear resizing to ``size``
    (an int for square images, or (H, W); :func:`atebm.data.resize`). ``None`` keeps that property."""
    x = check_images(x)
    if channels is not None and channels != x.shape[1]:
        if {channels, x.shape[1]} != {1, 3}:
            raise ValueError(f"cannot convert {x.shape[1]}-channel images to {channels} channels (only RGB <-> grey)")
        x = to_channels(x, channels)
    if size is not None:
        x = resize(x, size)
    return x
