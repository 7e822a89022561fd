"""The MNIST ablations of E Sec. 4.4 / Fig. 3-5 and G App. H, I, K.1, each arm one :class:`atebm.Trainer` run of the
``mnist`` preset with one setting changed, under the same CPU budget, once per seed (:mod:`atebm.ablate.common`).

Each verdict function reads the per-seed runs of the arms (``result.json``: ``arms[NAME]["runs"]``) and decides
every part of its claim from an interval over seeds (:class:`~atebm.ablate.common.SeedInterval`; between arms the
paired difference, :func:`~atebm.ablate.common.paired_difference`). FD comparisons are made on log FD: its spread
between runs is a factor, so a difference of logs is the log of an FD ratio."""
from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..monitor import STEP_SIZE_TOO_LARGE
from .common import (
    DEFAULT_SEEDS,
    Finding,
    FrechetProbe,
    OODProbe,
    Outcome,
    SeedInterval,
    check_seeds,
    command_line,
    figure,
    finish,
    log_values,
    mnist_data,
    outcome_of,
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

__all__ = ["p0_diversity", "final_k", "progressive_vs_fixed", "step_size", "r1_from_scratch", "P0_ARMS",
           "load_p0", "NOISE_SUITES", "AUROC_FAILED", "ROBUSTNESS_GAP", "COLLAPSED_AUROC", "EQUIVALENT_FD_RATIO"]

#: p_0 arms of the diversity ablation (E Fig. 3, G App. H): training splits, never the OOD suites' test splits.
P0_ARMS: dict[str, str] = {
    "uniform": "uniform?split=train", "gaussian": "gaussian?split=train", "digits": "digits?split=train",
    "lfw": "lfw?split=train", "photos": "photos?split=train", "mixture": "mixture",
}
#: OOD suites that are noise; the others are real images (G's claim: a uniform-noise p_0 rejects only noise).
NOISE_SUITES = ("uniform", "gaussian")
#: A clean AUROC below this on a real-image suite is a failure to reject it (G App. H).
AUROC_FAILED = 0.9
#: The worst-case AUROC advantage of AT over K = 0 that counts as a robustness gap (G Tab. 2).
ROBUSTNESS_GAP = 0.1
#: Below this mean worst-case AUROC the K = 0 model has collapsed (G Tab. 2: near 0 on CIFAR-10).
COLLAPSED_AUROC = 0.5
#: The claim's threshold where it says "no effect" on FD (r1: "not needed and harmless"): FDs within this factor
#: count as equal, and a weight has an effect when the interval of its FD ratio to r1 = 0 lies beyond it.
EQUIVALENT_FD_RATIO = 1.25
#: Per-run quantities every arm reports over seeds besides its own metrics.
_TRAINING_METRICS = ("iterations", "final_k", "train_cpu_s")

Runs = Mapping[str, Sequence[Mapping[str, Any]]]


def _sd(stats: Mapping[str, Any]) -> float:
    """An error bar: the sd over seeds, 0 with one seed."""
    return float(stats["sd"]) if math.isfinite(stats["sd"]) else 0.0


def _validation_fd_figure(runs: Runs) -> Any:
    """Validation FD (log scale) against training CPU seconds (one thread), one colour per arm, a line per seed."""
    fig, ax = figure(6.5, 3.8)
    for i, (name, arm_runs) in enumerate(runs.items()):
        for j, run in enumerate(arm_runs):
            ax.plot([t["train_cpu_s"] for t in run["trace"]], [t["val_fd"] for t in run["trace"]], marker="o",
                    markersize=3, color=f"C{i % 10}", alpha=0.8, label=name if j == 0 else None)
    ax.set_xlabel("training CPU seconds (one thread)")
    ax.set_ylabel("validation FD")
    ax.set_yscale("log")
    ax.legend(fontsize=7)
    return fig


def load_p0(spec: str, n: int, seed: int = 0) -> Tensor:
    """p_0 images (28x28 grey) from a data-source string (:data:`atebm.data.SOURCE_GRAMMAR`); ``"mixture"`` is an
    equal-weight mixture of the other default arms (``n`` draws in all, with replacement from small sets)."""
    from ..data import open_source, parse_source

    if spec == "mixture":
        parts = [load_p0(P0_ARMS[k], n, seed) for k in ("uniform", "gaussian", "digits", "lfw", "photos")]
        g = torch.Generator().manual_seed(seed)
        share = max(1, n // len(parts))
        mixed = torch.cat([x[torch.randint(len(x), (share,), generator=g)] for x in parts])
        return mixed[torch.randperm(len(mixed), generator=g)]
    kind, path, options = parse_source(spec)
    options.setdefault("size", 28)
    options.setdefault("channels", 1)
    if kind in ("uniform", "gaussian", "photos"):
        options.setdefault("n", n)
    try:
        source = open_source(kind, path, **options)
    except FileNotFoundError as err:
        raise FileNotFoundError(f"p0 arm source {spec!r}: {err}") from err
    x = source.x if hasattr(source, "x") else source.load().x
    if x.shape[1:] != (1, 28, 28):
        raise ValueError(f"p0 arm source {spec!r} gives images of shape {tuple(x.shape[1:])}, need (1, 28, 28)")
    return x.float()


def _fd_rows(arms: Mapping[str, Any]) -> list[list[Any]]:
    return [[name, spread_cell(a["fd"]), spread_cell(a["iterations"]), spread_cell(a["final_k"]),
             spread_cell(a["train_cpu_s"])] for name, a in arms.items()]


_FD_COLUMNS = ["arm", "FD (digit features)", "iterations", "final K", "training CPU s"]


def _geometric_mean(values: Sequence[float]) -> float:
    return math.exp(float(np.mean(log_values(values))))


# ------------------------------------------------------------------------------------------ p_0 diversity
def p0_diversity(out: str | Path, *, budget_s: float | None = None, extra_arms: Mapping[str, str] | None = None,
                 arms: Sequence[str] | None = None, smoke: bool = False, seeds: Sequence[int] = DEFAULT_SEEDS
                 ) -> dict[str, Any]:
    """E Fig. 3 and G App. H Tab. 9-12: the ``mnist`` preset trained against each p_0 of :data:`P0_ARMS` (and
    ``extra_arms``: name -> source string, e.g. DSGAN boundary samples ``npz:PATH``), once per seed; generation FD
    and clean / worst-case OOD AUROC per suite. G's claim checked: a uniform-noise p_0 learns to reject only noise;
    E's: the most diverse p_0 (the mixture) generates best."""
    started = time.process_time()
    out = Path(out)
    seeds = check_seeds(seeds)
    scale = resolve_scale(smoke, budget_s, 40.0)
    chosen = {k: P0_ARMS[k] for k in (arms or P0_ARMS)} if not arms or all(a in P0_ARMS for a in arms) else None
    if chosen is None:
        raise ValueError(f"unknown p0 arm(s) {sorted(set(arms or ()) - set(P0_ARMS))}; choose from {list(P0_ARMS)} "
                         "or add NAME=SOURCE arms")
    clash = sorted(set(extra_arms or ()) & set(chosen))
    if clash:
        raise ValueError(f"extra arm names {clash} clash with the default arms; rename them")
    specs = {**chosen, **dict(extra_arms or {})}
    loaded = {name: load_p0(spec, scale.p0_n, seeds[0]) for name, spec in specs.items()}  # fail before training
    data, probe, ood_probe = mnist_data(), FrechetProbe(scale), OODProbe(scale)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in specs}
    for seed in seeds:
        models = {}
        for name, spec in specs.items():
            p0 = loaded.pop(name) if name in loaded else load_p0(spec, scale.p0_n, seed)
            trainer, summary = train_arm({}, data, p0, scale, seed=seed)
            summary.update(seed=seed, p0_size=len(p0), fd=probe.fd(trainer.model))
            runs[name].append(summary)
            models[name] = trainer.model
            say(f"p0-diversity {name} seed {seed}: FD {summary['fd']:.1f}, {summary['iterations']} it, "
                f"K {summary['final_k']}")
        for name, measured in ood_probe.auroc(models, out, seed).items():
            runs[name][-1]["ood"] = measured
    suites = list(ood_probe.sets)
    real = [s for s in suites if s not in NOISE_SUITES]
    noise = [s for s in suites if s in NOISE_SUITES]
    eps_keys = list(runs[next(iter(specs))][0]["ood"]["mean_by_eps"])

    def group(run: Mapping[str, Any], members: list[str], eps: str) -> float:
        return float(np.mean([run["ood"]["per_suite"][s][eps] for s in members])) if members else math.nan

    for arm_runs in runs.values():
        for run in arm_runs:
            run["auroc_noise_suites"] = {e: group(run, noise, e) for e in eps_keys}
            run["auroc_real_suites"] = {e: group(run, real, e) for e in eps_keys}
    results = {name: pool_arm({"p0": specs[name]}, runs[name], ("fd", "ood", "auroc_noise_suites",
                                                                 "auroc_real_suites", *_TRAINING_METRICS))
               for name in specs}
    finding = _p0_finding(runs, eps_keys)
    top = eps_keys[-1]
    rows = [[n, spread_cell(a["fd"]), spread_cell(a["auroc_noise_suites"]["0"]),
             spread_cell(a["auroc_real_suites"]["0"]), spread_cell(a["auroc_noise_suites"][top]),
             spread_cell(a["auroc_real_suites"][top]), spread_cell(a["ood"]["mean_by_eps"][top]),
             spread_cell(a["iterations"]), spread_cell(a["final_k"])] for n, a in results.items()]
    suite_rows = [[n, e, *[spread_cell(a["ood"]["per_suite"][s][e]) for s in suites]]
                  for n, a in results.items() for e in eps_keys]
    fig, axes = figure(11, 3.6, 2)
    names = list(results)
    axes[0].bar(names, [results[n]["fd"]["mean"] for n in names], yerr=[_sd(results[n]["fd"]) for n in names],
                color="#4c72b0", capsize=3)
    axes[0].set_ylabel("FD to training digits (lower = better)")
    axes[0].set_title("generation (mean and sd over seeds)")
    for n in names:
        stats = [results[n]["auroc_real_suites"][e] for e in eps_keys]
        axes[1].errorbar([float(e) for e in eps_keys], [s["mean"] for s in stats], yerr=[_sd(s) for s in stats],
                         marker="o", capsize=2, label=n)
    axes[1].set_xlabel("L2 eps")
    axes[1].set_ylabel("mean AUROC, real-image suites")
    axes[1].set_title("worst-case OOD (photos, lfw, digits, letters, inverted)")
    axes[1].legend(fontsize=7)
    for ax in axes:
        ax.tick_params(labelsize=7)
    command = command_line("p0-diversity", out, budget=None if smoke else scale.budget_s, arm=extra_arms,
                           smoke=smoke, seeds=seeds)
    return finish(out, "p0-diversity", "Ablation: p_0 diversity (E Fig. 3, G App. H)", command=command, scale=scale,
                  seeds=seeds,
                  paper_protocol="E Fig. 3: CIFAR-10 FID for three p_0 sets of growing diversity, same sampler and "
                                 "seeds; G App. H Tab. 9-12: CIFAR-10 (class 0) OOD AUROC of models trained with "
                                 "uniform noise vs real p_0, PGD attack",
                  finding=finding, arms=results, started=started,
                  extra={"generation": probe.protocol(), "ood_protocol": ood_probe.protocol(out, seeds),
                         "suite_groups": {"noise": noise, "real": real}},
                  tables=[("FD and mean AUROC by suite group (eps 0 and the largest eps), mean ± sd over seeds",
                           ["p0", "FD", "AUROC noise eps0", "AUROC real eps0", f"AUROC noise eps{top}",
                            f"AUROC real eps{top}", f"mean AUROC eps{top}", "iterations", "final K"], rows),
                          ("Worst-case AUROC per suite, mean ± sd over seeds", ["p0", "eps", *suites], suite_rows)],
                  figures=[("p0-diversity", fig, "FD per p_0 and worst-case AUROC on real-image suites")])


def _suite_values(arm_runs: Sequence[Mapping[str, Any]], eps: str) -> dict[str, list[float]]:
    """Per OOD suite, the AUROC at ``eps`` of each seed's run."""
    return {s: [run["ood"]["per_suite"][s][eps] for run in arm_runs] for s in arm_runs[0]["ood"]["per_suite"]}


def _p0_finding(runs: Runs, eps_keys: Sequence[str]) -> Finding:
    """The verdict on G App. H and E Fig. 3, three parts. G, from the ``uniform`` arm's clean (eps 0) AUROC on the
    real-image suites (those not in :data:`NOISE_SUITES`): a suite is *failed* when the interval over seeds lies
    below :data:`AUROC_FAILED`, *rejected* when above it, open otherwise; part 1: it fails on some real suite,
    part 2: on more than half of them (each decided once the open suites cannot change it). E Fig. 3, part 3: the
    mixture has a lower FD than every other default arm of :data:`P0_ARMS` (the paired log-FD differences below
    0; one above 0 refutes it; judged only with a mixture and another default arm). :func:`outcome_of` the parts:
    all three "holds", the uniform arm failing on a few suites only "partly", and so on. None without a
    ``uniform`` arm or a real-image suite."""
    claim = ("G App. H: a model trained with uniform-noise p_0 learns to reject only noise (high AUROC on noise, "
             "low on real OOD images); E Fig. 3: a more diverse p_0 gives better generation")
    fd = {name: [run["fd"] for run in arm_runs] for name, arm_runs in runs.items()}
    n = len(next(iter(fd.values())))
    best = min(fd, key=lambda name: _geometric_mean(fd[name]))
    evidence: dict[str, Any] = {"fd": {name: SeedInterval(tuple(v)).to_dict() for name, v in fd.items()},
                                "best_fd_arm": best}
    if "uniform" not in runs:
        return Finding(claim, None, "no uniform arm was run", evidence)
    clean = {s: v for s, v in _suite_values(runs["uniform"], "0").items() if s not in NOISE_SUITES}
    if not clean:
        return Finding(claim, None, "no real-image OOD suite was evaluated", evidence)
    intervals = {s: SeedInterval(tuple(v)) for s, v in clean.items()}
    rejected = {s: i.decide(AUROC_FAILED) for s, i in intervals.items()}
    failed = sorted(s for s, v in rejected.items() if v is False)
    open_suites = sorted(s for s, v in rejected.items() if v is None)
    some_fail = True if failed else None if open_suites else False
    most_fail = (True if len(failed) > len(clean) / 2 else
                 False if len(failed) + len(open_suites) <= len(clean) / 2 else None)
    reference = "photos" if "photos" in runs else None
    ref_clean = _suite_values(runs[reference], "0") if reference else {}
    suites_text = "; ".join(intervals[s].describe(s, AUROC_FAILED, fmt=".2f")
                            + (f" vs {np.mean(ref_clean[s]):.2f} with photo p_0" if reference else "")
                            for s in clean)
    top = eps_keys[-1]
    uniform_top = SeedInterval(tuple(run["auroc_real_suites"][top] for run in runs["uniform"]))
    top_text = uniform_top.describe(f"at eps {top} its mean real-image AUROC is", None, fmt=".2f") + (
        paired_difference(uniform_top.values, [run["auroc_real_suites"][top] for run in runs[reference]])
        .describe(", uniform minus photo p_0", None, fmt=".2f") if reference else "")
    diversity = _diversity_part(fd)
    parts: list[bool | None] = [some_fail, most_fail]
    if diversity is None:
        generation = "E Fig. 3 not judged (needs the mixture and another default p_0 arm)"
    else:
        parts.append(diversity[0])
        generation = (f"the mixture generates best: {verdict_word(diversity[0], 'yes', 'no')} ({diversity[1]})")
        evidence["mixture_fd_ratios"] = diversity[2]
    evidence.update({"uniform_clean_auroc_real_suites": {s: i.to_dict(AUROC_FAILED) for s, i in intervals.items()},
                     "failed_suites": failed, "open_suites": open_suites,
                     "photos_clean_auroc_real_suites": {s: SeedInterval(tuple(v)).to_dict()
                                                        for s, v in ref_clean.items() if s in clean},
                     "fails_on_some": some_fail, "fails_on_most": most_fail,
                     "mixture_best": diversity[0] if diversity else None})
    detail = (f"the uniform-noise p_0 model's clean AUROC on the real-image suites (failed below "
              f"{AUROC_FAILED:g}): {suites_text}; failed on {len(failed)} of {len(clean)} "
              f"({', '.join(failed) or 'none'}), not decided on {len(open_suites)}; {top_text}. Generation: lowest "
              f"geometric-mean FD with p_0 = {best} ({_geometric_mean(fd[best]):.0f}); {generation}" + seeds_clause(n))
    return Finding(claim, outcome_of(parts), detail, evidence)


def _diversity_part(fd: Mapping[str, Sequence[float]]) -> tuple[bool | None, str, dict[str, Any]] | None:
    """E Fig. 3's part of :func:`_p0_finding`: (decided, sentence, evidence), None when it cannot be judged."""
    others = [name for name in fd if name in P0_ARMS and name != "mixture"]
    if "mixture" not in fd or not others:
        return None
    ratios = {name: paired_difference(log_values(fd["mixture"]), log_values(fd[name])) for name in others}
    worse = [name for name, r in ratios.items() if r.decide() is True]
    better = [name for name, r in ratios.items() if r.decide() is False]
    part = False if worse else True if len(better) == len(others) else None
    text = "; ".join(r.describe(f"FD(mixture)/FD({name})", ratio=True, fmt=".2f") for name, r in ratios.items())
    return part, text, {name: r.to_dict(0.0) for name, r in ratios.items()}


# ------------------------------------------------------------------------------------------ final K
def final_k(out: str | Path, *, budget_s: float | None = None, ks: Sequence[int] = (0, 1, 2, 4, 8, 16, 24),
            smoke: bool = False, seeds: Sequence[int] = DEFAULT_SEEDS) -> dict[str, Any]:
    """E Fig. 4, G Tab. 2 and App. K.1: progressive K up to K_max in ``ks`` (K_max = 0 is Outlier Exposure) at
    equal training CPU time, once per seed; FD and the mean worst-case AUROC over the suites at every eps of the
    demo."""
    started = time.process_time()
    out = Path(out)
    seeds = check_seeds(seeds)
    ks = sorted({int(k) for k in ks})
    if not ks or ks[0] < 0:
        raise ValueError(f"ks must be integers >= 0, got {ks}")
    scale = resolve_scale(smoke, budget_s, 30.0)
    data, p0, probe, ood_probe = mnist_data(), photo_p0(scale), FrechetProbe(scale), OODProbe(scale)
    runs: dict[str, list[dict[str, Any]]] = {f"K={k}": [] for k in ks}
    for seed in seeds:
        models = {}
        for k in ks:
            trainer, summary = train_arm({"k_max": k}, data, p0, scale, seed=seed)
            summary.update(seed=seed, fd=probe.fd(trainer.model))
            runs[f"K={k}"].append(summary)
            models[f"K={k}"] = trainer.model
            say(f"final-k {k} seed {seed}: FD {summary['fd']:.1f}, {summary['iterations']} it, "
                f"K {summary['final_k']}")
        for name, measured in ood_probe.auroc(models, out, seed).items():
            runs[name][-1]["ood"] = measured
    eps_keys = list(runs[f"K={ks[0]}"][0]["ood"]["mean_by_eps"])
    results = {f"K={k}": pool_arm({"k_max": k}, runs[f"K={k}"], ("fd", "ood", *_TRAINING_METRICS)) for k in ks}
    finding = _k_finding(runs, ks, eps_keys)
    rows = [[n, spread_cell(a["fd"]), spread_cell(a["iterations"]), spread_cell(a["final_k"]),
             *[spread_cell(a["ood"]["mean_by_eps"][e]) for e in eps_keys]] for n, a in results.items()]
    fig, axes = figure(11, 3.6, 2)
    axes[0].errorbar(ks, [results[f"K={k}"]["fd"]["mean"] for k in ks],
                     yerr=[_sd(results[f"K={k}"]["fd"]) for k in ks], marker="o", capsize=3)
    axes[0].set_xlabel("K_max (progressive 0..K_max)")
    axes[0].set_ylabel("FD (lower = better), mean and sd")
    axes[0].set_yscale("log")
    for k in ks:
        stats = [results[f"K={k}"]["ood"]["mean_by_eps"][e] for e in eps_keys]
        axes[1].errorbar([float(e) for e in eps_keys], [s["mean"] for s in stats], yerr=[_sd(s) for s in stats],
                         marker="o", capsize=2, label=f"K_max={k}")
    axes[1].set_xlabel("L2 eps")
    axes[1].set_ylabel("mean worst-case AUROC over suites")
    axes[1].legend(fontsize=7)
    command = command_line("final-k", out, budget=None if smoke else scale.budget_s, smoke=smoke, seeds=seeds)
    return finish(out, "final-k", "Ablation: final K (E Fig. 4, G Tab. 2)", command=command, scale=scale, seeds=seeds,
                  paper_protocol="E Fig. 4: CIFAR-10 FID for K = 5, 10, 15, 20, 25 (full training each); G Tab. 2: "
                                 "mean worst-case AUROC of K = 0 (OE), 15, 25 models over OOD sets at L2 eps up to 2 "
                                 "(32 px), PGD 200 steps",
                  finding=finding, arms=results, started=started,
                  extra={"generation": probe.protocol(), "ood_protocol": ood_probe.protocol(out, seeds)},
                  tables=[("FD and mean worst-case AUROC over the suites (the G Tab. 2 table at MNIST scale), "
                           "mean ± sd over seeds",
                           ["arm", "FD", "iterations", "final K", *[f"AUROC eps={e}" for e in eps_keys]], rows)],
                  figures=[("final-k", fig, "FD and worst-case AUROC against K_max at equal training CPU time")])


def _spearman(x: Sequence[float], y: Sequence[float]) -> float:
    from scipy.stats import spearmanr

    if len(x) < 3:
        return math.nan
    return float(spearmanr(x, y).statistic)


def _k_finding(runs: Runs, ks: Sequence[int], eps_keys: Sequence[str]) -> Finding:
    """The verdict on E Fig. 4 and G Tab. 2, three parts, each from an interval over seeds: FD falls with K_max
    (the per-seed Spearman rho of K_max and FD over the arms with K > 0 lies below 0; needs three such arms, else
    the part is open), the best AT arm's (highest mean) worst-case AUROC at the largest eps beats K = 0's by more
    than :data:`ROBUSTNESS_GAP` (paired difference above that threshold), and K = 0 collapses (its mean AUROC
    below :data:`COLLAPSED_AUROC` at eps 3, or the largest eps when 3 was not run). :func:`outcome_of` the
    parts; None without a K = 0 arm and one with K > 0."""
    claim = ("E Fig. 4: a larger final K gives better FD; G Tab. 2: K = 0 (Outlier Exposure) collapses under "
             "attack while AT models (K > 0) keep a high worst-case AUROC")
    positive = [k for k in ks if k > 0]
    if 0 not in ks or not positive:
        return Finding(claim, None, "needs K = 0 and some K > 0", {})
    fd = {k: [run["fd"] for run in runs[f"K={k}"]] for k in ks}
    n = len(fd[0])
    top = eps_keys[-1]
    mid = "3" if "3" in eps_keys else top
    auroc = {k: {e: [run["ood"]["mean_by_eps"][e] for run in runs[f"K={k}"]] for e in (mid, top)} for k in ks}
    evidence: dict[str, Any] = {}
    if len(positive) >= 3:
        rho = SeedInterval(tuple(_spearman(positive, [fd[k][i] for k in positive]) for i in range(n)))
        rises = rho.decide(0.0)
        falls = None if rises is None else not rises
        trend = (f"FD falls with K_max: {verdict_word(falls, 'yes', 'no')} ("
                 + rho.describe("Spearman rho of K_max and FD over K > 0", fmt=".2f") + ")")
        evidence["spearman_k_vs_fd_k_gt_0"] = rho.to_dict(0.0)
    else:
        falls, trend = None, f"too few arms with K > 0 for a trend ({len(positive)}, needs 3)"
    best = max(positive, key=lambda k: float(np.mean(auroc[k][top])))
    best_fd = min(positive, key=lambda k: _geometric_mean(fd[k]))
    gap = paired_difference(auroc[best][top], auroc[0][top])
    robust = gap.decide(ROBUSTNESS_GAP)
    oe_mid = SeedInterval(tuple(auroc[0][mid]))
    standing = oe_mid.decide(COLLAPSED_AUROC)
    collapse = None if standing is None else not standing
    evidence.update({f"auroc_eps{top}_K={best}_minus_K=0": gap.to_dict(ROBUSTNESS_GAP),
                     f"auroc_eps{mid}_K=0": oe_mid.to_dict(COLLAPSED_AUROC), "best_at_arm": f"K={best}",
                     "fd_falls_with_k": falls, "robustness_gap": robust, "oe_collapses": collapse})
    detail = (f"{trend}; lowest geometric-mean FD at K_max = {best_fd}. Worst-case mean AUROC at eps {top}, "
              + gap.describe(f"K_max = {best} minus K = 0:", ROBUSTNESS_GAP, fmt=".2f")
              + f" (a robustness gap of more than {ROBUSTNESS_GAP:g}: {verdict_word(robust, 'yes', 'no')}); K = 0 "
              + f"at eps {mid}: " + oe_mid.describe("mean AUROC", COLLAPSED_AUROC, fmt=".2f")
              + f" (collapses below {COLLAPSED_AUROC:g}: {verdict_word(collapse, 'yes', 'no, unlike G Tab. 2')})"
              + seeds_clause(n))
    return Finding(claim, outcome_of([falls, robust, collapse]), detail, evidence)


# ------------------------------------------------------------------------------------------ progressive vs fixed
def progressive_vs_fixed(out: str | Path, *, budget_s: float | None = None, fixed: Sequence[int] = (4, 8, 16),
                         progressive_k: int = 16, checkpoints: int = 6, smoke: bool = False,
                         seeds: Sequence[int] = DEFAULT_SEEDS) -> dict[str, Any]:
    """E Fig. 5: validation FD against training CPU time for fixed K in ``fixed`` and the progressive schedule
    0..``progressive_k`` (the preset's gate), ``checkpoints`` validation points per arm, once per seed."""
    started = time.process_time()
    out = Path(out)
    seeds = check_seeds(seeds)
    scale = resolve_scale(smoke, budget_s, 30.0)
    data, p0 = mnist_data(), photo_p0(scale)
    arms = {f"fixed K={k}": {"k_start": k, "k_max": k} for k in fixed}
    arms[f"progressive 0..{progressive_k}"] = {"k_start": 0, "k_max": progressive_k}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in arms}
    probe = FrechetProbe(scale)
    for seed in seeds:
        for name, overrides in arms.items():
            trainer, summary = train_arm(overrides, data, p0, scale, seed=seed, probe=probe,
                                         trace_every_s=scale.budget_s / checkpoints)
            summary.update(seed=seed, fd=probe.fd(trainer.model))
            runs[name].append(summary)
            say(f"progressive-vs-fixed {name} seed {seed}: FD {summary['fd']:.1f}, trace "
                f"{[round(t['val_fd']) for t in summary['trace']]}")
    results = {name: pool_arm(arms[name], runs[name], ("fd", *_TRAINING_METRICS)) for name in arms}
    finding = _progressive_finding(runs, progressive_k, max(fixed) if fixed else None)
    fig = _validation_fd_figure(runs)
    command = command_line("progressive-vs-fixed", out, budget=None if smoke else scale.budget_s, smoke=smoke,
                           seeds=seeds)
    traces = {name: " | ".join(" ".join(f"{t['val_fd']:.0f}" for t in run["trace"]) for run in runs[name])
              for name in arms}
    return finish(out, "progressive-vs-fixed", "Ablation: progressive vs fixed K (E Fig. 5)", command=command,
                  scale=scale, seeds=seeds,
                  paper_protocol="E Fig. 5: CIFAR-10 FID against training time for fixed K = 5, 25 and progressive "
                                 "K = 0..25",
                  finding=finding, arms=results, started=started, extra={"generation": probe.protocol()},
                  tables=[("Final test FD (mean ± sd over seeds) and the validation trace of each seed",
                           _FD_COLUMNS + ["validation FD trace per seed"],
                           [r + [traces[r[0]]] for r in _fd_rows(results)])],
                  figures=[("progressive-vs-fixed", fig, "validation FD against training CPU time (a line per "
                                                         "seed)")])


