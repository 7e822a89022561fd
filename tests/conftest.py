"""Shared test fixtures: tiny data sets, tiny trainer configurations and state comparisons.

Every fixture here is small enough to train in well under a second per step on one CPU core."""
from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import pytest
import torch

from atebm import TrainConfig

# Tests run on 2 CPU cores, in as many pytest-xdist workers as there are cores: keep torch from oversubscribing them.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
torch.set_num_threads(max(1, min(2, (os.cpu_count() or 1) // _WORKERS)))

#: The 2D lab keeps its points in the box [-4, 4]^2 (the trainer clamps PGD to [0, 1] otherwise).
BOX_2D: dict[str, Any] = {"clamp": (-4.0, 4.0)}


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.fixture
def one_thread():
    """Tiny models gain nothing from intra-op threads, and on a shared 2-core machine threads contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def box_2d() -> dict[str, Any]:
    """The trainer ``extra`` of the 2D lab: PGD clamps to [-4, 4]^2."""
    return dict(BOX_2D)


@pytest.fixture
def linear_2d_spec() -> dict[str, Any]:
    """An ``mlp2d`` spec with no hidden layer and no normalisation: f(x) = w.x + b on 2D points."""
    return {"arch": "mlp2d", "kwargs": {"in_dim": 2, "hidden": 4, "depth": 0}, "mean": 0.0, "std": 1.0}


def _gaussian_vs_uniform(n: int = 1024, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, generator=g) * 0.5, torch.rand(n, 2, generator=g) * 8 - 4


@pytest.fixture
def toy2d() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``toy2d(n=1024, seed=0) -> (data, p0)``: p_data = N(0, 0.25 I) in 2D, p_0 = uniform on [-4, 4]^2."""
    return _gaussian_vs_uniform


def _config_2d(**changes: Any) -> TrainConfig:
    base: dict[str, Any] = dict(model={"arch": "mlp2d", "kwargs": {"hidden": 32, "depth": 2}}, batch_size=64,
                                lr=2e-3, k_max=4, epochs_per_k=2, auc_window=10, step_size=0.3, max_iters=200,
                                log_every=10, ckpt_every=50, progress=False, device="cpu")
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture
def config_2d() -> Callable[..., TrainConfig]:
    """``config_2d(**changes) -> TrainConfig``: a small MLP on 2D points, 200 iterations, K up to 4."""
    return _config_2d


def _tiny_images(n: int = 96, size: int = 12, channels: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, channels, size, size, generator=g),
            torch.rand(n, channels, size, size, generator=g))


@pytest.fixture
def tiny_images() -> Callable[..., tuple[torch.Tensor, torch.Tensor]]:
    """``tiny_images(n=96, size=12, channels=1, seed=0) -> (data, p0)``: uniform noise images in [0, 1]."""
    return _tiny_images


def _image_config(**changes: Any) -> TrainConfig:
    base: dict[str, Any] = dict(model={"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4}}, batch_size=16,
                                k_max=3, epochs_per_k=1, auc_window=3, step_size=0.5, r1=0.1, max_iters=24,
                                ckpt_every=12, log_every=6, progress=False, device="cpu")
    base.update(changes)
    return TrainConfig(**base)


@pytest.fixture
def image_config() -> Callable[..., TrainConfig]:
    """``image_config(**changes) -> TrainConfig``: a width-4 ConvNet on 1-channel images, 24 iterations."""
    return _image_config


#: ``atebm train --preset mnist`` overrides that train in about a second (64 digits, 64 photo patches).
TINY_MNIST_OVERRIDES = [
    "model={arch: convnet, kwargs: {in_channels: 1, width: 4}, mean: 0.5, std: 0.5}", "max_iters=4", "k_max=2",
    "epochs_per_k=0.01", "auc_window=2", "log_every=2", "ckpt_every=2", "batch_size=8", "progress=false",
    "data=mnist?split=train&n=64", "p0=photos?split=train&n=64", "seeds=photos?split=test&n=16"]


@pytest.fixture
def tiny_mnist_overrides() -> list[str]:
    return list(TINY_MNIST_OVERRIDES)


def _assert_same_state(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str = "state") -> None:
    assert a.keys() == b.keys(), f"{what}: different keys {sorted(set(a) ^ set(b))}"
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"{what}: tensors differ: {different}"


@pytest.fixture
def assert_same_state() -> Callable[..., None]:
    """``assert_same_state(a, b, what)``: the two state dicts hold the same keys and bit-identical tensors."""
    return _assert_same_state
