"""The two negative results designed again: composition (E supp. Fig. 17) and the stability of the EBM loss
(E Sec. 5.3).

Composition: two class-conditional MNIST models (A: digits 0-5, B: 4-9) whose summed score behaved like a mixture.
Theory (E Prop. 1): AT learns the support and leaves D arbitrary where no p_0 sample went; each model's score is
only low on the *other* model's digits if those digits were in its p_0. So each model is trained a second time with
the other's exclusive classes in p_0 (half of p_0; the other half photo patches), and both pairs are sampled with
the sum of logits and the sum of log D, at the preset's number of steps and three times as many. The conjunction
is the overlap {4, 5}, measured with the digit classifier.

Stability: the loss ``-(mean f(x) - mean f(x*))`` with PGD samples against BCE in the configuration closest to
E Sec. 5.3 that fits a CPU: a ResNet-18 (E: ResNet-50; same family, BN kept in eval mode as the published code),
batch 32, progressive K up to 25, PGD step 0.1, R1 0.01, Adam (0, 0.99) at lr 1e-6 (and 1e-4), on MNIST.
"""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .common import (
    DEFAULT_SEEDS,
    Finding,
    Outcome,
    SeedInterval,
    check_seeds,
    command_line,
    figure,
    finish,
    mnist_data,
    paired_difference,
    photo_p0,
    pool_arm,
    resolve_scale,
    say,
    seeds_clause,
    spread_cell,
    train_arm,
    verdict_word,
)

__all__ = ["composition", "stability", "CONJUNCTION", "SUM_FACTOR"]

#: The samplers of :func:`composition` that use one model alone.
_SINGLE = ("A alone", "B alone")
#: The share of samples in the overlap that makes a conjunction (E supp. Fig. 17's claim).
CONJUNCTION = 0.6
#: How many times the better single model's share the composition must reach: the sum, not one model, puts them there.
SUM_FACTOR = 1.5
_TRAINING_METRICS = ("iterations", "final_k", "train_cpu_s")
Runs = Mapping[str, Sequence[Mapping[str, Any]]]


