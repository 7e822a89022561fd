"""Run by test_training.py under torchrun with 2 CPU processes (gloo); ``setup()`` is also imported by the test to
train the same configuration in one process."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from atebm import TrainConfig, Trainer


def setup() -> tuple[TrainConfig, torch.Tensor, torch.Tensor, dict[str, Any]]:
    """The run both sides train: 512 points, global batch 64 (32 per rank with 2 ranks), 40 iterations.

    K advances only by its epoch limit (8 iterations = 1 epoch): ``auc_threshold=1.0`` switches the AUC gate off,
    because under DDP the gate reads the mean of the per-rank batch AUCs, which is not the AUC of the global batch
    (a different statistic by design), so with the gate on the two runs may move K at different iterations."""
    g = torch.Generator().manual_seed(0)
    data = torch.randn(512, 2, generator=g) * 0.5
    p0 = torch.rand(512, 2, generator=g) * 8 - 4
    config = TrainConfig(model={"arch": "mlp2d", "kwargs": {"hidden": 32, "depth": 2}}, batch_size=64, lr=2e-3,
                         k_max=3, epochs_per_k=1, auc_window=5, auc_threshold=1.0, step_size=0.3, r1=0.1,
                         max_iters=40, log_every=10, ckpt_every=20, progress=False, device="cpu")
    return config, data, p0, {"clamp": (-4.0, 4.0)}


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    config, data, p0, extra = setup()
    trainer = Trainer(config, data, p0, out_dir=out_dir, extra=extra)
    history = trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    if dist.get_rank() == 0:
        torch.save(trainer.model.state_dict(), Path(out_dir) / "ddp_final_state.pt")
        same = all(torch.equal(gathered[0], other) for other in gathered[1:])
        print("DDP-RESULT " + json.dumps({"world": dist.get_world_size(), "same_params": same, "k": trainer.k,
                                           "step": trainer.step, "first_loss": history[0]["loss"],
                                           "last_loss": history[-1]["loss"]}))
    dist.barrier()  # both ranks leave together: tearing gloo down while the peer is still talking aborts
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
