"""Labelled splits for the detector committee: train / val / test of a labelled data source, and the per-class
views each detector d_k trains on (T Eq. 3.23: p_data = class k, p_0 = the other classes)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from ..data import ImageSet, open_source, parse_source

__all__ = ["LabelledSplits", "labelled_splits", "class_view", "VAL_FRACTION"]

#: Share of each class carved from ``train`` for validation when a source has no ``val`` split (T: 10K of 60K).
VAL_FRACTION = 1 / 6


@dataclass
class LabelledSplits:
    """``train``, ``val`` and ``test`` images with labels, and where ``val`` came from."""

    train: ImageSet
    val: ImageSet
    test: ImageSet
    source: str
    val_from: str

    @property
    def num_classes(self) -> int:
        return int(self.train.y.max()) + 1  # type: ignore[union-attr]


def _open(spec: str, split: str, size: int, channels: int) -> ImageSet:
    kind, path, options = parse_source(spec)
    if "split" in options:
        raise ValueError(f"data source {spec!r}: give it without split=; the committee uses its train, val and "
                         "test splits")
    images = open_source(kind, path, split=split, size=options.pop("size", size),
                         channels=options.pop("channels", channels), **options)
    if not isinstance(images, ImageSet):
        images = images.load()
    if images.y is None:
        raise ValueError(f"data source {spec!r} (split {split}) has no labels; the detector committee needs a "
                         "labelled data set (mnist, fashion, cifar10:..., npz with labels)")
    return images


def _carve(train: ImageSet, fraction: float, seed: int = 0) -> tuple[ImageSet, ImageSet]:
    """Stratified, deterministic split of ``train`` into (rest, val)."""
    labels = train.y.numpy()  # type: ignore[union-attr]
    rng = np.random.default_rng(seed)
    val_index = []
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        val_index.append(members[:max(1, int(round(fraction * len(members))))])
    val_mask = np.zeros(len(labels), dtype=bool)
    val_mask[np.concatenate(val_index)] = True
    keep, held = torch.from_numpy(np.flatnonzero(~val_mask)), torch.from_numpy(np.flatnonzero(val_mask))
    rest = ImageSet(train.x[keep], train.y[keep], train.name, dict(train.meta))  # type: ignore[index]
    val = ImageSet(train.x[held], train.y[held], f"{train.name} (val carved)", dict(train.meta))  # type: ignore[index]
    return rest, val


def labelled_splits(spec: str, size: int = 28, channels: int = 1) -> LabelledSplits:
    """Opens the train, val and test splits of a labelled source string (``"mnist"``: the embedded MNIST
    5,000 with its fixed 350/50/100-per-class split). A source without a ``val`` split gets one carved from
    ``train`` (:data:`VAL_FRACTION` of each class, fixed seed)."""
    train = _open(spec, "train", size, channels)
    test = _open(spec, "test", size, channels)
    try:
        val = _open(spec, "val", size, channels)
        val_from = "val split"
    except ValueError as err:
        if "split" not in str(err):
            raise
        train, val = _carve(train, VAL_FRACTION)
        val_from = f"carved from train ({VAL_FRACTION:.3f} of each class)"
    return LabelledSplits(train, val, test, spec, val_from)


def class_view(images: ImageSet, k: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(x of class k, x of the other classes, labels of the other classes)``."""
    y = images.y
    assert y is not None
    inside = y == k
    if not bool(inside.any()):
        raise ValueError(f"{images.name}: no image of class {k}")
    return images.x[inside], images.x[~inside], y[~inside]
