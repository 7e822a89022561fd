"""What every ablation shares: the scale (training budget per arm and evaluation sizes), a CPU-time budget for
the trainer, the generation Fréchet distance of the demo, the worst-case OOD AUROC of ``atebm eval-ood``, and
writing ``result.json`` plus a report page (:class:`atebm.report.Report`) with the verdict on the paper's claim.

Budgets are *CPU seconds of training per arm* (``time.process_time`` of this process, minus the time spent in
evaluation callbacks), so that "equal wall-clock" arms stay equal on a shared machine; run with one torch thread.

Seeds: every arm is trained and measured once per seed (its training, data order, p_0 draws and attacks use that
seed); the evaluation inputs (FD seeds, OOD sets) are the same for every seed, so that two arms measured with the same
seed form a pair. A verdict compares arms by the paired difference over seeds and its Student-t interval
(:func:`paired_difference`, :class:`SeedInterval`) and calls a comparison only when the interval excludes 0 (or the
claim's threshold) and at least :data:`MIN_SEEDS` seeds were run.
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
           "FrechetProbe", "OODProbe", "INPUT_SEED", "Finding", "Outcome", "OUTCOME_LABELS", "HOLDS", "outcome_of",
           "finish", "command_line", "figure", "say", "IMAGE_META", "DEFAULT_SEEDS", "MIN_SEEDS", "CONFIDENCE",
           "check_seeds", "SeedInterval", "paired_difference", "over_seeds", "pool_arm", "spread_cell", "log_values",
           "verdict_word", "seeds_clause"]

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


#: The seed that draws the OOD evaluation inputs, the same for every training seed (paired comparisons).
INPUT_SEED = 0


class OODProbe:
    """Clean and worst-case OOD AUROC with ``atebm eval-ood``'s protocol (:func:`atebm.ood.evaluate`, its
    default attackers unless the scale names them) at the scale's sizes, radii and suites. The in-distribution
    test digits and the OOD sets are drawn once (seed :data:`INPUT_SEED`, as ``atebm eval-ood --seed 0`` draws
    them) and are the same for every training seed; the attacks are seeded by the training seed."""

    def __init__(self, scale: Scale) -> None:
        from ..ood import EMBEDDED_SUITES, OODEvalConfig, embedded_suite, in_distribution

        changes: dict[str, Any] = {"n": scale.ood_n, "n_in": scale.ood_n_in, "eps": scale.ood_eps}
        if scale.ood_suites is not None:
            changes["suites"] = scale.ood_suites
        if scale.ood_attackers is not None:
            changes["attackers"] = scale.ood_attackers
        self.config = OODEvalConfig().replace(**changes)
        size, channels = IMAGE_META["size"], IMAGE_META["channels"]
        self.x_in = in_distribution(self.config.in_dist, split="test", size=size, channels=channels,
                                    seed=INPUT_SEED)[:self.config.n_in]
        suites = EMBEDDED_SUITES if self.config.suites is None else self.config.suites
        self.sets = {name: embedded_suite(name, self.config.n, size=size, channels=channels, seed=INPUT_SEED)
                     for name in suites}

    def auroc(self, models: Mapping[str, Any], out: Path, seed: int) -> dict[str, Any]:
        """Every model of one training seed, attacks seeded by ``seed``. Returns ``{model: {"per_suite": {suite:
        {eps: auroc}}, "mean_by_eps": {eps: auroc}}}``; the full result goes to ``out/ood/seed-SEED/ood.json``."""
        from ..ood import evaluate

        inputs = (f"{self.config.in_dist}/test ({len(self.x_in)} images) and the OOD sets, drawn with seed "
                  f"{INPUT_SEED} for every training seed")
        result = evaluate(dict(models), self.x_in, self.sets, self.config.replace(seed=seed),
                          out_dir=self.folder(out, seed), verbose=False, protocol_extra={"inputs": inputs})
        return {name: {"per_suite": {s: e["auroc_by_eps"] for s, e in entry["sets"].items()},
                       "mean_by_eps": entry["mean_auroc_by_eps"]} for name, entry in result["models"].items()}

    @staticmethod
    def folder(out: Path, seed: int) -> Path:
        """Where :meth:`auroc` writes the ``ood.json`` of one training seed."""
        return out / "ood" / f"seed-{seed}"

    def protocol(self, out: Path, seeds: Sequence[int]) -> dict[str, Any]:
        config = self.config
        return {"n_in": len(self.x_in), "n_ood": {name: len(x) for name, x in self.sets.items()},
                "eps": list(config.eps), "norm": config.norm, "attack": config.attack.to_dict(),
                "inputs_seed": INPUT_SEED, "attack_seed": "the training seed",
                "full_results": [str(self.folder(out, seed) / "ood.json") for seed in seeds]}


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
        elif isinstance(value, (list, tuple)):
            parts += [flag, *map(str, value)]
        else:
            parts += [flag, str(value)]
    return " ".join(parts + ["--threads", str(torch.get_num_threads())])


def figure(width: float = 6.0, height: float = 3.6, ncols: int = 1) -> tuple[Any, Any]:
    """A matplotlib Figure (object-oriented API, no pyplot state) and its axes."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    axes = fig.subplots(1, ncols)
    return fig, axes


