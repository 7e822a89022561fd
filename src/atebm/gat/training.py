"""Training the detector committee (T Eq. 3.22-3.23) with the project's trainer.

Detector d_k is a binary adversarial-training run of :class:`atebm.Trainer`: p_data = the training images of class
k (label 1), p_0 = the training images of the other classes (label 0), each p_0 batch replaced by a PGD attack that
*raises* d_k inside the eps-ball around it, from a random point of the ball (the authors' code), with a fixed
number of steps K (``k_start = k_max``). :class:`DetectorTrainer` is the trainer with that random start and the
optional Adam-step attack of T Tab. 3.1; everything else (loop, optimiser, checkpoints, resume, logs) is the
trainer's own. Every ``validation["every"]`` iterations the detector is scored on the validation split: AUC of
clean class-k images against perturbed other-class images under the preset's validation attack; the best
(AUC, then lower validation loss) becomes the run's model (``detector_k/model.pt``, via
:meth:`atebm.Trainer.select_weights`).
"""
from __future__ import annotations

import json
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.nn import functional as F

from ..metrics import auroc
from ..sampling import adam_pgd, pgd
from ..training import CHECKPOINT_FILE, MODEL_FILE, Trainer, load_model, write_json
from ..training.trainer import RESUME_OVERRIDABLE
from .attacks import SingleDetectorAttack, run_attack
from .committee import Committee, save_committee
from .data import LabelledSplits, class_view
from .presets import ATTACK_RULES, GatPreset

__all__ = ["DetectorTrainer", "ValidationSelector", "train_detector", "train_detectors", "detector_dir",
           "assemble_committee"]


def detector_dir(out_dir: str | Path, k: int) -> Path:
    return Path(out_dir) / f"detector_{k}"


class DetectorTrainer(Trainer):
    """:class:`atebm.Trainer` whose p_0 attack starts at a random point of the eps-ball (T Eq. 3.23 solved as in
    the authors' code) and, with ``extra["attack_rule"] = "adam"``, takes Adam steps (T Tab. 3.1)."""

    def sample_p0(self, x0: Tensor, steps: int) -> Tensor:
        c = self.config
        rule = self.extra.get("attack_rule", "pgd")
        if rule not in ATTACK_RULES:
            raise ValueError(f"attack_rule must be one of {ATTACK_RULES}, got {rule!r}")
        step = adam_pgd if rule == "adam" else pgd
        return step(self.model, x0, steps=steps, step_size=c.step_size, norm=c.pgd_norm, eps=c.pgd_eps,
                    random_start=math.isfinite(c.pgd_eps), clamp=self._clamp())