def composition(out: str | Path, *, budget_s: float | None = None, classes_a: Sequence[int] = (0, 1, 2, 3, 4, 5),
                classes_b: Sequence[int] = (4, 5, 6, 7, 8, 9), steps: Sequence[int] = (32, 96), smoke: bool = False,
                seeds: Sequence[int] = DEFAULT_SEEDS) -> dict[str, Any]:
    """Trains A and B twice (p_0 = photos; p_0 = photos + the other's exclusive classes), once per seed, composes
    each pair by the sum of scores and the sum of log D for every number of ``steps``, and reports which gives the
    intersection."""
    from ..apps import WeightedSum, generate
    from ..data import load_dataset
    from ..io import save_grid
    from ..metrics import digit_features
    from ..presets import PRESETS

    started = time.process_time()
    out = Path(out)
    seeds = check_seeds(seeds)
    ca, cb = sorted({int(c) for c in classes_a}), sorted({int(c) for c in classes_b})
    both = sorted(set(ca) & set(cb))
    if not both or set(ca) == set(cb) or not all(0 <= c <= 9 for c in ca + cb):
        raise ValueError(f"classes_a {ca} and classes_b {cb} must be digits with a proper, non-empty overlap")
    scale = resolve_scale(smoke, budget_s, 20.0)
    if smoke:
        steps = tuple(min(int(s), 3) for s in steps)
    train = load_dataset("mnist", split="train")
    photos = photo_p0(scale)

    def digits_of(classes: Sequence[int]) -> torch.Tensor:
        assert train.y is not None
        return train.x[torch.isin(train.y, torch.tensor(list(classes)))]

    def with_other(classes: Sequence[int], g: torch.Generator) -> torch.Tensor:
        other = digits_of(classes)
        half = len(photos) // 2
        drawn = other[torch.randint(len(other), (half,), generator=g)]
        return torch.cat([photos[:half], drawn])[torch.randperm(2 * half, generator=g)]

    only_a, only_b = [c for c in ca if c not in cb], [c for c in cb if c not in ca]
    designs = ("p0 = photos", "p0 = photos + other's classes")
    classifier = digit_features(device="cpu")
    starts = load_dataset("photos", split="test", n=scale.n_fd, seed=1).x
    step_size = PRESETS["mnist"].generate.step_size
    trained: dict[str, dict[str, list[dict[str, Any]]]] = {d: {"A": [], "B": []} for d in designs}
    rows: dict[str, list[dict[str, Any]]] = {}
    grids = [starts[:12]]
    labels = []
    for seed in seeds:
        g = torch.Generator().manual_seed(seed)
        p0s = {designs[0]: (photos, photos), designs[1]: (with_other(only_b, g), with_other(only_a, g))}
        for design, (p0_a, p0_b) in p0s.items():
            a, sa = train_arm({}, digits_of(ca), p0_a, scale, seed=seed)
            b, sb = train_arm({}, digits_of(cb), p0_b, scale, seed=seed)
            trained[design]["A"].append({"seed": seed, **sa})
            trained[design]["B"].append({"seed": seed, **sb})
            samplers = {"A alone": a.model, "B alone": b.model, "sum of logits": WeightedSum([a.model, b.model]),
                        "sum of log D": WeightedSum([a.model, b.model], mode="log_prob")}
            for n_steps in steps:
                for sampler, score in samplers.items():
                    x = generate(score, starts, int(n_steps), step_size)
                    pred = classifier.predict_proba(x).argmax(1)
                    label = f"{design} | {sampler} | {n_steps} steps"
                    rows.setdefault(label, []).append({
                        "seed": seed, "design": design, "sampler": sampler, "steps": int(n_steps),
                        "fraction_in_A": float(torch.isin(pred, torch.tensor(ca)).float().mean()),
                        "fraction_in_B": float(torch.isin(pred, torch.tensor(cb)).float().mean()),
                        "fraction_in_both": float(torch.isin(pred, torch.tensor(both)).float().mean()),
                        "class_histogram": torch.bincount(pred, minlength=10).tolist()})
                    if n_steps == max(steps) and seed == seeds[0]:
                        grids.append(x[:12])
                        labels.append(f"{design} | {sampler}")
            say(f"composition {design} seed {seed}: " + ", ".join(
                f"{k.split(' | ', 1)[1]}: {v[-1]['fraction_in_both']:.2f}" for k, v in rows.items()
                if v[-1]["design"] == design and v[-1]["seed"] == seed))
    out.mkdir(parents=True, exist_ok=True)
    grid = save_grid(out / "samples.png", torch.cat(grids), nrow=12, scale=2)
    samples = {label: pool_arm({key: runs[0][key] for key in ("design", "sampler", "steps")}, runs,
                               ("fraction_in_A", "fraction_in_B", "fraction_in_both"))
               for label, runs in rows.items()}
    arms = {design: {model: pool_arm({}, runs, _TRAINING_METRICS) for model, runs in pair.items()}
            for design, pair in trained.items()}
    finding = _composition_finding(rows, both)
    fig, ax = figure(8, 3.8)
    names = list(samples)
    ax.barh(range(len(names)), [samples[n]["fraction_in_both"]["mean"] for n in names],
            xerr=[samples[n]["fraction_in_both"]["sd"] if len(seeds) > 1 else 0.0 for n in names], color="#4c72b0",
            capsize=2)
    ax.set_yticks(range(len(names)))
    ax.set_yticklabels(names, fontsize=6)
    ax.set_xlabel(f"fraction of samples classified in the overlap {both} (mean and sd over seeds)")
    ax.axvline(len(both) / 10, color="grey", linestyle=":")
    command = command_line("composition", out, budget=None if smoke else scale.budget_s, smoke=smoke, seeds=seeds)
    return finish(out, "composition", "Negative designed again: composition (E supp. Fig. 17)", command=command,
                  scale=scale, seeds=seeds,
                  paper_protocol="E supp. Fig. 17: the CelebA-HQ and AFHQ-CAT models composed by the sum of scores "
                                 "(concept conjunction, qualitative only)",
                  finding=finding, arms=arms, started=started,
                  extra={"samples": samples, "classes": {"A": ca, "B": cb, "overlap": both},
                         "sampler": f"PGD L2 ascent x {step_size:g}, steps {list(steps)}, {len(starts)} held-out photo "
                                    "seeds", "classifier": classifier.info.get("network")},
                  tables=[("Where the samples land (digit classifier), mean ± sd over seeds; histogram summed over "
                           "seeds",
                           ["design | sampler | steps", f"in A {ca}", f"in B {cb}", f"in both {both}", "histogram"],
                           [[n, spread_cell(r["fraction_in_A"], ".2f"), spread_cell(r["fraction_in_B"], ".2f"),
                             spread_cell(r["fraction_in_both"], ".2f"),
                             " ".join(map(str, np.sum([run["class_histogram"] for run in r["runs"]], axis=0)))]
                            for n, r in samples.items()])],
                  figures=[("composition", fig, "fraction of samples in the overlap (dotted: uniform over digits)")],
                  images=[("samples", grid.name, "rows: seeds, then " + "; ".join(labels)
                           + f" ({max(steps)} steps, models of training seed {seeds[0]})")])