# ------------------------------------------------------------------------------------------ seeds and intervals
#: The seeds of every ablation unless told otherwise (item 1 of issue 27: no verdict on one seed).
DEFAULT_SEEDS: tuple[int, ...] = (0, 1, 2)
#: The fewest seeds on which a comparison is decided.
MIN_SEEDS = 3
#: The coverage of the seed intervals.
CONFIDENCE = 0.95
#: The most seeds :meth:`SeedInterval.seeds_to_resolve` looks for.
MAX_SEEDS = 10_000


def check_seeds(seeds: Sequence[int]) -> tuple[int, ...]:
    """``seeds`` as a tuple; a clear error unless they are distinct integers >= 0 (at least one)."""
    values = tuple(seeds)
    if not values or len(set(values)) != len(values) or not all(
            isinstance(s, (int, np.integer)) and not isinstance(s, bool) and s >= 0 for s in values):
        raise ValueError(f"seeds must be distinct integers >= 0, got {list(values)}; e.g. seeds=(0, 1, 2) "
                         "(--seeds 0 1 2)")
    return tuple(int(s) for s in values)


def _t_quantile(degrees_of_freedom: Any) -> Any:
    """Student-t quantile ``t((1 + CONFIDENCE) / 2, df)`` (scalar or array ``df``)."""
    from scipy.stats import t

    return t.ppf((1 + CONFIDENCE) / 2, degrees_of_freedom)


