"""Raw vs averaged weights along the demo's training (issue 14, item 3): validation FD traces in one run.

One run of the ``mnist`` preset (the demo's AT model: same data, p_0, config, 2,000 iterations) with
``ema_decay`` = the first of ``--decays``; the other decays are kept beside it with the same update rule
(:func:`atebm.training.trainer.ema_update`), so every arm sees the same raw iterates. Every ``--every`` iterations
once K >= 8 (the demo's selection protocol: 200 training-photo seeds, the preset's 32 x 1.0 PGD ascent, Fréchet
distance to the 3,500 training digits in the digit classifier's feature space) the validation FD of the raw
weights and of each average is recorded. At the end, the demo's reported metric (500 held-out test-photo seeds,
same FD) for the last weights of each arm and for the best-by-validation ones of each arm.

    nice -n 10 python benchmarks/ema.py --threads 1    # ~20 CPU-minutes; writes benchmarks/results/ema/
"""
from __future__ import annotations

import argparse
import copy
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from atebm.data import load_dataset
from atebm.demo import DEMO_SETTINGS, ValidationFD, fd_selection
from atebm.metrics import digit_features, frechet_distance
from atebm.presets import PRESETS
from atebm.training import MODEL_FILE, Trainer, save_checkpoint, write_json
from atebm.training.run import open_training_data
from atebm.training.trainer import ema_update


