"""Every named preset of every command, in one registry (:data:`REGISTRY`), and the training presets of
``atebm train`` (:data:`PRESETS`: the embedded CPU default and the published settings; METHOD Sec. 2, E supp. Tab. 3).

:data:`REGISTRY` is what every command that takes a named preset reads its choices from, and what ``atebm presets``
lists: one :class:`PresetEntry` per (command, name) with a one-line summary, the data it needs, the hardware and the
measured (or published) time, and the object the command runs with::

    atebm train --preset NAME         PRESETS (this module)                  Preset
    atebm gat train --preset NAME     atebm.gat.presets.GAT_PRESETS          GatPreset (detection and T Sec. 3.4)
    atebm dsgan train --case NAME     atebm.dsgan.cases.CASES                Case

A new preset is defined beside its kind (the table above) and appears here, in the command's choices and in
``atebm presets`` by itself; give a GAT recipe whose description is long a one-line summary in
:data:`GAT_SUMMARIES`, and a DSGAN case its measured time in :data:`CASE_MEASUREMENTS`. The GAT and DSGAN tables
are read when first asked for, so importing this module does not import :mod:`atebm.gat` or :mod:`atebm.dsgan`.

A training preset names its data as source strings (see :data:`atebm.data.sources.SOURCE_GRAMMAR`), the training
config, the generation settings used by ``atebm sample``, and the hardware and wall-clock it was measured (or
published) with. The big presets read files the user supplies: pass ``data=...`` and ``p0=...`` on the command line.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .config import REQUIRED, Config, above, at_least, satisfies, setting
from .training import TrainConfig

__all__ = ["Preset", "GenerationSettings", "PRESETS", "get_preset", "PresetEntry", "PresetRegistry", "REGISTRY",
           "COMMANDS", "GAT_SUMMARIES", "CASE_MEASUREMENTS"]


@dataclass(frozen=True)
class GenerationSettings(Config):
    """How ``atebm sample`` (and the demo) generates from a preset's model: ``steps`` PGD ascent steps of L2 size
    ``step_size`` from ``n`` seeds blurred with a Gaussian of sigma ``blur`` pixels first (E supp. Tab. 3)."""

    steps: int = setting(REQUIRED, at_least(0))
    step_size: float = setting(REQUIRED, above(0))
    blur: float = setting(0.0, at_least(0))
    n: int = setting(64, at_least(1))


def _trains(preset: Preset) -> Iterator[str]:
    try:
        preset.config()
    except (TypeError, ValueError) as error:
        yield f"train: {error}"


@dataclass(frozen=True)
class Preset(Config):
    """A training preset of ``atebm train``: data and p_0 source strings, the TrainConfig fields (``train``, checked
    when the preset is built), the :class:`GenerationSettings` of ``atebm sample``, and the hardware and wall-clock
    it was measured (or published) with."""

    name: str = setting(REQUIRED, satisfies(bool, "a non-empty name"))
    description: str = setting(REQUIRED)
    data: str = setting(REQUIRED, satisfies(bool, "a data source string"))
    p0: str = setting(REQUIRED, satisfies(bool, "a data source string"))
    seeds: str = setting(REQUIRED, satisfies(bool, "a data source string"))
    size: int = setting(REQUIRED, at_least(1))
    channels: int = setting(REQUIRED, at_least(1))
    train: dict[str, Any] = setting(REQUIRED)
    generate: GenerationSettings = setting(REQUIRED)
    hardware: str = setting(REQUIRED)
    wall_clock: str = setting(REQUIRED)
    needs_files: str | None = None
    extra: dict[str, Any] = setting(factory=dict)

    def check(self) -> Iterator[str]:
        yield from _trains(self)

    def config(self, **overrides: Any) -> TrainConfig:
        """The preset's :class:`~atebm.training.TrainConfig` (``overrides`` replace fields)."""
        return TrainConfig.from_dict({**copy.deepcopy(self.train), **overrides})