def _progressive_finding(runs: Runs, progressive_k: int, largest_fixed: int | None) -> Finding:
    """The verdict on E Fig. 5 from the validation FD traces: per seed, the mean log validation FD of the largest
    fixed K minus the progressive schedule's (the log of the ratio of their geometric means); "holds" when the
    paired interval over seeds lies above 0 (progressive lower), "does not hold" when below 0, None when it
    contains 0 or without a fixed-K arm and a trace of both on every seed. No partial verdict: the claim has one
    part."""
    claim = "E Fig. 5: progressive K converges faster than training with the final K fixed from the start"
    prog = runs[f"progressive 0..{progressive_k}"]
    name = f"fixed K={largest_fixed}" if largest_fixed is not None else None
    if name is None or name not in runs or not all(run["trace"] for run in [*prog, *runs[name]]):
        return Finding(claim, None, "needs a fixed-K arm and validation traces", {})
    fixed = runs[name]

    def mean_log(run: Mapping[str, Any]) -> float:
        return float(np.mean(log_values([t["val_fd"] for t in run["trace"]])))

    ratio = paired_difference([mean_log(run) for run in fixed], [mean_log(run) for run in prog])
    decided = ratio.decide()
    outcome: Outcome | None = None if decided is None else "holds" if decided else "does not hold"
    final = paired_difference(log_values([run["fd"] for run in fixed]), log_values([run["fd"] for run in prog]))
    evidence = {"log_ratio_val_fd_fixed_over_progressive": ratio.to_dict(0.0),
                "log_ratio_final_fd_fixed_over_progressive": final.to_dict()}
    detail = (ratio.describe(f"along training the geometric-mean validation FD of {name} over the progressive "
                             "schedule's is", ratio=True, fmt=".2f")
              + ("" if decided is None else " (progressive lower)" if decided else " (progressive higher)")
              + "; final test FD "
              + final.describe("ratio", None, ratio=True, fmt=".2f") + seeds_clause(ratio.n))
    return Finding(claim, outcome, detail, evidence)


