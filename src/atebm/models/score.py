"""The score-model wrapper: any ``nn.Module`` -> one score per sample (METHOD Sec. 1).

Convention, stated once for the whole library: inputs are float tensors in [0, 1], NCHW (or (N, 2) for the 2D
lab); the score ``f(x)`` is a real number per sample, ``D(x) = sigmoid(f(x))``, the energy is ``-f(x)``, and
**higher score = more in-distribution**.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["ScoreModel", "freeze_batchnorm"]


def _as_stat(value: float | Sequence[float] | None, fill: float) -> Tensor:
    if value is None:
        return torch.tensor([fill])
    return torch.as_tensor(value, dtype=torch.float32).reshape(-1)


class ScoreModel(nn.Module):
    """Wraps a backbone so that ``forward(x)`` takes [0, 1] inputs and returns shape ``(N,)``.

    ``mean``/``std`` (scalars or one per channel) normalise inside the model, so no caller ever repeats the
    constants. A backbone with several outputs is reduced to ``logit`` (the published AT-EBM code uses logit 0
    of an ImageNet/CIFAR classifier); a single-output backbone needs no ``logit``. ``spec`` records how the
    backbone was built (see :func:`atebm.models.build_score_model`) so that checkpoints can rebuild it.
    """

    mean: Tensor
    std: Tensor

    def __init__(
        self,
        backbone: nn.Module,
        *,
        mean: float | Sequence[float] | None = None,
        std: float | Sequence[float] | None = None,
        logit: int | None = None,
        spec: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.logit = logit
        self.spec = dict(spec or {})
        #: What a user of a trained model needs besides its weights (input size and channels, training config,
        #: generation defaults); filled by :func:`atebm.load_model`, empty for a fresh model.
        self.meta: dict[str, Any] = {}
        mean_t, std_t = _as_stat(mean, 0.0), _as_stat(std, 1.0)
        if mean_t.numel() != std_t.numel() and 1 not in (mean_t.numel(), std_t.numel()):
            raise ValueError(f"mean has {mean_t.numel()} channels but std has {std_t.numel()}")
        if (std_t <= 0).any():
            raise ValueError(f"std must be positive, got {std_t.tolist()}")
        self.register_buffer("mean", mean_t, persistent=True)
        self.register_buffer("std", std_t, persistent=True)

    def _normalise(self, x: Tensor) -> Tensor:
        if self.mean.numel() == 1 and self.std.numel() == 1:
            return (x - self.mean) / self.std
        channels = max(self.mean.numel(), self.std.numel())
        if x.dim() < 2 or x.shape[1] != channels:
            raise ValueError(f"the model normalises {channels} channels (per-channel mean/std), but the input has "
                             f"shape {tuple(x.shape)}" + (f" ({x.shape[1]} channels)" if x.dim() >= 2 else ""))
        shape = (1, -1) + (1,) * (x.dim() - 2)
        return (x - self.mean.view(shape)) / self.std.view(shape)

    def forward(self, x: Tensor) -> Tensor:
        out = self.backbone(self._normalise(x))
        if out.dim() == 1:
            return out
        out = out.flatten(1)
        if self.logit is not None:
            return out[:, self.logit]
        if out.shape[1] != 1:
            raise ValueError(
                f"the backbone returns {out.shape[1]} outputs per sample; choose one with ScoreModel(..., logit=i)"
            )
        return out[:, 0]

    def probability(self, x: Tensor) -> Tensor:
        """``D(x) = sigmoid(f(x))``, the discriminator's probability that ``x`` is in-distribution."""
        return torch.sigmoid(self(x))

    def energy(self, x: Tensor) -> Tensor:
        """``E(x) = -f(x)``."""
        return -self(x)


def freeze_batchnorm(module: nn.Module) -> nn.Module:
    """Puts every BatchNorm layer in eval mode (running statistics fixed: BN acts as an affine map), as the
    published code does during training. Call after every ``module.train()``."""
    for m in module.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.eval()
    return module
