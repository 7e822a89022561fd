"""The attack layer: every robustness number of atebm passes through here.

* :mod:`~atebm.attacks.specs`: :class:`ThreatModel` (norm ball inside the [0, 1] box) and :class:`AttackSpec` (one
  attacker and its budget; steps relative to eps; a protocol that cannot reach the ball's boundary is refused);
* :mod:`~atebm.attacks.objectives`: the margins (positive exactly when an attack succeeded) and objectives;
* :mod:`~atebm.attacks.search`: :func:`search`, random restarts, success tracked at every iterate, the per-sample
  worst case over a list of attackers, each attacker's budget in the protocol;
* :mod:`~atebm.attacks.square`: atebm's own Square Attack (Linf and L2, gradient-free, one window per sample,
  one margin query per active row and iteration), method ``"square"``;
* :mod:`~atebm.attacks.art`: the one adapter to ART's APGD and Square (method ``"square-art"``, an independent
  reference), whose success test equals the margin's;
* :mod:`~atebm.attacks.distortion`: the minimum-L2-distortion search of Carlini & Wagner (T Tab. 3.6).

:func:`atebm.pgd` stays the one ascent loop underneath (``keep="best"``, ``rule="adam"``).
"""
from .art import MarginLogits, art_candidates, parameters_frozen, seeded
from .distortion import min_distortion_l2
from .objectives import (
           AcceptanceMargin,
           CrossEntropy,
           Labelled,
           ScoreAbove,
           TargetedMargin,
           rows_of,
           top_other,
           true_logit,
)
from .search import AttackerRecord, AttackResult, lower_score, margins_of, raise_score, search
from .specs import APGD_LOSSES, METHODS, NORMS, AttackSpec, ThreatModel

__all__ = ["ThreatModel", "AttackSpec", "METHODS", "NORMS", "APGD_LOSSES", "search", "raise_score", "lower_score",
           "AttackResult", "AttackerRecord", "margins_of", "MarginLogits", "art_candidates", "seeded",
           "parameters_frozen", "AcceptanceMargin", "TargetedMargin", "CrossEntropy", "ScoreAbove", "Labelled",
           "rows_of", "top_other", "true_logit", "min_distortion_l2"]
