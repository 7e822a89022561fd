"""Training presets of the detector committee: the MNIST settings of T Tab. 3.1 and the CPU preset ``mnist``.

Every detector d_k of a preset is trained with the same :class:`~atebm.training.TrainConfig` (fixed K: the
training attack always runs ``k_max`` steps) on p_data = class k and p_0 = the other classes, the attack being
constrained to the preset's ``norm`` ball of radius ``eps`` with a random start (T Eq. 3.23). The weights kept for
each class are those with the best validation AUC under the preset's validation attack.

:data:`GAT_PRESETS` holds every recipe ``atebm gat train --preset`` accepts: the detection committees and the
recipes of the generative robust classifier (T Sec. 3.4; their names are :data:`CLASSIFY_PRESET_NAMES`).
:data:`atebm.presets.REGISTRY` lists them with every other command's presets (``atebm presets``).
"""
from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ..config import REQUIRED, Config, above, at_least, each, one_of, satisfies, setting
from ..training import TrainConfig
from .networks import ARCH_NAME

__all__ = ["GatPreset", "ValidationRecipe", "ClassifierRecipe", "GAT_PRESETS", "CLASSIFY_PRESET_NAMES",
           "get_gat_preset", "detector_model_spec", "mnist_at", "with_inout_at", "ATTACK_RULES",
           "DIGIT_JITTER"]

#: A shape jitter for digits (options of :func:`atebm.gat.training.jitter`, ``GatPreset.extra["jitter"]``), as tried
#: in benchmarks/results/gat/recipes.md (recipes k20-jitter, k20-jitter-ema).
DIGIT_JITTER: dict[str, float] = {"rotate": 10.0, "scale": 0.15, "shift": 2.0, "thickness": 0.4}

#: Step rules of an attack: ``"pgd"`` (atebm.pgd: sign step for Linf, unit-L2 step for L2) or ``"adam"``
#: (``atebm.pgd(rule="adam")``, the Adam-step PGD of T Sec. 3.2.3).
ATTACK_RULES = ("pgd", "adam")


def detector_model_spec(size: int = 28, channels: int = 1, widths: tuple[int, int] = (32, 64), hidden: int = 1024,
                        out_dim: int = 1) -> dict[str, Any]:
    """The model spec of T Tab. 3.1's network (conv 5x5 32 - pool - conv 5x5 64 - pool - fc 1024 - out)."""
    return {"arch": ARCH_NAME, "kwargs": {"in_channels": channels, "widths": list(widths), "hidden": hidden,
                                          "out_dim": out_dim, "input_size": size}, "mean": 0.5, "std": 0.5}


@dataclass(frozen=True)
class ValidationRecipe(Config):
    """How each detector's weights are selected (T Sec. 3.2.3, "the checkpoint which has the best validation
    performance"): every ``every`` iterations (and on the final weights) the AUC of clean class-k validation images
    against ``negatives`` other-class validation images (None: all) attacked by ``steps`` steps of ``rule``
    (:data:`ATTACK_RULES`) of size ``step_size`` inside the preset's ball."""

    steps: int = setting(REQUIRED, at_least(1))
    step_size: float = setting(REQUIRED, above(0))
    every: int = setting(REQUIRED, at_least(1))
    rule: str = setting("pgd", one_of(*ATTACK_RULES))
    negatives: int | None = setting(None, at_least(1, why="None: every other-class validation image"))


@dataclass(frozen=True)
class ClassifierRecipe(Config):
    """The softmax classifier f of a committee (integrated detection, T Eq. 3.27): the T Tab. 3.1 network with conv
    ``widths`` and ``hidden`` units, trained ``epochs`` epochs with Adam (``lr``) in batches of ``batch_size``."""

    epochs: int = setting(REQUIRED, at_least(1))
    batch_size: int = setting(64, at_least(1))
    lr: float = setting(1e-3, above(0))
    widths: tuple[int, int] = setting((32, 64), each(at_least(1)))
    hidden: int = setting(1024, at_least(1))


def _valid_detector_training(preset: GatPreset) -> Iterator[str]:
    try:
        preset.detector_config()
    except (TypeError, ValueError) as error:
        yield f"train: {error}"


