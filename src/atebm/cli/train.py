"""Core sub-commands: ``atebm train``, ``atebm sample``, ``atebm presets`` and ``atebm demo``."""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import yaml

from .options import non_negative_float, positive_int
from ..presets import PRESETS, Preset, get_preset
from ..training import load_checkpoint, write_json
from ..training.run import open_images, run_training

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
    train_keys = {k: v for k, v in overrides.items() if k not in ("data", "p0", "seeds")}
    config = preset.config(**train_keys)
    if args.dry_run:
        print(json.dumps({"preset": preset.name, "out": str(out_dir), "data": overrides.get("data", preset.data),
                          "p0": overrides.get("p0", preset.p0), "train": config.to_dict()}, indent=2, default=str))
        return 0
    start = time.perf_counter()
    trainer = run_training(preset, out_dir, overrides, resume=args.resume)
    if trainer.is_main:
        last = trainer.history[-1] if trainer.history else {}
        print(f"done: {trainer.step} iterations, K={trainer.k}, {trainer.stop_reason}, "
              f"{time.perf_counter() - start:.0f} s; last log {json.dumps(last)}")
        print(f"checkpoint: {out_dir / 'checkpoint.pt'}")
    return 0


# ------------------------------------------------------------------------------------------------ sample
def _sample(args: argparse.Namespace) -> int:

    from .. import load
    from ..apps.generate import generate
    from ..io import save_grid, save_images

    payload = load_checkpoint(args.checkpoint)
    extra = payload.get("extra") or {}
    defaults = extra.get("generate") or {}
    steps = args.steps if args.steps is not None else int(defaults.get("steps", 16))
    step_size = args.step_size if args.step_size is not None else float(defaults.get("step_size", 1.0))
    blur = args.blur if args.blur is not None else float(defaults.get("blur", 0.0))
    seeds_spec = args.seeds or extra.get("seeds")
    if not seeds_spec:
        raise ValueError("the checkpoint names no seed source: pass --seeds (e.g. photos?split=test)")
    device = _device(args.device)
    model = load(args.checkpoint, device=device)
    source = open_images(seeds_spec, extra.get("size", 28), extra.get("channels", 1), "seeds")
    seeds = source.load(n=min(args.n, len(source)), seed=args.seed).x
    record = sorted({0, *[int(round(steps * f)) for f in (0.25, 0.5, 0.75)], steps})
    samples, trajectory = generate(model, seeds.to(device), steps, step_size, blur, record=record)
    out = Path(args.out)
    save_images(out, "samples", samples.cpu())
    strip = trajectory[:, : min(8, len(seeds))].transpose(0, 1).reshape(-1, *samples.shape[1:])
    save_grid(out / "trajectory.png", strip.cpu(), nrow=len(record), scale=2)
    write_json(out / "sample.json", {"checkpoint": str(args.checkpoint), "seeds": seeds_spec, "n": len(seeds),
                                     "steps": steps, "step_size": step_size, "blur": blur, "record": record})
    print(f"wrote {out / 'samples.npz'}, {out / 'samples.png'} and {out / 'trajectory.png'} "
          f"({len(seeds)} samples, {steps} steps x {step_size}, blur {blur})")
    return 0


def _device(name: str):
    from ..training import resolve_device

    return resolve_device(name)


# ------------------------------------------------------------------------------------------------ presets
def _presets(args: argparse.Namespace) -> int:
    rows = [(p.name, p.size, f"{p.train['batch_size']}", f"0..{p.train['k_max']}", f"{p.train['step_size']}",
             f"{p.generate['steps']} x {p.generate['step_size']}", p.hardware, p.wall_clock) for p in PRESETS.values()]
    header = ("preset", "px", "batch", "K", "step", "generation", "hardware", "wall-clock")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip())
    for p in PRESETS.values():
        if p.needs_files:
            print(f"\n{p.name}: needs {p.needs_files}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    return run_demo(Path(args.out), device=args.device, smoke=args.smoke, overwrite=args.overwrite)


def register(subparsers: argparse._SubParsersAction) -> None:
    train = subparsers.add_parser(
        "train", help="train a score model by binary adversarial training",
        description="Train with a preset; any TrainConfig field, and data=/p0=/seeds= source strings, can be "
                    "overridden as key=value (e.g. `atebm train --preset mnist k_max=8 lr=5e-4`).")
    train.add_argument("--preset", required=True, choices=sorted(PRESETS))
    train.add_argument("--out", help="run folder (default runs/PRESET)")
    train.add_argument("--resume", action="store_true", help="continue the checkpoint in --out exactly")
    train.add_argument("--device", choices=("auto", "cpu", "cuda"), help="default: the preset's (auto)")
    train.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    train.add_argument("overrides", nargs="*", metavar="key=value")
    train.set_defaults(func=_train)

    sample = subparsers.add_parser("sample", help="generate images by PGD ascent from p_0 seeds")
    sample.add_argument("--checkpoint", required=True, help="checkpoint file or run folder")
    sample.add_argument("--out", required=True, help="output folder (samples.npz, samples.png, trajectory.png)")
    sample.add_argument("--steps", type=int, help="PGD steps (default: the preset's)")
    sample.add_argument("--step-size", type=non_negative_float, help="PGD step size (default: the preset's)")
    sample.add_argument("--n", type=positive_int, default=64, help="number of samples (default 64)")
    sample.add_argument("--seeds", help="seed source string (default: the preset's held-out seeds)")
    sample.add_argument("--seed", type=int, default=0, help="which seeds to draw (default 0)")
    sample.add_argument("--blur", type=non_negative_float, help="Gaussian blur sigma of the seeds in pixels")
    sample.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    sample.set_defaults(func=_sample)

    presets = subparsers.add_parser("presets", help="list the training presets")
    presets.set_defaults(func=_presets)

    demo = subparsers.add_parser(
        "demo", help="the main job: train on the embedded MNIST default and write a run folder with a report")
    demo.add_argument("--out", default="runs/demo", help="run folder (default runs/demo)")
    demo.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --out")
    demo.add_argument("--smoke", action="store_true",
                      help="a seconds-long run with tiny budgets, for tests only: its numbers mean nothing")
    demo.set_defaults(func=_demo)
