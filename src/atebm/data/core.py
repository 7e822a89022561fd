"""Shared pieces of the data package: the :class:`ImageSet` container, resizing, grey/colour conversion,
Gaussian blur and the seeding rule every random source follows.

Conventions (every source and reader): images are ``float32`` tensors in ``[0, 1]``, shaped ``NCHW``, with
``C`` 1 (grey) or 3 (RGB); labels are ``int64`` or ``None``.
"""
from __future__ import annotations

import math
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ImageSet", "DataFormatError", "resize", "to_channels", "blur", "rng_for", "images_from_array",
           "labels_from_array", "stratified_split", "LUMA_WEIGHTS", "SPLIT_SEED"]

#: ITU-R BT.601 luma weights used for colour -> grey: Y = 0.299 R + 0.587 G + 0.114 B.
LUMA_WEIGHTS = (0.299, 0.587, 0.114)
#: Float images may stray this far outside [0, 1] (rounding) before they are rejected; they are then clipped.
RANGE_TOLERANCE = 1e-4
#: The fixed splits of the named data sets (:func:`stratified_split`) are drawn once from this seed (a constant:
#: they never move with the user's seed).
SPLIT_SEED = 20240611


class DataFormatError(ValueError):
    """A data file (or an array read from one) is not in the format its reader expects: truncated, corrupt,
    another format, or holding values images cannot have. The message names the file and the problem."""


def _reason(err: BaseException) -> str:
    """``"Type: message"`` of an exception raised by a parser, on one line (some span several)."""
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:300]}" if text else type(err).__name__


def images_from_array(array: np.ndarray, where: str) -> Tensor:
    """Image array of a file -> float32 [0, 1] NCHW tensor; ``where`` names the file in error messages.

    ``uint8`` is divided by 255; floating arrays must be finite and lie in ``[0, 1]`` (up to
    :data:`RANGE_TOLERANCE`, then clipped). Shapes: NCHW, NHWC (last axis 1 or 3, when axis 1 is neither)
    and NHW (grey). Anything else raises :class:`DataFormatError`.
    """
    if not isinstance(array, np.ndarray):
        raise DataFormatError(f"{where}: expected an array of images, got {type(array).__name__}")
    if array.dtype != np.uint8 and not np.issubdtype(array.dtype, np.floating):
        raise DataFormatError(f"{where}: images must be uint8 (0..255) or floats in [0, 1]; got dtype {array.dtype}")
    shape = array.shape
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise DataFormatError(f"{where}: expected images shaped NCHW, NHWC or NHW; got shape {shape}")
    if array.shape[1] not in (1, 3) and array.shape[-1] in (1, 3):
        array = array.transpose(0, 3, 1, 2)
    if array.shape[1] not in (1, 3):
        raise DataFormatError(f"{where}: images must have 1 or 3 channels; got shape {shape}")
    if array.shape[0] == 0 or min(array.shape[2:]) < 1:
        raise DataFormatError(f"{where}: holds no images (shape {shape})")
    if array.dtype == np.uint8:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32) / np.float32(255.0))
    finite = np.isfinite(array)  # checked in the file's own precision, before the cast to float32
    if not finite.all():
        bad = array[~finite]
        kinds = ", ".join(k for k, hit in (("NaN", np.isnan(bad).any()), ("inf", np.isinf(bad).any())) if hit)
        raise DataFormatError(f"{where}: contains {int(bad.size)} non-finite values ({kinds}); images must be "
                              "finite floats in [0, 1]")
    lo, hi = float(array.min()), float(array.max())
    if lo < -RANGE_TOLERANCE or hi > 1 + RANGE_TOLERANCE:
        raise DataFormatError(f"{where}: values must lie in [0, 1] (or be uint8); found [{lo:.4g}, {hi:.4g}]")
    values = np.clip(np.ascontiguousarray(array, dtype=np.float32), 0.0, 1.0)
    return torch.from_numpy(values)


def labels_from_array(array: np.ndarray, count: int, where: str) -> Tensor:
    """One non-negative integer label per image, as int64; :class:`DataFormatError` otherwise."""
    if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.integer) or array.shape != (count,):
        shape = getattr(array, "shape", None)
        raise DataFormatError(f"{where}: must hold one integer label per image ({count}); got "
                              f"{getattr(array, 'dtype', type(array).__name__)} of shape {shape}")
    if count and int(array.min()) < 0:
        raise DataFormatError(f"{where}: labels must be non-negative; found {int(array.min())}")
    if count and np.issubdtype(array.dtype, np.unsignedinteger) and int(array.max()) > np.iinfo(np.int64).max:
        raise DataFormatError(f"{where}: label {int(array.max())} does not fit in int64")
    return torch.from_numpy(array.astype(np.int64))


