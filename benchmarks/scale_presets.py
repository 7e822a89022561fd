"""Seconds per training iteration of every preset on this machine's CPU, and the projected total for the papers'
iteration counts (issue 15, item 5).

Each preset's own config (published batch, model, R1, precision and memory layout as the preset sets them; the
device resolves the precision, see :func:`atebm.models.performance.resolve_precision`) trains on random images of
the preset's size (time does not depend on the pixel values) at K = k_max:

- ``full``: ``--iters`` whole iterations at K = k_max are timed (after one warm-up iteration);
- ``parts`` (presets too slow for that here): one iteration at K = 0 (the data and p_0 forward+backward with R1,
  the optimiser step) and ``--pgd-steps`` single PGD steps on the p_0 batch are timed, and the iteration at
  k_max is their sum ``t(K=0) + k_max * t(PGD step)`` -- composed from measured parts, stated as such.

Times are CPU seconds of this process (``time.process_time``, one torch thread) next to wall seconds: on a shared
machine the wall clock counts other users' work. Run:
``nice -n 10 python benchmarks/scale_presets.py`` (writes benchmarks/results/scale/presets.json).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from _timing import environment
from atebm import Trainer
from atebm.presets import PRESETS

OUT = Path(__file__).with_name("results") / "scale" / "presets.json"


def _clock() -> tuple[float, float]:
    return time.process_time(), time.perf_counter()


def _since(start: tuple[float, float]) -> dict[str, float]:
    cpu, wall = _clock()
    return {"cpu_s": cpu - start[0], "wall_s": wall - start[1]}


def _trainer(name: str, k: int, **overrides: Any) -> Trainer:
    preset = PRESETS[name]
    config = preset.config(k_start=k, k_max=max(k, preset.config().k_max), device="cpu", progress=False,
                           log_every=10**9, ckpt_every=10**9, num_workers=0, **overrides)
    g = torch.Generator().manual_seed(0)
    shape = (2 * config.batch_size, preset.channels, preset.size, preset.size)
    return Trainer(config, torch.rand(shape, generator=g), torch.rand(shape, generator=g))


def measure_full(name: str, iters: int, warmup: bool) -> dict[str, Any]:
    k = PRESETS[name].config().k_max
    trainer = _trainer(name, k)
    if warmup:
        trainer.train_step()
    start = _clock()
    for _ in range(iters):
        trainer.train_step()
    spent = _since(start)
    return {"method": "full", "iterations_timed": iters, "warmup_iterations": int(warmup), "k": k,
            "precision": trainer.precision, "channels_last": trainer.config.channels_last,
            "s_per_iteration_cpu": spent["cpu_s"] / iters, "s_per_iteration_wall": spent["wall_s"] / iters}


def measure_parts(name: str, pgd_steps: int, compare_fp32: bool) -> dict[str, Any]:
    k = PRESETS[name].config().k_max
    trainer = _trainer(name, 0)
    start = _clock()
    trainer.train_step()  # K = 0: forward+backward of data and p_0 with R1, optimiser step (includes warm-up)
    step0 = _since(start)
    x0 = trainer._read("p0")
    trainer.sample_p0(x0, 1)
    start = _clock()
    for _ in range(pgd_steps):
        trainer.sample_p0(x0, 1)
    pgd = {key: value / pgd_steps for key, value in _since(start).items()}
    row: dict[str, Any] = {
        "method": "parts", "iterations_timed": 1, "pgd_steps_timed": pgd_steps, "k": k,
        "precision": trainer.precision, "channels_last": trainer.config.channels_last,
        "iteration_k0_cpu_s": step0["cpu_s"], "pgd_step_cpu_s": pgd["cpu_s"],
        "iteration_k0_wall_s": step0["wall_s"], "pgd_step_wall_s": pgd["wall_s"],
        "s_per_iteration_cpu": step0["cpu_s"] + k * pgd["cpu_s"],
        "s_per_iteration_wall": step0["wall_s"] + k * pgd["wall_s"],
    }
    if compare_fp32:
        plain = _trainer(name, 0, precision="fp32", channels_last=False)
        x0 = plain._read("p0")
        plain.sample_p0(x0, 1)
        start = _clock()
        for _ in range(pgd_steps):
            plain.sample_p0(x0, 1)
        row["pgd_step_cpu_s_fp32_nchw"] = _since(start)["cpu_s"] / pgd_steps
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", nargs="*", default=["mnist", "cifar10"], help="presets timed as whole iterations")
    parser.add_argument("--parts", nargs="*", default=["cifar10", "celebahq256", "afhqcat256", "church256"])
    parser.add_argument("--iters", type=int, default=5, help="whole iterations per preset (cifar10: 1)")
    parser.add_argument("--pgd-steps", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows = []
    measured_parts: dict[tuple[int, int], dict[str, Any]] = {}
    for name in dict.fromkeys(args.full + args.parts):
        preset, config = PRESETS[name], PRESETS[name].config()
        entry = {"preset": name, "batch": config.batch_size, "k_max": config.k_max, "size": preset.size,
                 "arch": config.model["arch"], "r1": config.r1, "paper_iterations": config.max_iters,
                 "hardware_published": preset.hardware}
        if name in args.parts:
            # celebahq256 and afhqcat256 share model and batch: their parts are measured once
            key = (config.batch_size, preset.size)
            if key not in measured_parts:
                measured_parts[key] = measure_parts(name, args.pgd_steps, compare_fp32=name == "cifar10")
                measured_parts[key]["measured_on"] = name
            parts = dict(measured_parts[key])
            parts["s_per_iteration_cpu"] = parts["iteration_k0_cpu_s"] + config.k_max * parts["pgd_step_cpu_s"]
            parts["s_per_iteration_wall"] = parts["iteration_k0_wall_s"] + config.k_max * parts["pgd_step_wall_s"]
            parts["k"] = config.k_max
            entry["parts"] = parts
            print(name, entry["parts"], flush=True)
        if name in args.full:  # after the parts, which warm up the same layers (no extra warm-up iteration)
            small = name == "mnist"
            entry["full"] = measure_full(name, args.iters if small else 1, warmup=small or name not in args.parts)
            print(name, entry["full"], flush=True)
        best = entry.get("full", entry.get("parts"))
        entry["s_per_iteration_cpu"] = best["s_per_iteration_cpu"]
        entry["projected_days_cpu_one_thread"] = best["s_per_iteration_cpu"] * config.max_iters / 86400
        rows.append(entry)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps({
        "command": "nice -n 10 python benchmarks/scale_presets.py " + " ".join(sys.argv[1:]),
        "environment": environment(),
        "note": "one torch thread on a shared 2-core machine (load average ~8-10 from other users): CPU seconds "
                "of this process are the number to read; wall seconds include waiting for the core. GPU rows: not "
                "measured (no GPU lent to this task).",
        "presets": rows}, indent=2))


if __name__ == "__main__":
    main()