def _published(name: str, *, arch: dict[str, Any], data: str, p0: str, seeds: str, size: int, batch: int,
               iters: int, lr: float, k_max: int, epochs_per_k: float, step: float, r1: float, gen_steps: int,
               gen_step: float, blur: float, needs: str, wall: str) -> Preset:
    return Preset(
        name=name, description=f"published {name} setting (E supp. Tab. 3)", data=data, p0=p0, seeds=seeds,
        size=size, channels=3,
        train=dict(model=arch, batch_size=batch, lr=lr, optimizer="adam", betas=(0.0, 0.99), k_start=0,
                   k_max=k_max, epochs_per_k=epochs_per_k, auc_window=100, auc_threshold=0.8, max_iters=iters,
                   step_size=step, pgd_norm="l2", pgd_eps=math.inf, r1=r1, augment_crop_scale=(0.9, 1.0),
                   augment_flip=True, freeze_bn=True, log_every=100, ckpt_every=2000,
                   # GPU defaults: bf16 autocast + NHWC (a device without bf16 runs fp32 and says so in the log)
                   precision="bf16", channels_last=True, num_workers=4),
        generate=GenerationSettings(steps=gen_steps, step_size=gen_step, blur=blur, n=64),
        hardware="1 GPU (the papers name an RTX 2080 Ti, G Tab. 7)", wall_clock=wall, needs_files=needs)


_IMAGENET_NORM = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def _published_256(name: str, *, data: str, batch: int, iters: int, k_max: int, epochs_per_k: float, r1: float,
                   gen_steps: int, needs: str, wall: str) -> Preset:
    """The 256-px settings of E supp. Tab. 3: the ResNet discriminator, ImageNet p_0 and seeds, lr 5e-5, PGD step
    2.0, generation steps of 8.0 from seeds blurred with sigma 10; the rest per data set."""
    return _published(name, arch={"arch": "discriminator", "kwargs": {"resolution": 256}, **_IMAGENET_NORM},
                      data=data, p0="imagenet:data/imagenet/train?size=256",
                      seeds="imagenet:data/imagenet/val?size=256&n=64", size=256, batch=batch, iters=iters, lr=5e-5,
                      k_max=k_max, epochs_per_k=epochs_per_k, step=2.0, r1=r1, gen_steps=gen_steps, gen_step=8.0,
                      blur=10.0, needs=needs, wall=wall)

#: The small ConvNet of the 28 x 28 grey presets (`mnist`, `fashion`).
_SMALL_CONVNET: dict[str, Any] = {"arch": "convnet", "kwargs": {"in_channels": 1, "width": 16, "activation": "lrelu",
                                                                "downsample": "avgpool", "head": "flatten",
                                                                "input_size": 28, "head_hidden": 256},
                                  "mean": 0.5, "std": 0.5}

