"""The detector network of T Tab. 3.1 (the MNIST network of Madry et al. 2018, T ref. [112]).

Two 5x5 convolutions (32 and 64 filters, "same" padding, ReLU), each followed by 2x2 max pooling, then a fully
connected layer of 1024 units and the output layer: one logit per detector d_k, ten for the softmax classifier.
"""
from __future__ import annotations

from torch import Tensor, nn

from ..models import ARCHITECTURES, make_activation

__all__ = ["ConvPoolNet", "ARCH_NAME"]

#: The name under which :func:`atebm.build_score_model` (and so the trainer and checkpoints) builds it.
ARCH_NAME = "convpool"


class ConvPoolNet(nn.Module):
    """conv 5x5 ``widths[0]`` - pool - conv 5x5 ``widths[1]`` - pool - fc ``hidden`` - ``out_dim`` (T Tab. 3.1
    with the defaults). ``input_size`` fixes the length of the flattened feature map (28 -> 7 x 7 x 64)."""

    def __init__(self, in_channels: int = 1, widths: tuple[int, int] | list[int] = (32, 64), hidden: int = 1024,
                 out_dim: int = 1, input_size: int = 28, activation: str = "relu") -> None:
        super().__init__()
        if len(widths) != 2 or min(widths) < 1:
            raise ValueError(f"widths must be two positive channel counts, got {widths}")
        if input_size < 4:
            raise ValueError(f"input_size must be >= 4 (two 2x2 poolings), got {input_size}")
        c1, c2 = int(widths[0]), int(widths[1])
        side = input_size // 4
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, 5, padding=2), make_activation(activation), nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 5, padding=2), make_activation(activation), nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c2 * side * side, hidden), make_activation(activation),
                                  nn.Linear(hidden, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


# Checkpoints name their backbone; registering here lets build_score_model rebuild detectors (see the report:
# the class belongs beside ConvNet in atebm.models.networks).
ARCHITECTURES.setdefault(ARCH_NAME, ConvPoolNet)
