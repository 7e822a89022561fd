"""Interpolation measured (issue 14, item 4): :func:`atebm.apps.interpolate.measure_interpolation` on paths whose
classes and features are known by construction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from atebm.apps.interpolate import measure_interpolation
from atebm.metrics import frechet_distance


class _Brightness:
    """A stand-in classifier: class 1 when the image's mean is above 0.5, else 0; features = (mean, first pixel)."""

    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        p1 = (x.flatten(1).mean(1) > 0.5).float()
        return torch.stack([1 - p1, p1], dim=1)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x.flatten(1).mean(1), x.flatten(1)[:, 0]], dim=1)


def test_classes_changes_and_fd_along_known_paths():
    g = torch.Generator().manual_seed(0)
    m, num = 6, 5
    levels = torch.tensor([0.1, 0.3, 0.45, 0.7, 0.9])  # path brightness: class 0, 0, 0, 1, 1
    noise = 0.01 * torch.rand(m, num, 1, 4, 4, generator=g)
    samples = levels.view(1, num, 1, 1, 1) + noise
    samples[1] = samples[1].flip(0)  # one path runs the other way: 1, 1, 0, 0, 0
    reference = np.random.default_rng(0).normal(0.5, 0.1, size=(50, 2))
    result = measure_interpolation(samples, _Brightness(), reference)
    assert result["classes"][0] == [0, 0, 0, 1, 1] and result["classes"][1] == [1, 1, 0, 0, 0]
    assert result["class_changes_mean"] == 1.0 and result["ends_differ"] == 1.0
    assert result["midpoint_class_is_an_end_class"] == 1.0
    assert result["t"] == [0.0, 0.25, 0.5, 0.75, 1.0]
    features = _Brightness().features(samples[:, 2].reshape(m, 1, 4, 4)).numpy()
    assert result["fd_midpoint"] == pytest.approx(frechet_distance(features, reference))
    assert result["fd_endpoints"] == pytest.approx(0.5 * (result["fd"][0] + result["fd"][-1]))
    assert result["class_histogram"][0] == [5, 1] and result["class_histogram"][2] == [6, 0]


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="shape"):
        measure_interpolation(torch.rand(4, 1, 4, 4), _Brightness(), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="at least"):
        measure_interpolation(torch.rand(1, 5, 1, 4, 4), _Brightness(), np.zeros((3, 2)))
