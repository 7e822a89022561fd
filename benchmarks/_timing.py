"""Shared timing helpers for the benchmarks: interleaved repeats, medians, JSON output."""
from __future__ import annotations

import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

#: Clocks of :func:`median_time`: wall time, or the CPU time of this process (which does not count the time slices
#: other processes take on a shared machine; with one torch thread it is the work of the call).
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def median_time(fn: Callable[[], object], repeats: int, warmup: int = 2, clock: str = "wall") -> float:
    now = CLOCKS[clock]
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = now()
        fn()
        times.append(now() - start)
    return statistics.median(times)


def interleaved(cases: dict[str, Callable[[], object]], rounds: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each case, measured in alternating rounds so background load hits all alike."""
    for fn in cases.values():
        fn()
    samples: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(rounds):
        for name, fn in cases.items():
            samples[name].append(median_time(fn, repeats, warmup=0))
    return {name: statistics.median(values) for name, values in samples.items()}


def environment() -> dict[str, object]:
    return {"torch": torch.__version__, "threads": torch.get_num_threads(), "python": platform.python_version(),
            "machine": platform.machine(), "processor": platform.processor() or "unknown"}


def write(name: str, result: dict) -> Path:
    path = Path(__file__).with_name("results") / f"{name}.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return path
