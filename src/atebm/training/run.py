"""The ``atebm train`` pipeline as a library function: open a preset's data, build or resume the trainer in a
run folder and train it to its budget."""
from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch.distributed as dist

from ..presets import Preset
from .checkpoint import CHECKPOINT_FILE, load_checkpoint
from .trainer import Trainer

__all__ = ["open_images", "open_training_data", "resolve_training", "run_training", "SOURCE_KEYS"]

#: Overrides that name data sources rather than TrainConfig fields.
SOURCE_KEYS = ("data", "p0", "seeds")


def open_images(spec: str, size: int, channels: int, role: str = "data", preset: Preset | None = None):
    """Opens a source string at ``size`` x ``size`` with ``channels`` unless the string says otherwise."""
    from ..data import open_source, parse_source

    kind, path, options = parse_source(spec)
    options.setdefault("size", size)
    options.setdefault("channels", channels)
    try:
        return open_source(kind, path, **options)
    except FileNotFoundError as err:
        hint = f" Preset {preset.name!r} needs {preset.needs_files}." if preset and preset.needs_files else ""
        raise FileNotFoundError(f"{role} source {spec!r}: {err}.{hint} Pass {role}=KIND:PATH on the command line."
                                ) from err


def open_training_data(preset: Preset, data_spec: str | None = None, p0_spec: str | None = None):
    """Opens p_data and p_0 for a preset (or the given source strings) at the preset's size and channels."""
    data = open_images(data_spec or preset.data, preset.size, preset.channels, "data", preset)
    p0 = open_images(p0_spec or preset.p0, preset.size, preset.channels, "p0", preset)
    return data, p0


def resolve_training(preset: Preset, out_dir: str | Path, overrides: dict[str, Any]) -> dict[str, Any]:
    """What :func:`run_training` would run (``atebm train --dry-run``): sources, run folder and the full config."""
    config = preset.config(**{k: v for k, v in overrides.items() if k not in SOURCE_KEYS})
    return {"preset": preset.name, "out": str(out_dir), "data": overrides.get("data", preset.data),
            "p0": overrides.get("p0", preset.p0), "seeds": overrides.get("seeds", preset.seeds),
            "train": config.to_dict()}


def run_training(preset: Preset, out_dir: str | Path, overrides: dict[str, Any] | None = None, *,
                 resume: bool = False, callbacks: Sequence = (), log: bool = True) -> Trainer:
    """Builds (or, with ``resume``, continues) the trainer of a preset in the run folder ``out_dir`` and trains it
    to its budget. ``overrides`` are TrainConfig fields plus the source strings ``data``, ``p0``, ``seeds``."""
    out_dir = Path(out_dir)
    overrides = dict(overrides or {})
    data_spec, p0_spec = overrides.pop("data", None), overrides.pop("p0", None)
    seeds_spec = overrides.pop("seeds", None)
    checkpoint = out_dir / CHECKPOINT_FILE
    if resume:
        if not checkpoint.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}")
        data_spec, p0_spec, seeds_spec = _run_sources(checkpoint, data_spec, p0_spec, seeds_spec)
    data, p0 = open_training_data(preset, data_spec, p0_spec)
    extra = {
        "preset": preset.name, "data": data_spec or preset.data, "p0": p0_spec or preset.p0,
        "seeds": seeds_spec or preset.seeds, "generate": preset.generate.to_dict(), "clamp": (0.0, 1.0),
        "size": preset.size, "channels": preset.channels,
    }
    extra["meta"] = {k: v for k, v in extra.items() if k != "meta"}
    if resume:
        trainer = Trainer.resume(checkpoint, data, p0, out_dir=out_dir, callbacks=callbacks, overrides=overrides,
                                 extra={"meta": extra["meta"]})
    else:
        if checkpoint.exists():
            raise ValueError(f"{checkpoint} exists: pass --resume to continue it or choose another --out")
        trainer = Trainer(preset.config(**overrides), data, p0, out_dir=out_dir, callbacks=callbacks, extra=extra)
    if log and trainer.is_main:
        print(f"training preset {preset.name!r}: {len(data)} data vs {len(p0)} p0 samples, device {trainer.device},"
              f" {trainer.world} process(es), out {out_dir}", file=sys.stderr)
    try:
        trainer.fit()
    finally:
        if dist.is_available() and dist.is_initialized():
            # the trainer joined the process group torchrun set up: leave it before the interpreter exits, or the
            # backend's threads may still be running at exit and abort the process
            dist.destroy_process_group()
    return trainer


def _run_sources(checkpoint: Path, *given: str | None) -> list[str | None]:
    """The data, p0 and seeds source strings a resumed run continues on: the ones it started with. A different
    one given again is refused (the continuation would not be exact)."""
    extra = load_checkpoint(checkpoint).get("extra") or {}
    sources = []
    for key, value in zip(SOURCE_KEYS, given):
        saved = extra.get(key)
        if value is not None and saved is not None and value != saved:
            raise ValueError(f"cannot resume with {key}={value!r}: the run was trained on {key}={saved!r}")
        sources.append(value if value is not None else saved)
    return sources