@dataclass
class ImageSet:
    """A set of images held in memory.

    ``x`` is float32 ``[0, 1]`` NCHW; ``y`` holds one int64 label per image or is ``None``; ``name`` says where
    the images came from (e.g. ``"mnist/train"``). It satisfies the trainer's data protocol (``len`` and
    ``get_batch``), so it can be passed to :class:`atebm.training.Trainer` directly.
    """

    x: Tensor
    y: Tensor | None = None
    name: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.x, Tensor) or self.x.dim() != 4:
            shape = tuple(self.x.shape) if isinstance(self.x, Tensor) else type(self.x).__name__
            raise ValueError(f"ImageSet {self.name!r}: x must be an NCHW tensor, got {shape}")
        if self.x.dtype != torch.float32:
            raise ValueError(f"ImageSet {self.name!r}: x must be float32, got {self.x.dtype}")
        if self.y is not None:
            if not isinstance(self.y, Tensor) or self.y.dim() != 1 or len(self.y) != len(self.x):
                raise ValueError(f"ImageSet {self.name!r}: y must be a 1-D tensor with one label per image "
                                 f"({len(self.x)}), got {getattr(self.y, 'shape', type(self.y).__name__)}")
            if self.y.dtype != torch.int64:
                raise ValueError(f"ImageSet {self.name!r}: y must be int64, got {self.y.dtype}")

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def get_batch(self, indices: Tensor | Sequence[int] | np.ndarray) -> Tensor:
        """The images at ``indices`` (the trainer's data protocol)."""
        return self.x[torch.as_tensor(indices, dtype=torch.long)]

    def load(self, n: int | None = None, seed: int = 0) -> ImageSet:
        """Itself, or its first ``n`` images after a seeded shuffle (same call as on the lazy sources)."""
        if n is None:
            return self
        return take(self, n, rng_for(seed, self.name, "take"))

    def __repr__(self) -> str:  # the default repr would print whole tensors
        labels = "no labels" if self.y is None else f"{int(self.y.max()) + 1 if len(self.y) else 0} classes"
        return f"ImageSet(name={self.name!r}, x={tuple(self.x.shape)}, {labels})"