PRESETS: dict[str, Preset] = {
    "mnist": Preset(
        name="mnist",
        description="MNIST 5,000 vs natural-photo patches, small ConvNet; the CPU default and `atebm demo`",
        data="mnist?split=train", p0="photos?split=train&n=20000", seeds="photos?split=test&n=256",
        size=28, channels=1,
        train=dict(model=copy.deepcopy(_SMALL_CONVNET),
                   batch_size=32, lr=1e-3, optimizer="adam", betas=(0.0, 0.99), k_start=0, k_max=16,
                   epochs_per_k=2.0, auc_window=10, auc_threshold=0.8, max_iters=2000, step_size=1.0,
                   pgd_norm="l2", pgd_eps=math.inf, r1=1.0, ema_decay=0.99, log_every=25, ckpt_every=200),
        generate=GenerationSettings(steps=32, step_size=1.0, blur=0.0, n=256),
        hardware="2 CPU cores", wall_clock="see README (measured by `atebm demo`)"),
    "fashion": Preset(
        name="fashion",
        description="Fashion-MNIST 55,000 vs natural-photo patches, the `mnist` ConvNet, K schedule and EMA; "
                    "benchmarks/fashion.py selects by validation FD",
        # 100,000 patches: with the default 20,000 the network memorises p_0 (seen 7 times by step 4,400) and wins
        # at K = 16 from step ~4,800 (benchmarks/results/fashion/README.md, arm p0big)
        data="fashion?split=train", p0="photos?split=train&n=100000", seeds="photos?split=test&n=256",
        size=28, channels=1,
        train=dict(model=copy.deepcopy(_SMALL_CONVNET),
                   batch_size=32, lr=1e-3, optimizer="adam", betas=(0.0, 0.99), k_start=0, k_max=16,
                   # 4,000: the validation FD of the weight average was lowest at step 4,000 in all three runs
                   # (FD 24.9 and 40.1 with 20,000 p_0 patches, 31.1 with 100,000; benchmarks/results/fashion)
                   epochs_per_k=2.0, auc_window=10, auc_threshold=0.8, max_iters=4000, step_size=1.0,
                   pgd_norm="l2", pgd_eps=math.inf, r1=1.0, ema_decay=0.99, log_every=50, ckpt_every=500,
                   # a cap, so that a slow machine still ends within the 45 minutes of issue 24
                   time_budget_s=2400.0),
        generate=GenerationSettings(steps=32, step_size=1.0, blur=0.0, n=256),
        hardware="2 CPU cores; with a GPU add precision=bf16 channels_last=true num_workers=4",
        wall_clock="about 16 min to 4,000 iterations on 1 CPU thread (step 4,000 of two full runs: 892 s with "
                   "20,000 p_0 patches, 0.24 s/iteration with 100,000; benchmarks/results/fashion)",
        needs_files="the Fashion-MNIST IDX files of Debian's package dataset-fashion-mnist (apt-get install "
                    "dataset-fashion-mnist; a copy elsewhere: data=fashion?split=train&root=FOLDER)",
        extra={"gpu": {"precision": "bf16", "channels_last": True, "num_workers": 4},
               # model selection of benchmarks/fashion.py, as the demo selects the mnist model (atebm.demo)
               "selection": {"by": "val_fd", "every": 400, "min_k": 8,
                             "seeds": "photos?split=train&n=200&seed=7", "reference": "fashion?split=val"}}),
    "cifar10": _published(
        "cifar10", arch={"arch": "cifar_resnet", "kwargs": {"depth": 50, "in_channels": 3, "out_dim": 1},
                         "mean": [0.4914, 0.4822, 0.4465], "std": [0.2470, 0.2435, 0.2616]},
        data="cifar10:data/cifar-10-batches-py?split=train", p0="tinyimages:data/tiny_images.bin",
        seeds="tinyimages:data/tiny_images.bin?n=50000&seed=1", size=32, batch=32, iters=172_000, lr=5e-4,
        k_max=25, epochs_per_k=5, step=0.1, r1=0.01, gen_steps=32, gen_step=0.2, blur=0.0,
        needs="CIFAR-10 python batches (data=cifar10:PATH) and the 80M Tiny Images binary (p0=tinyimages:PATH)",
        wall="GPU not measured; one CPU thread: 43 s/iteration at K=25, ~86 days (benchmarks/results/scale)"),
    "celebahq256": _published_256(
        "celebahq256", data="folder:data/celeba_hq?size=256", batch=40, iters=218_000, k_max=40, epochs_per_k=5,
        r1=30.0, gen_steps=20,
        needs="CelebA-HQ 256 images (data=folder:PATH) and an ImageNet folder (p0=imagenet:PATH)",
        wall="GPU not measured; one CPU thread: ~900 s/iteration at K=40 (benchmarks/results/scale)"),
    "afhqcat256": _published_256(
        "afhqcat256", data="folder:data/afhq/train/cat?size=256", batch=40, iters=225_000, k_max=25,
        epochs_per_k=50, r1=100.0, gen_steps=14,
        needs="AFHQ cat images (data=folder:PATH) and an ImageNet folder (p0=imagenet:PATH)",
        wall="GPU not measured; one CPU thread: ~650 s/iteration at K=25 (benchmarks/results/scale)"),
    "church256": _published_256(
        "church256", data="folder:data/lsun_church?size=256", batch=32, iters=215_000, k_max=35, epochs_per_k=1,
        r1=100.0, gen_steps=17,
        needs="LSUN church images exported to a folder (data=folder:PATH) and an ImageNet folder (p0=imagenet:PATH)",
        wall="GPU not measured; one CPU thread: ~650 s/iteration at K=35 (benchmarks/results/scale)"),
}


def get_preset(name: str) -> Preset:
    """The training preset of ``atebm train`` called ``name``."""
    preset = REGISTRY.get("train", name).preset
    assert isinstance(preset, Preset)
    return preset


# ------------------------------------------------------------------------------------------------ the registry
#: The commands that take a named preset, in listing order, with the option that names it.
COMMANDS: dict[str, str] = {"train": "--preset", "gat train": "--preset", "dsgan train": "--case"}