@dataclass(frozen=True)
class GatPreset(Config):
    """A committee recipe: data, threat model (``norm`` ball of radius ``eps``), detector training (``train``: the
    :class:`~atebm.training.TrainConfig` fields of every detector, checked when the preset is built; the training
    attack steps by ``train_attack``, one of :data:`ATTACK_RULES`), the :class:`ValidationRecipe` that selects
    each detector's weights and the :class:`ClassifierRecipe` of the softmax classifier f."""

    name: str = setting(REQUIRED, satisfies(bool, "a non-empty name"))
    description: str = setting(REQUIRED)
    data: str = setting(REQUIRED, satisfies(bool, "a data source string"))
    norm: str = setting(REQUIRED, one_of("linf", "l2"))
    eps: float = setting(REQUIRED, above(0))
    train: dict[str, Any] = setting(REQUIRED)
    train_attack: str = setting(REQUIRED, one_of(*ATTACK_RULES))
    validation: ValidationRecipe = setting(REQUIRED)
    classifier: ClassifierRecipe = setting(REQUIRED)
    hardware: str = setting(REQUIRED)
    wall_clock: str = setting(REQUIRED)
    size: int = setting(28, at_least(8))
    channels: int = setting(1, at_least(1))
    extra: dict[str, Any] = setting(factory=dict)

    def check(self) -> Iterator[str]:
        yield from _valid_detector_training(self)

    def smoke(self) -> GatPreset:
        """This recipe at a seconds-long budget, for tests and for trying a command (``--smoke``): two detector
        iterations, one validation of one step to the ball's boundary on 10 negatives, one classifier epoch. Its
        numbers mean nothing."""
        return self.replace(
            name=f"{self.name}-smoke", description=f"{self.description} (smoke budget: numbers mean nothing)",
            train={**self.train, "max_iters": 2, "final_iters": None, "final_epochs": None, "log_every": 1,
                   "ckpt_every": 2, "progress": False},
            validation=self.validation.replace(steps=1, step_size=self.eps, negatives=10, every=2),
            classifier=self.classifier.replace(epochs=1))

    def detector_config(self, **overrides: Any) -> TrainConfig:
        """The TrainConfig every detector of this preset trains with (``overrides`` replace fields)."""
        values = copy.deepcopy(self.train)
        values.setdefault("model", detector_model_spec(self.size, self.channels))
        values.update(pgd_norm=self.norm, pgd_eps=self.eps, pgd_random_start=True)
        values.update(overrides)
        return TrainConfig.from_dict(values)


def _thesis(name: str, norm: str, eps: float, steps: int, step: float, val_step: float) -> GatPreset:
    return GatPreset(
        name=name,
        description=f"T Tab. 3.1: {norm.upper()} eps {eps:g}, training attack {steps} Adam steps x {step:g}, "
                    f"validation attack 200 x {val_step:g}, 100 epochs, batch 32 + 32, Adam 5e-4",
        data="mnist", norm=norm, eps=eps,
        train=dict(batch_size=32, lr=5e-4, optimizer="adam", betas=(0.9, 0.999), k_start=steps, k_max=steps,
                   step_size=step, final_epochs=100.0, log_every=50, ckpt_every=500),
        train_attack="adam",
        validation=ValidationRecipe(rule="adam", steps=200, step_size=val_step, negatives=None, every=500),
        classifier=ClassifierRecipe(epochs=20, batch_size=64, lr=1e-3, widths=(32, 64), hidden=1024),
        hardware="1 GPU (the thesis; full MNIST: 50,000 train / 10,000 val)",
        wall_clock="not measured here (100 epochs x 100-step attacks per detector)")


