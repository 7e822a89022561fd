"""Score networks (backbones). Each returns raw outputs; :class:`~atebm.models.ScoreModel` turns them into scores.

* :class:`MLP2D` – the 2D theory lab (E Fig. 1, G Fig. 2, 4-6).
* :class:`ConvNet` – a small ConvNet for 28x28 / 32x32 images, the CPU default.
* :class:`ConvPoolNet` – the detector network of T Tab. 3.1 (conv-pool-conv-pool-fc), used by :mod:`atebm.gat`.
* :class:`CifarResNet` – ResNet-18/34/50 for 32x32 inputs (the CIFAR-10 backbone of E is ResNet50, ReLU).
* :class:`Discriminator` – the 256 px discriminator of E supplement Tab. 2 (after StarGAN v2), parameterised
  by resolution so that 64 and 128 px work too.
"""
from __future__ import annotations

import math

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MLP2D", "ConvNet", "ConvPoolNet", "CifarResNet", "Discriminator", "make_activation"]


def make_activation(name: str) -> nn.Module:
    table = {
        "relu": lambda: nn.ReLU(),
        "lrelu": lambda: nn.LeakyReLU(0.2),
        "silu": lambda: nn.SiLU(),
        "softplus": lambda: nn.Softplus(),
        "elu": lambda: nn.ELU(),
        "tanh": lambda: nn.Tanh(),
    }
    if name not in table:
        raise ValueError(f"unknown activation {name!r}; choose from {sorted(table)}")
    return table[name]()


class MLP2D(nn.Module):
    """Fully connected network for 2D points: ``in_dim -> hidden x depth -> out_dim``."""

    def __init__(self, in_dim: int = 2, hidden: int = 128, depth: int = 3, activation: str = "silu", out_dim: int = 1):
        super().__init__()
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), make_activation(activation)]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class ConvNet(nn.Module):
    """Small ConvNet for 28x28 or 32x32 inputs: four 3x3 convolutions of widths ``width x (1, 2, 4, 8)``, each
    but the first halving the resolution (``downsample="stride"``: stride-2 convolutions; ``"avgpool"``: a
    stride-1 convolution followed by 2x2 average pooling, which avoids the checkerboard pattern of strided
    convolutions in input gradients). The head is global average pooling and a linear layer (``head="gap"``,
    translation invariant) or, with ``head="flatten"``, the flattened feature map (``input_size`` fixes its
    length) through a hidden layer of ``head_hidden`` units, so the score depends on where strokes are, as in the
    conv-conv-fc MNIST detector of T Tab. 3.1."""

    def __init__(self, in_channels: int = 1, width: int = 32, activation: str = "lrelu", out_dim: int = 1,
                 batchnorm: bool = False, downsample: str = "stride", head: str = "gap", input_size: int = 28,
                 head_hidden: int = 256):
        super().__init__()
        if downsample not in ("stride", "avgpool"):
            raise ValueError(f"downsample must be 'stride' or 'avgpool', got {downsample!r}")
        if head not in ("gap", "flatten"):
            raise ValueError(f"head must be 'gap' or 'flatten', got {head!r}")
        widths = [width, 2 * width, 4 * width, 8 * width]
        layers: list[nn.Module] = []
        c_in = in_channels
        for i, c_out in enumerate(widths):
            strided = i > 0 and downsample == "stride"
            if i > 0 and downsample == "avgpool":
                layers.append(nn.AvgPool2d(2, ceil_mode=True))
            layers.append(nn.Conv2d(c_in, c_out, 3, stride=2 if strided else 1, padding=1))
            if batchnorm:
                layers.append(nn.BatchNorm2d(c_out))
            layers.append(make_activation(activation))
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.pool = head == "gap"
        self.head: nn.Module
        if self.pool:
            self.head = nn.Linear(c_in, out_dim)
        else:
            side = input_size
            for _ in range(3):
                side = (side + 1) // 2
            self.head = nn.Sequential(nn.Flatten(), nn.Linear(c_in * side * side, head_hidden),
                                      make_activation(activation), nn.Linear(head_hidden, out_dim))

    def forward(self, x: Tensor) -> Tensor:
        features = self.features(x)
        return self.head(features.mean(dim=(2, 3)) if self.pool else features)


