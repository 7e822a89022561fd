"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017, https://github.com/zalandoresearch/fashion-mnist; Zalando SE,
MIT licence) read from the IDX files of Debian's package ``dataset-fashion-mnist``
(``apt-get install dataset-fashion-mnist``: ``/usr/share/datasets/fashion-mnist/{train,t10k}-{images-idx3,
labels-idx1}-ubyte.gz``). Nothing is downloaded; without the package a ``FileNotFoundError`` says how to get
it (or read a copy of the files with ``idx:PATH``, :func:`atebm.data.read_idx`).

The files hold 60,000 training and 10,000 test images (28x28 grey, 10 classes of clothing, 6,000 training and
1,000 test images per class). Splits here: ``test`` is the test file; ``val`` is a fixed, stratified
:data:`FASHION_VAL_PER_CLASS` = 500 images per class (5,000) drawn from the training file once and for all
(:func:`~atebm.data.core.stratified_split`, seeded with the package's constant split seed, never with the user's
seed); ``train`` is the other 55,000.
"""
from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

from .core import (
    DataFormatError,
    ImageSet,
    _check_count,
    labels_from_array,
    resize,
    rng_for,
    stratified_split,
    to_channels,
)
from .idx import read_idx_array

__all__ = ["FASHION_MNIST_DIR", "FASHION_CLASSES", "FASHION_SPLITS", "FASHION_VAL_PER_CLASS", "FASHION_INSTALL",
           "FASHION_FILE_SIZES", "FASHION_SPLIT_SIZES", "fashion_raw", "fashion_split_indices", "load_fashion"]

#: Where Debian's ``dataset-fashion-mnist`` package puts the IDX files.
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
#: The command that installs them.
FASHION_INSTALL = "apt-get install dataset-fashion-mnist"
#: Class names by label (from the dataset's README).
FASHION_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                   "Ankle boot")
FASHION_SPLITS = ("train", "val", "test")
#: Images per class moved from the training file to the validation split.
FASHION_VAL_PER_CLASS = 500
#: Images in each file, and in each split.
FASHION_FILE_SIZES = {"train": 60_000, "test": 10_000}
FASHION_SPLIT_SIZES = {"train": 55_000, "val": 5_000, "test": 10_000}
_FILES = {"train": "train-images-idx3-ubyte.gz", "test": "t10k-images-idx3-ubyte.gz"}


@lru_cache(maxsize=4)
def fashion_raw(file: str, root: str = str(FASHION_MNIST_DIR)) -> tuple[np.ndarray, np.ndarray]:
    """The ``"train"`` or ``"test"`` file of ``root`` as ``(uint8 (N, 28, 28), int64 (N,))``."""
    if file not in _FILES:
        raise ValueError(f"Fashion-MNIST files are 'train' and 't10k' (file='train' or 'test'); got {file!r}")
    folder = Path(root)
    images = folder / _FILES[file]
    labels = folder / _FILES[file].replace("images-idx3", "labels-idx1")
    missing = [p.name for p in (images, labels) if not p.is_file()]
    if missing:
        raise FileNotFoundError(f"Fashion-MNIST not found: {folder} lacks {', '.join(missing)}. Install it with "
                                f"`{FASHION_INSTALL}` (Debian/Ubuntu), or read your own copy of the IDX files with "
                                "the source idx:PATH")
    pixels = read_idx_array(images)
    if pixels.dtype != np.uint8 or pixels.shape != (FASHION_FILE_SIZES[file], 28, 28):
        raise DataFormatError(f"{images}: Fashion-MNIST {file} images are uint8 ({FASHION_FILE_SIZES[file]}, 28, 28); "
                              f"the file holds {pixels.dtype} {pixels.shape}")
    targets = labels_from_array(read_idx_array(labels), len(pixels), str(labels)).numpy()
    if targets.max() >= len(FASHION_CLASSES):
        raise DataFormatError(f"{labels}: Fashion-MNIST labels lie in 0..{len(FASHION_CLASSES) - 1}, found "
                              f"{int(targets.max())}")
    return pixels, targets


@lru_cache(maxsize=4)
def fashion_split_indices(root: str = str(FASHION_MNIST_DIR)) -> dict[str, np.ndarray]:
    """Indices into the training file of the fixed ``train`` and ``val`` splits (sorted)."""
    return stratified_split(fashion_raw("train", root)[1], counts={"val": FASHION_VAL_PER_CLASS, "train": None})


def load_fashion(split: str = "train", *, size: int | tuple[int, int] = 28, channels: int = 1,
                 n: int | None = None, seed: int = 0, root: str | os.PathLike | None = None) -> ImageSet:
    """Fashion-MNIST ``split`` (``train`` 55,000 / ``val`` 5,000 / ``test`` 10,000; module docstring) as float32
    [0, 1] NCHW with int64 labels, in an order shuffled by ``seed``; ``n`` keeps the first ``n``. ``root``: a
    folder with the four ``.gz`` files (default: Debian's :data:`FASHION_MNIST_DIR`)."""
    if split not in FASHION_SPLITS:
        raise ValueError(f"dataset 'fashion' has splits {', '.join(FASHION_SPLITS)}; got split={split!r}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (colour), got {channels!r}")
    if n is not None:
        _check_count(n)
    folder = str(FASHION_MNIST_DIR if root is None else root)
    pixels, labels = fashion_raw("test" if split == "test" else "train", folder)
    index = np.arange(len(labels)) if split == "test" else fashion_split_indices(folder)[split]
    if n is not None and n > len(index):
        raise ValueError(f"fashion/{split} has {len(index)} images; n={n} asked for more")
    # the rule of take(): the first n of a permutation drawn for (seed, name, split), here on the uint8 pixels
    chosen = index[rng_for(seed, "fashion", split).permutation(len(index))[:n]]
    x = torch.from_numpy(pixels[chosen][:, None]).float().div_(255.0)
    x = to_channels(resize(x, size), channels).contiguous()
    return ImageSet(x, torch.from_numpy(labels[chosen]), f"fashion/{split}",
                    {"source": "fashion", "split": split, "seed": seed, "root": folder,
                     "classes": list(FASHION_CLASSES)})
