"""Trains the small MNIST reference model the application benchmarks (benchmarks/apps_*.py) run on, until the
project's demo checkpoint replaces it (every apps benchmark takes --checkpoint).

Binary AT with progressive K (E Alg. 1-2): p_data = the MNIST 5,000 train split (3,500 images; or some classes
of it with --classes), p_0 = natural-photo patches (atebm.data "photos", train photos only, 20,000), ConvNet
width 16, batch 32, Adam lr 1e-3 betas (0, 0.99), K = 0..24 (K + 1 when the mean batch AUC over 25 batches
exceeds 0.8, or after one epoch), L2 step 1.25, one CPU thread, a fixed time budget (the last stage runs
until the budget is spent).

    python benchmarks/apps_train_reference.py --out runs/apps_reference

Writes the checkpoint to OUT/checkpoint.pt and a summary (config, final log record, wall time, samples from
held-out photo patches) to benchmarks/results/apps_train_reference.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import atebm
from atebm.apps import generate
from atebm.data import load_dataset
from atebm.io import save_images
from atebm.presets import PRESETS
from atebm.training import write_json

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="runs/apps_reference", help="run folder for the checkpoint")
    parser.add_argument("--time-budget", type=float, default=540.0, help="training seconds (default 540)")
    parser.add_argument("--k-max", type=int, default=24)
    parser.add_argument("--step-size", type=float, default=1.25)
    parser.add_argument("--width", type=int, default=16)
    parser.add_argument("--auc-window", type=int, default=25)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--preset", choices=sorted(PRESETS), default=None,
                        help="train with a preset's full config instead of the flags above (budget flags still apply)")
    parser.add_argument("--max-iters", type=int, default=None, help="iteration cap (with --preset)")
    parser.add_argument("--classes", default=None,
                        help="comma list of digit classes to keep (a class-conditional model for compose)")
    parser.add_argument("--results", default=str(RESULTS / "apps_train_reference.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    data = load_dataset("mnist", split="train", seed=args.seed)
    data_label = "mnist/train (3500)"
    if args.classes:
        classes = sorted({int(c) for c in args.classes.split(",")})
        keep = torch.isin(data.y, torch.tensor(classes))
        data.x, data.y = data.x[keep], data.y[keep]
        data_label = f"mnist/train classes {classes} ({len(data.x)})"
    p0 = load_dataset("photos", split="train", n=20000, seed=args.seed)
    if args.preset:
        config = PRESETS[args.preset].config(time_budget_s=args.time_budget, max_iters=args.max_iters,
                                             progress=False, seed=args.seed, device="cpu")
    else:
        config = atebm.TrainConfig(
            model={"arch": "convnet", "kwargs": {"in_channels": 1, "width": args.width}, "mean": 0.5, "std": 0.5},
            batch_size=args.batch_size, lr=1e-3, k_start=0, k_max=args.k_max, step_size=args.step_size,
            epochs_per_k=1.0, auc_window=args.auc_window, auc_threshold=0.8, time_budget_s=args.time_budget,
            log_every=25, ckpt_every=100, progress=False, seed=args.seed, device="cpu")
    # the model's input format goes into the checkpoint (model.meta), so the apps convert inputs to it
    recorded = {"size": int(data.x.shape[-1]), "channels": int(data.x.shape[1])}
    trainer = atebm.Trainer(config, data.x, p0.x, out_dir=args.out,
                            extra={**recorded, "meta": {"data": data_label, "p0": "photos/train (20000 patches)"}})
    start = time.perf_counter()
    history = trainer.fit()
    wall = time.perf_counter() - start

    model = atebm.load(args.out)
    seeds = load_dataset("photos", split="test", n=64, seed=args.seed).x
    samples = generate(model, seeds, config.k_max, config.step_size)
    save_images(args.out, "samples_from_test_photos", samples, nrow=8)
    with torch.no_grad():
        test = load_dataset("mnist", split="test", seed=args.seed).x
        scores = {"mnist_test": float(model(test).mean()), "photo_seeds": float(model(seeds).mean()),
                  "samples": float(model(samples).mean())}
    write_json(args.results, {
        "command": "python benchmarks/apps_train_reference.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "results" and v is not None),
        "checkpoint": str(Path(args.out) / "checkpoint.pt"), "data": data_label, "config": config.to_dict(),
        "steps": trainer.step,
        "final_k": trainer.k, "stop_reason": trainer.stop_reason, "wall_s": round(wall, 1),
        "last_log": history[-1] if history else None, "mean_scores": scores,
        "torch_threads": torch.get_num_threads(),
    })
    print(json.dumps({"steps": trainer.step, "k": trainer.k, "wall_s": round(wall, 1), **scores}))


if __name__ == "__main__":
    main()