class ConvPoolNet(nn.Module):
    """The detector network of T Tab. 3.1 (the MNIST network of Madry et al. 2018): conv 5x5 ``widths[0]`` - pool
    - conv 5x5 ``widths[1]`` - pool - fc ``hidden`` - ``out_dim`` (T Tab. 3.1 with the defaults). ``input_size``
    fixes the length of the flattened feature map (28 -> 7 x 7 x 64)."""

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


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = _shortcut(c_in, planes, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.shortcut = _shortcut(c_in, planes * 4, stride)

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + self.shortcut(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


_RESNET_LAYOUTS: dict[int, tuple[type[_BasicBlock] | type[_Bottleneck], tuple[int, ...]]] = {
    18: (_BasicBlock, (2, 2, 2, 2)), 34: (_BasicBlock, (3, 4, 6, 3)), 50: (_Bottleneck, (3, 4, 6, 3))}


class CifarResNet(nn.Module):
    """ResNet-18/34/50 for 32x32 inputs (3x3 stem, no max-pool), the CIFAR-10 backbone of E (ResNet50, ReLU).
    ``out_dim=10`` with ``ScoreModel(logit=0)`` mirrors the published code; ``out_dim=1`` is the clean choice."""

    def __init__(self, depth: int = 18, in_channels: int = 3, out_dim: int = 1, width: int = 64):
        super().__init__()
        if depth not in _RESNET_LAYOUTS:
            raise ValueError(f"depth must be one of {sorted(_RESNET_LAYOUTS)}, got {depth}")
        block, counts = _RESNET_LAYOUTS[depth]
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
        stages: list[nn.Module] = []
        c_in = width
        for i, count in enumerate(counts):
            planes = width * 2**i
            for j in range(count):
                stages.append(block(c_in, planes, 2 if (i > 0 and j == 0) else 1))
                c_in = planes * block.expansion
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, out_dim)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.stages(self.stem(x)).mean(dim=(2, 3)))


class _DownBlock(nn.Module):
    """Pre-activation residual block with average-pool downsampling (StarGAN v2 ``ResBlk``)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_in, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.skip = nn.Conv2d(c_in, c_out, 1, bias=False) if c_in != c_out else nn.Identity()
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        shortcut = F.avg_pool2d(self.skip(x), 2)
        out = self.conv1(self.act(x))
        out = F.avg_pool2d(out, 2)
        out = self.conv2(self.act(out))
        return (shortcut + out) / math.sqrt(2)


class Discriminator(nn.Module):
    """E supplement Tab. 2: Conv1x1 -> ResBlock+AvgPool (down to 4x4, widths doubling from ``2**14 / res``,
    capped at ``max_width``) -> LeakyReLU -> Conv4x4 -> LeakyReLU -> Linear. At 256 px: 64, 128, 256, 512, 512,
    512, 512 channels, as in the table."""

    def __init__(self, resolution: int = 256, in_channels: int = 3, out_dim: int = 1, max_width: int = 512):
        super().__init__()
        if resolution < 8 or resolution & (resolution - 1):
            raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
        width = min(max_width, 2**14 // resolution)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 1)]
        for _ in range(int(math.log2(resolution)) - 2):
            c_out = min(2 * width, max_width)
            layers.append(_DownBlock(width, c_out))
            width = c_out
        layers += [nn.LeakyReLU(0.2), nn.Conv2d(width, width, 4), nn.LeakyReLU(0.2)]
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, out_dim)
        self.resolution = resolution

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.resolution or x.shape[-2] != self.resolution:
            raise ValueError(f"Discriminator built for {self.resolution}px, got input {tuple(x.shape[-2:])}")
        return self.head(self.features(x).flatten(1))
