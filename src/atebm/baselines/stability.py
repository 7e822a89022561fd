"""The training-stability ablation of E Sec. 5.3: the EBM loss with PGD samples against the BCE loss.

Same trainer, same data, same PGD samples, same everything else; only the objective differs
(:class:`atebm.TrainConfig` ``loss``):

* ``"bce"`` (binary AT, E Eq. 11): ``-[mean log D(x) + mean log(1 - D(x*))]``; its gradient (E Eq. 14) is scaled
  by ``1 - sigma(f(x))`` and ``sigma(f(x*))``, which vanish once a sample is classified confidently;
* ``"ebm"`` (E Eq. 2 with x* from PGD): ``-(mean f(x) - mean f(x*))``; nothing bounds f, so E reports that the
  logit gap ``mean f(x) - mean f(x*)`` grows until it overflows, even at lr 1e-6 (E Sec. 5.3).

:func:`logit_gap_trace` runs one configuration and records the gap at every log line; it stops early (and says so)
once the gap exceeds ``overflow`` or becomes non-finite. :func:`compare_losses` runs both losses over a list of
learning rates.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from ..training import StopTraining, TrainConfig, Trainer

__all__ = ["logit_gap_trace", "compare_losses", "growth_summary"]


def growth_summary(steps: Sequence[float], gaps: Sequence[float]) -> dict[str, float]:
    """How the logit gap evolves: first / last / max, and the least-squares slope (gap per 1,000 iterations) over
    the second half of the run, where a bounded objective has levelled off and an unbounded one keeps climbing."""
    g = np.asarray(gaps, dtype=float)
    s = np.asarray(steps, dtype=float)
    finite = np.isfinite(g)
    out = {"first": float(g[0]) if len(g) else math.nan, "last": float(g[-1]) if len(g) else math.nan,
           "max": float(np.nanmax(np.where(finite, g, np.nan))) if finite.any() else math.nan}
    half = len(g) // 2
    if len(g) - half >= 3 and finite[half:].all():
        slope = np.polyfit(s[half:], g[half:], 1)[0]
        out["slope_second_half_per_1k"] = float(slope * 1000)
    else:
        out["slope_second_half_per_1k"] = math.nan
    return out


def logit_gap_trace(config: TrainConfig, data: Any, p0: Any, *, extra: dict[str, Any] | None = None,
                    overflow: float = 1e4) -> dict[str, Any]:
    """Trains with ``config`` and returns the gap ``score_data - score_adv`` at every log line, plus whether it
    *diverged* (exceeded ``overflow`` in absolute value or became non-finite; training stops there)."""
    trace: list[dict[str, float]] = []
    status = {"diverged": False, "diverged_at": None}

    def watch(trainer: Trainer, record: dict[str, Any]) -> None:
        gap = record["score_data"] - record["score_adv"]
        trace.append({"step": record["step"], "k": record["k"], "gap": gap, "score_data": record["score_data"],
                      "score_adv": record["score_adv"], "loss": record["loss"], "auc_adv": record["auc_adv"],
                      "elapsed_s": record["elapsed_s"]})
        if not math.isfinite(gap) or abs(gap) > overflow:
            status.update(diverged=True, diverged_at=record["step"])
            raise StopTraining(f"logit gap {gap:.3g} beyond {overflow:g}")

    trainer = Trainer(config, data, p0, callbacks=(watch,), extra=extra)
    trainer.fit()
    steps = [t["step"] for t in trace]
    gaps = [t["gap"] for t in trace]
    return {"loss": config.loss, "lr": config.lr, "iters": trainer.step, "stop_reason": trainer.stop_reason,
            "overflow_threshold": overflow, **status, "growth": growth_summary(steps, gaps) if trace else {},
            "trace": trace, "seconds": trainer.elapsed_s}


def compare_losses(config: TrainConfig, data: Any, p0: Any, lrs: Sequence[float], *,
                   extra: dict[str, Any] | None = None, overflow: float = 1e4,
                   losses: Sequence[str] = ("bce", "ebm")) -> list[dict[str, Any]]:
    """``logit_gap_trace`` for every (loss, lr) pair, everything else equal."""
    runs = []
    for lr in lrs:
        for loss in losses:
            runs.append(logit_gap_trace(config.replace(loss=loss, lr=float(lr)), data, p0, extra=extra,
                                        overflow=overflow))
    return runs
