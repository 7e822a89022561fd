"""Nearest-neighbour inpainting, the comparison methods of T Sec. 2.5.3 (Fig. 2.14, Tab. 2.8).

* **NN patch** (an oracle: it looks at the ground truth): find the training image whose pixels under the hole
  are closest in L2 to the ground-truth pixels there, and copy those pixels into the hole.
* **NN image**: replace the whole image by its nearest training image, found from the original image
  (``query="original"``, T's "NN-original image"), from the occluded image as it is (``"occluded"``, T's
  "NN-occluded image") or from the visible pixels only (``"visible"``).

The search is :func:`atebm.metrics.nearest_neighbours` with a pixel mask.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._images import check_images

__all__ = ["masked_nearest", "nn_patch_inpaint", "nn_image_inpaint"]

_QUERIES = ("original", "occluded", "visible")


def _hole(mask: Tensor, x: Tensor) -> Tensor:
    """``mask != 0`` broadcast to the images' shape (True = missing)."""
    mask = torch.as_tensor(mask)
    try:
        return torch.broadcast_to(mask.to(x.device) != 0, x.shape)
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}") from err


def masked_nearest(query: Tensor, bank: Tensor, mask: Tensor | None = None, block: int = 256) -> Tensor:
    """Index into ``bank`` of the nearest image to each ``query`` in the squared L2 distance over the pixels
    where ``mask`` is nonzero, ``Σ_p m_np (q_np - b_jp)²`` (all pixels when ``mask`` is None); shape (N,)."""
    from ..metrics.generative import nearest_neighbours  # atebm.metrics pulls in scikit-learn: import on use

    query, bank = check_images(query, "queries"), check_images(bank, "the training bank")
    if query.shape[1:] != bank.shape[1:]:
        raise ValueError(f"queries {tuple(query.shape)} and bank {tuple(bank.shape)} differ in image shape")
    hole = None if mask is None else _hole(mask, query)
    _, index = nearest_neighbours(query, bank, k=1, chunk=block, mask=hole)
    return index[:, 0]


def nn_patch_inpaint(clean: Tensor, mask: Tensor, bank: Tensor, occluded: Tensor | None = None) -> Tensor:
    """Fills the hole of each image with the pixels at the same place of the training image whose pixels there
    are nearest to the ground truth (the oracle "NN-patch" baseline of T Fig. 2.14). Visible pixels come from
    ``occluded`` (default: ``clean``; they are the same outside the hole)."""
    clean = check_images(clean, "clean images")
    hole = _hole(mask, clean)
    idx = masked_nearest(clean, bank, hole)
    base = clean if occluded is None else check_images(occluded, "occluded images")
    return torch.where(hole, bank[idx].to(base), base)


def nn_image_inpaint(images: Tensor, mask: Tensor, bank: Tensor, query: str = "original") -> Tensor:
    """Replaces each image by its nearest training image (T's "NN-original image" / "NN-occluded image").

    ``images`` are the original images for ``query="original"`` and the occluded ones otherwise; ``"visible"``
    measures the distance over the visible pixels only."""
    images = check_images(images)
    if query not in _QUERIES:
        raise ValueError(f"query must be one of {_QUERIES}, got {query!r}")
    visible = ~_hole(mask, images) if query == "visible" else None
    return bank[masked_nearest(images, bank, visible)].to(images)
