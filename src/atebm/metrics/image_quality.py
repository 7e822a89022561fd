"""Image-quality measures for restoration (T Sec. 2.5.3, Tab. 2.7-2.8): SSIM and PSNR from scikit-image,
per image, on [0, 1] NCHW tensors (``data_range=1``)."""
from __future__ import annotations

import numpy as np
import torch
from skimage.metrics import peak_signal_noise_ratio, structural_similarity
from torch import Tensor

__all__ = ["ssim", "psnr"]


def _pairs(x: Tensor, y: Tensor) -> tuple[np.ndarray, np.ndarray]:
    a = torch.as_tensor(x).detach().float().cpu()
    b = torch.as_tensor(y).detach().float().cpu()
    if a.shape != b.shape or a.dim() != 4:
        raise ValueError(f"need two NCHW batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")
    return a.clamp(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float64), \
        b.clamp(0, 1).permute(0, 2, 3, 1).numpy().astype(np.float64)


def ssim(x: Tensor, y: Tensor) -> Tensor:
    """Structural similarity of each pair (skimage ``structural_similarity``, Gaussian-free 7x7 window,
    ``data_range=1``, channels averaged); shape ``(N,)``. Images must be at least 7x7."""
    a, b = _pairs(x, y)
    if min(a.shape[1:3]) < 7:
        raise ValueError(f"SSIM needs images of at least 7x7 pixels, got {a.shape[1]}x{a.shape[2]}")
    values = [structural_similarity(p, q, data_range=1.0, channel_axis=2) for p, q in zip(a, b)]
    return torch.tensor(values, dtype=torch.float32)


def psnr(x: Tensor, y: Tensor) -> Tensor:
    """Peak signal-to-noise ratio in dB of each pair (``data_range=1``); ``inf`` for identical images."""
    a, b = _pairs(x, y)
    values = []
    for p, q in zip(a, b):
        values.append(float("inf") if np.array_equal(p, q) else peak_signal_noise_ratio(p, q, data_range=1.0))
    return torch.tensor(values, dtype=torch.float32)
