"""The natural-photo patch distribution ``p_0``: random crops, at random scales, of the photographs bundled with
scikit-image (``skimage.data``; each image's docstring states public domain, CC0 or no known copyright
restrictions) and scikit-learn (``load_sample_images``: china.jpg and flower.jpg, Flickr photos under CC BY 2.0
per sklearn/datasets/images/README.txt). Nothing is downloaded: only
photographs that ship inside the installed wheels are used.

It stands in for 80M Tiny Images (METHOD Sec. 2, the out-of-distribution "seeds" and negatives) at CPU
scale. One patch is drawn as:

1. a photo, uniformly from the split's list (every photo weighs the same, whatever its size);
2. a crop side ``s`` log-uniform in ``[MIN_CROP, min(H, W)]`` (fine texture up to the whole scene; for a
   non-square output the crop has the output's aspect and ``s`` is its longer side);
3. a top-left corner uniform over the positions where the ``s x s`` crop fits;
4. one of the 8 symmetries of the square (identity, rotations by 90/180/270 degrees, and their mirrors), uniform
   (for a non-square output, the 4 that keep its axes: identity, mirrors, rotation by 180 degrees);
5. resampled to ``size x size``: the crop is read from the level of a 2x image pyramid (each level an
   antialiased half of the previous) whose pixels are at most 2x smaller than the output's, with bilinear
   interpolation, so shrinking does not alias.

Photos are split by photo: a test patch never comes from a training photograph. Both splits hold grey and
colour photographs; colour is converted to grey (BT.601 luma) for ``channels=1`` and grey is repeated for
``channels=3``.
"""
from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from .core import _check_count, _size_pair, to_channels

__all__ = ["PHOTOS_TRAIN", "PHOTOS_TEST", "PHOTOS", "MIN_CROP", "DEFAULT_COUNTS", "photo", "photo_patches"]

#: Training photographs: 9 colour, 8 grey.
PHOTOS_TRAIN = (
    "astronaut", "chelsea", "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel", "logo",
    "motorcycle", "china",
    "coins", "moon", "page", "text", "grass", "brick", "cell", "microaneurysms",
)
#: Test photographs: 3 colour, 3 grey (a quarter of the 23).
PHOTOS_TEST = ("coffee", "rocket", "flower", "camera", "gravel", "clock")
PHOTOS = {"train": PHOTOS_TRAIN, "test": PHOTOS_TEST}
#: Smallest crop side in pixels of the original photograph.
MIN_CROP = 8.0
#: Patches drawn when ``n`` is not given.
DEFAULT_COUNTS = {"train": 20000, "test": 5000}


def _skimage(name: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        from skimage import data

        image = getattr(data, name)()
        return image[0] if isinstance(image, tuple) else image  # stereo_motorcycle -> (left, right, disparity)
    return read


def _sklearn(filename: str) -> Callable[[], np.ndarray]:
    def read() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)
    return read


_READERS: dict[str, Callable[[], np.ndarray]] = {
    **{name: _skimage(name) for name in (
        "astronaut", "chelsea", "immunohistochemistry", "hubble_deep_field", "retina", "colorwheel", "logo",
        "coins", "moon", "page", "text", "grass", "brick", "cell", "microaneurysms", "coffee", "rocket",
        "camera", "gravel", "clock")},
    "motorcycle": _skimage("stereo_motorcycle"),  # the left view of the stereo pair
    "china": _sklearn("china.jpg"),
    "flower": _sklearn("flower.jpg"),
}


def photo(name: str) -> np.ndarray:
    """One bundled photograph as uint8 ``(H, W)`` (grey) or ``(H, W, 3)`` (colour; an alpha channel is dropped)."""
    if name not in _READERS:
        raise ValueError(f"unknown photo {name!r}; the bundled ones are {', '.join(sorted(_READERS))}")
    try:
        image = np.asarray(_READERS[name]())
    except Exception as err:  # a missing optional download or a broken install: say which photo
        raise RuntimeError(f"bundled photo {name!r} could not be read offline: {err}") from err
    if image.dtype != np.uint8:
        raise ValueError(f"bundled photo {name!r} has dtype {image.dtype}, expected uint8")
    if image.ndim == 3 and image.shape[2] == 4:
        image = image[..., :3]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] != 3):
        raise ValueError(f"bundled photo {name!r} has shape {image.shape}, expected (H, W) or (H, W, 3)")
    return image


