"""Sampler speed as ratios measured in one run (no absolute timings are claimed).

* ``step_over_forward_backward``: one PGD step of :func:`atebm.pgd` divided by one raw forward+backward of the
  same network and batch (the floor is about 1.0; the raw pass here computes parameter gradients, as a training
  step does, while the sampler needs input gradients only, so values below 1 are possible).
* ``step_over_input_gradient``: the same against a bare ``autograd.grad`` w.r.t. the input (the tight floor).
* ``step_over_torchattacks_pgdl2``: our step against torchattacks' PGDL2 step on the same model and batch
  (the model is shown to torchattacks as a two-class classifier with logits [0, f(x)]).

Run: ``python benchmarks/sampler.py`` (writes benchmarks/results/sampler.json).
"""
from __future__ import annotations

import argparse

import torch
from torch import nn

from _timing import environment, interleaved, write

import atebm
from atebm.presets import PRESETS


class TwoClass(nn.Module):
    """Presents a score model as logits [0, f(x)], so that cross-entropy on label 0 rises as f rises."""

    def __init__(self, score: nn.Module):
        super().__init__()
        self.score = score

    def forward(self, x):
        s = self.score(x)
        return torch.stack([torch.zeros_like(s), s], dim=1)


def bench(name: str, spec: dict, shape: tuple[int, ...], steps: int, rounds: int, repeats: int) -> dict:
    import torchattacks

    torch.manual_seed(0)
    model = atebm.build_score_model(spec).eval()
    x = torch.rand(shape)
    labels = torch.zeros(shape[0], dtype=torch.long)
    attack = torchattacks.PGDL2(TwoClass(model).eval(), eps=1e9, alpha=0.5, steps=steps, random_start=False)

    def forward_backward():
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()

    def input_gradient():
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xi).sum(), xi)

    cases = {
        "forward_backward": forward_backward,
        "input_gradient": input_gradient,
        "atebm_pgd": lambda: atebm.pgd(model, x, steps=steps, step_size=0.5),
        "torchattacks_pgdl2": lambda: attack(x, labels),
    }
    t = interleaved(cases, rounds, repeats)
    ours, theirs = t["atebm_pgd"] / steps, t["torchattacks_pgdl2"] / steps
    return {
        "model": name, "batch_shape": list(shape), "steps_per_call": steps,
        "step_over_forward_backward": ours / t["forward_backward"],
        "step_over_input_gradient": ours / t["input_gradient"],
        "step_over_torchattacks_pgdl2": ours / theirs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    cases = [
        ("mnist preset ConvNet", PRESETS["mnist"].train["model"], (64, 1, 28, 28), 8),
        ("convnet-w32", {"arch": "convnet", "kwargs": {"in_channels": 1, "width": 32}}, (64, 1, 28, 28), 8),
        ("resnet18 (32 px)", {"arch": "resnet32", "kwargs": {"depth": 18, "in_channels": 3, "width": 16}},
         (32, 3, 32, 32), 4),
    ]
    results = [bench(name, spec, shape, steps, args.rounds, args.repeats) for name, spec, shape, steps in cases]
    write("sampler", {"environment": environment(), "results": results,
                      "target": "step_over_forward_backward <= 1.05, step_over_torchattacks_pgdl2 <= 1.0"})


if __name__ == "__main__":
    main()
