"""The semi-supervised classifier of S Tab. 4 (DSGAN paper, Sec. 4.1; after Salimans et al. 2016), a score model.

Gaussian noise before every layer (std 0.3 on the input, 0.5 after), weight-normalised layers
784-1000-500-250-250-250-K with ReLU. Its score is ``log sum_k exp(l_k(x))``, so ``D(x) = sigmoid(score) =
Z / (Z + 1)`` is the probability of "one of the K real classes" against the implicit class K+1 of Salimans et al.
(2016) / Dai et al. (2017) (S Eq. 4). Registered in :data:`atebm.models.ARCHITECTURES` as ``ssl_mlp``, so
:func:`atebm.load_model` rebuilds the checkpoints of ``atebm dsgan ssl``; trained by :mod:`atebm.dsgan.ssl`.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["SSLClassifier"]


class _GaussianNoise(nn.Module):
    """Adds ``N(0, std^2)`` noise in training mode only (Rasmus et al. 2015, as in S Tab. 4)."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = float(std)

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.std > 0:
            return x + self.std * torch.randn_like(x)
        return x


class SSLClassifier(nn.Module):
    """S Tab. 4 classifier (module doc). ``forward`` returns the score ``logsumexp(logits)`` (one per sample);
    :meth:`logits` the K class logits; :meth:`features` the last hidden layer (250-d), the "feature space" of
    S Sec. 5.1 (the input of the output layer, following Dai et al. 2017)."""

    def __init__(self, in_features: int = 784, num_classes: int = 10,
                 hidden: tuple[int, ...] | list[int] = (1000, 500, 250, 250, 250), input_noise: float = 0.3,
                 hidden_noise: float = 0.5) -> None:
        super().__init__()
        if num_classes < 2 or in_features < 1 or not hidden:
            raise ValueError(f"need num_classes >= 2, in_features >= 1 and hidden layers, got {num_classes}, "
                             f"{in_features}, {hidden}")
        self.in_features, self.num_classes = int(in_features), int(num_classes)
        layers: list[nn.Module] = []
        width = in_features
        for i, units in enumerate(hidden):
            layers += [_GaussianNoise(input_noise if i == 0 else hidden_noise), weight_norm(nn.Linear(width, units)),
                       nn.ReLU()]
            width = units
        self.body = nn.Sequential(*layers)
        self.feature_dim = width
        self.head = nn.Sequential(_GaussianNoise(hidden_noise), weight_norm(nn.Linear(width, num_classes)))

    def features(self, x: Tensor) -> Tensor:
        return self.body(x.flatten(1))

    def logits(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        return torch.logsumexp(self.logits(x), dim=1)
