"""Core sub-commands: ``atebm train``, ``atebm sample``, ``atebm presets`` and ``atebm demo``."""
from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from ..presets import REGISTRY, get_preset
from ..sample import SAMPLE_DEFAULTS
from ..training import CHECKPOINT_FILE, MODEL_FILE
from ..training.run import resolve_training, run_training
from .options import (
    add_checkpoint,
    add_device,
    add_out,
    add_seed,
    add_threads,
    apply_threads,
    non_negative_float,
    non_negative_int,
    positive_int,
)
from .presets import register as register_presets

__all__ = ["register", "parse_overrides"]


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=1e-4", "k_max=8", "data=mnist?split=test"]`` -> typed dict (values parsed as YAML scalars)."""
    values: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if key in ("data", "p0", "seeds"):
            values[key] = text
            continue
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError as err:
            raise ValueError(f"cannot parse the value of {key}: {err}") from err
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" and "inf" as text
            try:
                value = float(value)
            except ValueError:
                pass
        values[key] = value
    return values


# ------------------------------------------------------------------------------------------------ train
def _train(args: argparse.Namespace) -> int:
    preset = get_preset(args.preset)
    overrides = parse_overrides(args.overrides)
    if args.device:
        overrides["device"] = args.device
    out_dir = Path(args.out or f"runs/{preset.name}")
    if args.dry_run:
        print(json.dumps(resolve_training(preset, out_dir, overrides), indent=2, default=str))
        return 0
    apply_threads(args)
    start = time.perf_counter()
    trainer = run_training(preset, out_dir, overrides, resume=args.resume)
    if trainer.is_main:
        last = trainer.history[-1] if trainer.history else {}
        print(f"done: {trainer.step} iterations, K={trainer.k}, {trainer.stop_reason}, "
              f"{time.perf_counter() - start:.0f} s; last log {json.dumps(last)}")
        print(f"model: {out_dir / MODEL_FILE}  (resumable state: {out_dir / CHECKPOINT_FILE})")
    return 0


# ------------------------------------------------------------------------------------------------ sample
def _sample(args: argparse.Namespace) -> int:
    from ..sample import run_sample

    apply_threads(args)
    protocol = run_sample(args.checkpoint, args.out, steps=args.steps, step_size=args.step_size, n=args.n,
                          seeds=args.seeds, seed=args.seed, blur=args.blur, device=args.device)
    out = Path(args.out)
    print(f"wrote {out / 'samples.npz'}, {out / 'samples.png'} and {out / 'trajectory.png'} ({protocol['n']} "
          f"samples, {protocol['steps']} steps x {protocol['step_size']}, blur {protocol['blur']})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    apply_threads(args)
    run_demo(args.out, device=args.device, smoke=args.smoke, overwrite=args.overwrite)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train a score model by binary adversarial training",
        description="Train with a preset; any TrainConfig field, and data=/p0=/seeds= source strings, can be "
                    "overridden as key=value (e.g. `atebm train --preset mnist k_max=8 lr=5e-4`). The run folder "
                    "gets model.pt (the model) and checkpoint.pt (the state --resume continues).")
    train.add_argument("--preset", required=True, choices=REGISTRY.names("train"))
    add_out(train, required=False, help="run folder (default: runs/PRESET)")
    train.add_argument("--resume", action="store_true",
                       help="continue the run in --out exactly; only budgets and logging may be overridden")
    add_device(train, default=None)
    add_threads(train)
    train.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    train.add_argument("overrides", nargs="*", metavar="key=value")
    train.set_defaults(func=_train)

    sample = subparsers.add_parser("sample", help="generate images by PGD ascent from p_0 seeds")
    add_checkpoint(sample)
    add_out(sample, help="output folder (samples.npz, samples.png, trajectory.png, sample.json)")
    sample.add_argument("--steps", type=non_negative_int, help="PGD steps (default: the run's generation setting)")
    sample.add_argument("--step-size", type=non_negative_float,
                        help="PGD step size (default: the run's generation setting)")
    sample.add_argument("--n", type=positive_int, default=SAMPLE_DEFAULTS["n"],
                        help=f"number of samples (default: {SAMPLE_DEFAULTS['n']})")
    sample.add_argument("--seeds", help="seed source string (default: the run's held-out seeds)")
    add_seed(sample, default=SAMPLE_DEFAULTS["seed"], help="which seeds to draw")
    sample.add_argument("--blur", type=non_negative_float,
                        help="Gaussian blur sigma of the seeds in pixels (default: the run's generation setting)")
    add_device(sample)
    add_threads(sample)
    sample.set_defaults(func=_sample)

    register_presets(subparsers)  # atebm presets: every command's presets (atebm.cli.presets)

    demo = subparsers.add_parser(
        "demo", help="the main job: train on the embedded MNIST default and write a run folder with a report")
    add_out(demo, required=False, default="runs/demo", help="run folder")
    add_device(demo)
    add_threads(demo)
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --out")
    demo.add_argument("--smoke", action="store_true",
                      help="a seconds-long run with tiny budgets, for tests only: its numbers mean nothing")
    demo.set_defaults(func=_demo)
