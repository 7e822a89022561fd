"""Shared image plumbing of the applications: input checks, where a score model runs, the input format it
records (channels and size, from ``model.meta``) and conversion of images from another domain to that format."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data import resize, to_channels
from ..sampling import check_inputs, declared_input_shape

__all__ = ["check_images", "model_device", "model_channels", "model_size", "conform"]


def check_images(x: Any, what: str = "images") -> Tensor:
    """Returns ``x`` (a tensor or NumPy array) as a detached floating tensor, shape (N, C, H, W), values finite and
    in [0, 1] (the library's input convention; :func:`atebm.sampling.check_inputs`). Raises TypeError for another
    type or dtype and ValueError for another shape, an empty batch, NaN/inf or values outside [0, 1], each
    naming the problem."""
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    check_inputs(x, what=what)
    if x.dim() != 4:
        raise ValueError(f"{what} must be NCHW (4 dimensions), got shape {tuple(x.shape)}")
    if x.numel() == 0:
        raise ValueError(f"{what} is empty (shape {tuple(x.shape)})")
    return x.detach()


def model_device(score: object) -> torch.device:
    """The device of the first parameter or buffer of an ``nn.Module`` score (CPU for plain callables)."""
    if isinstance(score, nn.Module):
        for tensor in list(score.parameters()) + list(score.buffers()):
            return tensor.device
    return torch.device("cpu")


def _agreed(score: object, own: Callable[[Any], Any], what: str) -> Any:
    """``own(score)``, or for a composition (an object with ``models``) the value its models agree on."""
    value = own(score)
    if value is not None:
        return value
    models = getattr(score, "models", None)
    if models is None:
        return None
    found = {_agreed(m, own, what) for m in models} - {None}
    if len(found) > 1:
        raise ValueError(f"the composed models disagree on their input {what}: {sorted(found, key=str)}")
    return found.pop() if found else None


def model_channels(score: object) -> int | None:
    """Input channels of a score model (:func:`atebm.sampling.declared_input_shape`: ``model.meta``, else the
    spec's ``in_channels``); for a composition, the channels its models agree on; None when unknown."""
    return _agreed(score, lambda s: declared_input_shape(s)[0], "channels")


def model_size(score: object) -> tuple[int, int] | None:
    """Input (height, width) of a score model, from ``model.meta["size"]``
    (:func:`atebm.sampling.declared_input_shape`); for a composition, the size its models agree on; None when
    the model does not record one."""
    return _agreed(score, lambda s: declared_input_shape(s)[1], "size")


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
