"""Training speed as ratios measured in one run: the trainer against its floor.

For each K: the time of one :class:`atebm.Trainer` iteration (the mnist preset network and batch: 32 data + 32 p_0
images, no R1) over the floor of (K+1) forward+backward passes plus one optimiser step,
``K x fb(32 p_0 images) + fb(32 + 32 images) + opt``, each part timed here on a copy of the network. 1.0 means no
overhead beyond the arithmetic the algorithm needs (a PGD step needs no weight gradient, so it costs less than the
fb(32) it is counted as, and the ratio may fall below 1).

The iteration and the floor parts are timed in alternating rounds (``--rounds``), each round a median over
``--repeats`` calls, and the ratio is the median of the per-round ratios: on a shared machine the load changes
within seconds, and a ratio of two numbers measured minutes apart measures the load. ``--profile`` adds a
torch.profiler breakdown of the iteration at each K (self CPU time per operator group).

Run: ``nice -n 10 python benchmarks/train.py --threads 1`` (writes benchmarks/results/train.json).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
from collections.abc import Callable

import torch

import atebm
from _timing import environment, median_time, write
from atebm import TrainConfig, Trainer
from atebm.presets import PRESETS

SPEC = PRESETS["mnist"].train["model"]
#: operator groups of the profile: the network's arithmetic, the optimiser, and everything else
NETWORK_OPS = ("conv", "pool", "mm", "addmm", "linear", "leaky_relu", "relu", "threshold", "mkldnn", "bmm")


def make_trainer(k: int, batch: int) -> Trainer:
    g = torch.Generator().manual_seed(0)
    data, p0 = torch.rand(2048, 1, 28, 28, generator=g), torch.rand(2048, 1, 28, 28, generator=g)
    config = TrainConfig(model=SPEC, batch_size=batch, k_start=k, k_max=k, max_iters=10**9, log_every=10**9,
                         ckpt_every=10**9, progress=False, device="cpu")
    return Trainer(config, data, p0)


def floor_parts(trainer: Trainer, batch: int) -> dict[str, Callable[[], object]]:
    model = copy.deepcopy(trainer.model)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.99))
    half, full = torch.rand(batch, 1, 28, 28), torch.rand(2 * batch, 1, 28, 28)

    def fb_half() -> None:
        model.zero_grad(set_to_none=True)
        model(half).sum().backward()

    def fb_full() -> None:
        opt.zero_grad(set_to_none=True)
        model(full).sum().backward()

    fb_full()
    return {"forward_backward_half_batch": fb_half, "forward_backward_full_batch": fb_full,
            "optimizer_step": opt.step}


def measure(k: int, batch: int, rounds: int, repeats: int) -> dict[str, object]:
    trainer = make_trainer(k, batch)
    parts = floor_parts(trainer, batch)
    for _ in range(2):
        trainer.train_step()
    ratios, iteration_times, part_times = [], [], {name: [] for name in parts}
    for _ in range(rounds):
        iteration = median_time(trainer.train_step, repeats, warmup=0)
        measured = {name: median_time(fn, max(3, repeats), warmup=0) for name, fn in parts.items()}
        floor = k * measured["forward_backward_half_batch"] + measured["forward_backward_full_batch"] \
            + measured["optimizer_step"]
        ratios.append(iteration / floor)
        iteration_times.append(iteration)
        for name, value in measured.items():
            part_times[name].append(value)
    return {"k": k, "iteration_over_floor": statistics.median(ratios),
            "iteration_over_floor_per_round": ratios,
            "iters_per_s": 1 / statistics.median(iteration_times),
            "floor_parts_s": {name: statistics.median(values) for name, values in part_times.items()}}


def profile(k: int, batch: int, steps: int) -> dict[str, object]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    trainer = make_trainer(k, batch)
    for _ in range(2):
        trainer.train_step()
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_step()
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    groups = {"network arithmetic (conv, pool, matmul, activation and their backward)": 0.0,
              "optimiser (Adam element-wise ops)": 0.0, "other aten ops (fill, copy, index, reductions, ...)": 0.0}
    names = list(groups)
    adam_ops = ("addcdiv", "lerp", "sqrt", "addcmul", "_foreach")
    for e in events:
        op = e.key.removeprefix("aten::")
        if any(token in op for token in NETWORK_OPS):
            groups[names[0]] += e.self_cpu_time_total
        elif any(op.startswith(token) for token in adam_ops):
            groups[names[1]] += e.self_cpu_time_total
        else:
            groups[names[2]] += e.self_cpu_time_total
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:10]
    return {"k": k, "steps": steps, "share_of_aten_self_cpu": {g: v / total for g, v in groups.items()},
            "top_ops": [{"op": e.key, "calls_per_iteration": e.count / steps,
                         "share": e.self_cpu_time_total / total} for e in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 1, 4, 16])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = [measure(k, args.batch, args.rounds, args.repeats) for k in args.ks]
    for row in rows:
        print(row["k"], round(row["iteration_over_floor"], 3), flush=True)
    result: dict[str, object] = {
        "command": "nice -n 10 python benchmarks/train.py " + " ".join(sys.argv[1:]),
        "environment": environment(), "batch": args.batch, "network": SPEC, "atebm": atebm.__version__,
        "note": "one torch thread on a shared 2-core machine; iteration and floor parts timed in alternating "
                "rounds, ratio = median of per-round ratios", "results": rows}
    if args.profile:
        result["profile"] = [profile(k, args.batch, 5) for k in (0, 16) if k in args.ks]
    write("train", result)


if __name__ == "__main__":
    main()