def _composition_finding(rows: Runs, both: list[int]) -> Finding:
    """The verdict on E supp. Fig. 17 from the composed sampler (sum of logits or of log D, any design and number of
    steps) with the largest mean fraction of samples in the overlap ``both`` (``rows``: per design | sampler |
    steps, one row per seed). Two parts: *a conjunction*: the interval of that fraction lies above
    :data:`CONJUNCTION` (below: none); *the sum puts them there*: per seed, the fraction minus :data:`SUM_FACTOR`
    times the better single model's of the same design, steps and seed, its paired interval above 0. Both:
    "holds"; a conjunction that a single model nearly gives by itself: "partly"; no conjunction: "does not hold",
    however it compares with the single models; None while the part that decides is open, or without a composed
    row."""
    claim = ("E supp. Fig. 17: the sum of two models' scores samples the conjunction (here: digits in the overlap "
             f"{both} of two class-conditional models)")
    composed = [n for n, runs in rows.items() if runs[0]["sampler"] not in _SINGLE]
    if not composed:
        return Finding(claim, None, "no composed sampler was run", {})
    best = max(composed, key=lambda n: float(np.mean([r["fraction_in_both"] for r in rows[n]])))
    chosen = rows[best]
    singles = [runs for runs in rows.values() if runs[0]["sampler"] in _SINGLE
               and runs[0]["design"] == chosen[0]["design"] and runs[0]["steps"] == chosen[0]["steps"]]
    alone = [max((runs[i]["fraction_in_both"] for runs in singles), default=0.0) for i in range(len(chosen))]
    fraction = SeedInterval(tuple(r["fraction_in_both"] for r in chosen))
    margin = paired_difference(fraction.values, [SUM_FACTOR * a for a in alone])
    conjunction = fraction.decide(CONJUNCTION)
    beats_single = margin.decide(0.0)
    outcome: Outcome | None
    if conjunction is not True:
        outcome = None if conjunction is None else "does not hold"
    else:
        outcome = None if beats_single is None else "holds" if beats_single else "partly"
    detail = (f"the best composition ({best}) puts " + fraction.describe("a share", CONJUNCTION, fmt=".2f")
              + f" of its samples in the overlap ({verdict_word(conjunction, 'a conjunction', 'no conjunction')}: "
              f"needs more than {CONJUNCTION:g}), against {float(np.mean(alone)):.2f} for the better single model of "
              f"the same pair; " + margin.describe(f"its share minus {SUM_FACTOR:g}x the single model's", fmt=".2f")
              + seeds_clause(fraction.n))
    return Finding(claim, outcome, detail,
                   {"best": best, "fraction_in_both": fraction.to_dict(CONJUNCTION),
                    "best_single_model": SeedInterval(tuple(alone)).to_dict(),
                    "fraction_minus_factor_times_single": margin.to_dict(0.0),
                    "conjunction": conjunction, "beats_single_models": beats_single})