@dataclass(frozen=True)
class PresetEntry:
    """One named preset of one command: a choice of the command's option and a block of ``atebm presets``.

    ``summary`` is one line; ``data`` says what the preset reads and whether the user must supply files;
    ``hardware`` and ``wall_clock`` are the ones it was measured (or published) with, with where the number comes
    from; ``preset`` is the object the command runs with (a :class:`Preset`, an :class:`atebm.gat.GatPreset` or an
    :class:`atebm.dsgan.Case`), whose ``description`` is the full one."""

    command: str
    name: str
    summary: str
    data: str
    hardware: str
    wall_clock: str
    preset: Any

    def __post_init__(self) -> None:
        if self.command not in COMMANDS:
            raise ValueError(f"preset {self.name!r}: unknown command {self.command!r}; use one of "
                             f"{', '.join(COMMANDS)}")
        if not self.name or any(c.isspace() for c in self.name):
            raise ValueError(f"preset name {self.name!r} of `atebm {self.command}` must be one word")
        if "\n" in self.summary or not self.summary.strip():
            raise ValueError(f"{self.usage}: the summary must be one non-empty line")

    @property
    def option(self) -> str:
        """The option of :attr:`command` that names this preset (``--preset`` or ``--case``)."""
        return COMMANDS[self.command]

    @property
    def usage(self) -> str:
        """The command line that runs this preset, e.g. ``atebm gat train --preset mnist``."""
        return f"atebm {self.command} {self.option} {self.name}"

    @property
    def description(self) -> str:
        """The full description of the preset object (the summary when it has none)."""
        return str(getattr(self.preset, "description", "") or self.summary)


class PresetRegistry:
    """Every named preset of every command of :data:`COMMANDS`, read from each command's loader the first time it is
    asked for (in the loader's order; a name appears once per command, the same name may serve several commands).

    ``names(command)`` is the command's option choices, ``get(command, name)`` one entry (an unknown name is a
    one-line ``ValueError`` listing the valid ones), ``find(name)`` the entries of every command called ``name``,
    ``entries()`` all of them grouped by command (also ``iter(REGISTRY)``)."""

    def __init__(self, loaders: dict[str, Callable[[], Iterable[PresetEntry]]]) -> None:
        unknown = [command for command in loaders if command not in COMMANDS]
        if unknown:
            raise ValueError(f"unknown commands {unknown}; use those of atebm.presets.COMMANDS: {', '.join(COMMANDS)}")
        self._loaders = dict(loaders)
        self._tables: dict[str, dict[str, PresetEntry]] = {}

    @property
    def commands(self) -> tuple[str, ...]:
        """The commands with presets, in listing order."""
        return tuple(self._loaders)

    def _table(self, command: str) -> dict[str, PresetEntry]:
        if command not in self._loaders:
            raise ValueError(f"no presets for command {command!r}; the commands with presets are "
                             f"{', '.join(repr(c) for c in self._loaders)}")
        if command not in self._tables:
            table: dict[str, PresetEntry] = {}
            for entry in self._loaders[command]():
                if entry.command != command:
                    raise ValueError(f"{entry.usage} was registered under `atebm {command}`")
                if entry.name in table:
                    raise ValueError(f"two presets of `atebm {command}` are called {entry.name!r}")
                table[entry.name] = entry
            self._tables[command] = table
        return self._tables[command]

    def names(self, command: str) -> list[str]:
        """The preset names of ``command`` (its option's choices), in registry order."""
        return list(self._table(command))

    def entries(self, command: str | None = None) -> tuple[PresetEntry, ...]:
        """The entries of ``command``, or of every command grouped by command."""
        commands = self.commands if command is None else (command,)
        return tuple(entry for c in commands for entry in self._table(c).values())

    def get(self, command: str, name: str) -> PresetEntry:
        """The entry of ``command`` called ``name``."""
        table = self._table(command)
        if name not in table:
            raise ValueError(f"unknown preset {name!r} for `atebm {command} {COMMANDS[command]}`; choose from "
                             f"{', '.join(table)} (`atebm presets` describes them)")
        return table[name]

    def find(self, name: str) -> tuple[PresetEntry, ...]:
        """The entries called ``name``, one per command that has such a preset (empty when none has)."""
        return tuple(table[name] for table in map(self._table, self.commands) if name in table)

    def __iter__(self) -> Iterator[PresetEntry]:
        return iter(self.entries())

    def __len__(self) -> int:
        return len(self.entries())