# ------------------------------------------------------------------------------------------ step size
def step_size(out: str | Path, *, budget_s: float | None = None, step_sizes: Sequence[float] = (0.25, 1.0, 8.0),
              smoke: bool = False, seeds: Sequence[int] = DEFAULT_SEEDS) -> dict[str, Any]:
    """G App. I Fig. 7-9: a small, the preset's and a too-large PGD step, once per seed: loss, AUC(p_T vs p_data)
    and AUC(p_0 vs p_data) along training, samples after K = 0, 1, 2 steps (first seed), and the failure monitor's
    verdict on each run."""
    from ..io import save_grid
    from ..monitor import FailureMonitor
    from ..sampling import pgd_trajectory

    started = time.process_time()
    out = Path(out)
    seeds = check_seeds(seeds)
    if not step_sizes or min(step_sizes) <= 0:
        raise ValueError(f"step sizes must be > 0, got {list(step_sizes)}")
    scale = resolve_scale(smoke, budget_s, 30.0)
    data, p0, probe = mnist_data(), photo_p0(scale), FrechetProbe(scale)
    starts = probe.test_seeds[:16]
    runs: dict[str, list[dict[str, Any]]] = {f"step {lam:g}": [] for lam in step_sizes}
    strips = []
    for seed in seeds:
        for lam in step_sizes:
            monitor = FailureMonitor(stop=False, snapshot=False)
            trainer, summary = train_arm({"step_size": float(lam)}, data, p0, scale, callbacks=[monitor], seed=seed)
            if seed == seeds[0]:
                _, trajectory = pgd_trajectory(trainer.model, starts, record=[0, 1, 2], steps=2, step_size=float(lam))
                strips.append(trajectory.transpose(0, 1).reshape(-1, *starts.shape[1:]))
            history = [{k: r[k] for k in ("step", "k", "loss", "auc_adv", "auc_clean") if k in r}
                       for r in trainer.history]
            summary.update(seed=seed, fd=probe.fd(trainer.model), monitor=monitor.summary(), history=history,
                           final=history[-1] if history else None)
            runs[f"step {lam:g}"].append(summary)
            say(f"step-size {lam:g} seed {seed}: monitor {monitor.status}, final {summary['final']}")
    out.mkdir(parents=True, exist_ok=True)
    grid = save_grid(out / "samples_k012.png", torch.cat(strips), nrow=3, scale=2)
    for arm_runs in runs.values():
        for run in arm_runs:
            run["final_values"] = {key: (run["final"] or {}).get(key, math.nan)
                                   for key in ("loss", "auc_adv", "auc_clean")}
    results = {name: pool_arm({"step_size": float(lam)}, runs[name], ("fd", "final_values", *_TRAINING_METRICS))
               for name, lam in zip(runs, step_sizes)}
    finding = _step_finding(runs, step_sizes)
    fig, axes = figure(13, 3.6, 3)
    for i, (name, arm_runs) in enumerate(runs.items()):
        for j, run in enumerate(arm_runs):
            steps = [r["step"] for r in run["history"]]
            for ax, key in zip(axes, ("loss", "auc_adv", "auc_clean")):
                ax.plot(steps, [r[key] for r in run["history"]], color=f"C{i % 10}", alpha=0.8,
                        label=name if j == 0 else None)
    for ax, title in zip(axes, ("training loss", "AUC(p_data vs p_T)", "AUC(p_data vs p_0)")):
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("iteration")
        ax.legend(fontsize=7)
    rows = [[n, spread_cell(a["fd"]), spread_cell(a["iterations"]), spread_cell(a["final_k"]),
             *[spread_cell(a["final_values"][key]) for key in ("loss", "auc_adv", "auc_clean")],
             ", ".join(run["monitor"]["status"] for run in runs[n])] for n, a in results.items()]
    command = command_line("step-size", out, budget=None if smoke else scale.budget_s, smoke=smoke, seeds=seeds)
    return finish(out, "step-size", "Ablation: PGD step size and the failure mode (G App. I)", command=command,
                  scale=scale, seeds=seeds,
                  paper_protocol="G App. I Fig. 7-9: CIFAR-10, progressive K, step sizes around the published one; "
                                 "loss, AUC(p_T vs p_data), AUC(p_0 vs p_data) curves",
                  finding=finding, arms=results, started=started, extra={"generation": probe.protocol()},
                  tables=[("Final log line (mean ± sd over seeds) and the monitor's verdict per seed",
                           ["arm", "FD", "iterations", "final K", "loss", "AUC(data vs p_T)", "AUC(data vs p_0)",
                            "failure monitor per seed"], rows)],
                  figures=[("step-size-curves", fig, "training curves per step size (a line per seed)")],
                  images=[("samples", grid.name, f"samples after K = 0, 1, 2 steps (columns) for 16 held-out seeds, "
                                                 f"models of training seed {seeds[0]}; blocks of rows: "
                                                 + ", ".join(runs))])