def stability(out: str | Path, *, budget_s: float | None = None, lrs: Sequence[float] = (1e-6, 1e-4),
              width: int = 8, overflow: float = 1e4, smoke: bool = False, seeds: Sequence[int] = DEFAULT_SEEDS
              ) -> dict[str, Any]:
    """E Sec. 5.3: BCE vs the EBM loss with PGD samples, same ResNet, data, PGD and budget, once per seed; the logit
    gap ``mean f(x) - mean f(x*)`` along training (:func:`atebm.baselines.logit_gap_trace` semantics)."""
    from ..baselines.stability import growth_summary

    started = time.process_time()
    out = Path(out)
    seeds = check_seeds(seeds)
    if not lrs or min(lrs) <= 0:
        raise ValueError(f"learning rates must be > 0, got {list(lrs)}")
    scale = resolve_scale(smoke, budget_s, 20.0)
    data, p0 = mnist_data(), photo_p0(scale)
    model = {"arch": "cifar_resnet", "kwargs": {"depth": 18, "in_channels": 1, "out_dim": 1,
                                                "width": 4 if smoke else width}, "mean": 0.5, "std": 0.5}
    config = {"model": model, "batch_size": 32, "k_start": 0, "k_max": 25, "epochs_per_k": 0.25, "auc_window": 10,
              "auc_threshold": 0.8, "step_size": 0.1, "r1": 0.01, "freeze_bn": True, "optimizer": "adam",
              "betas": (0.0, 0.99)}
    names = {f"{loss} lr {lr:g}": (loss, float(lr)) for lr in lrs for loss in ("bce", "ebm")}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    for seed in seeds:
        for name, (loss, lr) in names.items():
            trace: list[dict[str, float]] = []
            status: dict[str, Any] = {"diverged": False, "diverged_at": None}

            def watch(trainer: Any, record: dict[str, Any], trace: list = trace, status: dict = status) -> None:
                from ..training import StopTraining

                gap = record["score_data"] - record["score_adv"]
                trace.append({"step": record["step"], "k": record["k"], "gap": gap, "loss": record["loss"],
                              "auc_adv": record["auc_adv"]})
                if not math.isfinite(gap) or abs(gap) > overflow:
                    status.update(diverged=True, diverged_at=record["step"])
                    raise StopTraining(f"logit gap {gap:.3g} beyond {overflow:g}")

            _, summary = train_arm({**config, "loss": loss, "lr": lr}, data, p0, scale, callbacks=[watch], seed=seed)
            growth = (growth_summary([t["step"] for t in trace], [t["gap"] for t in trace]) if trace
                      else dict.fromkeys(("first", "last", "max", "slope_second_half_per_1k"), math.nan))
            slope, last = growth["slope_second_half_per_1k"], growth["last"]
            to_overflow = (1000 * (overflow - last) / slope) if slope > 0 and math.isfinite(slope) else None
            summary.update(seed=seed, **status, growth=growth, trace=trace,
                           iterations_to_overflow_at_this_slope=to_overflow)
            summary["config"] = {k: v for k, v in summary["config"].items() if k != "model"}
            runs[name].append(summary)
            say(f"stability {name} seed {seed}: {summary['iterations']} it, K {summary['final_k']}, gap {growth}")
    results = {name: pool_arm({"loss": loss, "lr": lr}, runs[name], ("diverged", "growth", *_TRAINING_METRICS))
               for name, (loss, lr) in names.items()}
    finding = _stability_finding(runs, min(lrs))
    fig, ax = figure(6.5, 3.8)
    for i, (name, arm_runs) in enumerate(runs.items()):
        for j, run in enumerate(arm_runs):
            ax.plot([t["step"] for t in run["trace"]], [t["gap"] for t in run["trace"]], color=f"C{i % 10}",
                    alpha=0.8, label=name if j == 0 else None)
    ax.set_xlabel("iteration")
    ax.set_ylabel("mean f(data) - mean f(x*)")
    ax.set_yscale("symlog")
    ax.legend(fontsize=7)
    rows = [[n, spread_cell(r["iterations"]), spread_cell(r["final_k"]),
             f"{sum(run['diverged'] for run in runs[n])} of {len(seeds)}",
             spread_cell(r["growth"]["last"]), spread_cell(r["growth"]["max"]),
             spread_cell(r["growth"]["slope_second_half_per_1k"]),
             ", ".join("-" if run["iterations_to_overflow_at_this_slope"] is None
                       else f"{run['iterations_to_overflow_at_this_slope']:.3g}" for run in runs[n])]
            for n, r in results.items()]
    command = command_line("stability", out, budget=None if smoke else scale.budget_s, smoke=smoke, seeds=seeds)
    return finish(out, "stability", "Negative designed again: stability of the EBM loss (E Sec. 5.3)",
                  command=command, scale=scale, seeds=seeds,
                  paper_protocol="E Sec. 5.3: CIFAR-10, ResNet-50, batch 32, progressive K 0..25, PGD step 0.1, R1 "
                                 "0.01, Adam (0, 0.99); with the EBM loss at lr 1e-6 the gap 'quickly increases and "
                                 "eventually overflows' (iteration count not stated; full training is 172K)",
                  finding=finding, arms=results, started=started,
                  extra={"network": model, "overflow_threshold": overflow, "data": "MNIST 5,000 train vs photo "
                         "patches (CIFAR-10 and 80M Tiny Images are not on this machine)"},
                  tables=[("Logit gap, mean ± sd over seeds", ["run", "iterations", "final K", "diverged", "gap last",
                                                               "gap max", "slope per 1k it (2nd half)",
                                                               "iterations to overflow at that slope, per seed"],
                           rows)],
                  figures=[("gap", fig, "logit gap along training (symlog, a line per seed)")])