@dataclass(frozen=True)
class SeedInterval:
    """One quantity measured once per seed (``values``, in seed order): its mean, standard deviation (ddof 1) and
    the Student-t interval ``mean +- t((1 + CONFIDENCE) / 2, n - 1) * sd / sqrt(n)``. Of per-seed differences
    (:func:`paired_difference`) this is the paired t-interval. With one seed there is no spread and no interval.

    :meth:`decide` calls a comparison with a threshold: above or below it only when the interval excludes it and
    there are at least :data:`MIN_SEEDS` seeds; :meth:`seeds_to_resolve` estimates how many seeds would decide an
    open one from the measured sd."""

    values: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("a seed interval needs at least one value")
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return float(np.mean(self.values))

    @property
    def sd(self) -> float:
        """Standard deviation over seeds (ddof 1); NaN with one seed."""
        return float(np.std(self.values, ddof=1)) if self.n > 1 else math.nan

    @property
    def half_width(self) -> float | None:
        return float(_t_quantile(self.n - 1) * self.sd / math.sqrt(self.n)) if self.n > 1 else None

    @property
    def interval(self) -> tuple[float, float] | None:
        """``(low, high)``, the :data:`CONFIDENCE` interval of the mean; None with one seed."""
        half = self.half_width
        return None if half is None else (self.mean - half, self.mean + half)

    def decide(self, threshold: float = 0.0) -> bool | None:
        """True: the interval lies above ``threshold``, False: below it; None (not decided) when it contains the
        threshold, with fewer than :data:`MIN_SEEDS` seeds, or when a value is not finite."""
        bounds = self.interval
        if self.n < MIN_SEEDS or bounds is None or not all(math.isfinite(b) for b in bounds):
            return None
        low, high = bounds
        return True if low > threshold else False if high < threshold else None

    def seeds_to_resolve(self, threshold: float = 0.0) -> int | None:
        """A power estimate from the measured sd: the smallest ``n >= MIN_SEEDS`` with ``t(n - 1) * sd / sqrt(n) <
        |mean - threshold|`` (assuming the mean and sd stay as measured); None without an sd (one seed, a value
        not finite), when the mean equals the threshold, or beyond :data:`MAX_SEEDS`."""
        gap = abs(self.mean - threshold)
        if self.n < 2 or not math.isfinite(self.sd) or not math.isfinite(gap) or gap == 0:
            return None
        ns = np.arange(2, MAX_SEEDS + 1)
        enough = _t_quantile(ns - 1) * self.sd / np.sqrt(ns) < gap
        return max(int(ns[np.argmax(enough)]), MIN_SEEDS) if enough.any() else None

    def to_dict(self, threshold: float | None = None) -> dict[str, Any]:
        """``per_seed``, ``mean``, ``sd``, ``n``, ``interval`` ([low, high] or None); with ``threshold`` also the
        comparison: ``threshold``, ``decided`` (:meth:`decide`) and ``seeds_to_resolve``."""
        out: dict[str, Any] = {"per_seed": list(self.values), "mean": self.mean, "sd": self.sd, "n": self.n,
                               "interval": list(self.interval) if self.interval is not None else None}
        if threshold is not None:
            out.update(threshold=threshold, decided=self.decide(threshold),
                       seeds_to_resolve=self.seeds_to_resolve(threshold))
        return out

    def describe(self, label: str, threshold: float | None = 0.0, *, fmt: str = ".3g", ratio: bool = False) -> str:
        """``"label mean [low, high]"`` for a verdict sentence; when the comparison with ``threshold`` is not
        decided, why, with the measured sd and the seeds that would decide it (``threshold=None``: the numbers
        alone, for a quantity that is reported but not judged). ``ratio``: the values are log ratios, shown as
        ratios (exp)."""
        def show(value: float) -> str:
            return format(math.exp(value) if ratio else value, fmt)

        text = f"{label} {show(self.mean)}"
        if self.interval is None:
            return text + ("" if threshold is None else
                           f" (one seed: no interval, not decided; a verdict needs {MIN_SEEDS} seeds)")
        text += f" [{show(self.interval[0])}, {show(self.interval[1])}]"
        if threshold is None or self.decide(threshold) is not None:
            return text
        if not all(math.isfinite(v) for v in self.values):
            return text + " (not decided: a seed gave no finite value)"
        reason = (f"{self.n} seeds, a verdict needs {MIN_SEEDS}" if self.n < MIN_SEEDS
                  else f"the interval contains {show(threshold)}")
        needed = self.seeds_to_resolve(threshold)
        spread = f"sd {self.sd:{fmt}}" + (" (log scale)" if ratio else "")
        resolve = (f"about {needed} seeds would decide it" if needed is not None
                   else "no number of seeds decides it" if self.mean == threshold
                   else f"more than {MAX_SEEDS} seeds would be needed")
        return f"{text} (not decided: {reason}; {spread}, {resolve})"


def paired_difference(a: Sequence[float], b: Sequence[float]) -> SeedInterval:
    """The paired difference ``a - b`` of two arms measured with the same seeds (in the same order), as a
    :class:`SeedInterval`: its mean and Student-t interval over the per-seed differences. E.g. differences
    [1, 2, 3]: mean 2, sd 1, interval 2 +- t(0.975, 2) / sqrt(3) = 2 +- 2.484."""
    if len(a) != len(b):
        raise ValueError(f"paired values need one per seed on both sides, got {len(a)} and {len(b)}")
    return SeedInterval(tuple(float(x) - float(y) for x, y in zip(a, b)))


def over_seeds(per_seed: Sequence[Any]) -> Any:
    """``per_seed`` (one number, or one mapping of numbers / nested mappings, per seed) as ``result.json``
    records it: every number becomes :meth:`SeedInterval.to_dict` (``per_seed``, ``mean``, ``sd``, ``n``,
    ``interval``), mappings keep their keys."""
    first = per_seed[0]
    if isinstance(first, Mapping):
        return {key: over_seeds([entry[key] for entry in per_seed]) for key in first}
    return SeedInterval(tuple(per_seed)).to_dict()


