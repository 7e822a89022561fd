"""Image transforms of atebm.data: Gaussian blur, antialiased resize, grey/colour conversion."""
from __future__ import annotations

import math

import pytest
import torch

import atebm.data as data


def test_blur_zero_is_identity_and_bad_input():
    x = torch.rand(2, 3, 8, 8)
    assert data.blur(x, 0) is x
    with pytest.raises(ValueError, match="sigma"):
        data.blur(x, -1.0)
    with pytest.raises(ValueError, match="sigma"):
        data.blur(x, float("nan"))
    with pytest.raises(ValueError, match="NCHW"):
        data.blur(x[0], 1.0)


def test_blur_impulse_response_is_the_gaussian():
    sigma = 1.5
    x = torch.zeros(1, 1, 31, 31)
    x[0, 0, 15, 15] = 1.0
    y = data.blur(x, sigma)[0, 0]
    kernel = data.gaussian_kernel1d(sigma)
    radius = (len(kernel) - 1) // 2
    expected = torch.zeros(31, 31)
    expected[15 - radius:16 + radius, 15 - radius:16 + radius] = kernel[:, None] * kernel[None, :]
    assert torch.allclose(y, expected, atol=1e-7)
    assert float(y.sum()) == pytest.approx(1.0, abs=1e-6)
    u = torch.arange(31.0) - 15
    variance = float((y.sum(0) * u ** 2).sum())
    assert variance == pytest.approx(sigma ** 2, rel=0.03)  # truncated at 3 sigma: slightly under sigma^2
    assert float(kernel[radius]) == pytest.approx(1 / (sigma * math.sqrt(2 * math.pi)), rel=0.01)


def test_blur_properties():
    torch.manual_seed(0)
    x = torch.rand(3, 3, 16, 16)
    y = data.blur(x, 1.0)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    constant = torch.full((1, 3, 16, 16), 0.3)
    assert torch.allclose(data.blur(constant, 2.0), constant, atol=1e-6)
    assert torch.allclose(data.blur(x[:1, :1], 1.0), y[:1, :1])  # channels and images are independent
    tv = lambda t: float((t[..., 1:, :] - t[..., :-1, :]).abs().mean())  # noqa: E731
    assert tv(y) < 0.5 * tv(x) and tv(data.blur(x, 3.0)) < tv(y)
    tiny = data.blur(torch.rand(1, 1, 4, 4), 5.0)  # kernel wider than the image: replicated borders
    assert tiny.shape == (1, 1, 4, 4) and float(tiny.std()) < 0.1


def test_resize_antialiased_and_bounded():
    stripes = torch.zeros(1, 1, 64, 64)
    stripes[..., ::2] = 1.0
    small = data.resize(stripes, 8)
    assert small.shape == (1, 1, 8, 8) and torch.allclose(small, torch.full_like(small, 0.5), atol=0.02)
    x = torch.rand(2, 3, 10, 10)
    assert data.resize(x, 10) is x
    big = data.resize(x, (20, 30))
    assert big.shape == (2, 3, 20, 30) and float(big.min()) >= 0 and float(big.max()) <= 1
    with pytest.raises(ValueError, match="size"):
        data.resize(x, 0)


def test_to_channels():
    rgb = torch.zeros(3, 3, 2, 2)
    for i in range(3):
        rgb[i, i] = 1.0
    grey = data.to_channels(rgb, 1)
    assert grey.shape == (3, 1, 2, 2)
    assert torch.allclose(grey[:, 0, 0, 0], torch.tensor(data.LUMA_WEIGHTS))
    back = data.to_channels(grey, 3)
    assert back.shape == (3, 3, 2, 2) and torch.equal(back[:, 0], grey[:, 0]) and torch.equal(back[:, 2], grey[:, 0])
    with pytest.raises(ValueError, match="channels"):
        data.to_channels(rgb, 2)
    with pytest.raises(ValueError, match="1 or 3 channels"):
        data.to_channels(torch.zeros(1, 4, 2, 2), 1)