def _stability_finding(runs: Runs, lr: float) -> Finding:
    """The verdict on E Sec. 5.3 at learning rate ``lr`` from each seed's run: the share of seeds on which the EBM
    loss diverged (its logit gap passed the overflow threshold) and on which BCE did, each decided against 1/2 by
    its interval. EBM diverges: "holds" when BCE does not, "partly" when BCE does too. EBM does not diverge:
    "does not hold" when BCE does, or when the EBM gap is not climbing (the interval of its second-half slope lies
    below 0); while it still climbs (interval above 0, an overflow projected beyond this budget) the claim is not
    decided at this budget (None). None too while a part that decides is open."""
    claim = ("E Sec. 5.3: with PGD samples the EBM loss diverges (the logit gap overflows) even at lr 1e-6, "
             "while the BCE loss of binary AT stays stable")
    ebm, bce = runs[f"ebm lr {lr:g}"], runs[f"bce lr {lr:g}"]
    ebm_share = SeedInterval(tuple(float(run["diverged"]) for run in ebm))
    bce_share = SeedInterval(tuple(float(run["diverged"]) for run in bce))
    ebm_diverges, bce_diverges = ebm_share.decide(0.5), bce_share.decide(0.5)
    slope = SeedInterval(tuple(run["growth"].get("slope_second_half_per_1k", math.nan) for run in ebm))
    climbing = slope.decide(0.0)
    projected = [run["iterations_to_overflow_at_this_slope"] for run in ebm
                 if run["iterations_to_overflow_at_this_slope"] is not None]
    outcome: Outcome | None
    if ebm_diverges is None:
        outcome = None
    elif ebm_diverges:
        outcome = None if bce_diverges is None else "partly" if bce_diverges else "holds"
    elif bce_diverges or climbing is False:
        outcome = "does not hold"
    else:
        outcome = None
    evidence = {"diverged_share": {f"ebm lr {lr:g}": ebm_share.to_dict(0.5), f"bce lr {lr:g}": bce_share.to_dict(0.5)},
                "ebm_slope_per_1k": slope.to_dict(0.0), "ebm_diverges": ebm_diverges, "bce_diverges": bce_diverges,
                "ebm_gap_climbing": climbing}
    iterations = SeedInterval(tuple(run["iterations"] for run in ebm))
    detail = (f"at lr {lr:g}, " + ebm_share.describe("share of seeds on which the EBM loss diverged", 0.5, fmt=".2f")
              + ", " + bce_share.describe("BCE", 0.5, fmt=".2f")
              + f" (EBM diverges: {verdict_word(ebm_diverges, 'yes', 'no')}; BCE diverges: "
              + f"{verdict_word(bce_diverges, 'yes', 'no')})")
    if ebm_diverges is not True:
        detail += (f"; the EBM gap ends at {np.mean([run['growth'].get('last', math.nan) for run in ebm]):.3g} "
                   f"(mean) after {iterations.mean:.0f} iterations, "
                   + slope.describe("slope per 1k iterations", fmt=".3g")
                   + f" (still climbing: {verdict_word(climbing, 'yes', 'no')})"
                   + (f", overflow in about {np.median(projected):.3g} more iterations at that rate (median over "
                      f"{len(projected)} climbing seeds): the budget that would decide it" if projected else "")
                   + "; with Adam each step moves a weight by about lr, so at lr 1e-6 divergence needs far more "
                     "iterations than this budget (E trains 172K)")
    return Finding(claim, outcome, detail + seeds_clause(ebm_share.n), evidence)