#: What the labelled or image data sets named by GAT presets and DSGAN cases need.
_NAMED_DATA: dict[str, str] = {
    "mnist": "embedded MNIST 5,000 (nothing to supply)",
    "fashion": "Fashion-MNIST IDX files of Debian's package dataset-fashion-mnist (apt-get install "
               "dataset-fashion-mnist; nothing is downloaded)",
}

#: One-line summaries of the GAT recipes whose description runs over several lines (the others show their
#: description).
GAT_SUMMARIES: dict[str, str] = {
    "mnist": "CPU preset: MNIST 5,000, Linf 0.3, the T Tab. 3.1 network at half width, 500 iterations per "
             "detector, in-distribution AT inside Linf 0.1",
    "fashion": "CPU preset: Fashion-MNIST at full size, Linf 0.1, the `mnist` recipe without its in-distribution AT",
    "mnist-linf0.5-cpu": "CPU preset: the `mnist` recipe at Linf eps 0.5, every radius and step scaled with eps",
    "mnist-l2-2.5-cpu": "CPU preset: the `mnist` recipe at L2 eps 2.5, every radius and step scaled with eps",
    "mnist-l2-5.0-cpu": "CPU preset: the `mnist` recipe at L2 eps 5, every radius and step scaled with eps",
    "mnist-inout": "robust classification (T Sec. 3.4): `mnist` + in-distribution AT (T Eq. 3.45), Linf eps_1 ramped "
                   "0 -> 0.3 over 400 of 800 iterations per detector",
}

#: Hardware and measured time of the DSGAN case studies (``python benchmarks/dsgan_cases.py``, the same runs as
#: ``atebm dsgan train --case NAME --threads 1 device=cpu``: 3,000 discriminator steps and 2,000 evaluated samples).
CASE_MEASUREMENTS: dict[str, tuple[str, str]] = {
    "swissroll-boundary": ("1 CPU thread", "148, 169 and 164 s wall for seeds 0-2 with nice on a shared 2-core "
                                           "machine (benchmarks/results/dsgan/cases.json)"),
    "disc-low-centre": ("1 CPU thread", "327, 124 and 62 s wall for seeds 0-2 with nice on a shared 2-core machine "
                                        "(benchmarks/results/dsgan/cases.json)"),
    "mnist-difference": ("1 CPU thread", "213 s wall (seed 0) with nice on a shared 2-core machine "
                                         "(benchmarks/results/dsgan/cases.json)"),
}


def _named_data(name: str) -> str:
    return _NAMED_DATA.get(name, f"the data source {name!r}")


def _train_entries() -> Iterator[PresetEntry]:
    for p in PRESETS.values():
        data = (f"your files: {p.needs_files}" if p.needs_files
                else f"embedded (nothing to supply): data={p.data} p0={p.p0}")
        yield PresetEntry("train", p.name, p.description, data, p.hardware, p.wall_clock, p)


def _gat_entries() -> Iterator[PresetEntry]:
    from .gat.presets import GAT_PRESETS

    for p in GAT_PRESETS.values():
        data = f"{_named_data(p.data)}; another labelled source with --data"
        yield PresetEntry("gat train", p.name, GAT_SUMMARIES.get(p.name, p.description), data, p.hardware,
                          p.wall_clock, p)


def _case_entries() -> Iterator[PresetEntry]:
    from .dsgan.cases import CASES

    for case in CASES.values():
        if case.kind == "points":
            data = f"nothing to supply: {case.n_points:,} points of the 2D {case.mixture!r} mixture, drawn with --seed"
        else:
            data = (f"{_named_data(case.dataset)}: train split, p_d = classes {list(case.pd_classes)}, p_dbar = "
                    f"classes {list(case.pbar_classes)}")
        hardware, wall_clock = CASE_MEASUREMENTS.get(case.name, ("not measured", "not measured"))
        yield PresetEntry("dsgan train", case.name, f"{case.description} ({case.paper})", data, hardware,
                          wall_clock, case)


#: The one preset registry: every command that takes ``--preset`` or ``--case`` reads its choices here.
REGISTRY = PresetRegistry({"train": _train_entries, "gat train": _gat_entries, "dsgan train": _case_entries})
