"""Nearest-neighbour inpainting baselines of T Sec. 2.5.3 (Fig. 2.14, Tab. 2.8).

* **NN patch** (an oracle: it looks at the ground truth): find the training image whose pixels under the hole
  are closest in L2 to the ground-truth pixels there, and copy those pixels into the hole.
* **NN image**: replace the whole image by its nearest training image, found from the original image
  (``query="original"``, T's "NN-original image"), from the occluded image as it is (``"occluded"``, T's
  "NN-occluded image") or from the visible pixels only (``"visible"``).

Distances are computed in blocks by expanding ``Σ_p m_p (x_p - b_p)² = Σ m x² - 2 Σ m x b + Σ m b²``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from ._images import check_images

__all__ = ["masked_nearest", "nn_patch_inpaint", "nn_image_inpaint"]

_QUERIES = ("original", "occluded", "visible")


def _flat_mask(mask: Tensor, x: Tensor) -> Tensor:
    mask = torch.as_tensor(mask)
    try:
        full = torch.broadcast_to(mask != 0, x.shape)
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not fit images of shape {tuple(x.shape)}") from err
    return full.reshape(x.shape[0], -1).to(x.dtype)


def masked_nearest(query: Tensor, bank: Tensor, mask: Tensor | None = None, block: int = 256) -> Tensor:
    """Index into ``bank`` of the nearest image to each ``query`` in the squared L2 distance over the pixels
    where ``mask`` is nonzero, ``Σ_p m_np (q_np - b_jp)²`` (all pixels when ``mask`` is None); shape (N,)."""
    query, bank = check_images(query, "queries"), check_images(bank, "the training bank")
    if query.shape[1:] != bank.shape[1:]:
        raise ValueError(f"queries {tuple(query.shape)} and bank {tuple(bank.shape)} differ in image shape")
    q = query.reshape(query.shape[0], -1).double()
    b = bank.reshape(bank.shape[0], -1).to(q)
    m = torch.ones_like(q) if mask is None else _flat_mask(mask.to(query.device), query).to(q)
    b_sq = (b * b).T
    best = torch.empty(q.shape[0], dtype=torch.long)
    for start in range(0, q.shape[0], block):
        qb, mb = q[start:start + block], m[start:start + block]
        dist = (mb * qb * qb).sum(1, keepdim=True) - 2 * (mb * qb) @ b.T + mb @ b_sq
        best[start:start + block] = dist.argmin(dim=1).cpu()
    return best


def nn_patch_inpaint(clean: Tensor, mask: Tensor, bank: Tensor, occluded: Tensor | None = None) -> Tensor:
    """Fills the hole of each image with the pixels at the same place of the training image whose pixels there
    are nearest to the ground truth (the oracle "NN-patch" baseline of T Fig. 2.14). Visible pixels come from
    ``occluded`` (default: ``clean``; they are the same outside the hole)."""
    clean = check_images(clean, "clean images")
    hole = _flat_mask(mask, clean).bool().reshape(clean.shape)
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
    weight = None
    if query == "visible":
        weight = ~_flat_mask(mask, images).bool().reshape(images.shape)
    return bank[masked_nearest(images, bank, weight)].to(images)
