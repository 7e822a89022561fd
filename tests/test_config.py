"""The one configuration idiom (:mod:`atebm.config`): validation, from_dict / to_dict / replace, and every config
class of the library, found by scanning the package, so that a new config is covered without editing this file."""
from __future__ import annotations

import dataclasses
import importlib
import json
import math
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

import atebm
from atebm.config import REQUIRED, Config, above, at_least, each, in_range, non_empty, one_of, setting


@dataclass(frozen=True)
class _Inner(Config):
    norm: str = setting(REQUIRED, one_of("l2", "linf"))
    eps: float = setting(1.0, in_range(0, math.inf, hi_open=True))


@dataclass(frozen=True)
class _Example(Config):
    steps: int = setting(100, at_least(1))
    rate: float = setting(0.5, in_range(0, 1, lo_open=True))
    decay: float | None = setting(None, in_range(0, 1, lo_open=True, hi_open=True))
    pair: tuple[float, float] = (0.0, 1.0)
    sizes: tuple[float | None, ...] = setting((None, 2.0), non_empty(), each(above(0)))
    loss: str = setting("bce", one_of({"bce": "binary AT", "ebm": "the ablation"}))
    inner: _Inner = _Inner("l2")
    others: tuple[_Inner, ...] = ()
    lo: int = 0
    hi: int = 1

    def check(self) -> Iterator[str]:
        if self.lo > self.hi:
            yield f"need lo <= hi, got lo={self.lo}, hi={self.hi}"


@dataclass(frozen=True)
class _Faster(_Example):
    steps: int = 10  # a new default; the rule at_least(1) of _Example still holds


