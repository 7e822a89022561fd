"""The robust classifiers of T Sec. 3.4: the committee recipe with combined in- and out-distribution adversarial
training (T Eq. 3.44-3.45) and the robust softmax baseline (Madry et al.'s PGD adversarial training, T Eq. 3.16).

``CLASSIFY_PRESETS`` is a read-only view of the recipes of :data:`~atebm.gat.GAT_PRESETS` made for robust
classification (defined there, with every other recipe ``atebm gat train --preset`` accepts):

* ``mnist-inout``: the CPU preset ``mnist`` with its in-distribution AT (class-k inputs *lowered* inside eps_1 by
  ``indist_at_steps`` sign-descent steps on d_k from the clean image, T Eq. 3.45 first term; ``mnist`` itself uses
  eps_1 = 0.1 for detection) widened to eps_1 = 0.3 for robust classification, ramped from 0 by the trainer's
  curriculum (``indist_at_eps_start``, ``indist_at_warmup``), while the other classes are raised inside eps_2 = the
  preset's eps as before.

:func:`train_madry_classifier` is the baseline: the softmax network of :mod:`atebm.gat.softmax_classifier` trained with
cross-entropy on PGD examples that maximise the cross-entropy inside the eps-ball from a random start
(min_theta E max_{||delta|| <= eps} L(f(x + delta), y), T Eq. 3.16), the attack run by :func:`atebm.pgd`, in the
library's classifier loop (:func:`atebm.training.train_classifier`).
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor, nn

from ..attacks import AcceptanceMargin, AttackSpec, CrossEntropy, ThreatModel, rows_of, search
from ..sampling import pgd
from ..training import SelectBest, resolve_device, train_classifier
from .data import LabelledSplits
from .presets import CLASSIFY_PRESET_NAMES, GAT_PRESETS, GatPreset, detector_model_spec, get_gat_preset
from .softmax_classifier import SoftmaxClassifier, batched_logits

__all__ = ["finetune_inout", "CLASSIFY_PRESETS", "resolve_preset", "train_madry_classifier", "count_parameters",
           "count_macs"]


#: The robust-classification recipes of GAT_PRESETS (T Sec. 3.4), read-only: add a recipe to GAT_PRESETS and its
#: name to CLASSIFY_PRESET_NAMES (atebm.gat.presets).
CLASSIFY_PRESETS: Mapping[str, GatPreset] = MappingProxyType({name: GAT_PRESETS[name]
                                                               for name in CLASSIFY_PRESET_NAMES})


def resolve_preset(name: str | GatPreset) -> GatPreset:
    """A :class:`GatPreset` given by its name (any of :data:`~atebm.gat.GAT_PRESETS`, :func:`get_gat_preset`) or
    itself."""
    return name if isinstance(name, GatPreset) else get_gat_preset(name)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return int(sum(p.numel() for p in model.parameters() if p.requires_grad))


def count_macs(model: nn.Module, x: Tensor) -> int:
    """Multiply-accumulates of one forward pass of ``model`` on ``x`` (convolutions and linear layers only,
    which dominate these networks), per input."""
    total = 0

    def hook(module: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_out = module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
            total += int(output[0].numel()) * per_out
        elif isinstance(module, nn.Linear):
            total += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    try:
        with torch.no_grad():
            model(x[:1])
    finally:
        for h in handles:
            h.remove()
    return total


def _validation_robust_accuracy(model: nn.Module, x: Tensor, y: Tensor, *, norm: str, eps: float, steps: int,
                                 step_size: float, seed: int) -> tuple[float, float]:
    """Clean and robust accuracy under the training attack (cross-entropy PGD from a random start, T Eq. 3.46) run
    by the attack layer (every iterate judged by misclassification): the Madry baseline's selection metric."""
    device = next(model.parameters()).device
    clean = float((batched_logits(model, x).argmax(1) == y).float().mean())
    if eps == 0 or steps == 0:  # plain training: no attack to validate against
        return clean, clean
    threat = ThreatModel(norm, eps)
    spec = AttackSpec("pgd", steps=steps, step_size=step_size, label="training attack")
    result = search(rows_of(lambda yb: AcceptanceMargin(model, yb), y, device=device), x, threat=threat,
                    attackers=[spec], objective_for=rows_of(lambda yb: CrossEntropy(model, yb), y, device=device),
                    seed=seed, device=device, model=model)
    correct = batched_logits(model, x).argmax(1) == y
    return clean, float((correct & ~result.success).float().mean())