class ValidationSelector:
    """Trainer callback: every ``every`` iterations, AUC of d_k on clean class-k validation images (positives)
    against other-class validation images attacked to raise d_k (negatives); keeps the best weights."""

    def __init__(self, positives: Tensor, negatives: Tensor, *, norm: str, eps: float, rule: str, steps: int,
                 step_size: float, every: int, seed: int = 0) -> None:
        self.positives, self.negatives = positives, negatives
        self.attack = dict(rule=rule, norm=norm, eps=eps, steps=steps, step_size=step_size)
        self.every, self.seed = every, seed
        self.best: tuple[float, float] | None = None
        self.history: list[dict[str, Any]] = []

    def evaluate(self, model: torch.nn.Module) -> dict[str, float]:
        generator = torch.Generator().manual_seed(self.seed)
        adv = run_attack(SingleDetectorAttack(model), self.negatives, random_start=True, generator=generator,
                         device=next(model.parameters()).device, **self.attack)  # type: ignore[arg-type]
        with torch.no_grad():
            model.eval()
            device = next(model.parameters()).device
            s_pos, s_neg = model(self.positives.to(device)).cpu(), model(adv.to(device)).cpu()
        loss = float(F.binary_cross_entropy_with_logits(s_pos, torch.ones_like(s_pos))
                     + F.binary_cross_entropy_with_logits(s_neg, torch.zeros_like(s_neg)))
        return {"auc": auroc(s_pos, s_neg), "loss": loss}

    def __call__(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.step % self.every != 0:
            return
        result = self.evaluate(trainer.model)
        record.update({"val_auc_adv": result["auc"], "val_loss": result["loss"]})
        self.history.append({"step": trainer.step, **result})
        key = (result["auc"], -result["loss"])
        if self.best is None or key >= self.best:
            self.best = key
            trainer.select_weights(by="val_auc_adv", value=result["auc"])


def _validation_negatives(splits: LabelledSplits, k: int, count: int | None, seed: int) -> Tensor:
    _, others, _ = class_view(splits.val, k)
    if count is None or count >= len(others):
        return others
    generator = torch.Generator().manual_seed(seed * 1000 + k)
    return others[torch.randperm(len(others), generator=generator)[:count]]


def train_detector(preset: GatPreset, k: int, splits: LabelledSplits, out_dir: str | Path, *, resume: bool = False,
                   overrides: dict[str, Any] | None = None, seed: int = 0, log: bool = True) -> dict[str, Any]:
    """Trains d_k into ``out_dir/detector_k`` (or continues it with ``resume``); returns its summary, also
    written to ``detector_k/done.json``. The run folder's ``model.pt`` holds the best-validation weights."""
    run = detector_dir(out_dir, k)
    done = run / "done.json"
    if resume and done.exists():
        return json.loads(done.read_text())
    positives, negatives, _ = class_view(splits.train, k)
    val_pos, _, _ = class_view(splits.val, k)
    v = preset.validation
    selector = ValidationSelector(val_pos, _validation_negatives(splits, k, v.get("negatives"), seed),
                                  norm=preset.norm, eps=preset.eps, rule=v["rule"], steps=int(v["steps"]),
                                  step_size=float(v["step_size"]), every=int(v["every"]), seed=seed)
    overrides = dict(overrides or {})
    config = preset.detector_config(seed=seed * 100 + k, **overrides)
    if config.log_every > selector.every or selector.every % config.log_every:
        raise ValueError(f"validation every {selector.every} iterations must be a multiple of log_every "
                         f"{config.log_every}")
    meta = {"preset": preset.name, "data": splits.source, "class": k, "size": preset.size,
            "channels": preset.channels, "norm": preset.norm, "eps": preset.eps}
    extra = {"attack_rule": preset.train_attack, "clamp": (0.0, 1.0), "size": preset.size,
             "channels": preset.channels, "gat": meta, "meta": meta}
    checkpoint = run / CHECKPOINT_FILE
    if resume and checkpoint.exists():
        trainer = DetectorTrainer.resume(checkpoint, positives, negatives, out_dir=run, callbacks=[selector],
                                         overrides={key: value for key, value in overrides.items()
                                                    if key in RESUME_OVERRIDABLE},
                                         extra={"meta": meta})
        if trainer.selection is not None:
            selector.best = (float(trainer.selection["value"]), -math.inf)
    else:
        if checkpoint.exists():
            raise ValueError(f"{checkpoint} exists: pass resume=True (--resume) to continue, or choose another out")
        trainer = DetectorTrainer(config, positives, negatives, out_dir=run, callbacks=[selector], extra=extra)
    if log:
        sys.stderr.write(f"detector {k}: {len(positives)} class-{k} vs {len(negatives)} other images, "
                         f"{preset.norm} eps {preset.eps:g}, {config.k_max} x {config.step_size:g} "
                         f"{preset.train_attack} steps, device {trainer.device}\n")
    start, cpu_start = time.perf_counter(), time.process_time()
    trainer.fit()
    if selector.best is None or trainer.step % selector.every:  # the final weights are a candidate too
        selector(trainer, {})
        trainer.save()
    _, selection = trainer.model_weights()
    summary = {"class": k, "iterations": trainer.step, "stop_reason": trainer.stop_reason,
               "train_seconds": round(trainer.elapsed_s, 1), "wall_seconds": round(time.perf_counter() - start, 1),
               "cpu_seconds": round(time.process_time() - cpu_start, 1), "threads": torch.get_num_threads(),
               "selection": selection, "validations": selector.history,
               "validation_protocol": {**selector.attack, "random_start": True, "positives": len(val_pos),
                                       "negatives": len(selector.negatives)}}
    write_json(done, summary)
    if log:
        value = selection.get("value", float("nan"))
        sys.stderr.write(f"detector {k}: done, {trainer.step} iterations in {summary['wall_seconds']:.0f} s, "
                         f"selected step {selection.get('step')} (val AUC {value:.4f})\n")
    return summary


def _train_in_worker(preset: GatPreset, k: int, splits: LabelledSplits, out_dir: str, resume: bool,
                     overrides: dict[str, Any], seed: int, log: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    return train_detector(preset, k, splits, out_dir, resume=resume, overrides=overrides, seed=seed, log=log)


def train_detectors(preset: GatPreset, splits: LabelledSplits, out_dir: str | Path, *,
                    classes: Sequence[int] | None = None, resume: bool = False,
                    overrides: dict[str, Any] | None = None, seed: int = 0, workers: int = 1,
                    log: bool = True) -> list[dict[str, Any]]:
    """Trains every detector (or ``classes``); see :func:`train_detector`. The detectors are independent, so
    ``workers > 1`` trains that many at once, each in its own process on one torch thread (on a 2-core machine,
    ``workers=2`` uses both cores far better than two threads on one small-batch run); progress bars are then
    off and each detector prints one line."""
    wanted = list(range(splits.num_classes)) if classes is None else [int(c) for c in classes]
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    if workers == 1 or len(wanted) == 1:
        return [train_detector(preset, k, splits, out_dir, resume=resume, overrides=overrides, seed=seed, log=log)
                for k in wanted]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    quiet = {**(overrides or {}), "progress": False}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(wanted)), mp_context=context) as pool:
        futures = [pool.submit(_train_in_worker, preset, k, splits, str(out_dir), resume, quiet, seed, log)
                   for k in wanted]
        return [future.result() for future in futures]


def assemble_committee(out_dir: str | Path, num_classes: int, meta: dict[str, Any] | None = None) -> Committee:
    """Builds the committee from ``detector_k/model.pt`` (the selected weights) and writes ``committee.pt``."""
    detectors = []
    for k in range(num_classes):
        path = detector_dir(out_dir, k) / MODEL_FILE
        if not path.exists():
            raise FileNotFoundError(f"detector {k} has no model yet ({path}); train it first")
        detectors.append(load_model(path))
    committee = Committee(detectors, meta=meta)
    save_committee(Path(out_dir), committee)
    return committee
