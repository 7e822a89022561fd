"""Core sub-commands: ``atebm train``, ``atebm sample``, ``atebm presets`` and ``atebm demo``. Parsers only: the
pipelines are :func:`atebm.training.run.run_training`, :func:`atebm.sample.run_sample` and
:func:`atebm.demo.run_demo`, whose signatures (and :class:`atebm.TrainConfig`) hold the defaults shown here."""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from ..presets import get_preset
from ..training import CHECKPOINT_FILE, MODEL_FILE, TrainConfig
from ..training.run import SOURCE_KEYS, resolve_training, run_training
from . import options
from .options import parse_overrides
from .presets import register as register_presets

__all__ = ["register", "parse_overrides"]

#: The ``key=value`` keys of ``atebm train`` that name data sources rather than TrainConfig fields.
SOURCE_HELP = {"data": "p_data source string", "p0": "p_0 source string", "seeds": "generation seeds source string"}


# ------------------------------------------------------------------------------------------------ train
def _train(args: argparse.Namespace) -> int:
    if args.resume and args.dry_run:
        raise ValueError("--dry-run prints a new run's settings and --resume continues a saved run: drop one of them")
    preset = get_preset(args.preset)
    overrides = options.read_overrides(args)
    out_dir = Path(args.out or f"runs/{preset.name}")
    if args.dry_run:
        print(json.dumps(resolve_training(preset, out_dir, overrides), indent=2, default=str))
        return 0
    options.apply_threads(args)
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

    options.apply_threads(args)
    protocol = run_sample(args.checkpoint, args.out, n=args.n, seed=args.seed, device=args.device,
                          **options.given(args, "steps", "step_size", "seeds", "blur"))
    out = Path(args.out)
    print(f"wrote {out / 'samples.npz'}, {out / 'samples.png'} and {out / 'trajectory.png'} ({protocol['n']} "
          f"samples, {protocol['steps']} steps x {protocol['step_size']}, blur {protocol['blur']})")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ..demo import run_demo

    options.apply_threads(args)
    run_demo(args.out, device=args.device, smoke=args.smoke, overwrite=args.overwrite)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..demo import run_demo
    from ..sample import run_sample

    train = subparsers.add_parser(
        "train", help="train a score model by binary adversarial training",
        description="Train with a preset; any TrainConfig field, and data=/p0=/seeds= source strings, can be "
                    "overridden as key=value (e.g. `atebm train --preset mnist k_max=8 lr=5e-4`). The run folder "
                    "gets model.pt (the model) and checkpoint.pt (the state --resume continues).")
    options.add_preset(train, "train")
    options.add_out(train, required=False, help="run folder (default: runs/PRESET)")
    options.add_resume(train, help="continue the run in --out exactly; only budgets and logging may be overridden")
    options.add_device(train, options.config_defaults(TrainConfig)["device"] + " unless the preset sets one",
                       key="device")
    options.add_threads(train)
    train.add_argument("--dry-run", action="store_true", help="print the resolved configuration and exit")
    options.add_overrides(train, TrainConfig, example="k_max=8 lr=5e-4", mirrored={"device": "--device"},
                          extra={key: SOURCE_HELP[key] for key in SOURCE_KEYS})
    train.set_defaults(func=_train)

    s = options.pipeline_defaults(run_sample)
    sample = subparsers.add_parser("sample", help="generate images by PGD ascent from p_0 seeds")
    options.add_checkpoint(sample)
    options.add_out(sample, help="output folder (samples.npz, samples.png, trajectory.png, sample.json)")
    generation = "the run's generation setting"
    options.add_library_option(sample, "--steps", type=options.non_negative_int, default=s["steps"],
                               default_text=generation, help="PGD steps")
    options.add_library_option(sample, "--step-size", type=options.non_negative_float, default=s["step_size"],
                               default_text=generation, help="PGD step size")
    sample.add_argument("--n", type=options.positive_int, default=s["n"], help=f"number of samples (default: {s['n']})")
    options.add_library_option(sample, "--seeds", default=s["seeds"], default_text="the run's held-out seeds",
                               help="seed source string")
    options.add_seed(sample, s["seed"], help="which seeds to draw")
    options.add_library_option(sample, "--blur", type=options.non_negative_float, default=s["blur"],
                               default_text=generation, help="Gaussian blur sigma of the seeds in pixels")
    options.add_run_options(sample, run_sample)
    sample.set_defaults(func=_sample)

    register_presets(subparsers)  # atebm presets: every command's presets (atebm.cli.presets)

    d = options.pipeline_defaults(run_demo)
    demo = subparsers.add_parser(
        "demo", help="the main job: train on the embedded MNIST default and write a run folder with a report")
    options.add_out(demo, required=False, default=str(d["out"]), help="run folder")
    options.add_run_options(demo, run_demo)
    demo.add_argument("--overwrite", action="store_true", help="replace an earlier demo run in --out")
    demo.add_argument("--smoke", action="store_true",
                      help="a seconds-long run with tiny budgets, for tests only: its numbers mean nothing")
    demo.set_defaults(func=_demo)
