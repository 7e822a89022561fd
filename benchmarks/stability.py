"""E Sec. 5.3 at CPU scale: the EBM loss ``mean f(x_data) - mean f(x*)`` with PGD samples vs the BCE loss.

Same trainer (:class:`atebm.Trainer`), same data, same PGD samples, same seed; only ``TrainConfig.loss`` differs.
For each (setting, loss, lr) the logit gap ``mean f(data) - mean f(x*)`` is recorded at every log line; a run is
called *diverged* when the gap leaves [-1e4, 1e4] or stops being finite (training stops there), and the slope of the
gap over the second half of the run tells whether it is still climbing.

Settings:
* ``2d``: the papers' Gaussian vs uniform p_0 in [-4, 4]^2, MLP 64 x 3, progressive K 0..20, step 0.2.
* ``mnist``: MNIST 5,000 (train split) vs natural-photo patches, ConvNet width 8 (stride-2 convolutions, average
  pooling head), progressive K 0..10, step 1.0, no R1 (so that only the loss differs).

    python benchmarks/stability.py            # a few minutes on 1 CPU thread; writes benchmarks/results/stability.json
"""
from __future__ import annotations

import argparse
import sys
import time

import torch

import atebm
from atebm.baselines import compare_losses
from atebm.training import write_json


def _thin(trace: list[dict], keep: int = 40) -> list[dict]:
    if len(trace) <= keep:
        return trace
    stride = -(-len(trace) // keep)
    out = trace[::stride]
    if out[-1] is not trace[-1]:
        out.append(trace[-1])
    return out


def setting_2d(iters: int, seed: int):
    from atebm.toy2d import get_dataset, mlp2d_spec, sample_p0

    g = torch.Generator().manual_seed(seed)
    data = get_dataset("gaussian").sample(4000, g)
    p0 = sample_p0("uniform", 4000, generator=g)
    cfg = atebm.TrainConfig(model=mlp2d_spec(), batch_size=64, lr=1e-3, k_start=0, k_max=20, epochs_per_k=0.5,
                            auc_window=20, final_iters=iters, max_iters=iters, step_size=0.2, log_every=20,
                            ckpt_every=10 ** 9, seed=seed, device="cpu", progress=False)
    return cfg, data, p0, {"clamp": (-4.0, 4.0)}


def setting_mnist(iters: int, seed: int):
    from atebm.data import load_dataset

    data = load_dataset("mnist", split="train").x
    p0 = load_dataset("photos", split="train", n=5000, seed=seed).x
    spec = {"arch": "convnet", "kwargs": {"in_channels": 1, "width": 8, "activation": "lrelu"}, "mean": 0.5,
            "std": 0.5}
    cfg = atebm.TrainConfig(model=spec, batch_size=32, lr=1e-3, optimizer="adam", betas=(0.0, 0.99), k_start=0,
                            k_max=10, epochs_per_k=0.25, auc_window=20, auc_threshold=0.8, max_iters=iters,
                            step_size=1.0, r1=0.0, log_every=10, ckpt_every=10 ** 9, seed=seed, device="cpu",
                            progress=False)
    return cfg, data, p0, {"clamp": (0.0, 1.0)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters-2d", type=int, default=2000)
    ap.add_argument("--iters-mnist", type=int, default=300)
    ap.add_argument("--lrs-2d", type=float, nargs="+", default=[1e-2, 1e-3, 1e-4, 1e-6])
    ap.add_argument("--lrs-mnist", type=float, nargs="+", default=[1e-3, 1e-6])
    ap.add_argument("--overflow", type=float, default=1e4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="benchmarks/results/stability.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    start = time.perf_counter()
    results = {}
    for name, build, iters, lrs in (("2d", setting_2d, args.iters_2d, args.lrs_2d),
                                    ("mnist", setting_mnist, args.iters_mnist, args.lrs_mnist)):
        cfg, data, p0, extra = build(iters, args.seed)
        runs = compare_losses(cfg, data, p0, lrs, extra=extra, overflow=args.overflow)
        table = []
        for run in runs:
            g = run["growth"]
            row = {"loss": run["loss"], "lr": run["lr"], "iters": run["iters"], "diverged": run["diverged"],
                   "diverged_at": run["diverged_at"], "gap_first": g.get("first"), "gap_last": g.get("last"),
                   "gap_max": g.get("max"), "gap_slope_per_1k_second_half": g.get("slope_second_half_per_1k"),
                   "final_k": run["trace"][-1]["k"] if run["trace"] else None, "seconds": round(run["seconds"], 1)}
            table.append(row)
            print(f"{name:5s} {run['loss']:3s} lr {run['lr']:.0e}: iters {run['iters']:5d} gap first "
                  f"{row['gap_first']:.3g} last {row['gap_last']:.3g} max {row['gap_max']:.3g} slope/1k "
                  f"{row['gap_slope_per_1k_second_half']:.3g} diverged {run['diverged']}", flush=True)
        results[name] = {
            "config": {k: cfg.to_dict()[k] for k in ("model", "batch_size", "optimizer", "betas", "k_start", "k_max",
                                                      "epochs_per_k", "step_size", "r1", "max_iters", "log_every")},
            "table": table,
            "traces": [{"loss": r["loss"], "lr": r["lr"], "trace": _thin(r["trace"])} for r in runs],
        }
    summary = {
        "benchmark": "E Sec. 5.3: EBM loss vs BCE loss with PGD samples, logit gap mean f(data) - mean f(x*)",
        "command": "python benchmarks/stability.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "threads": 1, "overflow_threshold": args.overflow, "settings": results,
        "seconds_total": round(time.perf_counter() - start, 1),
    }
    write_json(args.out, summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
