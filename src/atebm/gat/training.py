"""Training the detector committee (T Eq. 3.22-3.23) with the project's trainer.

Detector d_k is a binary adversarial-training run of :class:`atebm.Trainer`: p_data = the training images of class
k (label 1), p_0 = the training images of the other classes (label 0), each p_0 batch replaced by a PGD attack that
*raises* d_k inside the eps-ball around it, from a random point of the ball (the authors' code), with a fixed
number of steps K (``k_start = k_max``; the random start is the trainer's ``pgd_random_start``).
:class:`DetectorTrainer` is the trainer with the optional Adam-step attack of T Tab. 3.1 and the positives'
augmentation applied to p_0 too; everything else (loop, optimiser, checkpoints, resume, logs) is the trainer's own.
Every ``validation.every`` iterations, and once more on the final weights when training ends off that period,
the detector is scored on the validation split: AUC of clean class-k images against perturbed other-class images
under the preset's validation attack; the best (AUC, then lower validation loss) becomes the run's model
(``detector_k/model.pt``, via :meth:`atebm.Trainer.select_weights`): the best-validation checkpoint of T Sec. 3.2.3
(:class:`DetectorValidation` judged by :class:`atebm.training.SelectBest`, :func:`detector_selection`). A resume
with another preset, data source or a changed detector setting outside the core's resumable budgets and cadences is
refused (:func:`check_detector_resume`).

Every detector is watched by the failure monitor's 2 ln 2 plateau check (:func:`detector_monitor`,
:mod:`atebm.monitor`): a detector that stays at the loss of a constant classifier with its adversarial AUC at chance
is set aside (``detector_k/plateau_attempt_N/``: its log, config and ``monitor.json``) and trained once more from a
new seed; flagged again, training stops with an error that names the class and the fix. ``done.json`` lists the
flagged attempts (``plateau_restarts``), so no plateau detector is shipped silently.
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

from ..attacks import AttackSpec, ThreatModel, raise_score
from ..metrics import auroc
from ..monitor import PLATEAU, FailureMonitor
from ..sampling import pgd
from ..training import (
                        CHECKPOINT_FILE,
                        MODEL_FILE,
                        SelectBest,
                        TrainConfig,
                        Trainer,
                        load_checkpoint,
                        load_model,
                        write_json,
)
from ..training.trainer import augment, check_resume_overrides
from .attacks import SingleDetectorAttack
from .committee import Committee, save_committee
from .data import LabelledSplits, class_view
from .presets import ATTACK_RULES, GatPreset

__all__ = ["DetectorTrainer", "DetectorValidation", "detector_selection", "train_detector", "train_detectors",
           "detector_dir", "assemble_committee", "check_detector_resume", "refuse_other_run", "detector_monitor",
           "PLATEAU_RESTARTS"]

#: How often a detector flagged at the 2 ln 2 plateau is trained again from a new seed before training stops.
PLATEAU_RESTARTS = 1
#: The fix named when a detector is flagged again after its restarts (``atebm.monitor``'s advice, made concrete).
_PLATEAU_FIX = ("ramp the in-distribution radius from 0 (indist_at_eps_start=0 indist_at_warmup=N iterations), or "
                "lower indist_at_eps or lr")
#: Seed offset of restart ``n`` (detector seeds are ``seed * 100 + k``; restarts add ``n`` times this).
_RESTART_SEED_OFFSET = 100_000


def detector_dir(out_dir: str | Path, k: int) -> Path:
    return Path(out_dir) / f"detector_{k}"


def jitter(x: Tensor, *, rotate: float = 0.0, scale: float = 0.0, shift: float = 0.0, thickness: float = 0.0,
           generator: torch.Generator) -> Tensor:
    """Random shape jitter of digit-like images, per sample: rotation by U(-rotate, rotate) degrees, independent
    x/y scaling by U(1 - scale, 1 + scale) (aspect ratio changes too), translation by U(-shift, shift) pixels
    (one bilinear resampling), then with probability ``thickness`` a 3x3 dilation or erosion (half each: thicker
    or thinner strokes). Identity where all are 0."""
    if x.dim() != 4 or not (rotate or scale or shift or thickness):
        return x
    n, size = x.shape[0], x.shape[-1]

    def uniform(half: float) -> Tensor:
        return (torch.rand(n, generator=generator) * 2 - 1) * half

    angle, sx, sy = uniform(math.radians(rotate)), 1 + uniform(scale), 1 + uniform(scale)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) / sx, -torch.sin(angle) / sx
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) / sy, torch.cos(angle) / sy
    theta[:, 0, 2], theta[:, 1, 2] = uniform(2 * shift / size), uniform(2 * shift / size)
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if thickness > 0:
        pick = torch.rand(n, generator=generator)
        dilate = (pick < thickness / 2).view(-1, 1, 1, 1).to(x.device)
        erode = ((pick >= thickness / 2) & (pick < thickness)).view(-1, 1, 1, 1).to(x.device)
        thick, thin = F.max_pool2d(out, 3, 1, 1), -F.max_pool2d(-out, 3, 1, 1)
        out = torch.where(dilate, thick, torch.where(erode, thin, out))
    return out.clamp(0, 1)


class JitteredImages:
    """An image source (``len`` and ``get_batch``) that returns the rows of ``images`` through :func:`jitter`,
    drawing from ``generator`` (the trainer's augmentation generator, so that a resume continues it exactly)."""

    def __init__(self, images: Tensor, options: dict[str, float], generator: torch.Generator) -> None:
        self.images, self.options, self.generator = images, dict(options), generator

    def __len__(self) -> int:
        return len(self.images)

    def get_batch(self, indices: Tensor) -> Tensor:
        return jitter(self.images[indices].float(), generator=self.generator, **self.options)


class DetectorTrainer(Trainer):
    """:class:`atebm.Trainer` whose p_0 attack, with ``extra["attack_rule"] = "adam"``, takes Adam steps (T Tab.
    3.1); the random start in the eps-ball (T Eq. 3.23 solved as in the authors' code) is the trainer's
    ``pgd_random_start``, which every preset sets. With ``augment_crop_scale``/``augment_flip`` set, the p_0
    images are augmented like the p_data ones before the attack; so with ``extra["jitter"]`` (the options of
    :func:`jitter`), which both image sources go through."""

    def __init__(self, config: TrainConfig, data: Tensor, p0: Tensor, **kwargs: Any) -> None:
        super().__init__(config, data, p0, **kwargs)
        options = self.extra.get("jitter")
        if options:
            unknown = sorted(set(options) - {"rotate", "scale", "shift", "thickness"})
            if unknown:
                raise ValueError(f"unknown jitter options {unknown}; valid: rotate, scale, shift, thickness")
            self.data = JitteredImages(data, options, self.aug_generator)
            self.p0 = JitteredImages(p0, options, self.aug_generator)

    def sample_p0(self, x0: Tensor, steps: int) -> Tensor:
        c = self.config
        rule = self.extra.get("attack_rule", "pgd")
        if rule not in ATTACK_RULES:
            raise ValueError(f"attack_rule must be one of {ATTACK_RULES}, got {rule!r}")
        # the other-class images get the positives' augmentation, so that it is no cue between the two
        x0 = augment(x0, c.augment_crop_scale, c.augment_flip, self.aug_generator)
        if rule == "pgd":
            return super().sample_p0(x0, steps)
        return pgd(self.model, x0, steps=steps, step_size=c.step_size, norm=c.pgd_norm, eps=c.pgd_eps,
                   random_start=c.pgd_random_start, clamp=self._clamp(), rule="adam")


class DetectorValidation:
    """The validation metric of d_k: the thesis reports "the checkpoint which has the best validation performance"
    (T Sec. 3.2.3). ``validation(model)`` returns ``val_auc_adv``, the AUC of d_k on clean class-k validation images
    (``positives``) against other-class validation images (``negatives``) attacked to raise d_k inside the preset's
    ball by its validation attack, and ``val_loss``, the binary cross-entropy of the same scores.
    :func:`train_detector` selects by it with :class:`~atebm.training.SelectBest`: the highest AUC, then the
    lower loss, ties to the later weights, the final weights a candidate too."""

    def __init__(self, positives: Tensor, negatives: Tensor, *, norm: str, eps: float, rule: str, steps: int,
                 step_size: float, seed: int = 0) -> None:
        self.positives, self.negatives = positives, negatives
        self.threat = ThreatModel(norm, eps)
        self.attack = AttackSpec("adam" if rule == "adam" else "pgd", steps=steps, step_size=step_size)
        self.attack.step_at(self.threat)        # a validation attack that cannot reach eps is refused
        self.seed = seed

    def __call__(self, model: torch.nn.Module) -> dict[str, float]:
        device = next(model.parameters()).device
        worst, reference = raise_score(SingleDetectorAttack(model), self.negatives, threat=self.threat,
                                       attackers=[self.attack], seed=self.seed, device=device)
        s_neg = worst.margin + reference
        with torch.no_grad():
            model.eval()
            s_pos = model(self.positives.to(device)).view(-1).cpu()
        loss = float(F.binary_cross_entropy_with_logits(s_pos, torch.ones_like(s_pos))
                     + F.binary_cross_entropy_with_logits(s_neg, torch.zeros_like(s_neg)))
        return {"val_auc_adv": auroc(s_pos, s_neg), "val_loss": loss}

    def protocol(self) -> dict[str, Any]:
        """The threat model, the attack and the sizes of the validation sets (``done.json``)."""
        return {**self.threat.to_dict(), **self.attack.describe(self.threat), "positives": len(self.positives),
                "negatives": len(self.negatives)}


def detector_selection(validation: DetectorValidation, every: int) -> SelectBest:
    """The best-validation rule of d_k (T Sec. 3.2.3): every ``every`` iterations and on the final weights (the
    weight average when the config sets ``ema_decay``), the highest ``val_auc_adv``, then the lowest ``val_loss``,
    ties to the later weights."""
    return SelectBest(validation, by="val_auc_adv", goal="max", then=("val_loss", "min"), every=every)


def _validation_negatives(splits: LabelledSplits, k: int, count: int | None, seed: int) -> Tensor:
    _, others, _ = class_view(splits.val, k)
    if count is None or count >= len(others):
        return others
    generator = torch.Generator().manual_seed(seed * 1000 + k)
    return others[torch.randperm(len(others), generator=generator)[:count]]


def _detector_config(preset: GatPreset, k: int, overrides: dict[str, Any], seed: int, attempt: int = 0) -> TrainConfig:
    """The TrainConfig of d_k: the preset's with ``overrides``, seeded per detector and per plateau restart
    (``attempt``)."""
    return preset.detector_config(seed=seed * 100 + k + _RESTART_SEED_OFFSET * attempt, **overrides)


def detector_monitor() -> FailureMonitor:
    """The failure monitor of every detector run: :class:`~atebm.monitor.FailureMonitor` with its 2 ln 2 plateau
    check on from iteration 100 (and after the in-distribution warm-up, ``indist_at_warmup``), flagging after 3
    consecutive log lines at the plateau; no weight snapshots (a flagged run is set aside, and the selection keeps
    the best-validation weights otherwise)."""
    return FailureMonitor(snapshot=False, plateau_after=100, plateau_window=3)


def _plateau_attempts(run: Path) -> list[dict[str, Any]]:
    """The flagged attempts of detector run ``run`` (``plateau_attempt_N/monitor.json``), in order."""
    found = sorted(run.glob("plateau_attempt_*/monitor.json"),
                   key=lambda path: int(path.parent.name.rpartition("_")[2]))
    return [json.loads(path.read_text()) for path in found]


def _set_aside(run: Path, attempt: int, trainer: Trainer, monitor: FailureMonitor) -> dict[str, Any]:
    """Moves the files of a run flagged at the plateau into ``run/plateau_attempt_<attempt>/`` with its monitor
    summary (``monitor.json``); returns that record."""
    folder = run / f"plateau_attempt_{attempt}"
    folder.mkdir()
    for path in list(run.iterdir()):
        if path.is_file():
            path.rename(folder / path.name)
    stopped = monitor.stopped or {}
    record = {"attempt": attempt, "seed": trainer.config.seed, "iterations": trainer.step,
              "train_seconds": round(trainer.elapsed_s, 1), "step": stopped.get("step"),
              "message": stopped.get("message"), "folder": folder.name}
    write_json(folder / "monitor.json", record)
    return record


def refuse_other_run(folder: str | Path, recorded: dict[str, Any], preset: str, data: str) -> None:
    """Refuses to continue the run in ``folder`` when what it ``recorded`` (its ``"preset"`` and ``"data"``
    entries; a missing one is not compared) names another preset or data source than the requested ones: the
    continued detectors would train on, and the committee be labelled with, something the saved ones were not."""
    for key, wanted, trained in (("preset", preset, "with preset"), ("data", data, "on data")):
        saved = recorded.get(key)
        if saved is not None and saved != wanted:
            raise ValueError(f"run folder {folder} was trained {trained} {saved!r}, not {wanted!r}; use a new --out "
                             f"or the same {key}")


def check_detector_resume(run: str | Path, preset: GatPreset, k: int, data: str,
                          overrides: dict[str, Any] | None = None, seed: int = 0) -> None:
    """Refuses to resume detector ``k``'s run folder ``run`` (its ``checkpoint.pt``; nothing to check without
    one) with another preset or data source (:func:`refuse_other_run`) or with a detector TrainConfig, the
    preset's with ``overrides``, that differs from the saved one outside
    :data:`~atebm.training.trainer.RESUME_OVERRIDABLE` (the core's rule,
    :func:`~atebm.training.trainer.check_resume_overrides`): the continuation would not be the run it claims."""
    checkpoint = Path(run) / CHECKPOINT_FILE
    if not checkpoint.exists():
        return
    payload = load_checkpoint(checkpoint)
    recorded = (payload.get("extra") or {}).get("gat") or {}
    refuse_other_run(run, recorded, preset.name, data)
    wanted = _detector_config(preset, k, overrides or {}, seed, int(recorded.get("attempt", 0))).to_dict()
    try:
        check_resume_overrides(payload["config"], wanted, TrainConfig.from_dict)
    except ValueError as err:
        raise ValueError(f"run folder {run}: {err}; or use a new --out") from None


def train_detector(preset: GatPreset, k: int, splits: LabelledSplits, out_dir: str | Path, *, resume: bool = False,
                   overrides: dict[str, Any] | None = None, seed: int = 0, log: bool = True) -> dict[str, Any]:
    """Trains d_k into ``out_dir/detector_k`` (or continues it with ``resume``); returns its summary, also
    written to ``detector_k/done.json``. The run folder's ``model.pt`` holds the best-validation weights among
    the periodic candidates and the final ones (:func:`detector_selection`, T Sec. 3.2.3). ``resume`` refuses
    another preset, data source, ``seed`` or an ``overrides`` entry that changes a saved setting outside
    :data:`~atebm.training.trainer.RESUME_OVERRIDABLE` (:func:`check_detector_resume`).

    A run that :func:`detector_monitor` flags at the 2 ln 2 plateau is set aside and trained again from a new seed
    (up to :data:`PLATEAU_RESTARTS` times); flagged once more, a RuntimeError names the class and the fix. The
    summary's ``plateau_restarts`` lists the flagged attempts; ``train_seconds``, ``wall_seconds`` and
    ``cpu_seconds`` include them."""
    run = detector_dir(out_dir, k)
    done = run / "done.json"
    overrides = dict(overrides or {})
    if resume:
        check_detector_resume(run, preset, k, splits.source, overrides, seed)
        if done.exists():
            return json.loads(done.read_text())
    positives, negatives, _ = class_view(splits.train, k)
    val_pos, _, _ = class_view(splits.val, k)
    v = preset.validation
    validation = DetectorValidation(val_pos, _validation_negatives(splits, k, v.negatives, seed),
                                    norm=preset.norm, eps=preset.eps, rule=v.rule, steps=v.steps,
                                    step_size=v.step_size, seed=seed)
    if not resume and any(run.glob("plateau_attempt_*")):
        raise ValueError(f"{run} holds an earlier run's attempts: pass resume=True (--resume) to continue, or choose "
                         "another out")
    flagged = _plateau_attempts(run)
    start, cpu_start = time.perf_counter(), time.process_time()
    while True:
        attempt = len(flagged)
        if attempt > PLATEAU_RESTARTS:
            raise RuntimeError(
                f"the class-{k} detector d_{k} stayed at the 2 ln 2 loss plateau in {attempt} runs from different "
                f"seeds (logs in {run}/plateau_attempt_*): train into a new --out with key=value overrides that "
                f"{_PLATEAU_FIX}")
        selector = detector_selection(validation, v.every)
        monitor = detector_monitor()
        config = _detector_config(preset, k, overrides, seed, attempt)
        selector.check_period(config.log_every)
        meta = {"preset": preset.name, "data": splits.source, "class": k, "size": preset.size,
                "channels": preset.channels, "norm": preset.norm, "eps": preset.eps,
                **({"attempt": attempt} if attempt else {})}
        extra = {"attack_rule": preset.train_attack, "jitter": preset.extra.get("jitter"), "clamp": (0.0, 1.0),
                 "size": preset.size, "channels": preset.channels, "gat": meta, "meta": meta}
        checkpoint = run / CHECKPOINT_FILE
        if resume and checkpoint.exists():
            trainer = DetectorTrainer.resume(checkpoint, positives, negatives, out_dir=run,
                                             callbacks=[monitor, selector], overrides=overrides, extra={"meta": meta})
        else:
            if checkpoint.exists():
                raise ValueError(f"{checkpoint} exists: pass resume=True (--resume) to continue, or choose another "
                                 "out")
            trainer = DetectorTrainer(config, positives, negatives, out_dir=run, callbacks=[monitor, selector],
                                      extra=extra)
        if log:
            sys.stderr.write(f"detector {k}: {len(positives)} class-{k} vs {len(negatives)} other images, "
                             f"{preset.norm} eps {preset.eps:g}, {config.k_max} x {config.step_size:g} "
                             f"{preset.train_attack} steps, device {trainer.device}"
                             f"{f', restart {attempt} (seed {config.seed})' if attempt else ''}\n")
        trainer.fit()  # the selector judges the final weights too (SelectBest.on_fit_end)
        if monitor.stopped is None or monitor.stopped["kind"] != PLATEAU:
            break
        flagged.append(_set_aside(run, attempt, trainer, monitor))
        if log:
            sys.stderr.write(f"detector {k}: at the 2 ln 2 plateau ({monitor.stopped['message']}); set aside in "
                             f"{flagged[-1]['folder']}\n")
    _, selection = trainer.model_weights()
    summary = {"class": k, "iterations": trainer.step, "stop_reason": trainer.stop_reason,
               "train_seconds": round(trainer.elapsed_s + sum(f["train_seconds"] for f in flagged), 1),
               "wall_seconds": round(time.perf_counter() - start, 1),
               "cpu_seconds": round(time.process_time() - cpu_start, 1), "threads": torch.get_num_threads(),
               "selection": selection,
               "validations": [{"step": v["step"], "auc": v["val_auc_adv"], "loss": v["val_loss"]}
                               for v in selector.history],
               "validation_protocol": validation.protocol(),
               "monitor": monitor.status_text(), "plateau_restarts": flagged}
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
