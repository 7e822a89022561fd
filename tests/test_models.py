"""Every architecture and every preset's model spec builds, gives one score per sample and back-propagates; the
score wrapper's ``logit=`` and per-channel normalisation do what their docstrings say."""
from __future__ import annotations

import json
from typing import Any

import pytest
import torch

from atebm import ScoreModel, build_score_model
from atebm.models import ARCHITECTURES
from atebm.presets import PRESETS

pytestmark = pytest.mark.usefixtures("one_thread")


def _arch_key(class_part: str) -> str:
    """The registry name of the architecture whose class name contains ``class_part`` (survives renames, e.g.
    ``resnet32``/``ResNet32`` -> ``cifar_resnet``/``CifarResNet``)."""
    keys = [key for key, cls in ARCHITECTURES.items() if class_part in cls.__name__]
    assert len(keys) == 1, f"expected one architecture class named *{class_part}*, found {keys}"
    return keys[0]


#: (part of the class name, kwargs, input shape without the batch): small widths, every structural option once.
CASES: list[tuple[str, dict[str, Any], tuple[int, ...]]] = [
    ("MLP2D", {"hidden": 8, "depth": 2}, (2,)),
    ("MLP2D", {"hidden": 8, "depth": 0}, (2,)),
    ("ConvNet", {"in_channels": 1, "width": 4}, (1, 28, 28)),
    ("ConvPoolNet", {"in_channels": 1, "widths": [4, 8], "hidden": 16}, (1, 28, 28)),
    ("ConvNet", {"in_channels": 3, "width": 4, "batchnorm": True, "downsample": "avgpool", "head": "flatten",
                 "input_size": 32, "head_hidden": 16}, (3, 32, 32)),
    ("ResNet", {"depth": 18, "in_channels": 3, "width": 4}, (3, 32, 32)),
    ("ResNet", {"depth": 34, "in_channels": 3, "width": 4}, (3, 32, 32)),
    ("ResNet", {"depth": 50, "in_channels": 3, "width": 4}, (3, 32, 32)),
    ("ResNet", {"depth": 18, "in_channels": 1, "width": 4}, (1, 28, 28)),
    ("Discriminator", {"resolution": 64, "max_width": 16}, (3, 64, 64)),
    ("Discriminator", {"resolution": 128, "max_width": 16}, (3, 128, 128)),
    ("Discriminator", {"resolution": 256, "max_width": 16}, (3, 256, 256)),
]


def _check_score_model(model: ScoreModel, shape: tuple[int, ...]) -> None:
    """Shape (N,), finite, one score per sample (no batch mixing in eval mode), and gradients reach every
    parameter and the input."""
    x = torch.rand(2, *shape, requires_grad=True)
    model.train()
    out = model(x)
    assert out.shape == (2,) and out.dtype == torch.float32 and torch.isfinite(out).all()
    out.sum().backward()
    missing = [name for name, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"no gradient reaches {missing}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert sum(float(p.grad.abs().sum()) for p in model.parameters()) > 0
    assert x.grad is not None and x.grad.abs().sum() > 0, "the score has an input gradient (PGD needs it)"
    model.eval()
    with torch.no_grad():
        both = model(x)
        assert both.shape == (2,)
        assert torch.allclose(model(x[1:]), both[1:], atol=1e-5, rtol=1e-4), "one score per sample"


@pytest.mark.parametrize("prefix,kwargs,shape", CASES,
                         ids=[f"{p}-{json.dumps(k, sort_keys=True)}" for p, k, _ in CASES])
def test_every_architecture_builds_scores_and_backpropagates(prefix, kwargs, shape):
    spec = {"arch": _arch_key(prefix), "kwargs": kwargs}
    model = build_score_model(spec)
    _check_score_model(model, shape)
    rebuilt = build_score_model(model.spec)       # what a checkpoint does
    rebuilt.load_state_dict(model.state_dict())
    x = torch.rand(2, *shape)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(x), model.eval()(x))


def test_the_cases_cover_every_registered_architecture():
    covered = {_arch_key(prefix) for prefix, _, _ in CASES}
    built_in = {key for key, cls in ARCHITECTURES.items() if cls.__module__ == "atebm.models.networks"}
    assert built_in <= covered, f"architectures without a test case: {built_in - covered}"


def _preset_specs() -> list[Any]:
    """One case per distinct preset model spec (the three 256 px presets share theirs), at the preset's size."""
    seen: dict[str, Any] = {}
    for preset in PRESETS.values():
        key = json.dumps([preset.train["model"], preset.size, preset.channels], sort_keys=True)
        if key not in seen:
            big = preset.size > 32  # the 256 px discriminator: about 10 s on 2 loaded cores
            seen[key] = pytest.param(preset.name, id=preset.name, marks=[pytest.mark.slow] if big else [])
    return list(seen.values())


