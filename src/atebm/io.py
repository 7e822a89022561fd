"""Reading and writing image arrays: NPZ (key ``x``, float32, [0, 1], NCHW) beside PNG grids, GIF animations.

Every command that produces images writes them through :func:`save_images`, so outputs always come as
``<name>.npz`` + ``<name>.png``.
"""
from __future__ import annotations

import math
import os
import zipfile
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor

__all__ = ["save_npz", "load_array", "make_grid", "save_grid", "save_images", "save_gif", "to_uint8"]

_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


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
    np.savez_compressed(path, x=x, **{k: np.asarray(v) for k, v in extra.items()})
    return path


def load_array(path: str | os.PathLike, key: str = "x") -> Tensor:
    """Loads images as float32 [0, 1] NCHW from an NPZ (``key``), an NPY or a folder of image files.

    uint8 arrays are divided by 255; NHWC arrays (last axis 1 or 3) are transposed; (N, H, W) gets a channel.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"input not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix.lower() in _IMAGE_SUFFIXES)
        if not files:
            raise ValueError(f"folder {path} contains no image files ({', '.join(sorted(_IMAGE_SUFFIXES))})")
        arrays = [np.asarray(Image.open(f).convert("RGB")) for f in files]
        shapes = {a.shape for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"images in {path} have different sizes {sorted(shapes)[:3]}...; resize them first")
        array = np.stack(arrays)
    elif path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as archive:
                if key not in archive.files:
                    raise ValueError(f"{path} has no array '{key}' (it has {archive.files})")
                array = archive[key]
        except (OSError, EOFError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path} is not a readable NPZ file: {err}") from err
    elif path.suffix == ".npy":
        try:
            array = np.load(path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as err:
            raise ValueError(f"{path} is not a readable NPY file: {err}") from err
    else:
        raise ValueError(f"{path}: expected an .npz, .npy or a folder of images")
    return _to_nchw(array, str(path))


def _to_nchw(array: np.ndarray, name: str) -> Tensor:
    if array.dtype == np.uint8:
        array = array.astype(np.float32) / 255.0
    elif not np.issubdtype(array.dtype, np.floating):
        raise ValueError(f"{name}: expected uint8 or float images, got dtype {array.dtype}")
    array = np.asarray(array, dtype=np.float32)
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise ValueError(f"{name}: expected images shaped NCHW, NHWC or NHW; got {array.shape}")
    if array.shape[1] not in (1, 3) and array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if not np.isfinite(array).all():
        raise ValueError(f"{name}: contains NaN or infinite values")
    lo, hi = float(array.min()), float(array.max())
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{name}: values must lie in [0, 1] (or be uint8); found [{lo:.3g}, {hi:.3g}]")
    return torch.from_numpy(np.ascontiguousarray(array)).clamp(0, 1)


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
        image = image.resize((image.width * scale, image.height * scale), Image.NEAREST)
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
    images = [_pil(make_grid(f, nrow), scale).convert("P", palette=Image.ADAPTIVE) for f in frames]
    if not images:
        raise ValueError("save_gif needs at least one frame")
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path