def rng_for(seed: int, *keys: str | int) -> np.random.Generator:
    """The random generator for one (seed, source, split, ...) combination.

    Keys are hashed with CRC-32 (stable across processes and Python versions, unlike ``hash``) and fed to
    NumPy's ``SeedSequence``, so e.g. ``photos/train`` and ``photos/test`` with the same seed draw independent
    streams, and every result depends only on its arguments.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    words = [int(seed)] + [k if isinstance(k, int) else zlib.crc32(str(k).encode()) for k in keys]
    return np.random.default_rng(words)


def take(images: ImageSet, n: int | None, rng: np.random.Generator, name: str | None = None) -> ImageSet:
    """The first ``n`` items of a permutation drawn from ``rng`` (all of them, shuffled, when ``n`` is None)."""
    total = len(images)
    if n is None:
        n = total
    _check_count(n, what=f"n for {images.name or 'this source'}")
    if n > total:
        raise ValueError(f"{images.name or 'this source'} has {total} images; n={n} asked for more")
    index = torch.from_numpy(rng.permutation(total)[:n])
    return ImageSet(images.x[index].contiguous(), None if images.y is None else images.y[index],
                    name or images.name, dict(images.meta))


def stratified_split(labels: np.ndarray, fractions: dict[str, float] | None = None,
                      counts: Mapping[str, int | None] | None = None) -> dict[str, np.ndarray]:
    """Fixed per-class split of indices: ``counts`` per class (``None``: the rest of the class), or
    ``fractions`` of each class (the last split takes the remainder). Each split's indices are sorted, so the
    result depends on nothing but the labels."""
    rng = np.random.default_rng(SPLIT_SEED)
    parts: dict[str, list[np.ndarray]] = {}
    names = list(counts or fractions or {})
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        start = 0
        for i, split in enumerate(names):
            if counts is not None:
                wanted = counts[split]
                size = len(members) - start if wanted is None else wanted
                if size > len(members) - start:
                    raise DataFormatError(f"class {cls} has {len(members)} images, too few for the fixed split "
                                          f"{counts}")
            elif i == len(names) - 1:
                size = len(members) - start
            else:
                assert fractions is not None
                size = int(round(fractions[split] * len(members)))
            parts.setdefault(split, []).append(members[start:start + size])
            start += size
    return {split: np.sort(np.concatenate(chunks)) for split, chunks in parts.items()}


def _check_count(n: object, what: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{what} must be a positive integer, got {n!r}")
    return int(n)


def _size_pair(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        pair = (int(size), int(size))
    elif isinstance(size, Sequence) and len(size) == 2 and all(isinstance(s, (int, np.integer)) for s in size):
        pair = (int(size[0]), int(size[1]))
    else:
        raise ValueError(f"size must be an integer or a (height, width) pair, got {size!r}")
    if min(pair) < 1:
        raise ValueError(f"size must be positive, got {size!r}")
    return pair


def resize(x: Tensor, size: int | Sequence[int]) -> Tensor:
    """Resizes NCHW images to ``size`` (an int for square output, or ``(height, width)``).

    Bilinear interpolation with antialiasing (``F.interpolate(..., antialias=True)``): when shrinking, the
    triangle kernel is widened by the scale factor so it averages over every source pixel it covers instead of
    aliasing. The kernel is non-negative, so values stay in [0, 1]. The same size returns ``x`` itself.
    """
    if x.dim() != 4:
        raise ValueError(f"resize expects NCHW images, got shape {tuple(x.shape)}")
    height, width = _size_pair(size)
    if x.shape[-2:] == (height, width):
        return x
    if x.shape[0] == 0:
        return x.new_zeros(0, x.shape[1], height, width)
    out = F.interpolate(x.float(), size=(height, width), mode="bilinear", antialias=True, align_corners=False)
    return out.clamp_(0.0, 1.0)


def to_channels(x: Tensor, channels: int) -> Tensor:
    """Converts NCHW images between grey (1 channel) and colour (3 channels).

    Grey -> colour repeats the channel; colour -> grey takes the BT.601 luma ``0.299 R + 0.587 G + 0.114 B``.
    """
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    if x.dim() != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"expected NCHW images with 1 or 3 channels, got shape {tuple(x.shape)}")
    have = x.shape[1]
    if have == channels:
        return x
    if channels == 3:
        return x.expand(-1, 3, -1, -1).contiguous()
    weights = torch.tensor(LUMA_WEIGHTS, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * weights).sum(dim=1, keepdim=True).clamp_(0.0, 1.0)


def gaussian_kernel1d(sigma: float, dtype: torch.dtype = torch.float32, device: torch.device | None = None) -> Tensor:
    """The normalised 1-D Gaussian ``g(u) = exp(-u^2 / (2 sigma^2)) / Z`` for ``u = -r..r``, ``r = ceil(3 sigma)``."""
    radius = max(1, int(math.ceil(3.0 * sigma)))
    u = torch.arange(-radius, radius + 1, dtype=torch.float64)
    kernel = torch.exp(-0.5 * (u / sigma) ** 2)
    return (kernel / kernel.sum()).to(dtype=dtype, device=device)


def blur(x: Tensor, sigma: float) -> Tensor:
    """Gaussian blur of NCHW images; ``sigma`` in pixels, 0 returns ``x`` unchanged.

    Computes ``(G_sigma * x)(i, j) = sum_{u,v} g(u) g(v) x(i - u, j - v)`` with the separable normalised kernel
    of :func:`gaussian_kernel1d` (truncated at 3 sigma), one channel at a time. Borders are reflected (or
    replicated when the kernel is wider than the image), so a constant image stays constant and the mean
    intensity is kept. Used to make blurred generation seeds (METHOD Sec. 3: samples started from blurred
    data or patches).
    """
    if not isinstance(x, Tensor) or x.dim() != 4:
        raise ValueError(f"blur expects an NCHW tensor, got {getattr(x, 'shape', type(x).__name__)}")
    sigma = float(sigma)
    if not math.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite number >= 0, got {sigma}")
    if sigma == 0 or x.numel() == 0:
        return x
    n, c, h, w = x.shape
    kernel = gaussian_kernel1d(sigma, dtype=x.dtype if x.is_floating_point() else torch.float32, device=x.device)
    radius = (len(kernel) - 1) // 2
    flat = x.reshape(n * c, 1, h, w).to(kernel.dtype)
    mode = "reflect" if radius < min(h, w) else "replicate"
    flat = F.pad(flat, (radius, radius, radius, radius), mode=mode)
    flat = F.conv2d(flat, kernel.view(1, 1, 1, -1))
    flat = F.conv2d(flat, kernel.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)