@pytest.mark.parametrize("name", _preset_specs())
def test_every_preset_model_spec_builds_at_the_preset_size(name):
    preset = PRESETS[name]
    model = build_score_model(preset.train["model"])
    _check_score_model(model, (preset.channels, preset.size, preset.size))


def test_the_published_backbones_have_their_published_size():
    """ResNet-50 (E, CIFAR-10) and the 256 px discriminator of E supp. Tab. 2 (64 ... 512 channels)."""
    resnet = ARCHITECTURES[_arch_key("ResNet")](depth=50, in_channels=3, out_dim=1)
    assert sum(p.numel() for p in resnet.parameters()) == pytest.approx(23.5e6, rel=0.01)
    convs = [m for m in ARCHITECTURES[_arch_key("Discriminator")](resolution=256).modules()
             if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert sorted({c.out_channels for c in convs}) == [64, 128, 256, 512]


def test_discriminator_refuses_the_wrong_resolution():
    model = build_score_model({"arch": _arch_key("Discriminator"), "kwargs": {"resolution": 64, "max_width": 8}})
    with pytest.raises(ValueError, match="64"):
        model(torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="power of two"):
        build_score_model({"arch": _arch_key("Discriminator"), "kwargs": {"resolution": 96}})


# ------------------------------------------------------------------------------------------------ the score wrapper
def test_logit_picks_one_output_of_a_multi_output_backbone():
    key = _arch_key("ResNet")
    spec = {"arch": key, "kwargs": {"depth": 18, "in_channels": 3, "out_dim": 10, "width": 4}, "logit": 3}
    model = build_score_model(spec).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model(x), model.backbone(x)[:, 3])
    _check_score_model(model, (3, 32, 32))
    with pytest.raises(ValueError, match="logit"):
        build_score_model({**spec, "logit": None})(x)


def test_per_channel_normalisation_uses_each_channels_mean_and_std():
    mean, std = [0.1, 0.5, 0.9], [0.5, 0.25, 2.0]
    spec = {"arch": "convnet", "kwargs": {"in_channels": 3, "width": 4}, "mean": mean, "std": std}
    model = build_score_model(spec).eval()
    x = torch.rand(2, 3, 16, 16)
    expected_input = (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.allclose(model(x), model.backbone(expected_input)[:, 0], atol=1e-6)
        swapped = build_score_model({**spec, "mean": mean[::-1], "std": std[::-1]}).eval()
        swapped.backbone.load_state_dict(model.backbone.state_dict())
        assert not torch.allclose(swapped(x), model(x), atol=1e-4), "the channel order of mean/std matters"
    rebuilt = build_score_model(model.spec)
    rebuilt.load_state_dict(model.state_dict())
    assert torch.equal(rebuilt.mean, model.mean) and torch.equal(rebuilt.std, model.std)
    _check_score_model(build_score_model(spec), (3, 16, 16))


def test_scalar_normalisation_and_its_default():
    x = torch.rand(2, 1, 16, 16)
    model = build_score_model({"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4}, "mean": 0.5,
                               "std": 0.25}).eval()
    plain = ScoreModel(model.backbone).eval()   # no mean/std: the identity
    with torch.no_grad():
        assert torch.allclose(model(x), model.backbone((x - 0.5) / 0.25)[:, 0], atol=1e-6)
        assert torch.allclose(plain(x), model.backbone(x)[:, 0], atol=1e-6)


def test_bad_specs_give_clear_errors():
    with pytest.raises(ValueError, match="unknown architecture"):
        build_score_model({"arch": "transformer"})
    with pytest.raises(ValueError, match="bad arguments"):
        build_score_model({"arch": "convnet", "kwargs": {"widht": 4}})
    with pytest.raises(ValueError, match="std must be positive"):
        build_score_model({"arch": "convnet", "kwargs": {"in_channels": 1}, "std": 0.0})


def test_per_channel_statistics_must_match_the_input_channels():
    """Two means for three channels is a clear ValueError (at build or at the first call), not a broadcast error
    from inside torch."""
    spec = {"arch": "convnet", "kwargs": {"in_channels": 3, "width": 4}, "mean": [0.5, 0.5], "std": [0.5, 0.5]}
    with pytest.raises(ValueError, match="channel"):
        build_score_model(spec)(torch.rand(2, 3, 16, 16))