def _flag_share(values: Sequence[bool]) -> SeedInterval:
    """The share of seeds on which a yes/no observation was made: the mean of 0/1 values with its interval."""
    return SeedInterval(tuple(float(v) for v in values))


def _step_finding(runs: Runs, step_sizes: Sequence[float]) -> Finding:
    """The verdict on G App. I from the failure monitor of each seed's run: the share of seeds on which it flags
    the largest step (a ``step_size_too_large`` event) and the share on which it calls the preset's step 1
    healthy, each decided against 1/2 by its interval (with three seeds only when all agree). Flagged, step 1
    healthy: "holds"; flagged, step 1 not healthy: "partly"; not flagged: "does not hold" (the failure mode was
    not reproduced, whatever step 1 did); None while the part that decides is open. Without a step-1 arm only the
    largest step is judged."""
    claim = ("G App. I: with a too-large PGD step the loss drops to 0, AUC(p_T vs p_data) -> 1 and AUC(p_0 vs "
             "p_data) falls (the failure monitor's signature), while a suitable step keeps the loss up")
    large = runs[f"step {max(step_sizes):g}"]
    preset = runs.get("step 1")
    flagged_share = _flag_share([any(e["kind"] == STEP_SIZE_TOO_LARGE for e in run["monitor"]["events"])
                                 for run in large])
    flagged = flagged_share.decide(0.5)
    healthy_share = None if preset is None else _flag_share([run["monitor"]["status"] == "healthy" for run in preset])
    healthy = None if healthy_share is None else healthy_share.decide(0.5)
    outcome: Outcome | None
    if flagged is not True:
        outcome = None if flagged is None else "does not hold"
    elif preset is None:
        outcome = "holds"
    else:
        outcome = None if healthy is None else "holds" if healthy else "partly"

    def final(key: str) -> SeedInterval:
        return SeedInterval(tuple((run["final"] or {}).get(key, math.nan) for run in large))

    detail = (f"step {max(step_sizes):g} ends with " + final("loss").describe("loss", None, fmt=".3f") + ", "
              + final("auc_adv").describe("AUC(data vs p_T)", None, fmt=".3f") + ", "
              + final("auc_clean").describe("AUC(data vs p_0)", None, fmt=".3f")
              + f"; monitor per seed: {', '.join(run['monitor']['status'] for run in large)}; "
              + flagged_share.describe("share of seeds flagged as too large", 0.5, fmt=".2f")
              + (f"; preset step 1 per seed: {', '.join(run['monitor']['status'] for run in preset)}, "
                 + healthy_share.describe("share healthy", 0.5, fmt=".2f")
                 if preset is not None and healthy_share is not None else "; no preset step-1 arm")
              + seeds_clause(len(large)))
    return Finding(claim, outcome, detail, {
        "large_flagged_share": flagged_share.to_dict(0.5), "large_flagged": flagged,
        "preset_healthy_share": healthy_share.to_dict(0.5) if healthy_share is not None else None,
        "preset_healthy": healthy})


