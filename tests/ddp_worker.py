"""Run by test_training.py under torchrun with 2 CPU processes (gloo)."""
import json
import sys

import torch
import torch.distributed as dist

from atebm import TrainConfig, Trainer


def main(out_dir: str) -> None:
    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)
    data = torch.randn(512, 2, generator=g) * 0.5
    p0 = torch.rand(512, 2, generator=g) * 8 - 4
    config = TrainConfig(model={"arch": "mlp2d", "kwargs": {"hidden": 32, "depth": 2}}, batch_size=64, lr=2e-3,
                         k_max=3, epochs_per_k=1, auc_window=5, step_size=0.3, r1=0.1, max_iters=40,
                         log_every=10, ckpt_every=20, progress=False)
    trainer = Trainer(config, data, p0, out_dir=out_dir, extra={"clamp": (-4.0, 4.0)})
    history = trainer.fit()
    flat = torch.cat([p.detach().flatten() for p in trainer.model.parameters()])
    gathered = [torch.zeros_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    if dist.get_rank() == 0:
        same = all(torch.equal(gathered[0], other) for other in gathered[1:])
        print("DDP-RESULT " + json.dumps({"world": dist.get_world_size(), "same_params": same, "k": trainer.k,
                                           "step": trainer.step, "first_loss": history[0]["loss"],
                                           "last_loss": history[-1]["loss"]}))
    dist.barrier()  # both ranks leave together: tearing gloo down while the peer is still talking aborts
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
