"""Sampler speed as ratios measured in one run (no absolute timings are claimed).

* ``step_over_forward_backward``: one PGD step of :func:`atebm.pgd` divided by one raw forward+backward of the
  same network and batch (the floor is about 1.0; the raw pass here computes parameter gradients, as a training
  step does, while the sampler needs input gradients only, so values below 1 are possible).
* ``step_over_input_gradient``: the same against a bare ``autograd.grad`` w.r.t. the input (the tight floor).
* ``best_step_over_input_gradient``: a step of ``atebm.pgd(keep="best")``, the attack layer's ascent (it tracks
  the best iterate per sample), against the bare input gradient: what the one attack layer costs per step.
* ``step_over_art_pgd``: our step against one step of the Adversarial Robustness Toolbox's PGD (its PyTorch
  implementation, L2, targeted, no random start) on the same model and batch, the model shown to ART through
  the attack layer's one adapter (:class:`atebm.attacks.MarginLogits`).

Run: ``python benchmarks/sampler.py`` (writes benchmarks/results/sampler.json).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

import atebm
from _timing import environment, interleaved, write
from atebm.presets import PRESETS


def _art_pgd(model: nn.Module, shape: tuple[int, ...], steps: int):
    """ART's PGD (L2, step 0.5, no projection in effect, targeted at the score's class) as a callable on x."""
    from art.attacks.evasion import ProjectedGradientDescent

    from atebm.attacks import MarginLogits
    from atebm.attacks.art import art_classifier

    view = MarginLogits()
    view.bind(lambda rows: model, torch.arange(shape[0]))   # the margin is the score itself
    classifier = art_classifier(view, tuple(shape[1:]), torch.device("cpu"))
    attack = ProjectedGradientDescent(classifier, norm=2, eps=1e9, eps_step=0.5, max_iter=steps, targeted=True,
                                      num_random_init=0, batch_size=shape[0], verbose=False)
    target = np.ones(shape[0], dtype=np.int64)
    return lambda x: attack.generate(x.numpy(), target)


def bench(name: str, spec: dict, shape: tuple[int, ...], steps: int, rounds: int, repeats: int) -> dict:
    torch.manual_seed(0)
    model = atebm.build_score_model(spec).eval()
    for p in model.parameters():          # as in the OOD attacks: ART must not accumulate parameter gradients
        p.requires_grad_(False)
    x = torch.rand(shape)
    art_pgd = _art_pgd(model, shape, steps)

    def forward_backward():
        for p in model.parameters():
            p.requires_grad_(True)
        model.zero_grad(set_to_none=True)
        model(x).sum().backward()
        for p in model.parameters():
            p.requires_grad_(False)

    def input_gradient():
        xi = x.clone().requires_grad_(True)
        torch.autograd.grad(model(xi).sum(), xi)

    cases = {
        "forward_backward": forward_backward,
        "input_gradient": input_gradient,
        "atebm_pgd": lambda: atebm.pgd(model, x, steps=steps, step_size=0.5),
        "atebm_pgd_best": lambda: atebm.pgd(model, x, steps=steps, step_size=0.5, keep="best"),
        "art_pgd": lambda: art_pgd(x),
    }
    t = interleaved(cases, rounds, repeats)
    ours, theirs = t["atebm_pgd"] / steps, t["art_pgd"] / steps
    return {
        "model": name, "batch_shape": list(shape), "steps_per_call": steps,
        "step_over_forward_backward": ours / t["forward_backward"],
        "step_over_input_gradient": ours / t["input_gradient"],
        "best_step_over_input_gradient": t["atebm_pgd_best"] / steps / t["input_gradient"],
        "step_over_art_pgd": ours / theirs,
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
                      "target": "step_over_forward_backward <= 1.05, best_step_over_input_gradient <= 1.05, "
                                "step_over_art_pgd <= 1.0"})


if __name__ == "__main__":
    main()
