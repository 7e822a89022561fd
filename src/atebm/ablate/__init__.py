"""``atebm ablate NAME --out DIR``: the papers' ablations at CPU scale, each one function that trains its arms with
:class:`atebm.Trainer` under an equal CPU budget, once per seed (default 0, 1, 2), measures them with the project's
metrics (the demo's Fréchet distance, ``atebm eval-ood``'s worst-case AUROC, the 2D lab's Proposition-1 numbers,
the failure monitor) and writes ``result.json`` (with the command that reproduces it, every metric per seed with its
mean, sd and interval, and a verdict on the paper's claim decided from paired intervals over seeds) and
``report.html`` with the plots.

==================== ====================================================================================
p0-diversity         E Fig. 3, G App. H: p_0 = uniform, Gaussian, sklearn digits, LFW, photos, a mixture,
                     plus NAME=SOURCE arms (e.g. DSGAN boundary samples ``npz:PATH``)
final-k              E Fig. 4, G Tab. 2: K_max in {0, 1, 2, 4, 8, 16, 24} at equal training time
progressive-vs-fixed E Fig. 5: validation FD against training time, fixed K 4/8/16 vs progressive
step-size            G App. I: small / preset / too-large PGD step, curves, samples after K = 0, 1, 2, monitor
r1                   E Sec. 4.4: R1 in {0, 0.1, 1, 10} from scratch
perturbation-2d      G Sec. 3.1 Tab. 1: finite eps in 2D, support inside / outside / partly in S
composition          E supp. Fig. 17 designed again: other classes in p_0, sum of logits vs log D, more steps
stability            E Sec. 5.3 designed again: EBM vs BCE loss, ResNet, batch 32, K 0..25, lr 1e-6
==================== ====================================================================================
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .common import DEFAULT_SEEDS, FULL, SMOKE, CpuBudget, Finding, Scale, SeedInterval, paired_difference
from .images import P0_ARMS, final_k, p0_diversity, progressive_vs_fixed, r1_from_scratch, step_size
from .negative_results import composition, stability
from .toy import SCENARIOS, perturbation_2d

__all__ = ["ABLATIONS", "run_ablation", "p0_diversity", "final_k", "progressive_vs_fixed", "step_size",
           "r1_from_scratch", "perturbation_2d", "composition", "stability", "P0_ARMS", "SCENARIOS", "Scale", "FULL",
           "SMOKE", "CpuBudget", "Finding", "SeedInterval", "paired_difference", "DEFAULT_SEEDS"]

#: Ablation name (the command's NAME) -> its library function.
ABLATIONS: dict[str, Callable[..., dict[str, Any]]] = {
    "p0-diversity": p0_diversity,
    "final-k": final_k,
    "progressive-vs-fixed": progressive_vs_fixed,
    "step-size": step_size,
    "r1": r1_from_scratch,
    "perturbation-2d": perturbation_2d,
    "composition": composition,
    "stability": stability,
}


def run_ablation(name: str, out: str | Path, *, budget_s: float | None = None, smoke: bool = False,
                 seeds: Sequence[int] = DEFAULT_SEEDS, extra_arms: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Runs the ablation ``name`` (see :data:`ABLATIONS`) into ``out``; ``budget_s``: training CPU seconds per arm
    and seed (None: the ablation's default), ``smoke``: a seconds-long run whose numbers mean nothing, ``seeds``:
    every arm is trained and measured once per seed (a verdict needs at least three), ``extra_arms``: more p_0
    arms NAME -> SOURCE (p0-diversity only). Returns the content of ``out/result.json``."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; choose from {', '.join(ABLATIONS)}")
    options: dict[str, Any] = {"budget_s": budget_s, "smoke": smoke, "seeds": tuple(seeds)}
    if extra_arms:
        if name != "p0-diversity":
            raise ValueError(f"extra p0 arms (NAME=SOURCE) apply to p0-diversity only, not {name!r}")
        options["extra_arms"] = dict(extra_arms)
    return ABLATIONS[name](out, **options)