def pool_arm(setting: Mapping[str, Any], runs: Sequence[Mapping[str, Any]], metrics: Sequence[str]) -> dict[str, Any]:
    """One arm as ``result.json`` records it: its ``setting`` (what the arm changes), each of ``metrics`` over seeds
    (:func:`over_seeds`: per-seed values, mean, sd, interval) and ``runs``, the summary of each seed's run (each
    with its ``seed``), from which the verdict functions read."""
    return {**setting, **{metric: over_seeds([run[metric] for run in runs]) for metric in metrics}, "runs": list(runs)}


def spread_cell(stats: Mapping[str, Any], fmt: str = ".3g") -> str:
    """A table cell of one metric over seeds (:func:`over_seeds`): ``mean ± sd``, the mean alone with one seed."""
    mean, sd = stats["mean"], stats["sd"]
    return f"{mean:{fmt}}" if stats["n"] < 2 or not math.isfinite(sd) else f"{mean:{fmt}} ± {sd:{fmt}}"


def log_values(values: Sequence[float]) -> tuple[float, ...]:
    """Natural logs (FD comparisons are made on log FD: its run-to-run spread is a factor, not an offset)."""
    return tuple(math.log(v) if v > 0 else math.nan for v in values)


def verdict_word(part: bool | None, true: str, false: str) -> str:
    """The words for one part of a claim: ``true`` / ``false`` when decided, "not decided" when open."""
    return true if part is True else false if part is False else "not decided"


def seeds_clause(n: int) -> str:
    """The end of a verdict sentence: how many seeds its intervals rest on."""
    if n == 1:
        return " (1 seed: no intervals)"
    return f" ({n} seeds, {CONFIDENCE:.0%} Student-t intervals in brackets)"


#: A verdict on a paper claim: every part of it holds, some parts hold and others are refuted, or it is refuted.
#: ``None`` means not decided (an interval over seeds that matters contains 0 or the claim's threshold, fewer than
#: :data:`MIN_SEEDS` seeds were run, or an arm it needs was not run).
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


def outcome_of(parts: Sequence[bool | None]) -> Outcome | None:
    """The verdict on a claim made of ``parts`` (each True: this part measured as claimed, False: refuted, None:
    not decided): "holds" when all are True, "partly" when some are True and some False, "does not hold" when all
    are False. An open part leaves the verdict open (None) unless every way of deciding it gives the same one:
    a True and a False part make "partly" whatever the open parts turn out to be. None without parts."""
    decided = [None if p is None else bool(p) for p in parts]
    if not decided:
        return None
    if True in decided and False in decided:
        return "partly"
    if None in decided:
        return None
    return "holds" if all(decided) else "does not hold"


def finish(out: Path, name: str, title: str, *, command: str, scale: Scale, seeds: Sequence[int],
           paper_protocol: str, finding: Finding, arms: Mapping[str, Any],
           tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[Any]]]] = (),
           figures: Sequence[tuple[str, Any, str]] = (), images: Sequence[tuple[str, str, str]] = (),
           extra: Mapping[str, Any] | None = None, started: float | None = None) -> dict[str, Any]:
    """Writes ``out/result.json`` and the report page ``out/report.html`` (tables, figures, images, the verdict);
    returns the result."""
    from ..report import Report

    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {
        "ablation": name, "command": command, "smoke": scale.smoke, "scale": scale.to_dict(), "seeds": list(seeds),
        "budget_note": f"each arm trains for {scale.budget_s:g} CPU seconds (one torch thread, process time)"
                       + (f" or {scale.max_iters} iterations" if scale.max_iters else "")
                       + f", once per seed ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})",
        "statistics": {"confidence": CONFIDENCE, "min_seeds": MIN_SEEDS,
                       "interval": "Student t on the per-seed values (paired differences for comparisons of arms): "
                                   "mean +- t((1 + confidence) / 2, n - 1) * sd / sqrt(n)",
                       "decided": f"when the interval excludes 0 (or the claim's threshold) and n >= {MIN_SEEDS}"},
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