# ------------------------------------------------------------------------------------------ R1
def r1_from_scratch(out: str | Path, *, budget_s: float | None = None, r1s: Sequence[float] = (0.0, 0.1, 1.0, 10.0),
                    smoke: bool = False, seeds: Sequence[int] = DEFAULT_SEEDS) -> dict[str, Any]:
    """E Sec. 4.4 (Fig. 2): R1 weight in ``r1s`` for a model trained from scratch, once per seed; FD and the
    training curves."""
    started = time.process_time()
    out = Path(out)
    seeds = check_seeds(seeds)
    if not r1s or min(r1s) < 0:
        raise ValueError(f"r1 weights must be >= 0, got {list(r1s)}")
    scale = resolve_scale(smoke, budget_s, 30.0)
    data, p0 = mnist_data(), photo_p0(scale)
    runs: dict[str, list[dict[str, Any]]] = {f"r1={r1:g}": [] for r1 in r1s}
    probe = FrechetProbe(scale)
    for seed in seeds:
        for r1 in r1s:
            trainer, summary = train_arm({"r1": float(r1)}, data, p0, scale, seed=seed, probe=probe,
                                         trace_every_s=scale.budget_s / 3)
            summary.update(seed=seed, fd=probe.fd(trainer.model),
                           final=trainer.history[-1] if trainer.history else None)
            runs[f"r1={r1:g}"].append(summary)
            say(f"r1 {r1:g} seed {seed}: FD {summary['fd']:.1f}")
    results = {name: pool_arm({"r1": float(r1)}, runs[name], ("fd", *_TRAINING_METRICS))
               for name, r1 in zip(runs, r1s)}
    finding = _r1_finding(runs)
    fig = _validation_fd_figure(runs)
    command = command_line("r1", out, budget=None if smoke else scale.budget_s, smoke=smoke, seeds=seeds)
    return finish(out, "r1", "Ablation: R1 from scratch (E Sec. 4.4)", command=command, scale=scale, seeds=seeds,
                  paper_protocol="E Sec. 4.4 / Fig. 2: R1 on p_data, StarGAN-v2 form; published weights 0.01 "
                                 "(CIFAR-10, from scratch) to 100 (256 px, pretrained)",
                  finding=finding, arms=results, started=started, extra={"generation": probe.protocol()},
                  tables=[("FD per R1 weight, mean ± sd over seeds", _FD_COLUMNS, _fd_rows(results))],
                  figures=[("r1", fig, "validation FD against training CPU time per R1 weight (a line per seed)")])


