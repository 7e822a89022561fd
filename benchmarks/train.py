"""Training speed as ratios measured in one run.

For each K: iterations per second of :class:`atebm.Trainer` (the mnist preset network and batch: 32 data + 32 p_0
images, no R1), and the ratio of the measured iteration time to the floor of (K+1) forward+backward passes
plus one optimiser step: ``K x fb(32 p_0 images) + fb(32 + 32 images) + opt``, each part timed here on the same
network. 1.0 means no overhead beyond the arithmetic the algorithm needs.

Run: ``python benchmarks/train.py`` (writes benchmarks/results/train.json).
"""
from __future__ import annotations

import argparse
import time

import torch

import atebm
from _timing import environment, median_time, write
from atebm import TrainConfig, Trainer
from atebm.presets import PRESETS

SPEC = PRESETS["mnist"].train["model"]


def floor_parts(batch: int) -> dict[str, float]:
    torch.manual_seed(0)
    model = atebm.build_score_model(SPEC)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.0, 0.99))
    half, full = torch.rand(batch, 1, 28, 28), torch.rand(2 * batch, 1, 28, 28)

    def fb_full():
        opt.zero_grad(set_to_none=True)
        model(full).sum().backward()

    fb_full()
    return {
        "forward_backward_half_batch": median_time(lambda: (model.zero_grad(), model(half).sum().backward()), 15),
        "forward_backward_full_batch": median_time(fb_full, 15),
        "optimizer_step": median_time(opt.step, 15),
    }


def iterations_per_second(k: int, batch: int, iters: int) -> float:
    g = torch.Generator().manual_seed(0)
    data, p0 = torch.rand(2048, 1, 28, 28, generator=g), torch.rand(2048, 1, 28, 28, generator=g)
    config = TrainConfig(model=SPEC, batch_size=batch, k_start=k, k_max=k, max_iters=iters + 3, log_every=10**6,
                         ckpt_every=10**6, progress=False)
    trainer = Trainer(config, data, p0)
    for _ in range(3):
        trainer.train_step()
    start = time.perf_counter()
    for _ in range(iters):
        trainer.train_step()
    return iters / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ks", type=int, nargs="+", default=[0, 1, 4, 16])
    parser.add_argument("--iters", type=int, default=10)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    rows = []
    for k in args.ks:
        parts = floor_parts(args.batch)
        its = iterations_per_second(k, args.batch, args.iters)
        floor = k * parts["forward_backward_half_batch"] + parts["forward_backward_full_batch"] \
            + parts["optimizer_step"]
        rows.append({"k": k, "iters_per_s": its, "iteration_over_floor": (1 / its) / floor, "floor_parts_s": parts})
    write("train", {"environment": environment(), "batch": args.batch, "network": SPEC, "results": rows})


if __name__ == "__main__":
    main()