_MNIST = GatPreset(
    name="mnist",
    description="CPU preset: MNIST 5,000 (350 train images per class), Linf 0.3; the T Tab. 3.1 network at half "
                "width (conv 16 - conv 32 - fc 256); training attack 20 sign steps x 0.025 from a random start, 500 "
                "iterations of 32 + 32; the class-k images lowered inside Linf 0.1 by 5 sign-descent steps x 0.03 "
                "(in-distribution AT at a small radius, T Eq. 3.45's first term); best of 5 validations (50 x 0.02 "
                "sign steps from a random start on 150 other-class validation digits) per class; channels-last "
                "memory layout (25% fewer CPU seconds than NCHW for this network's conv and pool layers)",
    data="mnist", norm="linf", eps=0.3,
    train=dict(model=detector_model_spec(widths=(16, 32), hidden=256), batch_size=32, lr=1e-3,
               optimizer="adam", betas=(0.9, 0.999), k_start=20, k_max=20, step_size=0.025, max_iters=500,
               log_every=50, ckpt_every=100, indist_at_steps=5, indist_at_eps=0.1, indist_at_step_size=0.03,
               channels_last=True),
    train_attack="pgd",
    validation=ValidationRecipe(rule="pgd", steps=50, step_size=0.02, negatives=150, every=100),
    classifier=ClassifierRecipe(epochs=10, batch_size=64, lr=1e-3, widths=(16, 32), hidden=256),
    hardware="2 CPU cores (one detector per core)",
    wall_clock="11 min 47 s wall clock on 2 idle cores for `atebm gat train --preset mnist` (default workers: 2; "
               "1,351 CPU s in all; benchmarks/results/gat/README.md)")

_FASHION = dataclasses.replace(
    _MNIST, name="fashion",
    description="CPU preset: Fashion-MNIST at full size (55,000 train / 5,000 val / 10,000 test), Linf 0.1 (the usual "
                "Fashion-MNIST radius; 0.3 would let a perturbation repaint a garment), the `mnist` recipe without "
                "its in-distribution AT and with its steps scaled to the radius: training attack 20 sign steps x "
                "0.01 from a random start, 500 iterations of 32 + 32 (under 3 passes over the 5,500 images of a "
                "class); best of 5 validations (50 x 0.007 sign steps from a random start, 150 other-class "
                "validation images)",
    data="fashion", eps=0.1,
    train={**{k: v for k, v in _MNIST.train.items() if not k.startswith("indist_at")}, "step_size": 0.01},
    validation=_MNIST.validation.replace(step_size=0.007),
    wall_clock="1,629 CPU s for the ten detectors and the classifier with the NCHW layout (channels-last, now "
               "inherited from `mnist`, takes about 25% fewer), so about 14 minutes on 2 idle cores "
               "(benchmarks/results/gat/fashion_tables.md)")



def mnist_at(name: str, norm: str, eps: float) -> GatPreset:
    """The ``mnist`` CPU recipe at another threat model (T Tab. 3.1's other committees at the CPU budget): every
    radius and step scaled with eps as in ``mnist`` at Linf 0.3: training attack 20 steps x eps/12 (the path crosses
    the ball 1.67 times), in-distribution AT inside eps/3 by 5 steps x eps/10, validation 50 steps x eps/15."""
    return dataclasses.replace(
        _MNIST, name=name, norm=norm, eps=eps,
        description=f"CPU preset: the `mnist` recipe (MNIST 5,000, half-width T Tab. 3.1 network, 500 iterations "
                    f"of 32 + 32, best of 5 validations) at {norm.upper()} eps {eps:g}, every radius and step "
                    f"scaled with eps: training attack 20 x {eps / 12:.4g} from a random start, class-k images "
                    f"lowered inside {eps / 3:.4g} by 5 x {eps / 10:.4g}, validation 50 x {eps / 15:.4g}",
        train={**_MNIST.train, "step_size": eps / 12, "indist_at_eps": eps / 3, "indist_at_step_size": eps / 10},
        validation=_MNIST.validation.replace(step_size=eps / 15),
        wall_clock="about the `mnist` preset's (same network, iterations and attack steps)")