def train_madry_classifier(splits: LabelledSplits, *, norm: str = "linf", eps: float = 0.3, steps: int = 7,
                           step_size: float = 0.1, iterations: int = 1000, batch_size: int = 64, lr: float = 1e-3,
                           widths: tuple[int, int] = (16, 32), hidden: int = 1024, validate_every: int = 200,
                           warmup: int = 300,
                           seed: int = 0, device: str = "auto",
                           progress: Callable[[str], None] | None = None) -> SoftmaxClassifier:
    """Madry et al.'s PGD adversarial training of a K-output T Tab. 3.1 network (T Eq. 3.16), in the library's
    classifier loop (:func:`atebm.training.train_classifier`).

    Each iteration draws ``batch_size`` training images (full batches of a permutation per pass), replaces them by
    ``steps`` sign (Linf) or unit-L2 steps of ``step_size`` ascending the cross-entropy inside the ``norm`` ball of
    radius ``eps`` from a random start (:func:`atebm.pgd`; radius and step ramped up linearly over the first
    ``warmup`` iterations), and takes one Adam step on the cross-entropy of the perturbed batch. Every
    ``validate_every`` iterations and at the last one the robust validation accuracy (the same attack) is measured;
    the best weights are kept (robust, then clean accuracy; ties go to the later weights). ``meta`` records the
    recipe, parameters, the chosen iteration, timings and the validation history; ``progress`` receives one line per
    validation."""
    if iterations < 1 or batch_size < 1 or lr <= 0 or steps < 0 or validate_every < 1 or warmup < 0:
        raise ValueError(f"need iterations, batch_size, validate_every >= 1, steps >= 0 and lr > 0; got "
                         f"{iterations}, {batch_size}, {validate_every}, {steps}, {lr}")
    if not (eps >= 0 and math.isfinite(eps)):
        raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
    run_device = resolve_device(device)
    x, y = splits.train.x, splits.train.y
    val_y = splits.val.y
    assert y is not None and val_y is not None and splits.test.y is not None
    spec = detector_model_spec(int(x.shape[-1]), int(x.shape[1]), widths=widths, hidden=hidden,
                               out_dim=splits.num_classes)
    generator = torch.Generator().manual_seed(seed)  # the batches and the attack's random starts: one stream
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SoftmaxClassifier(spec).to(run_device)
    attacks = 0

    def madry_attack(net: nn.Module, xb: Tensor, yb: Tensor) -> Tensor:
        nonlocal attacks
        attacks += 1  # one attack per iteration: the warm-up's clock
        ramp = min(1.0, attacks / warmup) if warmup > 0 else 1.0
        return pgd(CrossEntropy(net, yb), xb, steps=steps, step_size=step_size * ramp, norm=norm, eps=eps * ramp,
                   random_start=True, generator=generator)

    def robust_validation(net: nn.Module) -> dict[str, float]:
        clean, robust = _validation_robust_accuracy(net, splits.val.x, val_y, norm=norm, eps=eps, steps=steps,
                                                    step_size=step_size, seed=seed)
        return {"val_robust": robust, "val_clean": clean}

    select = SelectBest(robust_validation, by="val_robust", goal="max", then=("val_clean", "max"),
                        every=validate_every)
    run = train_classifier(model, x, y, iterations=iterations, batch_size=batch_size, lr=lr,
                           adversary=madry_attack if steps > 0 and eps > 0 else None, select=select,
                           drop_last=True, generator=generator, progress=progress)
    best = select.best
    assert best is not None
    model.meta = {"kind": "madry", "recipe": {"norm": norm, "eps": eps, "steps": steps, "step_size": step_size,
                                              "random_start": True, "iterations": iterations, "warmup": warmup,
                                              "batch_size": batch_size, "lr": lr, "optimizer": "adam",
                                              "seed": seed, "widths": list(widths), "hidden": hidden},
                  "parameters": count_parameters(model), "selected_iteration": best.step,
                  "val_robust_accuracy": best.values["val_robust"], "val_clean_accuracy": best.values["val_clean"],
                  "validations": [{"iteration": v["step"], "val_clean": v["val_clean"], "val_robust": v["val_robust"],
                                   "loss": v["ce"]} for v in select.history],
                  "train_seconds": round(run.seconds, 1), "cpu_seconds": round(run.cpu_seconds, 1),
                  "threads": torch.get_num_threads(), "data": splits.source}
    return model


