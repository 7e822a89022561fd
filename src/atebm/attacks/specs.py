"""Threat models and attack specifications: small frozen configs (:mod:`atebm.config`), validated on construction.

A :class:`ThreatModel` is the set the adversary searches: the ``norm`` ball of radius ``eps`` around the input,
intersected with the [0, 1] box. An :class:`AttackSpec` is one attacker and its budget. Step sizes are relative to
``eps`` in the threat model's own norm (``step = step_factor · eps / steps``, Madry et al.'s 2.5 eps / steps by
default), so one spec serves every radius; an absolute ``step_size`` may be given instead, and a spec whose steps
cannot reach the boundary of the ball (``steps · step_size < eps``) is refused when it is bound to a threat model.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ..config import REQUIRED, Config, above, at_least, in_range, one_of, setting

__all__ = ["ThreatModel", "AttackSpec", "METHODS", "SQUARE_METHODS", "NORMS", "APGD_LOSSES"]

NORMS = ("linf", "l2")
#: ``pgd``: :func:`atebm.pgd`, normalised steps; ``adam``: :func:`atebm.pgd` with Adam steps (T Tab. 3.2);
#: ``apgd``: ART's AutoProjectedGradientDescent (Croce & Hein 2020); ``square``: atebm's Square Attack
#: (:mod:`atebm.attacks.square`, gradient-free, one window per sample); ``square-art``: ART's SquareAttack, an
#: independent reference.
METHODS = ("pgd", "adam", "apgd", "square", "square-art")
#: The gradient-free methods, whose budget is counted in queries.
SQUARE_METHODS = ("square", "square-art")
#: ART's APGD losses on the margin view (see :class:`atebm.attacks.art.MarginLogits`).
APGD_LOSSES = ("ce", "dlr")


@dataclass(frozen=True)
class ThreatModel(Config):
    """The ``norm`` (``"linf"`` or ``"l2"``) ball of radius ``eps`` around each input, inside the [0, 1] box."""

    norm: str = setting(REQUIRED, one_of(*NORMS))
    eps: float = setting(REQUIRED, in_range(0, math.inf, hi_open=True))

    def __str__(self) -> str:
        return f"{self.norm.upper()} eps {self.eps:g}"


@dataclass(frozen=True)
class AttackSpec(Config):
    """One attacker and its budget.

    ``method``: one of :data:`METHODS`. ``steps``: iterations per run (PGD, Adam, APGD) or queries per run
    (Square, atebm's or ART's). ``restarts``: runs per input; the first starts at the input (or at a given start
    point) unless ``random_start``, every later one at a uniform random point of the ball. ``step_factor``: the
    PGD/Adam step is ``step_factor · eps / steps``; ``step_size``: an absolute step instead (the thesis's
    protocols). APGD's initial step is 2·eps (Croce & Hein) and ``loss`` is ART's ``"ce"`` or ``"dlr"`` on the
    margin view; Square starts with windows of ``p_init`` of the image. ``label``: the name printed in tables
    (default: derived from the method).
    """

    method: str = setting(REQUIRED, one_of(*METHODS))
    steps: int = setting(100, at_least(1))
    restarts: int = setting(1, at_least(1))
    random_start: bool = True
    step_factor: float = setting(2.5, at_least(1, why="steps x step = step_factor x eps must reach the ball's "
                                                      "boundary"))
    step_size: float | None = setting(None, above(0))
    loss: str = setting("ce", one_of(*APGD_LOSSES))
    p_init: float = setting(0.3, in_range(0, 1, lo_open=True, hi_open=True))
    label: str | None = None

    @property
    def name(self) -> str:
        """The label in tables: ``label`` or e.g. ``pgd-100x5``."""
        if self.label:
            return self.label
        base = f"apgd-{self.loss}" if self.method == "apgd" else self.method
        return f"{base}-{self.steps}x{self.restarts}" if self.restarts > 1 else f"{base}-{self.steps}"

    def step_at(self, threat: ThreatModel) -> float:
        """The PGD/Adam step size at ``threat``; refuses a spec whose path cannot reach the ball's boundary."""
        if self.method not in ("pgd", "adam"):
            raise ValueError(f"{self.method} chooses its own step")
        if self.step_size is None:
            return self.step_factor * threat.eps / self.steps
        reach = self.steps * self.step_size
        if reach < threat.eps * (1 - 1e-9):
            raise ValueError(f"attack {self.name}: {self.steps} steps x {self.step_size:g} reach at most "
                             f"{reach:g} in {threat.norm}, less than eps {threat.eps:g}; use step_factor (relative "
                             f"to eps) or a larger step_size")
        return float(self.step_size)

    def budget(self) -> dict[str, Any]:
        """What one input may cost this attacker: gradient passes (or forward queries) per input, all runs."""
        unit = "queries" if self.method in SQUARE_METHODS else "gradient_passes"
        return {unit: self.steps * self.restarts, "steps": self.steps, "restarts": self.restarts}

    def describe(self, threat: ThreatModel) -> dict[str, Any]:
        """The protocol entry printed next to a number."""
        out: dict[str, Any] = {"method": self.method, **self.budget(), "random_start": self.random_start}
        if self.method in ("pgd", "adam"):
            out["step_size"] = round(self.step_at(threat), 8)
            out["step_rule"] = "sign" if threat.norm == "linf" and self.method == "pgd" else (
                "unit-L2" if self.method == "pgd" else "Adam update of the perturbation")
        elif self.method == "apgd":
            out.update(loss=self.loss, initial_step=2 * threat.eps, implementation="ART AutoProjectedGradientDescent")
        else:
            out.update(p_init=self.p_init, gradient_free=True,
                       implementation="ART SquareAttack" if self.method == "square-art" else
                       "atebm (vectorised, per-sample windows)")
        return out

