"""DistributedDataParallel, measured: time per global batch of the mnist preset with 1 and 2 CPU processes (gloo)
and the scaling efficiency ``t(1) / (2 t(2))`` (issue 15, item 3).

Every run trains the mnist preset's network, global batch 32 (16 per rank with 2 ranks), K fixed at the preset's
k_max (16) and its R1 weight, on random 28x28 images (time does not depend on pixel values), one torch thread per
process. Rank 0 times ``--iters`` iterations after ``--warmup`` (a barrier before and after). The 1- and 2-process
runs alternate ``--rounds`` times so that background load hits both alike; the median per arm is reported.

Run: ``nice -n 10 python benchmarks/scale_ddp.py`` (writes benchmarks/results/scale/ddp.json).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from _timing import environment
from atebm import Trainer
from atebm.presets import PRESETS

OUT = Path(__file__).with_name("results") / "scale" / "ddp.json"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _rank(rank: int, world: int, port: int, iters: int, warmup: int, queue: mp.Queue) -> None:
    torch.set_num_threads(1)
    os.environ.update({"WORLD_SIZE": str(world), "RANK": str(rank), "LOCAL_RANK": str(rank),
                       "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)})
    k = PRESETS["mnist"].config().k_max
    config = PRESETS["mnist"].config(k_start=k, k_max=k, device="cpu", progress=False, log_every=10**9,
                                     ckpt_every=10**9, max_iters=10**9)
    g = torch.Generator().manual_seed(0)
    data, p0 = torch.rand(1024, 1, 28, 28, generator=g), torch.rand(1024, 1, 28, 28, generator=g)
    trainer = Trainer(config, data, p0)
    for _ in range(warmup):
        trainer.train_step()
    if world > 1:
        dist.barrier()
    start = time.perf_counter()
    for _ in range(iters):
        trainer.train_step()
    if world > 1:
        dist.barrier()
    elapsed = time.perf_counter() - start
    if rank == 0:
        queue.put(elapsed / iters)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()


def time_per_global_batch(world: int, iters: int, warmup: int) -> float:
    ctx = mp.get_context("spawn")
    queue: mp.Queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_rank, args=(r, world, port, iters, warmup, queue)) for r in range(world)]
    for p in procs:
        p.start()
    value = queue.get(timeout=1800)
    for p in procs:
        p.join()
        if p.exitcode != 0:
            raise RuntimeError(f"rank process exited with {p.exitcode}")
    return float(value)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(1)  # as in every rank (the parent only waits)
    samples: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.rounds):
        for world in (1, 2):
            samples[world].append(time_per_global_batch(world, args.iters, args.warmup))
            print(world, samples[world][-1], flush=True)
    t1, t2 = statistics.median(samples[1]), statistics.median(samples[2])
    result = {
        "command": "nice -n 10 python benchmarks/scale_ddp.py " + " ".join(sys.argv[1:]),
        "environment": environment(),
        "setup": "mnist preset network, global batch 32, K = 16, R1 = 1, one torch thread per process, gloo",
        "note": "shared 2-core machine (load average ~8-10 from other users): 2 ranks compete with the others for "
                "the same 2 cores, so the efficiency here is a lower bound of what 2 free cores would give. "
                "GPU: not measured (no GPU lent).",
        "s_per_global_batch": {"1_process": t1, "2_processes": t2},
        "samples_s": {str(w): v for w, v in samples.items()},
        "speedup": t1 / t2, "scaling_efficiency": t1 / (2 * t2),
    }
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