def finetune_inout(committee: Any, splits: LabelledSplits, *, preset: str | GatPreset = "mnist-inout",
                   iterations: int = 100, eps_in_schedule: Sequence[float] | None = None, seed: int = 0,
                   log: Callable[[str], None] | None = None) -> Any:
    """Combined in- and out-distribution AT (T Eq. 3.45) started from a trained committee: every detector d_k
    continues, from its current weights, as :class:`~atebm.gat.DetectorTrainer` runs with ``preset``'s
    configuration (class-k inputs lowered inside eps_1, the other classes raised inside eps_2). With
    ``eps_in_schedule`` (e.g. ``(0.05, 0.1, 0.15)``) the ``iterations`` are split evenly over trainer runs whose
    eps_1 takes these values in turn (each warm-started from the last; step size eps_1 / 4), a staircase ramp of
    the in-distribution radius; without it, one run at the preset's eps_1. Started from random weights at the
    full eps_1, the ``mnist-inout`` run sat at the 2 ln 2 plateau for some classes (d_2: validation AUC 0.016
    after 300 iterations). Returns a new committee (offsets 0: calibrate it) whose meta records the recipe and
    per-detector CPU seconds."""
    from .committee import Committee
    from .data import class_view
    from .training import DetectorTrainer

    chosen = resolve_preset(preset)
    base = chosen.detector_config()
    schedule = [float(e) for e in eps_in_schedule] if eps_in_schedule else [base.indist_at_eps]
    per_stage = iterations // len(schedule)
    detectors, summary = [], []
    for k in range(committee.num_classes):
        positives, negatives, _ = class_view(splits.train, k)
        state = committee.detector(k).state_dict()
        cpu = time.process_time()
        done = 0
        last: dict[str, Any] = {}
        model: Any = None
        for stage, eps_in in enumerate(schedule):
            steps = per_stage if stage < len(schedule) - 1 else iterations - per_stage * (len(schedule) - 1)
            step_size = base.indist_at_step_size if eps_in_schedule is None else eps_in / 4
            config = chosen.detector_config(seed=seed * 100 + k + 1000 * stage, max_iters=steps, progress=False,
                                            log_every=max(1, steps // 2), ckpt_every=10 ** 9,
                                            indist_at_eps=eps_in, indist_at_step_size=step_size,
                                            indist_at_eps_start=None, indist_at_warmup=0)  # its own ramp, no curriculum
            trainer = DetectorTrainer(config, positives, negatives,
                                      extra={"attack_rule": chosen.train_attack, "clamp": (0.0, 1.0)})
            trainer.model.load_state_dict(state)
            trainer.fit()
            state = trainer.model.state_dict()
            model = trainer.model
            done += trainer.step
            if trainer.history:
                last = {key: trainer.history[-1].get(key) for key in ("loss", "auc_adv")}
        model.eval()
        detectors.append(model)
        summary.append({"class": k, "iterations": done, "cpu_seconds": round(time.process_time() - cpu, 1),
                        "eps_in_schedule": schedule, "last_log": last})
        if log is not None:
            log(f"d_{k}: {done} in+out AT iterations (eps_1 {schedule}), {summary[-1]['cpu_seconds']:.0f} CPU-s, "
                f"{last}")
    meta = {key: value for key, value in committee.meta.items() if key not in ("path", "calibration")}
    meta.update(preset=chosen.name, finetuned_from=committee.meta.get("path"), finetune_iterations=iterations,
                finetune=summary)
    return Committee(detectors, meta=meta).eval()