@lru_cache(maxsize=64)
def _pyramid(name: str, channels: int) -> tuple[Tensor, ...]:
    """Level 0 is the photo as float [0, 1] (1, C, H, W); level k+1 is level k halved with an antialiased
    (triangle-kernel) resize, down to a short side of 4 pixels."""
    image = photo(name)
    x = torch.from_numpy(np.array(image, dtype=np.float32)).div_(255.0)
    x = x[None, None] if x.dim() == 2 else x.permute(2, 0, 1)[None]
    levels = [to_channels(x, channels).contiguous()]
    while min(levels[-1].shape[-2:]) >= 8:
        h, w = levels[-1].shape[-2:]
        levels.append(F.interpolate(levels[-1], size=(h // 2, w // 2), mode="bilinear", antialias=True,
                                    align_corners=False))
    return tuple(levels)


# The 8 symmetries of the square acting on the output's unit coordinates (a = row, b = column): optionally
# swap the axes (transpose), then optionally mirror each axis (see _theta).
_SWAP = np.array([0, 0, 0, 0, 1, 1, 1, 1], dtype=bool)
_FLIP_A = np.array([0, 0, 1, 1, 0, 0, 1, 1], dtype=bool)
_FLIP_B = np.array([0, 1, 0, 1, 0, 1, 0, 1], dtype=bool)


def photo_patches(split: str, *, size: int | tuple[int, int] = 28, channels: int = 1,
                  n: int | None = None, rng: np.random.Generator | None = None, seed: int = 0,
                  min_crop: float = MIN_CROP) -> Tensor:
    """``n`` random patches (float32 [0, 1], ``(n, channels, size, size)``) of the ``split`` photographs.

    The sampling follows the module docstring; every random number comes from ``rng`` (or from a generator
    seeded with ``seed``), so the same generator state gives the same patches.
    """
    if split not in PHOTOS:
        raise ValueError(f"photos have splits 'train' and 'test'; got {split!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    n = _check_count(DEFAULT_COUNTS[split] if n is None else n)
    height, width = _size_pair(size)
    if not min_crop > 0:
        raise ValueError(f"min_crop must be positive, got {min_crop!r}")
    if rng is None:
        rng = np.random.default_rng(seed)
    names = PHOTOS[split]
    shapes = np.array([_pyramid(name, channels)[0].shape[-2:] for name in names], dtype=np.float64)

    # 1-4: every random number, drawn in one go (vectorised; the order is fixed, so results are reproducible)
    which = rng.integers(0, len(names), size=n)
    photo_h, photo_w = shapes[which, 0], shapes[which, 1]
    short = np.minimum(photo_h, photo_w)
    low = np.minimum(np.log(min_crop), np.log(short))
    side = np.exp(low + (np.log(short) - low) * rng.random(n))  # along the longer output axis
    longest = max(height, width)
    top = (photo_h - side * height / longest) * rng.random(n)
    left = (photo_w - side * width / longest) * rng.random(n)
    symmetry = rng.integers(0, 8, size=n)

    # the pyramid level whose pixels are at most 2x smaller than the output's
    scale = side / longest
    level = np.floor(np.log2(np.maximum(scale, 1.0))).astype(np.int64)

    out = torch.empty(n, channels, height, width)
    for p, name in enumerate(names):
        levels = _pyramid(name, channels)
        for lv in np.unique(level[which == p]):
            index = np.flatnonzero((which == p) & (level == lv))
            image = levels[min(int(lv), len(levels) - 1)]
            k = len(index)
            theta = _theta(top[index], left[index], side[index], symmetry[index], height, width,
                           float(shapes[p, 0]), float(shapes[p, 1]))
            grid = F.affine_grid(theta, [k, channels, height, width], align_corners=False)
            # one grid_sample call for the whole group: the k grids are stacked along the height axis
            sampled = F.grid_sample(image, grid.reshape(1, k * height, width, 2), mode="bilinear",
                                    padding_mode="border", align_corners=False)
            out[torch.from_numpy(index)] = sampled.reshape(channels, k, height, width).transpose(0, 1)
    return out.clamp_(0.0, 1.0)


def _theta(top: np.ndarray, left: np.ndarray, side: np.ndarray, symmetry: np.ndarray, out_h: int, out_w: int,
           photo_h: float, photo_w: float) -> Tensor:
    """Affine maps ``(k, 2, 3)`` for ``F.affine_grid`` from output to photo coordinates.

    Output pixel ``(i, j)`` has unit coordinates ``(a, b) = ((i + .5) / out_h, (j + .5) / out_w)``, i.e.
    ``a = (y_o + 1) / 2``, ``b = (x_o + 1) / 2`` in grid_sample's normalised coordinates. The symmetry maps
    ``(a, b)`` to ``(a', b')`` (transpose, then mirror: ``a' = f_a + (1 - 2 f_a) a``), and the pixel reads the
    photo at ``row = top + a' s_h``, ``col = left + b' s_w`` (pixel-edge units; the crop is
    ``s_h x s_w = s out_h / m x s out_w / m``, ``m = max(out_h, out_w)``), which is ``2 row / H - 1`` in
    normalised coordinates (``align_corners=False``), the same at every pyramid level. All of it is affine
    in ``(x_o, y_o)``.
    """
    longest = max(out_h, out_w)
    s_h, s_w = side * out_h / longest, side * out_w / longest
    swap = _SWAP[symmetry] if out_h == out_w else np.zeros(len(side), dtype=bool)
    flip_a, flip_b = _FLIP_A[symmetry].astype(np.float64), _FLIP_B[symmetry].astype(np.float64)
    # row = r0 + ra * a + rb * b and col = c0 + ca * a + cb * b (a, b the unit output coordinates)
    r0, c0 = top + s_h * flip_a, left + s_w * flip_b
    row_gain, col_gain = s_h * (1 - 2 * flip_a), s_w * (1 - 2 * flip_b)
    ra, rb = np.where(swap, 0.0, row_gain), np.where(swap, row_gain, 0.0)
    cb, ca = np.where(swap, 0.0, col_gain), np.where(swap, col_gain, 0.0)
    theta = np.stack([
        np.stack([cb / photo_w, ca / photo_w, 2 * c0 / photo_w - 1 + (ca + cb) / photo_w], axis=-1),
        np.stack([rb / photo_h, ra / photo_h, 2 * r0 / photo_h - 1 + (ra + rb) / photo_h], axis=-1),
    ], axis=1)
    return torch.from_numpy(theta).float()