def test_unknown_keys_are_named_with_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown _Example key\(s\) \['step'\]; valid keys: \['decay', 'hi', "):
        _Example.from_dict({"step": 3})
    with pytest.raises(ValueError, match=r"unknown _Example key\(s\) \['rat'\]"):
        _Example().replace(rat=0.1)
    with pytest.raises(ValueError, match=r"_Inner needs key\(s\) \['norm'\]"):
        _Inner.from_dict({"eps": 1.0})
    with pytest.raises(TypeError, match="must be a mapping"):
        _Inner.from_dict([("norm", "l2")])  # type: ignore[arg-type]


def test_wrong_types_fail_with_the_field_the_type_and_the_value():
    with pytest.raises(ValueError, match=r"invalid _Example: steps must be an integer, got 2.5$"):
        _Example(steps=2.5)
    with pytest.raises(ValueError, match="steps must be an integer, got True"):
        _Example(steps=True)
    with pytest.raises(ValueError, match=r"pair must be a list of 2 numbers, got \(1.0,\)"):
        _Example(pair=(1.0,))
    with pytest.raises(ValueError, match="rate must be a number, got 'fast'"):
        _Example(rate="fast")
    with pytest.raises(ValueError, match=r"inner: invalid _Inner: norm must be one of \('l2', 'linf'\), got 'l1'"):
        _Example(inner={"norm": "l1"})


def test_ranges_and_choices_name_the_valid_values_and_every_problem_is_in_one_line():
    with pytest.raises(ValueError) as info:
        _Example(steps=0, rate=0.0, decay=1.0, sizes=(1.0, -1.0), loss="hinge", pair=(1.0,))
    message = str(info.value)
    assert "\n" not in message and message.startswith("invalid _Example: ")
    for part in ("steps must be >= 1, got 0", "rate must be in (0, 1], got 0.0",
                 "decay must be in (0, 1) or None, got 1.0",
                 "sizes must be a list whose items are each > 0, got (1.0, -1.0)",
                 "loss must be one of 'bce' (binary AT), 'ebm' (the ablation), got 'hinge'",
                 "pair must be a list of 2 numbers, got (1.0,)"):
        assert part in message
    with pytest.raises(ValueError, match="^invalid _Example: need lo <= hi, got lo=3, hi=2$"):
        _Example(lo=3, hi=2)  # cross-field rules run once every field is valid
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0, got inf"):
        _Inner("l2", math.inf)
    with pytest.raises(ValueError, match="sizes must be non-empty"):
        _Example(sizes=())
    with pytest.raises(ValueError, match="steps must be >= 1"):
        _Faster(steps=0)
    assert _Faster().steps == 10


def test_values_are_converted_to_the_declared_types():
    config = _Example(steps=1e3, rate=1, pair=[0, 1], sizes=[None, 3], others=[{"norm": "linf"}])
    assert config.steps == 1000 and isinstance(config.steps, int)
    assert config.rate == 1.0 and isinstance(config.rate, float)
    assert config.pair == (0.0, 1.0) and config.sizes == (None, 3.0) and config.others == (_Inner("linf"),)
    # number text only from files: JSON written by atebm.training.write_json holds "inf"; a direct value is refused
    read = _Example.from_dict({"decay": "0.5", "sizes": ["inf", None], "inner": {"norm": "l2", "eps": "1e-3"}})
    assert read.decay == 0.5 and read.sizes == (math.inf, None) and read.inner.eps == 0.001
    with pytest.raises(ValueError, match="rate must be a number, got '0.25'"):
        _Example(rate="0.25")


def test_configs_are_frozen_and_replace_validates():
    config = _Example()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.steps = 3  # type: ignore[misc]
    assert config.replace(steps=3).steps == 3 and config.steps == 100
    with pytest.raises(ValueError, match="steps must be >= 1"):
        config.replace(steps=0)


def test_to_dict_is_json_ready_and_tuples_and_nested_configs_survive_json():
    config = _Example(pair=(0.5, 0.75), others=(_Inner("linf", 0.3),))
    values = config.to_dict()
    assert values["pair"] == [0.5, 0.75] and values["inner"] == {"norm": "l2", "eps": 1.0}
    back = _Example.from_dict(json.loads(json.dumps(values)))
    assert back == config and isinstance(back.pair, tuple) and isinstance(back.others[0], _Inner)


# ------------------------------------------------------------------------------------------------ the library
def _library_configs() -> list[type[Config]]:
    """Every subclass of Config defined in the package: each library module is imported (not the entry points,
    nor ``atebm.cli``, which only parses options into the library's configs)."""
    for module in pkgutil.walk_packages(atebm.__path__, "atebm."):
        if not module.name.endswith("__main__") and not module.name.startswith("atebm.cli"):
            importlib.import_module(module.name)
    found: list[type[Config]] = []
    stack = list(Config.__subclasses__())
    while stack:
        cls = stack.pop()
        stack += cls.__subclasses__()
        if cls.__module__.startswith("atebm.") and cls not in found:
            found.append(cls)
    return sorted(found, key=lambda c: f"{c.__module__}.{c.__qualname__}")


#: Arguments of the configs that have no valid default (a required field, or a rule such as "needs a budget").
_EXAMPLES: dict[str, dict[str, Any]] = {
    "atebm.attacks.specs.ThreatModel": {"norm": "linf", "eps": 0.3},
    "atebm.attacks.specs.AttackSpec": {"method": "pgd", "steps": 7, "step_size": 0.1},
    "atebm.training.config.TrainerOptions": {"max_iters": 5, "betas": (0.5, 0.9)},
    "atebm.training.config.TrainConfig": {"max_iters": 5, "augment_crop_scale": (0.5, 1.0)},
    "atebm.gat.presets.ValidationRecipe": {"steps": 2, "step_size": 0.2, "every": 5},
    "atebm.gat.presets.ClassifierRecipe": {"epochs": 1},
    "atebm.gat.presets.GatPreset": {"name": "tiny", "description": "d", "data": "mnist", "norm": "linf", "eps": 0.3,
                                    "train": {"max_iters": 5}, "train_attack": "pgd",
                                    "validation": {"steps": 2, "step_size": 0.2, "every": 5},
                                    "classifier": {"epochs": 1}, "hardware": "cpu", "wall_clock": "-"},
    "atebm.dsgan.cases.Case": {"name": "tiny", "description": "d", "paper": "S Fig. 3", "kind": "points",
                               "mixture": "disc"},
    "atebm.presets.GenerationSettings": {"steps": 8, "step_size": 1.0},
    "atebm.presets.Preset": {"name": "tiny", "description": "d", "data": "mnist", "p0": "photos", "seeds": "photos",
                             "size": 28, "channels": 1, "train": {"max_iters": 5},
                             "generate": {"steps": 8, "step_size": 1.0}, "hardware": "cpu", "wall_clock": "-"},
}


def _example(cls: type[Config]) -> Config:
    name = f"{cls.__module__}.{cls.__qualname__}"
    try:
        return cls(**_EXAMPLES.get(name, {}))
    except (TypeError, ValueError) as error:
        pytest.fail(f"{name} cannot be built from its defaults ({error}); add its arguments to _EXAMPLES")


def test_the_library_has_one_config_base_used_by_every_config():
    names = {cls.__qualname__ for cls in _library_configs()}
    assert {"TrainConfig", "TrainerOptions", "DSGANConfig", "SSLConfig", "EBMConfig", "RobustSettings",
            "MaximinSettings", "MinimaxSettings", "AttackConfig", "OODEvalConfig", "Scale", "ThreatModel",
            "AttackSpec", "GatEvalConfig", "ClassifyEvalConfig", "AscentProtocol"} <= names


@pytest.mark.parametrize("cls", _library_configs(), ids=lambda c: c.__qualname__)
def test_every_library_config_round_trips_through_json_and_is_frozen(cls):
    config = _example(cls)
    assert dataclasses.is_dataclass(cls) and cls.__dataclass_params__.frozen, f"{cls.__name__} must be frozen"
    text = json.dumps(config.to_dict())
    assert type(config).from_dict(json.loads(text)) == config
    with pytest.raises(ValueError, match=f"unknown {cls.__name__} key"):
        config.replace(no_such_field=1)
    first = dataclasses.fields(cls)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(config, first, getattr(config, first))


def test_old_checkpoint_dicts_still_load():
    """Checkpoints store to_dict() output; one written before the trainer options joined the other modes' configs
    (no ema_decay, precision, ... keys; tuples as lists) loads with the defaults of the new fields."""
    from atebm.baselines import EBMConfig
    from atebm.dsgan import DSGANConfig, SSLConfig

    old_ssl = {"mode": "supervised", "alpha": 0.8, "weight_range": [0.0, 0.3], "critic_steps": 1, "gp_weight": 10.0,
               "unlabelled_weight": 1.0, "batch_size": 100, "labelled_batch": 100, "lr": 3e-3, "g_lr": 3e-3,
               "critic_lr": 1e-4, "betas": [0.5, 0.999], "max_iters": 3000, "log_every": 100, "ckpt_every": 1000,
               "seed": 0, "device": "auto", "progress": True}
    ssl = SSLConfig.from_dict(old_ssl)
    assert ssl.ema_decay is None and ssl.weight_range == (0.0, 0.3) and ssl.train_config().k_max == 0
    old_dsgan = {"alpha": 0.5, "critic_steps": 5, "loss": "wgan-gp", "generator_loss": None, "gp_weight": 10.0,
                 "sampling_trick": True, "batch_size": 64, "lr": 2e-4, "g_lr": 2e-4, "betas": [0.5, 0.9],
                 "max_iters": 100, "time_budget_s": None, "grad_clip": None, "log_every": 50, "ckpt_every": 500,
                 "seed": 0, "device": "auto", "progress": True}
    assert DSGANConfig.from_dict(old_dsgan).objective_options()["betas"] == (0.5, 0.9)
    assert EBMConfig.from_dict({"max_iters": 10, "buffer_size": 64, "sgld_noise_std": None}).precision == "fp32"