def with_inout_at(base: GatPreset, name: str, eps_in: float, steps_in: int, step_in: float, iters: int, *,
                  eps_in_start: float | None = None, warmup: int = 0, base_label: str | None = None) -> GatPreset:
    """``base`` with combined in- and out-distribution AT (T Eq. 3.45) at the in-distribution radius ``eps_in``,
    reached by a linear ramp from ``eps_in_start`` over ``warmup`` iterations (the trainer's curriculum,
    :class:`~atebm.training.TrainConfig`; the step size scales with the radius): a recipe of the generative robust
    classifier (T Sec. 3.4; :mod:`atebm.gat.robust_training`). ``base_label`` names ``base`` in the description
    (default: its name)."""
    train = dict(base.train, indist_at_steps=steps_in, indist_at_eps=eps_in, indist_at_step_size=step_in,
                 indist_at_eps_start=eps_in_start, indist_at_warmup=warmup, max_iters=iters)
    ramp = (f", ramped linearly from {eps_in_start:g} over the first {warmup} iterations (step size scaled with the "
            f"radius)" if warmup else "")
    ball, step = ("Linf", "sign steps") if base.norm == "linf" else ("L2", "unit-L2 steps")
    label, again = (base_label, "that recipe") if base_label else (base.name, base.name)
    return dataclasses.replace(
        base, name=name, train=train,
        description=f"{label} + in-distribution AT (T Eq. 3.45): class-k inputs lowered by {steps_in} {step} "
                    f"x {step_in:g} inside {ball} eps_1 = {eps_in:g} (from the clean image){ramp}; "
                    f"other classes raised inside {ball} eps_2 = {base.eps:g} as in {again}; {iters} iterations per "
                    f"detector; a detector stuck at the 2 ln 2 loss plateau is restarted once from a new seed, then "
                    f"stops the run")


#: Every committee recipe of ``atebm gat train --preset``: detection (T Sec. 3.2) and robust classification
#: (T Sec. 3.4, :data:`CLASSIFY_PRESET_NAMES`).
GAT_PRESETS: dict[str, GatPreset] = {
    "mnist": _MNIST,
    "fashion": _FASHION,
    "mnist-linf0.3": _thesis("mnist-linf0.3", "linf", 0.3, 100, 0.01, 0.01),
    "mnist-linf0.5": _thesis("mnist-linf0.5", "linf", 0.5, 100, 0.01, 0.01),
    "mnist-l2-2.5": _thesis("mnist-l2-2.5", "l2", 2.5, 100, 0.1, 0.1),
    "mnist-l2-5.0": _thesis("mnist-l2-5.0", "l2", 5.0, 200, 0.1, 0.1),
    "mnist-linf0.5-cpu": mnist_at("mnist-linf0.5-cpu", "linf", 0.5),
    "mnist-l2-2.5-cpu": mnist_at("mnist-l2-2.5-cpu", "l2", 2.5),
    "mnist-l2-5.0-cpu": mnist_at("mnist-l2-5.0-cpu", "l2", 5.0),
    # the generative robust classifier (T Sec. 3.4): the `mnist` recipe with in+out AT at eps_1 = eps_2 = 0.3, eps_1
    # ramped from 0 over half the run (from random weights at a fixed eps_1 some detectors collapsed to the plateau);
    # 800 iterations chosen on validation over 500 (benchmarks/gat_inout_recipes.py: 0.55 against 0.46 at Linf 0.3)
    "mnist-inout": dataclasses.replace(
        with_inout_at(_MNIST, "mnist-inout", 0.3, 5, 0.075, 800, eps_in_start=0.0, warmup=400),
        wall_clock="19 min 16 s wall clock on 2 idle cores for `atebm gat train --preset mnist-inout` (default "
                   "workers: 2; 2,265 CPU s in all; none restarted from the 2 ln 2 plateau; "
                   "benchmarks/results/gat/README_classify.md)"),
}

#: The recipes of :data:`GAT_PRESETS` made for robust classification (T Sec. 3.4) rather than detection.
CLASSIFY_PRESET_NAMES: tuple[str, ...] = ("mnist-inout",)


def get_gat_preset(name: str) -> GatPreset:
    """The committee recipe called ``name``: any preset ``atebm gat train --preset`` accepts, the robust
    classification recipes (:data:`CLASSIFY_PRESET_NAMES`) included."""
    if name not in GAT_PRESETS:
        raise ValueError(f"unknown GAT preset {name!r}; choose from {', '.join(GAT_PRESETS)} "
                         f"(`atebm presets` describes them)")
    return GAT_PRESETS[name]
