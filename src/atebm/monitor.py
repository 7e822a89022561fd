"""Failure-mode monitor for binary adversarial training (G App. I; METHOD Sec. 4 "Failure mode" and E Sec. 5.3).

A trainer callback (``Trainer(..., callbacks=[FailureMonitor()])``) that reads every log record and looks for:

* **step size too large** (G App. I, Fig. 8): with K > 0 the training loss collapses to ~0, the perturbed p_0
  samples become perfectly separable from the data (AUC(p_data vs perturbed p_0) -> 1), while the model loses
  the ability to separate *clean* p_0 from the data (AUC(p_data vs clean p_0) falls well below its best value).
  A healthy run shows the opposite: the loss rises and AUC(p_data vs perturbed p_0) drifts toward 0.5 as K grows.
  Suggested change: halve the PGD step size.
* **the attack beaten at the largest K** (warned, never stops training): at K = ``k_max`` the perturbed p_0 samples
  stay perfectly separable (AUC(p_data vs perturbed p_0) >= ``auc_adv_high``) while the loss has not collapsed (so
  not G App. I's signature); checked for an unbounded ascent only (``pgd_eps`` = inf: a detector that beats a
  bounded attack, as GAT trains, is doing its job). Progressive K would answer with more steps, but K is at its
  cap. Seen on Fashion-MNIST with 20,000 p_0 patches (benchmarks/results/fashion/README.md): from there on the
  validation FD of the samples rose 3-4x in both 8,000-step runs; with 100,000 patches the run did not fail, so
  there it was p_0 memorised. Suggested change: enlarge p_0, keep the best validated weights, or raise ``k_max``.
* **non-finite values**: NaN/inf in the loss or the scores (e.g. the EBM loss of E Sec. 5.3, whose score gap
  overflows).
* **exploding scores**: ``|score|`` of data or perturbed samples beyond ``score_limit`` (BCE training keeps
  logits moderate; a runaway means divergence).
* **the 2 ln 2 plateau** (checked only when ``plateau_after`` is set, as :mod:`atebm.gat.training` does for the
  detectors): the BCE loss stays within ``plateau_loss_band`` of 2 ln 2 = 1.386, the loss of a constant classifier
  on a balanced batch (``BCE(0, 1) + BCE(0, 0)``; with in- and out-distribution AT, T Eq. 3.45, both terms sit at
  ln 2), while AUC(p_data vs perturbed p_0) is at chance or below, for ``plateau_window`` consecutive log lines
  after ``plateau_after`` iterations and the in-distribution warm-up (``indist_at_warmup``). A bounded-attack
  detector that sits there has stopped learning (T Sec. 3.4 in+out AT from scratch, benchmarks/results/gat/
  README_classify.md); it is off by default because unbounded binary AT (E) approaches the same loss and AUC as a
  healthy equilibrium while K grows.

What is checked and what is suggested depends on the run's objective (:data:`ADVICE`, by
:attr:`atebm.training.Objective.kind`): the step-size signature and the PGD hints only where the negatives are PGD
samples (binary AT, and objectives without an entry); a GAN (:class:`atebm.dsgan.DSGAN`, the SSL objective) is
checked for non-finite and runaway values of its own log quantities and advised on its own learning rates.

Every detection is logged (``logging`` logger ``atebm.monitor``) and warned (``RuntimeWarning``) once per streak
and kept in :attr:`FailureMonitor.events` for the report. A signature that persists for ``patience``
consecutive log lines (non-finite values: at once) stops training by raising
:class:`atebm.training.StopTraining`; the trainer's last periodic checkpoint stays in place and, when the trainer
has an ``out_dir``, the weights of the last healthy log line are written to ``checkpoint_last_good.pt``
(weights only; ``atebm.load`` reads it) and loaded back into ``trainer.model``. An objective with networks of its
own (the generator of :class:`atebm.dsgan.DSGAN`, the SSL generator and critic) is snapshotted and restored with
them (its ``state_dict``), and its last healthy state goes into ``checkpoint_last_good.pt`` too
(``atebm.dsgan.load_generator`` reads the generator from it).
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FailureMonitor", "STEP_SIZE_TOO_LARGE", "ATTACK_BEATEN_AT_K_MAX", "NON_FINITE", "EXPLODING_SCORES",
           "PLATEAU", "PLATEAU_LOSS", "WARN_ONLY", "Advice", "ADVICE", "advice_for"]

STEP_SIZE_TOO_LARGE = "step_size_too_large"
ATTACK_BEATEN_AT_K_MAX = "attack_beaten_at_k_max"
NON_FINITE = "non_finite"
EXPLODING_SCORES = "exploding_scores"
PLATEAU = "plateau"

#: Signatures that are warned and recorded but never stop training.
WARN_ONLY = frozenset({ATTACK_BEATEN_AT_K_MAX})

#: 2 ln 2: the BCE loss of binary AT for a constant logit 0 on a balanced batch, ``BCE(0, 1) + BCE(0, 0)``.
PLATEAU_LOSS = 2 * math.log(2)

logger = logging.getLogger("atebm.monitor")


@dataclass(frozen=True)
class Advice:
    """What :class:`FailureMonitor` checks in the log lines of one kind of objective, and what it suggests."""

    finite: tuple[str, ...]      # log quantities that must stay finite (a NaN or inf stops training at once)
    scores: tuple[str, ...]      # mean scores whose absolute value must stay below ``score_limit``
    step_size_signature: bool    # G App. I's signature applies: PGD negatives from p_0, ``k`` and the AUCs logged
    non_finite: str              # the suggested change on non-finite values
    exploding: str               # the suggested change on exploding scores
    plateau: str | None = None   # the suggested change at the 2 ln 2 plateau (None: BCE's plateau does not apply)


_PGD = Advice(finite=("loss", "score_data", "score_adv"), scores=("score_data", "score_adv"),
              step_size_signature=True,
              non_finite="lower the learning rate or the PGD step size, or add R1 regularisation",
              exploding="lower the learning rate; check the data range and normalisation",
              plateau="restart from a new seed; with in-distribution AT ramp its radius from 0 (indist_at_eps_start=0, "
                      "indist_at_warmup=N iterations) or lower indist_at_eps or lr")

#: :class:`Advice` by objective kind (:attr:`atebm.training.Objective.kind`); other kinds get ``binary-at``'s. The
#: keys are those of each objective's log lines (``log_names``, e.g. :class:`atebm.dsgan.DSGAN`'s docstring).
ADVICE: dict[str, Advice] = {
    "binary-at": _PGD,
    "dsgan": Advice(
        finite=("loss", "loss_g", "gp", "score_data", "score_fake", "score_gen", "score_pd", "score_g"),
        scores=("score_data", "score_fake"), step_size_signature=False,
        non_finite="lower the learning rates (lr: the discriminator's, g_lr: the generator's) or set grad_clip",
        exploding="lower the discriminator's learning rate (lr) or set grad_clip; with loss='wgan-gp' raise "
                  "gp_weight"),
    "dsgan-ssl": Advice(
        finite=("loss", "loss_sup", "loss_unl", "loss_g", "critic_loss", "critic_gp", "score_unl", "score_gen"),
        scores=("score_unl", "score_gen"), step_size_signature=False,
        non_finite="lower the learning rates (lr: the classifier's, g_lr: the generator's, critic_lr: the feature "
                   "critic's)",
        exploding="lower the classifier's learning rate (lr) or unlabelled_weight"),
}


def advice_for(objective: str = "binary-at", loss_kind: str = "bce") -> Advice:
    """The :class:`Advice` for an objective kind; binary AT with the EBM loss (``loss_kind="ebm"``, E Sec. 5.3) is
    advised to return to BCE."""
    advice = ADVICE.get(objective, _PGD)
    if advice.step_size_signature and loss_kind == "ebm":
        advice = dataclasses.replace(
            advice, non_finite="the EBM loss diverges with PGD samples (E Sec. 5.3): use loss='bce'",
            exploding="the EBM loss lets the score gap grow without bound (E Sec. 5.3): use loss='bce'",
            plateau=None)  # the logit gap has no 2 ln 2 plateau
    return advice


def _value(record: Mapping[str, Any], key: str) -> float | None:
    value = record.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _any_rank(flag: bool, trainer: Any) -> bool:
    """``flag`` OR-ed over the DDP ranks of ``trainer`` (just ``flag`` in a single process)."""
    if int(getattr(trainer, "world", 1) or 1) <= 1:
        return flag
    import torch
    import torch.distributed as dist

    value = torch.tensor([1.0 if flag else 0.0], device=getattr(trainer, "device", "cpu"))
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


class FailureMonitor:
    """Trainer callback that detects G App. I's failure signature and divergence (see module docstring).

    Parameters: ``loss_floor`` – a loss at or below it counts as collapsed; ``auc_adv_high`` – AUC(p_data vs
    perturbed p_0) at or above it counts as perfectly separable; ``auc_clean_drop`` – AUC(p_data vs clean p_0)
    at least this far below its best value so far counts as falling; ``min_k`` – the signature is only checked
    once K >= ``min_k`` (at K = 0, Outlier Exposure, a vanishing loss is normal); ``score_limit`` – larger
    absolute mean scores count as exploding; ``patience`` – consecutive log lines before stopping; ``stop`` –
    raise ``StopTraining`` (else only warn); ``snapshot`` – keep the last healthy weights in memory (and write
    them on stop). The AUC and K thresholds concern the step-size signature, which only objectives with PGD
    negatives are checked for (:data:`ADVICE`).

    The 2 ln 2 plateau (module docstring): ``plateau_after`` – iterations before it is checked (None: never; the
    check also waits for the config's ``indist_at_warmup``); ``plateau_loss_band`` – a loss within this distance of
    :data:`PLATEAU_LOSS` counts; ``plateau_auc_high`` – AUC(p_data vs perturbed p_0) at or below it counts as
    chance (a nearly constant detector scores near 0.5, or lower when the attacks win its tiny margins);
    ``plateau_window`` – consecutive log lines before stopping (instead of ``patience``).
    """

    def __init__(self, *, loss_floor: float = 0.05, auc_adv_high: float = 0.99, auc_clean_drop: float = 0.15,
                 min_k: int = 1, score_limit: float = 1e3, patience: int = 3, stop: bool = True,
                 snapshot: bool = True, plateau_after: int | None = None, plateau_window: int = 3,
                 plateau_loss_band: float = 0.02, plateau_auc_high: float = 0.6) -> None:
        if patience < 1 or plateau_window < 1:
            raise ValueError(f"patience and plateau_window must be >= 1, got {patience} and {plateau_window}")
        if not 0 < auc_adv_high <= 1 or not 0 < auc_clean_drop < 1 or loss_floor < 0 or score_limit <= 0:
            raise ValueError("need 0 < auc_adv_high <= 1, 0 < auc_clean_drop < 1, loss_floor >= 0, score_limit > 0")
        if (plateau_after is not None and plateau_after < 0) or plateau_loss_band <= 0 \
                or not 0 <= plateau_auc_high <= 1:
            raise ValueError("need plateau_after >= 0 (or None: no plateau check), plateau_loss_band > 0, "
                             "0 <= plateau_auc_high <= 1")
        self.loss_floor, self.auc_adv_high, self.auc_clean_drop = loss_floor, auc_adv_high, auc_clean_drop
        self.min_k, self.score_limit, self.patience = min_k, score_limit, patience
        self.plateau_after, self.plateau_window = plateau_after, plateau_window
        self.plateau_loss_band, self.plateau_auc_high = plateau_loss_band, plateau_auc_high
        self.stop, self.snapshot = stop, snapshot
        self.events: list[dict[str, Any]] = []
        self.lines_seen = 0
        self.best_auc_clean: float | None = None
        self.streaks: dict[str, int] = {}
        self.stopped: dict[str, Any] | None = None
        self.last_good_step: int | None = None
        self.last_good_path: str | None = None
        self._good_state: dict[str, Any] | None = None
        self._good_objective: dict[str, Any] | None = None
        self._good_history_len: int | None = None
        self.objective = "binary-at"  # the kind of the objective whose log lines were checked last

    # ------------------------------------------------------------------------------------------ checks
    def check(self, record: Mapping[str, Any], step_size: float | None = None,
              loss_kind: str = "bce", objective: str = "binary-at", warmup: int = 0,
              k_max: int | None = None) -> list[tuple[str, str, str]]:
        """The failure signatures present in one log record of an ``objective`` kind (:data:`ADVICE`):
        ``[(kind, message, suggestion), ...]``. Updates the running best AUC(p_data vs clean p_0). ``warmup``: the
        run's in-distribution warm-up (iterations), during which the plateau is not checked; ``k_max``: the run's
        largest K (None: the attack-beaten signature is not checked)."""
        advice = advice_for(objective, loss_kind)
        found = []
        step, k = record.get("step"), int(record.get("k", 0) or 0)
        numbers = {name: _value(record, name) for name in advice.finite}
        bad = [name for name, v in numbers.items() if v is not None and not math.isfinite(v)]
        if bad:
            found.append((NON_FINITE, f"step {step}: non-finite {', '.join(bad)}", advice.non_finite))
            return found
        scores = {name: _value(record, name) for name in advice.scores}
        big = [name for name, value in scores.items() if value is not None and abs(value) > self.score_limit]
        if big:
            shown = ", ".join(f"{name}={value:.4g}" for name, value in scores.items() if value is not None)
            found.append((EXPLODING_SCORES, f"step {step}: |{'|, |'.join(big)}| above {self.score_limit:g} "
                          f"({shown})", advice.exploding))
        loss, auc_adv, auc_clean = _value(record, "loss"), _value(record, "auc_adv"), _value(record, "auc_clean")
        if advice.plateau is not None and self.plateau_after is not None and step is not None \
                and int(step) > max(self.plateau_after, warmup) and loss is not None and auc_adv is not None \
                and abs(loss - PLATEAU_LOSS) <= self.plateau_loss_band and auc_adv <= self.plateau_auc_high:
            found.append((PLATEAU, f"step {step}: loss {loss:.4f} within {self.plateau_loss_band:g} of 2 ln 2 = "
                          f"{PLATEAU_LOSS:.4f} (a constant classifier's) and AUC(data vs perturbed p0) {auc_adv:.3f} "
                          f"<= {self.plateau_auc_high:g}: stuck at the 2 ln 2 plateau", advice.plateau))
        if not advice.step_size_signature:
            return found
        if k_max is not None and k >= max(k_max, self.min_k) and loss is not None and auc_adv is not None \
                and loss > self.loss_floor and auc_adv >= self.auc_adv_high:
            found.append((ATTACK_BEATEN_AT_K_MAX,
                          f"step {step}, K={k} (k_max): AUC(data vs perturbed p0) {auc_adv:.3f} with loss {loss:.4f}: "
                          "the attack no longer fools the network and K cannot grow; samples may degrade from here",
                          "enlarge p_0 (a memorised p_0 beats the attack), keep the best validated weights, or "
                          "raise k_max"))
        if auc_clean is not None and math.isfinite(auc_clean):
            previous_best = self.best_auc_clean
            if k >= self.min_k and loss is not None and auc_adv is not None and previous_best is not None \
                    and loss <= self.loss_floor and auc_adv >= self.auc_adv_high \
                    and auc_clean <= previous_best - self.auc_clean_drop:
                halved = f" (now {step_size:g}: try {step_size / 2:g})" if step_size else ""
                found.append((STEP_SIZE_TOO_LARGE,
                              f"step {step}, K={k}: loss {loss:.4f} -> 0 and AUC(data vs perturbed p0) {auc_adv:.3f} "
                              f"-> 1 while AUC(data vs clean p0) fell to {auc_clean:.3f} (best {previous_best:.3f}): "
                              "the PGD step size is too large (G App. I)",
                              f"halve the PGD step size{halved}"))
            self.best_auc_clean = auc_clean if previous_best is None else max(previous_best, auc_clean)
        return found

    # ------------------------------------------------------------------------------------------ callback
    def __call__(self, trainer: Any, record: Mapping[str, Any]) -> None:
        from .training import StopTraining

        self.lines_seen += 1
        config = getattr(trainer, "config", None)
        step_size = getattr(config, "step_size", None)
        loss_kind = getattr(config, "loss", "bce")
        self.objective = str(getattr(getattr(trainer, "objective", None), "kind", "binary-at"))
        warmup = int(getattr(config, "indist_at_warmup", 0) or 0)
        # unbounded ascent only: a detector that beats a bounded attack (GAT) is doing what it is trained for
        k_max = getattr(config, "k_max", None)
        pgd_eps = getattr(config, "pgd_eps", None)
        unbounded = pgd_eps is None or math.isinf(float(pgd_eps))
        found = self.check(record, step_size, loss_kind, self.objective, warmup,
                           int(k_max) if unbounded and isinstance(k_max, (int, float)) else None)
        kinds = {kind for kind, _, _ in found}
        for kind in list(self.streaks):
            if kind not in kinds:
                self.streaks[kind] = 0
        stop_now = None
        for kind, message, suggestion in found:
            streak = self.streaks.get(kind, 0) + 1
            self.streaks[kind] = streak
            event = {"step": record.get("step"), "k": record.get("k"), "kind": kind, "message": message,
                     "suggestion": suggestion, "streak": streak}
            self.events.append(event)
            if streak == 1:
                text = f"training failure signature: {message}. Suggested change: {suggestion}."
                logger.warning(text)
                warnings.warn(text, RuntimeWarning, stacklevel=2)
            limit = 1 if kind == NON_FINITE else self.plateau_window if kind == PLATEAU else self.patience
            if self.stop and kind not in WARN_ONLY and streak >= limit and stop_now is None:
                stop_now = event
        if not found:
            self._remember_good(trainer, record)
        if self.stop and _any_rank(stop_now is not None, trainer) and stop_now is None:
            # another DDP rank saw a persistent failure: stop together (every rank logs on the same step)
            stop_now = {"step": record.get("step"), "k": record.get("k"), "kind": "other_rank",
                        "message": "another process stopped training", "suggestion": "see rank 0's log", "streak": 1}
        if stop_now is not None:
            self.stopped = dict(stop_now)
            self._restore_good(trainer)
            logger.warning("stopping training: %s persisted for %d log line(s); %s", stop_now["kind"],
                           stop_now["streak"], stop_now["suggestion"])
            raise StopTraining(f"{stop_now['kind']} persisted for {stop_now['streak']} log line(s) "
                               f"(last healthy step {self.last_good_step}); suggested change: {stop_now['suggestion']}")

    def _remember_good(self, trainer: Any, record: Mapping[str, Any]) -> None:
        self.last_good_step = record.get("step")
        model = getattr(trainer, "model", None)
        if self.snapshot and model is not None:
            self._good_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            self._good_history_len = len(getattr(trainer, "history", []))
            objective = getattr(trainer, "objective", None)
            state = objective.state_dict() if objective is not None else None
            # a deep copy: state_dict() hands out the live tensors (generator weights, optimiser moments)
            self._good_objective = copy.deepcopy(state) if state else None

    def _restore_good(self, trainer: Any) -> None:
        if self._good_state is None:
            return
        model = trainer.model
        model.load_state_dict(self._good_state)
        objective = getattr(trainer, "objective", None)
        if self._good_objective is not None and objective is not None:
            objective.load_state_dict(copy.deepcopy(self._good_objective))
        out_dir = getattr(trainer, "out_dir", None)
        if out_dir is None or not getattr(trainer, "is_main", True):
            return
        from .training import save_checkpoint

        path = Path(out_dir) / "checkpoint_last_good.pt"
        history = list(getattr(trainer, "history", []))[:self._good_history_len]
        payload = {"model_spec": model.spec, "model": copy.deepcopy(self._good_state),
                   "config": trainer.config.to_dict(), "trainer": None, "history": history,
                   "extra": {"monitor": self.summary()}}
        if self._good_objective is not None and objective is not None:
            payload["objective"] = {"kind": objective.kind, "options": objective.options(),
                                    "state": copy.deepcopy(self._good_objective)}
            payload["extra"] = {**dict(getattr(trainer, "extra", None) or {}), **payload["extra"]}
        save_checkpoint(path, payload)
        self.last_good_path = str(path)

    # ------------------------------------------------------------------------------------------ reporting
    @property
    def status(self) -> str:
        """``"healthy"``, ``"warned"`` (signatures seen, training went on) or ``"stopped"``."""
        if self.stopped is not None:
            return "stopped"
        return "warned" if self.events else "healthy"

    def status_text(self) -> str:
        """One line for logs and reports, e.g. ``healthy (40 log lines checked, no failure signature)``."""
        if self.stopped is not None:
            return (f"stopped at step {self.stopped['step']}: {self.stopped['message']}; suggested change: "
                    f"{self.stopped['suggestion']} (last healthy step {self.last_good_step})")
        if self.events:
            kinds = sorted({e["kind"] for e in self.events})
            last = self.events[-1]
            return (f"warned: {len(self.events)} log line(s) with {', '.join(kinds)} (last at step {last['step']}: "
                    f"{last['suggestion']}); training was not stopped")
        return f"healthy ({self.lines_seen} log lines checked, no failure signature)"

    def summary(self) -> dict[str, Any]:
        """JSON-able state: status, log lines checked, events (first of each streak and the stopping one),
        the last healthy step and the weights file written on stop."""
        shown = [e for e in self.events if e["streak"] == 1 or (self.stopped and e == self.stopped)]
        return {"status": self.status, "status_text": self.status_text(), "log_lines": self.lines_seen,
                "events": shown, "n_events": len(self.events),
                "stopped": self.stopped, "last_good_step": self.last_good_step,
                "last_good_checkpoint": self.last_good_path,
                "thresholds": {"loss_floor": self.loss_floor, "auc_adv_high": self.auc_adv_high,
                               "auc_clean_drop": self.auc_clean_drop, "min_k": self.min_k,
                               "score_limit": self.score_limit, "patience": self.patience,
                               "plateau_after": self.plateau_after, "plateau_window": self.plateau_window,
                               "plateau_loss_band": self.plateau_loss_band,
                               "plateau_auc_high": self.plateau_auc_high}}

    def add_to_report(self, report: Any, key: str = "train/monitor", heading: str = "Training monitor") -> None:
        """Adds a table of the events (or a line saying the run looked healthy) to an :class:`atebm.report.Report`
        (not saved here)."""
        info = self.summary()
        advice = advice_for(self.objective)
        if advice.step_size_signature:
            checks = ("G App. I step-size signature (loss <= {loss_floor}, AUC adv >= {auc_adv_high}, AUC clean <= "
                      "best - {auc_clean_drop}, K >= {min_k}); non-finite loss/scores; |mean score| > {score_limit}; "
                      "stop after {patience} line(s)".format(**info["thresholds"]))
        else:
            scores = "|, |".join(advice.scores)
            checks = (f"objective {self.objective}: non-finite {', '.join(advice.finite)}; |{scores}| > "
                      f"{self.score_limit:g}; stop after {self.patience} line(s)")
        if advice.plateau is not None and self.plateau_after is not None:
            checks += ("; 2 ln 2 plateau (|loss - 2 ln 2| <= {plateau_loss_band}, AUC adv <= {plateau_auc_high}, after "
                       "{plateau_after} iterations and the in-distribution warm-up, for {plateau_window} line(s))"
                       .format(**info["thresholds"]))
        protocol = {"checks": checks, "log_lines_checked": info["log_lines"]}
        if not info["events"]:
            report.add_table(key, f"{heading}: healthy", ["status", "log lines checked", "events"],
                             [["healthy", info["log_lines"], 0]], protocol=protocol)
            return
        rows = [[e["step"], e["k"], e["kind"], e["message"], e["suggestion"]] for e in info["events"]]
        note = None
        if self.stopped:
            note = (f"Training was stopped at step {self.stopped['step']} ({self.stopped['kind']}); last healthy "
                    f"step {self.last_good_step}" + (f", weights in {Path(self.last_good_path).name}"
                                                     if self.last_good_path else "") + ".")
        report.add_table(key, f"{heading}: {info['status']}", ["step", "K", "signature", "message", "suggested change"],
                         rows, protocol=protocol, note=note)
