"""What every ablation shares: the scale (training budget per arm and evaluation sizes), a CPU-time budget for
the trainer, the generation Fréchet distance of the demo, the worst-case OOD AUROC of ``atebm eval-ood``, and
writing ``result.json`` plus a report page (:class:`atebm.report.Report`) with the verdict on the paper's claim.

Budgets are *CPU seconds of training per arm* (``time.process_time`` of this process, minus the time spent in
evaluation callbacks), so that "equal wall-clock" arms stay equal on a shared machine; run with one torch thread.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor

from ..config import Config, above, at_least, each, in_range, non_empty, setting
from ..presets import PRESETS
from ..training import SelectBest, StopTraining, Trainer, write_json

__all__ = ["Scale", "FULL", "SMOKE", "resolve_scale", "CpuBudget", "CpuSchedule", "train_arm", "mnist_data", "photo_p0",
           "FrechetProbe", "ood_auroc", "Finding", "Outcome", "OUTCOME_LABELS", "HOLDS", "outcome_of", "finish",
           "command_line", "figure", "say", "IMAGE_META"]

#: The trainer ``extra`` of a 28x28 grey model (its ``meta`` then tells eval-ood the input geometry).
IMAGE_META: dict[str, Any] = {"size": 28, "channels": 1, "clamp": (0.0, 1.0)}


@dataclass(frozen=True)
class Scale(Config):
    """How big one ablation run is. ``budget_s``: training CPU seconds per arm (one thread); ``max_iters``: an
    iteration cap per arm (None: the budget alone); ``n_fd``: generated samples for the Fréchet distance (photo
    seeds of the test split, the demo's protocol); ``gen_steps``: sampler steps (None: the preset's 32);
    ``val_seeds``: seeds of the validation FD trace (training photos, as the demo's model selection);
    ``ood_*``: the worst-case OOD protocol (samples per suite, in-distribution samples, L2 radii, suites: None =
    all embedded ones; attackers: None = eval-ood's default); ``log_every``: trainer log cadence (the budget is
    checked on every log line); ``p0_n``: p_0 images drawn from generated sources; ``smoke``: a test-sized run."""

    budget_s: float = setting(75.0, above(0))
    max_iters: int | None = setting(None, at_least(1))
    n_fd: int = setting(300, at_least(2))
    gen_steps: int | None = setting(None, at_least(1))
    val_seeds: int = setting(100, at_least(1))
    ood_n: int = setting(48, at_least(1))
    ood_n_in: int = setting(150, at_least(1))
    ood_eps: tuple[float, ...] = setting((0.0, 1.0, 2.0, 3.0, 5.0, 8.0), non_empty(),
                                         each(in_range(0, math.inf, hi_open=True)))
    ood_suites: tuple[str, ...] | None = None
    ood_attackers: tuple[str, ...] | None = None
    log_every: int = setting(10, at_least(1))
    p0_n: int = setting(20000, at_least(1))
    smoke: bool = False


FULL = Scale()
#: Seconds-long runs for the tests: numbers mean nothing, only the structure is checked.
SMOKE = Scale(budget_s=3.0, max_iters=4, n_fd=24, gen_steps=3, val_seeds=12, ood_n=8, ood_n_in=16, ood_eps=(0.0, 1.0),
              ood_suites=("uniform",), ood_attackers=("pgd",), log_every=2, p0_n=256, smoke=True)


def resolve_scale(smoke: bool, budget_s: float | None, default_budget: float, **changes: Any) -> Scale:
    """The scale of a run: SMOKE or FULL with this ablation's default budget, ``budget_s`` when given."""
    base = SMOKE if smoke else FULL.replace(budget_s=default_budget)
    if budget_s is not None:
        base = base.replace(budget_s=budget_s)
    return base.replace(**changes) if changes else base


class CpuBudget:
    """Trainer callback: stops training (:class:`~atebm.training.StopTraining`) once the training CPU time of this
    process exceeds ``budget_s``. Time that other callbacks report through :meth:`exclude` (evaluation) does not
    count. ``trace`` holds ``(step, k, train_cpu_s)`` per log line."""

    def __init__(self, budget_s: float) -> None:
        self.budget_s = float(budget_s)
        self.start = time.process_time()
        self.excluded = 0.0
        self.trace: list[dict[str, float]] = []

    def used(self) -> float:
        return time.process_time() - self.start - self.excluded

    def exclude(self, seconds: float) -> None:
        self.excluded += seconds

    def __call__(self, trainer: Trainer, record: dict[str, Any]) -> None:
        used = self.used()
        record["train_cpu_s"] = used
        self.trace.append({"step": trainer.step, "k": trainer.k, "train_cpu_s": used})
        if used >= self.budget_s:
            raise StopTraining(f"CPU budget of {self.budget_s:g} s spent")


class CpuSchedule:
    """When an arm's validation is due (the ``every`` of :class:`~atebm.training.SelectBest`): on the first log
    line, then once ``every_s`` more training CPU seconds of ``budget`` have passed."""

    def __init__(self, budget: CpuBudget, every_s: float) -> None:
        self.budget, self.every_s = budget, float(every_s)
        self._next = 0.0

    def __call__(self, trainer: Trainer) -> bool:
        used = self.budget.used()
        if used < self._next:
            return False
        self._next = used + self.every_s
        return True


def train_arm(overrides: Mapping[str, Any], data: Tensor, p0: Tensor, scale: Scale, *,
              callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (), seed: int = 0,
              preset: str = "mnist", extra: Mapping[str, Any] | None = None, probe: FrechetProbe | None = None,
              trace_every_s: float | None = None) -> tuple[Trainer, dict[str, Any]]:
    """Trains one arm: the preset's config with ``overrides`` (:class:`atebm.Trainer`, in memory), stopped by the
    CPU budget (or ``scale.max_iters``). Returns the trainer and a summary (iterations, final K, CPU seconds).

    With ``probe`` and ``trace_every_s``, the summary's ``trace`` holds the validation FD of the raw weights
    (:meth:`FrechetProbe.validation_fd`) every ``trace_every_s`` training CPU seconds and at the end of training:
    ``{"step", "k", "train_cpu_s", "val_fd"}`` per point, judged by :class:`~atebm.training.SelectBest` (the arm's
    ``trainer.model`` stays the final weights)."""
    if (probe is None) != (trace_every_s is None):
        raise ValueError("a validation trace needs both probe and trace_every_s")
    budget = CpuBudget(scale.budget_s)
    config = PRESETS[preset].config(**{"device": "cpu", "progress": False, "log_every": scale.log_every,
                                       "ckpt_every": 10 ** 9, "seed": seed, "max_iters": scale.max_iters or 10 ** 9,
                                       **overrides})
    selector = None
    if probe is not None and trace_every_s is not None:
        selector = SelectBest(probe.validation_fd(budget), by="val_fd", goal="min",
                              every=CpuSchedule(budget, trace_every_s), weights="raw")
        callbacks = [*callbacks, selector]
    trainer = Trainer(config, data, p0, callbacks=[*callbacks, budget], extra=dict(extra or IMAGE_META))
    trainer.fit()
    trainer.model.eval()
    summary: dict[str, Any] = {"iterations": trainer.step, "final_k": trainer.k, "stop": trainer.stop_reason,
                               "train_cpu_s": round(budget.used(), 2),
                               "config": {k: v for k, v in config.to_dict().items() if k in overrides}}
    if selector is not None:
        summary["trace"] = [{key: entry[key] for key in ("step", "k", "train_cpu_s", "val_fd")}
                            for entry in selector.history]
    return trainer, summary


def mnist_data() -> Tensor:
    """p_data of the ``mnist`` preset: the MNIST 5,000 train split (3,500 digits)."""
    from ..data import load_dataset

    return load_dataset("mnist", split="train").x


def photo_p0(scale: Scale) -> Tensor:
    """p_0 of the ``mnist`` preset: natural-photo patches of the training photos."""
    from ..data import load_dataset

    return load_dataset("photos", split="train", n=scale.p0_n).x


class FrechetProbe:
    """The demo's generation metric: PGD ascent from photo seeds with the preset's generation settings, then the
    Fréchet distance to the training digits in the digit classifier's feature space (``atebm.metrics``): on the
    held-out ``test_seeds`` (:meth:`fd`), and on ``val_seeds`` training-photo seeds for the validation traces of
    :func:`train_arm` (:meth:`validation_fd`, the demo's model-selection protocol)."""

    def __init__(self, scale: Scale) -> None:
        from ..data import load_dataset
        from ..metrics import digit_features

        preset = PRESETS["mnist"]
        self.steps = scale.gen_steps or preset.generate.steps
        self.step_size = preset.generate.step_size
        self.net = digit_features(device="cpu")
        self.reference = self.net.features(mnist_data()).numpy()
        self.test_seeds = load_dataset("photos", split="test", n=scale.n_fd, seed=1).x
        self.val_seeds = load_dataset("photos", split="train", n=scale.val_seeds, seed=7).x

    def protocol(self) -> dict[str, Any]:
        return {"sampler": f"PGD L2 ascent, {self.steps} steps x {self.step_size:g} (the mnist preset's generation)",
                "seeds": f"{len(self.test_seeds)} held-out photo patches (photos/test, seed 1)",
                "reference": "MNIST 5,000 train split (3,500 digits)",
                "feature_network": self.net.info.get("network"),
                "validation": f"{len(self.val_seeds)} training-photo seeds (photos/train, seed 7), the demo's "
                              "model-selection protocol"}

    def fd(self, model: Any, seeds: Tensor | None = None, steps: int | None = None) -> float:
        """The FD of samples from ``seeds`` (default: the test seeds) after ``steps`` (default: the preset's)."""
        from ..demo import ValidationFD

        return float(ValidationFD(self.test_seeds if seeds is None else seeds, self.reference, self.net,
                                  self.steps if steps is None else steps, self.step_size)(model))

    def samples(self, model: Any, n: int = 64) -> Tensor:
        from ..apps.generate import generate

        return generate(model, self.test_seeds[:n], self.steps, self.step_size)

    def validation_fd(self, budget: CpuBudget) -> Callable[[Any], dict[str, float]]:
        """The metric of an arm's validation trace: ``val_fd``, the FD of samples from :attr:`val_seeds`, with
        ``train_cpu_s``, the training CPU seconds of ``budget`` when it was measured; its own CPU time is excluded
        from ``budget``."""
        def measure(model: Any) -> dict[str, float]:
            used, started = budget.used(), time.process_time()
            value = self.fd(model, self.val_seeds)
            budget.exclude(time.process_time() - started)
            return {"val_fd": value, "train_cpu_s": round(used, 2)}

        return measure


def ood_auroc(models: Mapping[str, Any], out: Path, scale: Scale, seed: int = 0) -> dict[str, Any]:
    """Clean and worst-case OOD AUROC of every model with ``atebm eval-ood``'s pipeline
    (:func:`atebm.ood.run_eval_ood`, its default attackers) at the scale's sizes, radii and suites. Returns
    ``{model: {"per_suite": {suite: {eps: auroc}}, "mean_by_eps": {eps: auroc}}, "_protocol": ...}``; the full
    result stays in ``out/ood/ood.json``."""
    from ..ood.pipeline import run_eval_ood

    options: dict[str, Any] = {"n": scale.ood_n, "n_in": scale.ood_n_in, "eps": scale.ood_eps, "seed": seed}
    if scale.ood_suites is not None:
        options["suites"] = scale.ood_suites
    if scale.ood_attackers is not None:
        options["attackers"] = scale.ood_attackers
    result = run_eval_ood(dict(models), out / "ood", report=False, verbose=False, **options)
    summary: dict[str, Any] = {}
    for name, entry in result["models"].items():
        summary[name] = {"per_suite": {s: e["auroc_by_eps"] for s, e in entry["sets"].items()},
                         "mean_by_eps": entry["mean_auroc_by_eps"]}
    protocol = result["protocol"]
    summary["_protocol"] = {"n_in": protocol["n_in"], "n_ood": protocol["n_ood"], "eps": protocol["eps"],
                            "norm": protocol["norm"], "attack": protocol["attack"],
                            "full_result": str(out / "ood" / "ood.json")}
    return summary


def command_line(name: str, out: str | Path, **options: Any) -> str:
    """The ``atebm ablate`` command that reproduces a run (options left at None/False are omitted)."""
    parts = ["atebm", "ablate", name, "--out", str(out)]
    for key, value in options.items():
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            parts.append(flag)
        elif isinstance(value, Mapping):
            for k, v in value.items():
                parts += [flag, f"{k}={v}"]
        else:
            parts += [flag, str(value)]
    return " ".join(parts + ["--threads", str(torch.get_num_threads())])


def figure(width: float = 6.0, height: float = 3.6, ncols: int = 1) -> tuple[Any, Any]:
    """A matplotlib Figure (object-oriented API, no pyplot state) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    axes = fig.subplots(1, ncols)
    return fig, axes


#: A verdict on a paper claim: every part of it holds, some parts hold and others are refuted, or it is refuted.
#: ``None`` means not decided (the measured differences are within the noise, or an arm it needs was not run).
Outcome = Literal["holds", "partly", "does not hold"]
#: The word that opens a verdict sentence, per outcome (``None``: not decided).
OUTCOME_LABELS: dict[Outcome | None, str] = {"holds": "Holds", "partly": "Partly holds",
                                             "does not hold": "Does not hold", None: "Not decided"}
#: ``holds`` per outcome: True / False only for a full verdict; a partial or undecided one is None.
HOLDS: dict[Outcome | None, bool | None] = {"holds": True, "partly": None, "does not hold": False, None: None}


@dataclass(frozen=True)
class Finding:
    """The verdict on one paper claim. ``outcome`` is the verdict (:data:`Outcome`, or None: not decided);
    ``detail`` the measured numbers behind it; ``sentence`` (``OUTCOME_LABELS[outcome]: detail``) and ``holds``
    (:data:`HOLDS`) are derived from ``outcome``, so the JSON fields and the sentence cannot disagree."""

    claim: str
    outcome: Outcome | None
    detail: str
    evidence: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOME_LABELS:
            raise ValueError(f"outcome must be one of {list(OUTCOME_LABELS)}, got {self.outcome!r}")

    @property
    def holds(self) -> bool | None:
        return HOLDS[self.outcome]

    @property
    def sentence(self) -> str:
        return f"{OUTCOME_LABELS[self.outcome]}: {self.detail}"


def outcome_of(parts: Sequence[bool]) -> Outcome | None:
    """The verdict on a claim made of ``parts`` (each True: this part measured as claimed, False: refuted):
    "holds" when all are True, "partly" when some are, "does not hold" when none is; None without parts."""
    if not parts:
        return None
    return "holds" if all(parts) else "partly" if any(parts) else "does not hold"


def finish(out: Path, name: str, title: str, *, command: str, scale: Scale, paper_protocol: str, finding: Finding,
           arms: Mapping[str, Any], tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = (),
           figures: Sequence[tuple[str, Any, str]] = (), images: Sequence[tuple[str, str, str]] = (),
           extra: Mapping[str, Any] | None = None, started: float | None = None) -> dict[str, Any]:
    """Writes ``out/result.json`` and the report page ``out/report.html`` (tables, figures, images, the verdict);
    returns the result."""
    from ..report import Report

    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "ablation": name, "command": command, "smoke": scale.smoke, "scale": scale.to_dict(),
        "budget_note": f"each arm trains for {scale.budget_s:g} CPU seconds (one torch thread, process time)"
                       + (f" or {scale.max_iters} iterations" if scale.max_iters else ""),
        "paper_protocol": paper_protocol, "claim": finding.claim, "outcome": finding.outcome,
        "holds": finding.holds, "verdict": finding.sentence, "evidence": finding.evidence, "arms": dict(arms),
        **dict(extra or {}),
    }
    if started is not None:
        result["cpu_s_total"] = round(time.process_time() - started, 1)
    for stale in ("report.json", "report.html"):
        (out / stale).unlink(missing_ok=True)
    report = Report(out, title=title)
    report.add_text("claim", "Claim and verdict",
                    f"Claim: {finding.claim}\n\nVerdict at this scale: {finding.sentence}\n\n"
                    f"Command: {command}\n\nPaper protocol: {paper_protocol}\n\nOur budget: {result['budget_note']}")
    for i, (heading, columns, rows) in enumerate(tables):
        report.add_table(f"table-{i}", heading, columns, [[_cell(v) for v in row] for row in rows])
    for key, fig, heading in figures:
        report.add_figure(key, heading, fig)
    for key, path, heading in images:
        report.add_image(key, heading, path)
    report.save()
    write_json(out / "result.json", result)
    return result


def _cell(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 3) if np.isfinite(value) else str(value)
    return value


def say(message: str) -> None:
    """One progress line on stderr."""
    import sys

    print(f"[ablate] {message}", file=sys.stderr, flush=True)
