"""Model selection on a validation metric: :class:`SelectBest`, the one rule of the library for "keep the weights
that validate best".

A :class:`SelectBest` is a :class:`~atebm.training.Trainer` callback. Every ``every`` iterations (a log line must fall
on them) and once more on the final weights when training ends off that period, it measures ``metric(model)``,
appends ``(step, values)`` to :attr:`SelectBest.history`, and when the value named ``by`` is the best so far it makes
those weights the run's model (:meth:`Trainer.select_weights`, written to ``model.pt``). The candidate weights are
the ones the run exports: the weight average of :meth:`Trainer.update_ema` when the config sets ``ema_decay``, the
raw weights otherwise. Used by the demo (lowest validation Fréchet distance, E supp. Sec. 3), the GAT detectors
(highest validation AUC, T Sec. 3.2.3), the ablations' validation traces and, through :meth:`SelectBest.offer`,
by the classifier loop :func:`atebm.training.classifier.train_classifier`.

The rule, in full:

* a candidate is judged by the tuple ``(s·values[by], s'·values[then_name])`` (``s = +1`` for ``goal="max"``,
  ``-1`` for ``"min"``; ``then`` is an optional tie-break), compared lexicographically; equal tuples go to the later
  weights with ``ties="later"`` (the default), to the earlier ones with ``ties="earlier"``;
* weights with a non-finite parameter (a diverged run) are not measured and are no candidate; a NaN value is
  recorded but never selected;
* after :meth:`Trainer.resume` the saved selection (same ``by``) is the best so far, its tie-break unknown (the
  worst possible).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .trainer import Trainer

__all__ = ["SelectBest", "Candidate", "Goal"]

Goal = Literal["max", "min"]
#: What a metric returns: one number (named ``by``) or named numbers (one of them ``by``).
MetricValues = float | Mapping[str, float]


@dataclass(frozen=True)
class Candidate:
    """The best weights so far: the ``step`` they were judged at, their metric ``values`` and, in stand-alone use
    (:meth:`SelectBest.offer` with ``keep_weights=True``), a copy of their ``weights``; as a trainer callback the
    trainer keeps the weights (:meth:`Trainer.model_weights`)."""

    step: int
    values: dict[str, float]
    weights: dict[str, Tensor] | None = None


class SelectBest:
    """Keeps the weights with the best validation ``metric`` (module docstring for the rule).

    ``metric(model)`` returns a number or a mapping of named numbers that contains ``by`` (and ``then``'s name);
    ``goal`` says whether higher (``"max"``) or lower (``"min"``) ``by`` is better; ``then = (name, goal)`` breaks
    ties. ``every``: the period in iterations, or a predicate ``every(trainer) -> bool`` (e.g. a CPU-time schedule);
    with ``min_k``, only weights trained at K >= ``min_k`` are candidates (the final ones too). ``weights="raw"``
    judges the raw weights even when the run keeps a weight average; ``trace_both=True`` with a weight average also
    measures the raw weights, and every value is then recorded a second time per kind (``<name>_raw`` and
    ``<name>_ema``, or ``<name>_raw`` alone without an average).

    :attr:`history` holds one entry per candidate: ``step``, as a callback ``k`` and ``weights`` (``"ema"`` or
    ``"raw"``), then the values; the values also go into the trainer's log record. :attr:`best` is the best
    :class:`Candidate`.
    """

    def __init__(self, metric: Callable[[nn.Module], MetricValues], *, by: str, goal: Goal,
                 every: int | Callable[[Trainer], bool], then: tuple[str, Goal] | None = None,
                 ties: Literal["later", "earlier"] = "later", weights: Literal["run", "raw"] = "run",
                 trace_both: bool = False, min_k: int = 0) -> None:
        for name, value, allowed in (("goal", goal, ("max", "min")), ("ties", ties, ("later", "earlier")),
                                     ("weights", weights, ("run", "raw")),
                                     ("then's goal", then[1] if then else "max", ("max", "min"))):
            if value not in allowed:
                raise ValueError(f"SelectBest {name} must be one of {allowed}, got {value!r}")
        if not callable(every) and (isinstance(every, bool) or not isinstance(every, int) or every < 1):
            raise ValueError(f"SelectBest every must be an integer >= 1 or a predicate of the trainer, got {every!r}")
        self.metric, self.by, self.goal, self.then = metric, by, goal, then
        self.every, self.ties, self.weights, self.trace_both, self.min_k = every, ties, weights, trace_both, min_k
        self.history: list[dict[str, Any]] = []
        self.best: Candidate | None = None
        self._best_rank: tuple[float, ...] | None = None
        self._resume_checked = False

    # ------------------------------------------------------------------------------------------ the rule
    def measure(self, model: nn.Module) -> dict[str, float]:
        """``metric(model)`` in eval mode (the model's mode is restored), as named values."""
        was_training = model.training
        model.eval()
        try:
            result = self.metric(model)
        finally:
            model.train(was_training)
        values = {name: float(v) for name, v in result.items()} if isinstance(result, Mapping) \
            else {self.by: float(result)}
        needed = [self.by] + ([self.then[0]] if self.then else [])
        missing = [name for name in needed if name not in values]
        if missing:
            raise ValueError(f"the validation metric returned {sorted(values)}, without {missing}; return a number "
                             f"or a mapping with {' and '.join(map(repr, needed))}")
        return values

    def rank(self, values: Mapping[str, float]) -> tuple[float, ...]:
        """The tuple candidates are compared by: larger is better."""
        def signed(name: str, goal: Goal) -> float:
            return values[name] if goal == "max" else -values[name]

        return (signed(self.by, self.goal),) + ((signed(*self.then),) if self.then else ())

    def improves(self, values: Mapping[str, float]) -> bool:
        """Whether weights with these ``values`` beat the best so far (never with a NaN value)."""
        rank = self.rank(values)
        if any(math.isnan(r) for r in rank):
            return False
        if self._best_rank is None:
            return True
        return rank > self._best_rank or (rank == self._best_rank and self.ties == "later")

    def offer(self, model: nn.Module, step: int, context: Mapping[str, Any] | None = None, *,
              keep_weights: bool = True) -> dict[str, Any] | None:
        """Judges ``model`` as the candidate of ``step``: measures it, appends ``{"step", **context, **values}``
        to :attr:`history` and makes it :attr:`best` (with a copy of its weights when ``keep_weights``) when it
        improves. Returns the entry, or None for weights with a non-finite parameter (no candidate)."""
        if not _finite(model):
            return None
        values = self.measure(model)
        entry, _ = self._record(step, values, lambda: self._copy(model) if keep_weights else None, context or {})
        return entry

    def _record(self, step: int, values: dict[str, float], weights: Callable[[], dict[str, Tensor] | None],
                context: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Appends the history entry; makes the candidate :attr:`best` (its ``weights()``) when it improves.
        Returns the entry and whether it improved."""
        entry = {"step": step, **context, **values}
        self.history.append(entry)
        improved = self.improves(values)
        if improved:
            self.best = Candidate(step, dict(values), weights())
            self._best_rank = self.rank(values)
        return entry, improved

    @staticmethod
    def _copy(model: nn.Module) -> dict[str, Tensor]:
        return {k: v.detach().clone() for k, v in model.state_dict().items()}

    # ------------------------------------------------------------------------------------------ trainer callback
    def check_period(self, log_every: int) -> None:
        """Refuses a period the trainer's log lines (where callbacks run) do not fall on."""
        if isinstance(self.every, int) and self.every % log_every:
            raise ValueError(f"validation every {self.every} iterations must be a multiple of log_every {log_every}")

    def __call__(self, trainer: Trainer, record: dict[str, Any]) -> None:
        """The periodic candidate, on the trainer's log lines."""
        self.check_period(trainer.config.log_every)
        self._resume_from(trainer)
        if trainer.k < self.min_k:
            return
        due = trainer.step % self.every == 0 if isinstance(self.every, int) else self.every(trainer)
        if due:
            self.judge(trainer, record)

    def on_fit_end(self, trainer: Trainer) -> None:
        """The final candidate, called by :meth:`Trainer.fit` when its loop ends: the last weights, unless they
        are already judged or trained at K < ``min_k``."""
        self._resume_from(trainer)
        judged = (self.history and self.history[-1]["step"] == trainer.step) or (
            self.best is not None and self.best.step == trainer.step)
        if not judged and trainer.k >= self.min_k:
            self.judge(trainer)

    def judge(self, trainer: Trainer, record: dict[str, Any] | None = None) -> dict[str, Any] | None:
        """Judges the trainer's current candidate weights (module docstring) whatever the step; selects them
        when they improve; adds the values to ``record``. Returns the history entry, or None for non-finite
        weights."""
        averaged = self.weights == "run" and trainer.ema is not None
        model = trainer.ema_model() if averaged else trainer.model
        if not _finite(model):
            return None
        kind = "ema" if averaged else "raw"
        values = self.measure(model)
        if self.trace_both:
            both = {f"{name}_{kind}": v for name, v in values.items()}
            if averaged:
                both.update({f"{name}_raw": v for name, v in self.measure(trainer.model).items()})
            values = {**values, **both}
        entry, improved = self._record(trainer.step, values, lambda: None, {"k": trainer.k, "weights": kind})
        if improved:
            trainer.select_weights(by=self.by, value=values[self.by], ema=averaged)
        if record is not None:
            record.update(values)
        return entry

    def _resume_from(self, trainer: Trainer) -> None:
        """Once: a resumed run's saved selection by the same criterion is the best so far."""
        if self._resume_checked:
            return
        self._resume_checked = True
        saved = trainer.selection
        if self.best is None and saved is not None and saved.get("by") == self.by:
            value = float(saved["value"])
            self.best = Candidate(int(saved["step"]), {self.by: value})
            primary = value if self.goal == "max" else -value
            self._best_rank = (primary,) + ((-math.inf,) if self.then else ())


def _finite(model: nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in model.parameters())