def _r1_finding(runs: Runs) -> Finding:
    """The verdict on "from scratch R1 is not needed and harmless" from the FD of each arm (``"r1=W"``) per seed,
    on the paired differences log FD(W) - log FD(0), against the claim's threshold ``m = log``
    :data:`EQUIVALENT_FD_RATIO`. Two parts: *not needed*: no weight W > 0 lowers the FD by more than that factor
    (every interval above -m; one below -m refutes it); *harmless*: no weight 0 < W <= 1 raises it by more than
    that factor (every interval below m; one above m refutes it; weights above 1 may hurt, not part of the
    claim). :func:`outcome_of` the parts; None without an r1 = 0 arm or another weight."""
    claim = "E Sec. 4.4: R1 is needed with a pretrained backbone; from scratch it is not needed and harmless"
    fd = {name: [run["fd"] for run in arm_runs] for name, arm_runs in runs.items()}
    evidence: dict[str, Any] = {"fd": {name: SeedInterval(tuple(v)).to_dict() for name, v in fd.items()}}
    weights = {name: float(name.partition("=")[2]) for name in fd}
    others = [name for name, w in weights.items() if w > 0]
    if "r1=0" not in fd or not others:
        return Finding(claim, None, "needs an r1 = 0 arm and one with r1 > 0", evidence)
    margin = math.log(EQUIVALENT_FD_RATIO)
    ratios = {name: paired_difference(log_values(fd[name]), log_values(fd["r1=0"])) for name in others}
    small = [name for name in others if weights[name] <= 1]
    not_better = {name: ratios[name].decide(-margin) for name in others}
    not_worse = {name: None if (d := ratios[name].decide(margin)) is None else not d for name in small}
    needed = [name for name, v in not_better.items() if v is False]
    harmful = [name for name, v in not_worse.items() if v is False]
    not_needed = False if needed else True if all(not_better.values()) else None
    harmless = None if not small else False if harmful else True if all(not_worse.values()) else None
    parts = [not_needed] + ([harmless] if small else [])

    def nearest_threshold(name: str) -> float:
        # the bound a weight's interval must clear: +m or -m for 0 < W <= 1 (whichever its mean is nearer), -m above
        return margin if weights[name] <= 1 and ratios[name].mean >= 0 else -margin

    listing = "; ".join(ratios[name].describe(f"FD({name})/FD(r1=0)", nearest_threshold(name), ratio=True,
                                              fmt=".2f") for name in others)
    evidence.update({"log_fd_ratio_to_r1_0": {name: r.to_dict(nearest_threshold(name)) for name, r in ratios.items()},
                     "equivalent_fd_ratio": EQUIVALENT_FD_RATIO, "needed": needed, "harmful": harmful,
                     "not_needed": not_needed, "harmless": harmless})
    detail = ("geometric-mean FD " + ", ".join(f"{name}: {_geometric_mean(v):.0f}" for name, v in fd.items())
              + f"; {listing}. FDs within a factor {EQUIVALENT_FD_RATIO:g} count as equal. R1 needed: "
              + verdict_word(not_needed, "no (no weight lowers the FD by more)",
                             f"yes ({', '.join(needed)} lower the FD by more)")
              + ("; harmful at weights <= 1: " + verdict_word(harmless, "no (none raises the FD by more)",
                                                              f"yes ({', '.join(harmful)} raise it by more)")
                 if small else "; no weight <= 1 was run")
              + seeds_clause(len(fd["r1=0"])))
    return Finding(claim, outcome_of(parts), detail, evidence)
