"""Networks of the DSGAN package: generators, and the K-class classifier of the semi-supervised experiments.

Discriminators are score models of :mod:`atebm.models` (``mlp2d`` for points and feature vectors, ``convnet`` for
images): the DSGAN discriminator *is* a score model, higher = more like p_dbar (S Eq. 2 with ``D = sigmoid(f)``).

* :class:`MLPGenerator` - ``z -> hidden x depth -> out_dim`` with a linear output: 2D points, feature vectors.
* :class:`ImageGenerator` - the MNIST generator of S Tab. 4 (after Salimans et al. 2016): ``z in R^100 ~ U(0, 1)``,
  two 500-unit fully connected layers with batch norm and softplus, a weight-normalised layer to ``C x H x W``
  and a sigmoid, so images lie in [0, 1]. Its batch norm always uses the statistics of the batch it normalises
  (no running averages): the discriminator only ever judges batch-normalised samples, so samples are drawn the
  same way, in batches of the training size (:meth:`draw`).
* :class:`ConvGenerator` - a DCGAN-style generator of transposed convolutions (the kind of S Tab. 5's SVHN /
  CIFAR-10 generator), the default for image data runs and cases (it does not collapse on ``mnist-difference``
  where :class:`ImageGenerator` did); batch norm as in :class:`ImageGenerator`.
* :class:`SSLClassifier` - the MNIST classifier of S Tab. 4, a score model (``log sum_k exp(l_k(x))``) that lives
  in :mod:`atebm.models.ssl` as the registered architecture ``ssl_mlp`` (re-exported here), so that
  :func:`atebm.load_model` rebuilds SSL checkpoints without importing :mod:`atebm.dsgan`.

Generators are built from a plain dict by :func:`build_generator` (``{"arch": "mlp" | "image" | "conv", "kwargs":
{...}}``), so a checkpoint can rebuild them.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from ..models import SSLClassifier, make_activation

__all__ = ["MLPGenerator", "ImageGenerator", "ConvGenerator", "SSLClassifier", "FeatureHeadClassifier", "GENERATORS",
           "build_generator", "LATENTS"]

#: Latent distributions a generator can draw from.
LATENTS = ("uniform", "normal")


class _Latent(nn.Module):
    """Shared part of the generators: the latent size and distribution, and :meth:`sample_latent`."""

    latent_dim: int
    latent: str

    def _set_latent(self, latent_dim: int, latent: str) -> None:
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if latent not in LATENTS:
            raise ValueError(f"latent must be one of {LATENTS}, got {latent!r}")
        self.latent_dim, self.latent = int(latent_dim), latent

    def sample_latent(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """``n`` latent codes on the generator's device: ``U(0, 1)`` (S Tab. 4) or ``N(0, I)``."""
        draw = torch.rand if self.latent == "uniform" else torch.randn
        z = draw(n, self.latent_dim, generator=generator)
        return z.to(next(self.parameters()).device)

    def draw(self, n: int, generator: torch.Generator | None = None, *, batch: int | None = None) -> Tensor:
        """``n`` samples ``G(z)`` computed in forward passes of ``batch`` latents each (default: one pass of ``n``);
        the last pass is filled up to ``batch`` latents and cut. With batch normalisation every sample is then
        normalised by the statistics of a batch of exactly ``batch`` rows, as in the generator's own training
        step, and the first samples of a stream do not depend on ``n``. Gradients flow unless the caller
        disables them."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        batch = n if batch is None else int(batch)
        if batch < 1:
            raise ValueError(f"batch must be >= 1, got {batch}")
        passes = [self(self.sample_latent(batch, generator)) for _ in range(0, n, batch)]
        return torch.cat(passes)[:n]


class MLPGenerator(_Latent):
    """``z -> [Linear, activation] x depth -> Linear(out_dim)``: 2D points or feature vectors (no output squashing)."""

    def __init__(self, latent_dim: int = 8, out_dim: int = 2, hidden: int = 128, depth: int = 3,
                 activation: str = "relu", latent: str = "normal") -> None:
        super().__init__()
        self._set_latent(latent_dim, latent)
        if out_dim < 1 or hidden < 1 or depth < 1:
            raise ValueError(f"need out_dim, hidden, depth >= 1, got {out_dim}, {hidden}, {depth}")
        layers: list[nn.Module] = []
        width = latent_dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), make_activation(activation)]
            width = hidden
        layers.append(nn.Linear(width, out_dim))
        self.net = nn.Sequential(*layers)
        self.out_shape: tuple[int, ...] = (out_dim,)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z)


class ImageGenerator(_Latent):
    """S Tab. 4 generator: ``z (100) -> FC 500, BN, softplus -> FC 500, BN, softplus -> FC C*H*W (weight norm) ->
    sigmoid``, reshaped to ``(N, C, H, W)`` in [0, 1]. BN normalises with the statistics of the batch at hand in
    training and in eval mode alike (``track_running_stats=False``); a checkpoint written when it kept running
    averages loads with them dropped."""

    def __init__(self, latent_dim: int = 100, channels: int = 1, size: int = 28, hidden: int = 500,
                 latent: str = "uniform") -> None:
        super().__init__()
        self._set_latent(latent_dim, latent)
        if channels < 1 or size < 1 or hidden < 1:
            raise ValueError(f"need channels, size, hidden >= 1, got {channels}, {size}, {hidden}")
        self.out_shape = (channels, size, size)
        self.net = nn.Sequential(
            nn.Linear(latent_dim, hidden), nn.BatchNorm1d(hidden, track_running_stats=False), nn.Softplus(),
            nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden, track_running_stats=False), nn.Softplus(),
            weight_norm(nn.Linear(hidden, math.prod(self.out_shape))), nn.Sigmoid(),
        )
        self.register_load_state_dict_pre_hook(_drop_running_statistics)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.out_shape)


class ConvGenerator(_Latent):
    """A DCGAN-style image generator (Radford et al. 2016; not in S): ``z -> FC 2w x (H/4) x (W/4), BN, ReLU ->
    4x4 transposed conv (stride 2) to w channels, BN, ReLU -> 4x4 transposed conv (stride 2) to C channels ->
    sigmoid``, images in [0, 1] of side ``size`` (a multiple of 4). Batch norm as in :class:`ImageGenerator`: the
    statistics of the batch at hand, never running averages. Convolutions share weights across positions, so
    small shifts and stroke variations are cheap to produce: the fully connected S Tab. 4 generator collapsed to one
    or two sevens on ``mnist-difference`` (benchmarks/results/dsgan/README.md, "The MNIST difference set and the
    image networks")."""

    def __init__(self, latent_dim: int = 64, channels: int = 1, size: int = 28, width: int = 64,
                 latent: str = "normal") -> None:
        super().__init__()
        self._set_latent(latent_dim, latent)
        if channels < 1 or width < 1 or size < 4 or size % 4:
            raise ValueError(f"need channels, width >= 1 and size a multiple of 4, got {channels}, {width}, {size}")
        self.out_shape = (channels, size, size)
        self.base = (2 * width, size // 4, size // 4)
        self.project = nn.Sequential(nn.Linear(latent_dim, math.prod(self.base)),
                                     nn.BatchNorm1d(math.prod(self.base), track_running_stats=False), nn.ReLU())
        self.net = nn.Sequential(
            nn.ConvTranspose2d(2 * width, width, 4, stride=2, padding=1),
            nn.BatchNorm2d(width, track_running_stats=False), nn.ReLU(),
            nn.ConvTranspose2d(width, channels, 4, stride=2, padding=1), nn.Sigmoid(),
        )

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.project(z).view(-1, *self.base))


_RUNNING_STATISTICS = ("running_mean", "running_var", "num_batches_tracked")


def _drop_running_statistics(module: nn.Module, state_dict: dict[str, Any], prefix: str, *_: Any) -> None:
    """Load hook of :class:`ImageGenerator`: the running averages of checkpoints written before its batch norm
    stopped keeping them are not loaded (they were only ever used at sampling)."""
    for key in [k for k in state_dict if k.startswith(prefix) and k.rsplit(".", 1)[-1] in _RUNNING_STATISTICS]:
        del state_dict[key]


GENERATORS: dict[str, type[_Latent]] = {"mlp": MLPGenerator, "image": ImageGenerator, "conv": ConvGenerator}


def build_generator(spec: dict[str, Any], seed: int | None = None) -> _Latent:
    """A generator from ``{"arch": "mlp" | "image" | "conv", "kwargs": {...}}``; with ``seed`` its initial weights come
    from that seed and the global torch RNG is left untouched."""
    arch = spec.get("arch")
    if arch not in GENERATORS:
        raise ValueError(f"unknown generator architecture {arch!r}; choose from {sorted(GENERATORS)}")
    kwargs = dict(spec.get("kwargs") or {})
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        try:
            return GENERATORS[arch](**kwargs)
        except TypeError as err:
            raise ValueError(f"bad arguments for generator {arch!r}: {err}") from err


class FeatureHeadClassifier(nn.Module):
    """A digit classifier with a feature space and a non-linear head, for adversarial training with generated
    low-density features (S Sec. 5.2, App. E Tab. 7: "the sub-network after feature space should be non-linear"):
    three 3x3 convolutions (widths w, 2w, 4w, max-pool after the first two), 4x4 average pooling and a
    ``feature_dim`` layer (the features, after ReLU), then ``head_depth`` hidden layers of ``feature_dim`` units
    with LeakyReLU(0.2) and a linear output. Inputs in [0, 1]; logits out."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 16, feature_dim: int = 64,
                 head_depth: int = 3) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * width, 4 * width, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4),
            nn.Flatten(), nn.Linear(4 * width * 16, feature_dim), nn.ReLU(),
        )
        layers: list[nn.Module] = []
        for _ in range(head_depth):
            layers += [nn.Linear(feature_dim, feature_dim), nn.LeakyReLU(0.2)]
        self.head = nn.Sequential(*layers, nn.Linear(feature_dim, num_classes))
        self.feature_dim = feature_dim

    def features(self, x: Tensor) -> Tensor:
        return self.body(x * 2 - 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))