class ExtraAverages(Trainer):
    """The preset's trainer plus extra weight averages at other decays, updated after every optimiser step."""

    extra_decays: tuple[float, ...] = ()

    def update_ema(self) -> None:
        super().update_ema()
        if not hasattr(self, "extra_averages"):
            self.extra_averages = {d: {k: v.detach().clone() for k, v in self.model.state_dict().items()}
                                   for d in self.extra_decays}
        for decay, average in self.extra_averages.items():
            ema_update(average, self.model, decay, self.ema_steps)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decays", type=float, nargs="+", default=[0.995, 0.99, 0.998])
    parser.add_argument("--iters", type=int, default=2000)
    parser.add_argument("--every", type=int, default=DEMO_SETTINGS["select_every"])
    parser.add_argument("--min-k", type=int, default=DEMO_SETTINGS["select_min_k"], help="trace once K >= this")
    parser.add_argument("--run", default="runs/ema-trace", help="run folder (model.pt, checkpoint.pt, averages)")
    parser.add_argument("--out", default="benchmarks/results/ema")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    command = "python benchmarks/ema.py " + shlex.join(argv if argv is not None else sys.argv[1:])
    wall0, cpu0 = time.perf_counter(), time.process_time()

    preset = PRESETS["mnist"]
    net = digit_features(device="cpu")
    train = load_dataset("mnist", split="train").x
    train_features = net.features(train).numpy()
    gen = preset.generate.to_dict()
    validation = ValidationFD(load_dataset("photos", split="train", n=DEMO_SETTINGS["select_seeds"], seed=7).x,
                              train_features, net, gen["steps"], gen["step_size"])
    selector = fd_selection(validation, args.every, args.min_k)
    test_seeds = load_dataset("photos", split="test", n=DEMO_SETTINGS["n_eval"], seed=1).x
    best_extra: dict[float, tuple[float, int, dict[str, torch.Tensor]]] = {}
    extra_trace: list[dict[str, Any]] = []

    def trace_extra(trainer: Any, record: dict[str, Any]) -> None:
        if trainer.step % args.every or trainer.k < args.min_k:
            return
        entry: dict[str, Any] = {"step": trainer.step}
        for decay, average in trainer.extra_averages.items():
            model = _with_weights(trainer.model, average)
            fd = validation(model)
            entry[f"val_fd_ema_{decay:g}"] = fd
            if decay not in best_extra or fd < best_extra[decay][0]:
                best_extra[decay] = (fd, trainer.step, {k: v.clone() for k, v in average.items()})
        extra_trace.append(entry)
        print(f"step {trainer.step} K={trainer.k}: " + ", ".join(
            f"{k} {v:.1f}" for k, v in {**selector.history[-1], **entry}.items() if k.startswith("val_fd")),
            file=sys.stderr, flush=True)

    ExtraAverages.extra_decays = tuple(args.decays[1:])
    data, p0 = open_training_data(preset)
    config = preset.config(ema_decay=args.decays[0], max_iters=args.iters, device="cpu", progress=False)
    run = Path(args.run)
    trainer = ExtraAverages(config, data, p0, out_dir=run, callbacks=[selector, trace_extra],
                            extra={"preset": preset.name, "generate": dict(gen), "size": preset.size,
                                   "channels": preset.channels, "clamp": (0.0, 1.0)})
    t = time.perf_counter()
    trainer.fit()
    train_s = time.perf_counter() - t

    # the demo's reported metric for each arm's last and best-by-validation weights
    def test_fd(weights: dict[str, torch.Tensor]) -> float:
        return _fd(_with_weights(trainer.model, weights), test_seeds, validation, train_features)

    arms: dict[str, dict[str, Any]] = {}
    raw_trace = [r["val_fd_raw"] for r in selector.history]
    raw_best_step = selector.history[int(np.argmin(raw_trace))]["step"]
    arms["raw"] = {"last_test_fd": test_fd(trainer.model.state_dict()), "val_best": min(raw_trace),
                   "val_best_step": raw_best_step, "val_last": raw_trace[-1]}
    ema_trace = [r["val_fd_ema"] for r in selector.history]
    assert trainer.ema is not None
    selected, _ = trainer.model_weights()
    arms[f"ema_{args.decays[0]:g}"] = {"last_test_fd": test_fd(trainer.ema), "best_test_fd": test_fd(selected),
                                       "val_best": min(ema_trace), "val_best_step": selector.best.step,
                                       "val_last": ema_trace[-1]}
    for decay, average in trainer.extra_averages.items():
        values = [r[f"val_fd_ema_{decay:g}"] for r in extra_trace]
        fd, step, weights = best_extra[decay]
        arms[f"ema_{decay:g}"] = {"last_test_fd": test_fd(average), "best_test_fd": test_fd(weights),
                                  "val_best": fd, "val_best_step": step, "val_last": values[-1]}
        save_checkpoint(run / f"model_ema_{decay:g}.pt", {
            "model_spec": trainer.model.spec, "model": average, "config": config.to_dict(), "trainer": None,
            "extra": {"generate": dict(gen), "size": preset.size, "channels": preset.channels},
            "selection": {"by": "last", "weights": f"ema {decay:g}", "step": trainer.step}})
    save_checkpoint(run / "model_raw_last.pt", {
        "model_spec": trainer.model.spec, "model": trainer.model.state_dict(), "config": config.to_dict(),
        "trainer": None, "extra": {"generate": dict(gen), "size": preset.size, "channels": preset.channels},
        "selection": {"by": "last", "weights": "raw", "step": trainer.step}})
    for arm in arms.values():
        arm["last_over_best_val"] = arm["val_last"] / arm["val_best"]

    own = f"val_fd_ema_{args.decays[0]:g}"  # the trainer's own average, named by its decay like the others
    trace = [{**{(own if k == "val_fd_ema" else k): v for k, v in a.items()}, **b}
             for a, b in zip(selector.history, extra_trace)]
    result = {
        "command": f"nice -n 10 {command}",
        "protocol": {"preset": "mnist (the demo's AT model)", "iterations": trainer.step, "final_k": trainer.k,
                     "validation": f"every {args.every} iterations once K >= {args.min_k}: FD of samples from "
                                   f"{DEMO_SETTINGS['select_seeds']} training-photo seeds (32 x 1.0 PGD) to the "
                                   "3,500 training digits, digit-classifier features",
                     "test": "the demo's reported FD: 500 held-out test-photo seeds, same sampler and FD",
                     "update_rule": "bias-corrected EMA, Trainer.update_ema; all arms share the raw iterates",
                     "threads": args.threads, "budget": "one run, one seed (CPU budget of the session)"},
        "trace": trace, "arms": arms, "model_file": str(run / MODEL_FILE),
        "timing": {"train_wall_s": train_s, "total_wall_s": time.perf_counter() - wall0,
                   "total_cpu_s": time.process_time() - cpu0, "train_elapsed_s": trainer.elapsed_s},
    }
    write_json(Path(args.out) / "ema_trace.json", result)
    _plot(trace, Path(args.out) / "ema_trace.png")
    print({k: {kk: round(vv, 1) if isinstance(vv, float) else vv for kk, vv in v.items()} for k, v in arms.items()})
    return 0


def _with_weights(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> torch.nn.Module:
    copy_ = copy.deepcopy(model)
    copy_.load_state_dict(weights)
    return copy_.eval()


def _fd(model: torch.nn.Module, seeds: torch.Tensor, validation: ValidationFD, reference: np.ndarray) -> float:
    from atebm.apps.generate import generate

    samples = generate(model, seeds, validation.steps, validation.step_size).cpu()
    return frechet_distance(validation.feature_net.features(samples).numpy(), reference)


def _plot(trace: list[dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in trace]
    for key in [k for k in trace[0] if k.startswith("val_fd_")]:  # val_fd_raw, val_fd_ema_<decay>
        ax.plot(steps, [r[key] for r in trace], marker="o", ms=3, label=key.replace("val_fd_", ""))
    ax.set_yscale("log")
    ax.set_xlabel("iteration")
    ax.set_ylabel("validation FD (digit-classifier features)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    raise SystemExit(main())
