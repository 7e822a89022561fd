"""Writing image arrays: NPZ (key ``x``, float32, [0, 1], NCHW) beside PNG grids, GIF animations.

Every command that produces images writes them through :func:`save_images`, so outputs always come as
``<name>.npz`` + ``<name>.png``. Reading them back (and any image folder or array a user brings) is
:func:`atebm.data.read_array` / :func:`atebm.data.read_image_folder`.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = ["save_npz", "make_grid", "save_grid", "save_images", "save_gif", "to_uint8"]


def _check_images(x: Tensor | np.ndarray, what: str = "images") -> Tensor:
    x = torch.as_tensor(x).detach().float().cpu()
    if x.dim() != 4:
        raise ValueError(f"{what} must be NCHW, got shape {tuple(x.shape)}")
    return x


def save_npz(path: str | os.PathLike, x: Tensor | np.ndarray, **extra: np.ndarray) -> Path:
    """Writes ``x`` as float32 in [0, 1] under key ``x`` (plus any extra arrays)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    x = _check_images(x).clamp(0, 1).numpy().astype(np.float32)
    arrays: dict[str, Any] = {"x": x, **{k: np.asarray(v) for k, v in extra.items()}}
    np.savez_compressed(path, **arrays)
    return path


def to_uint8(x: Tensor) -> np.ndarray:
    """NCHW float [0, 1] -> NHWC uint8 (grey images keep one channel)."""
    x = _check_images(x).clamp(0, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255 + 0.5).astype(np.uint8)


def make_grid(x: Tensor, nrow: int | None = None, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """Tiles NCHW images into one HxWxC uint8 array, ``nrow`` images per row."""
    x = _check_images(x)
    n, c, h, w = x.shape
    nrow = nrow or max(1, int(math.ceil(math.sqrt(n))))
    rows = int(math.ceil(n / nrow))
    grid = torch.full((c, rows * (h + padding) + padding, nrow * (w + padding) + padding), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, top:top + h, left:left + w] = x[i]
    return to_uint8(grid[None])[0]


def _pil(array: np.ndarray, scale: int) -> Image.Image:
    image = Image.fromarray(array[..., 0] if array.shape[-1] == 1 else array)
    if scale > 1:
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    return image


def save_grid(path: str | os.PathLike, x: Tensor, nrow: int | None = None, scale: int = 1) -> Path:
    """Writes a PNG grid of NCHW images (``scale`` enlarges small images with nearest-neighbour)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _pil(make_grid(x, nrow), scale).save(path)
    return path


def save_images(out_dir: str | os.PathLike, name: str, x: Tensor, nrow: int | None = None, scale: int = 2,
                max_in_grid: int = 256) -> tuple[Path, Path]:
    """The standard output pair: ``<name>.npz`` (all images) and ``<name>.png`` (a grid of the first ones)."""
    out_dir = Path(out_dir)
    npz = save_npz(out_dir / f"{name}.npz", x)
    png = save_grid(out_dir / f"{name}.png", _check_images(x)[:max_in_grid], nrow=nrow, scale=scale)
    return npz, png


def save_gif(path: str | os.PathLike, frames: Sequence[Tensor] | Tensor, nrow: int | None = None, scale: int = 2,
             duration_ms: int = 120) -> Path:
    """Animated GIF of a trajectory: ``frames[t]`` is an NCHW batch shown as one grid per frame."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images = [_pil(make_grid(f, nrow), scale).convert("P", palette=Image.Palette.ADAPTIVE) for f in frames]
    if not images:
        raise ValueError("save_gif needs at least one frame")
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path
