"""Training speed as ratios measured in one run: the trainer against its floor.

For each K: the time of one :class:`atebm.Trainer` iteration (the mnist preset network and batch: 32 data + 32 p_0
images) over its floor, the arithmetic the algorithm needs::

    floor = K x ig(32 p_0 images) + fb(32 + 32 images) + opt

``ig`` is one input-gradient pass, the work of a PGD step: the gradient of the score with respect to the input only,
the parameters not requiring grad, as the sampler needs; ``fb`` is one forward+backward with parameter gradients of
the whole batch; ``opt`` is one step of the trainer's optimiser. Each part is timed here on a copy of the network.
1.0 means no overhead beyond that arithmetic.

Two trainer settings are measured against the same floor: ``plain``, the trainer as configured by default (no R1,
no weight average), and ``mnist``, the ``mnist`` preset's training settings (R1 = 1, EMA 0.99, Adam betas
(0, 0.99)). R1's extra passes (the input gradient of the data half and its double backward, E Sec. 4.4) and the
EMA update are not in the floor, so the ``mnist`` ratio also counts them.

The iteration and the floor parts are timed in alternating rounds (``--rounds``), each round a median over
``--repeats`` calls, and the ratio is the median of the per-round ratios: on a shared machine the load changes
within seconds, and a ratio of two numbers measured minutes apart measures the load. The clock is this process's
CPU time (``--clock cpu``, the default; meant for ``--threads 1``, with more threads it sums their work), which does
not count the time slices other processes take: on the shared 2-core machine under a load of 3 the per-round ratios
of wall time (``--clock wall``) spread from 0.45 to 2, those of CPU time by about +-10 %. ``--profile`` adds a
torch.profiler breakdown of the iteration at K = 0 and 16 in each setting (self CPU time per operator group).

Run: ``nice -n 10 python benchmarks/train.py --threads 1`` (writes benchmarks/results/train.json).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
from collections.abc import Callable
from typing import Any

import torch

import atebm
from _timing import CLOCKS, environment, median_time, write
from atebm import TrainConfig, Trainer
from atebm.presets import PRESETS

PRESET = PRESETS["mnist"].train
SPEC = PRESET["model"]
#: the trainer settings measured: the defaults (no R1, no EMA), and the mnist preset's optimiser, R1 and EMA
SETTINGS: dict[str, dict[str, Any]] = {
    "plain": {},
    "mnist": {name: PRESET[name] for name in ("optimizer", "lr", "betas", "r1", "ema_decay")},
}
#: operator groups of the profile: the network's arithmetic, the optimiser, and everything else
NETWORK_OPS = ("conv", "pool", "mm", "addmm", "linear", "leaky_relu", "relu", "threshold", "mkldnn", "bmm")


def make_trainer(k: int, batch: int, setting: str) -> Trainer:
    g = torch.Generator().manual_seed(0)
    data, p0 = torch.rand(2048, 1, 28, 28, generator=g), torch.rand(2048, 1, 28, 28, generator=g)
    config = TrainConfig(model=SPEC, batch_size=batch, k_start=k, k_max=k, max_iters=10**9, log_every=10**9,
                         ckpt_every=10**9, progress=False, device="cpu", **SETTINGS[setting])
    return Trainer(config, data, p0)


def floor_parts(trainer: Trainer, batch: int) -> dict[str, Callable[[], object]]:
    """The parts of the floor, each on its own copy of the trainer's network: an input-gradient pass on the p_0
    half (parameters not requiring grad, eval mode, as in the sampler), a forward+backward of the whole batch with
    parameter gradients, and a step of an optimiser configured as the trainer's."""
    c = trainer.config
    sampler_model = copy.deepcopy(trainer.model).eval().requires_grad_(False)
    model = copy.deepcopy(trainer.model).train()
    opt: torch.optim.Optimizer = (
        torch.optim.Adam(model.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
        if c.optimizer == "adam" else
        torch.optim.SGD(model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay))
    half, full = torch.rand(batch, 1, 28, 28), torch.rand(2 * batch, 1, 28, 28)

    def input_gradient_half() -> None:
        x = half.detach().requires_grad_(True)
        torch.autograd.grad(sampler_model(x).sum(), x)

    def fb_full() -> None:
        opt.zero_grad(set_to_none=True)
        model(full).sum().backward()

    fb_full()
    return {"input_gradient_half_batch": input_gradient_half, "forward_backward_full_batch": fb_full,
            "optimizer_step": opt.step}


def measure(setting: str, k: int, batch: int, rounds: int, repeats: int, clock: str) -> dict[str, Any]:
    trainer = make_trainer(k, batch, setting)
    parts = floor_parts(trainer, batch)
    for _ in range(2):
        trainer.train_step()
    ratios, iteration_times, part_times = [], [], {name: [] for name in parts}
    for _ in range(rounds):
        iteration = median_time(trainer.train_step, repeats, warmup=0, clock=clock)
        measured = {name: median_time(fn, max(3, repeats), warmup=0, clock=clock) for name, fn in parts.items()}
        floor = k * measured["input_gradient_half_batch"] + measured["forward_backward_full_batch"] \
            + measured["optimizer_step"]
        ratios.append(iteration / floor)
        iteration_times.append(iteration)
        for name, value in measured.items():
            part_times[name].append(value)
    return {"setting": setting, "k": k, "iteration_over_floor": statistics.median(ratios),
            "iteration_over_floor_per_round": ratios,
            "iters_per_s": 1 / statistics.median(iteration_times),
            "floor_parts_s": {name: statistics.median(values) for name, values in part_times.items()}}


def profile(setting: str, k: int, batch: int, steps: int) -> dict[str, object]:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    trainer = make_trainer(k, batch, setting)
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
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:12]
    return {"setting": setting, "k": k, "steps": steps,
            "share_of_aten_self_cpu": {g: v / total for g, v in groups.items()},
            "top_ops": [{"op": e.key, "calls_per_iteration": e.count / steps,
                         "share": e.self_cpu_time_total / total} for e in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 1, 4, 16])
    parser.add_argument("--settings", nargs="+", choices=sorted(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--rounds", type=int, default=11)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="cpu",
                        help="this process's CPU time (default; steady on a loaded machine with --threads 1) or wall "
                             "time")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for setting in args.settings:
        for k in args.ks:
            rows.append(measure(setting, k, args.batch, args.rounds, args.repeats, args.clock))
            print(setting, k, round(rows[-1]["iteration_over_floor"], 3), flush=True)
    result: dict[str, object] = {
        "command": "nice -n 10 python benchmarks/train.py " + " ".join(sys.argv[1:]),
        "environment": environment(), "clock": args.clock, "batch": args.batch, "network": SPEC,
        "atebm": atebm.__version__,
        "settings": {name: SETTINGS[name] for name in args.settings},
        "floor": "K x input-gradient pass on the p_0 half (no parameter gradients) + forward+backward of the whole "
                 "batch + optimiser step; R1's extra passes and the EMA update are not in the floor",
        "note": "one torch thread on a shared 2-core machine; iteration and floor parts timed in alternating "
                "rounds by the clock named, ratio = median of per-round ratios", "results": rows}
    if args.profile:
        result["profile"] = [profile(setting, k, args.batch, 5) for setting in args.settings
                             for k in (0, 16) if k in args.ks]
    write("train", result)


if __name__ == "__main__":
    main()
