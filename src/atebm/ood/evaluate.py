"""Clean and worst-case OOD evaluation of one or more score models (METHOD Sec. 3; E Tab. 4, supp. Tab. 8;
G Sec. 5, Tab. 2 and App. J).

For every model, OOD set and radius eps in ``config.eps`` (eps = 0 is the clean set) the OOD inputs are
replaced by their worst case (:func:`atebm.ood.worst_case`: the highest score inside the ball) and scored against
the clean in-distribution inputs: AUROC (in-distribution positive), AUPR-in, AUPR-out and FPR@95%TPR, plus the
AUROC each attacker reaches alone. Radii are processed in increasing order and each attacker continues from its
own worst case at the previous radius (a point inside the larger ball), which makes short attacks strong at
large eps. The result records the first eps at which each model's AUROC falls below ``config.threshold``.

Computing (:func:`compute_ood`), writing (:func:`write_ood`), the text table (:func:`format_table`) and the
report sections (:func:`add_to_report`) are separate; :func:`evaluate` runs them in turn. The protocol's
defaults live in :class:`OODEvalConfig` alone.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import Config, at_least, each, in_range, non_empty, one_of, setting
from ..metrics.detection import detection_metrics, roc_points
from ..sampling import ScoreFn, check_inputs
from .attacks import AttackConfig, attack_protocol, checked_scores, worst_case

__all__ = ["OODEvalConfig", "OODEvaluation", "evaluate", "compute_ood", "write_ood", "format_table",
           "add_to_report", "auroc_rows", "attacker_rows", "compare_models", "eps_key", "resolve_config"]


def _sorted_radii(eps: Any) -> Any:
    """Radii in increasing order without repeats (the evaluation continues each attack from the previous radius);
    anything that is not a list of numbers is left to the type check."""
    if isinstance(eps, (list, tuple)) and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in eps):
        return tuple(sorted({float(e) for e in eps}))
    return eps


@dataclass(frozen=True)
class OODEvalConfig(Config):
    """The evaluation protocol of ``atebm eval-ood``, :func:`atebm.ood.run_eval_ood`, :func:`evaluate` and the
    demo; the one place its defaults live (the command's option defaults are read from here).

    ``eps``: radii (0 = clean; the defaults are L2 radii for 28x28 images in [0, 1]); ``norm``: ``"l2"`` or
    ``"linf"``; ``n``: OOD samples per set and ``n_in`` in-distribution samples (the pipeline draws them);
    ``in_dist``: the in-distribution set (a named dataset, whose test split is used, a data-source string or a
    path); ``suites``: embedded OOD sets (``None``: all of :data:`atebm.ood.EMBEDDED_SUITES`); ``threshold``:
    report the first eps where AUROC falls below it; ``seed``: for sets and attacks; ``attack``: the worst-case
    search (:class:`AttackConfig`, which also holds the batch size).
    """

    eps: tuple[float, ...] = setting((0.0, 1.0, 2.0, 3.0, 5.0, 8.0), non_empty(),
                                     each(in_range(0, math.inf, hi_open=True)), convert=_sorted_radii)
    norm: str = setting("l2", one_of("l2", "linf"))
    n: int = setting(128, at_least(1))
    n_in: int = setting(500, at_least(1))
    in_dist: str = "mnist"
    suites: tuple[str, ...] | None = None
    threshold: float = setting(0.9, in_range(0, 1, lo_open=True, hi_open=True))
    seed: int = 0
    attack: AttackConfig = setting(factory=AttackConfig)

    def replace(self, **changes: Any) -> OODEvalConfig:
        """A copy with ``changes`` applied; names of :class:`AttackConfig` settings (``pgd_steps=...``) change
        the nested attack config."""
        attack_names = {f.name for f in fields(AttackConfig)}
        self.check_keys(changes, also=attack_names)
        attack_changes = {k: changes.pop(k) for k in list(changes) if k in attack_names}
        if attack_changes:
            changes["attack"] = changes.get("attack", self.attack).replace(**attack_changes)
        return super().replace(**changes)


@dataclass
class OODEvaluation:
    """What :func:`compute_ood` returns. ``result``: the JSON-able numbers and protocol (``ood.json``);
    ``scores``: every per-sample score by ``model/set/eps=E[/attacker]`` (``ood_scores.npz``); ``plots``: per model
    the in-distribution scores, clean and worst-case scores per set (at ``result["protocol"]["roc_eps"]``) and
    example pairs (clean, worst case) for the report's figures."""

    result: dict[str, Any]
    scores: dict[str, np.ndarray]
    plots: dict[str, dict[str, Any]]


def eps_key(eps: float) -> str:
    """The JSON key of a radius: ``0``, ``1``, ``0.5``, ..."""
    return f"{float(eps):g}"


def _checked_images(x: Any, what: str) -> Tensor:
    check_inputs(x, what=what)
    if len(x) < 2:
        raise ValueError(f"{what} must hold at least 2 inputs, got shape {tuple(x.shape)}")
    return x.detach().float().cpu()


def _first_below(auroc_by_eps: Mapping[str, float], eps_list: Sequence[float], threshold: float) -> float | None:
    for eps in eps_list:
        if auroc_by_eps[eps_key(eps)] < threshold:
            return float(eps)
    return None


def resolve_config(config: OODEvalConfig | None, overrides: Mapping[str, Any]) -> OODEvalConfig:
    """``config`` (default :class:`OODEvalConfig`) with ``overrides`` applied; a wrong type is a TypeError."""
    if config is not None and not isinstance(config, OODEvalConfig):
        raise TypeError(f"config must be an OODEvalConfig, got {type(config).__name__}")
    config = config or OODEvalConfig()
    return config.replace(**overrides) if overrides else config


def compute_ood(models: Mapping[str, ScoreFn], in_dist: Tensor, suites: Mapping[str, Tensor],
                config: OODEvalConfig | None = None, *, roc_eps: float | None = None, examples: int = 8,
                protocol_extra: Mapping[str, Any] | None = None, device: str | torch.device | None = None,
                **overrides: Any) -> OODEvaluation:
    """Evaluates every model on every OOD set at every radius (see the module docstring); writes nothing.

    ``models`` maps a display name to a score model; ``in_dist`` holds clean in-distribution inputs (the
    positives), ``suites`` OOD sets by name, all float tensors in [0, 1] of one shape. ``config`` (default
    :class:`OODEvalConfig`) sets the protocol; ``overrides`` change single settings of it (``eps=(0, 2)``,
    ``pgd_steps=(20,)``, ...). ``roc_eps`` picks the radius of the worst-case ROC curves and histograms (default 3
    when attacked, else the largest eps); ``examples`` example pairs are kept per set.
    """
    config = resolve_config(config, overrides)
    if not models:
        raise ValueError("models is empty: pass {'name': score_model, ...}")
    if not suites:
        raise ValueError("suites is empty: pass {'set name': images, ...}")
    in_x = _checked_images(in_dist, "in_dist")
    for model_name, model in models.items():
        check_inputs(in_x, what=f"in_dist (for model {model_name!r})", score=model)
    sets = {name: _checked_images(x, f"OOD set {name!r}") for name, x in suites.items()}
    for name, x in sets.items():
        if x.shape[1:] != in_x.shape[1:]:
            raise ValueError(f"OOD set {name!r} has inputs of shape {tuple(x.shape[1:])}, the in-distribution "
                             f"set {tuple(in_x.shape[1:])}")
    eps_values = list(config.eps)
    attacked = [e for e in eps_values if e > 0]
    if roc_eps is None:
        roc_eps = 3.0 if 3.0 in attacked else (attacked[-1] if attacked else 0.0)
    elif float(roc_eps) not in eps_values:
        raise ValueError(f"roc_eps={roc_eps} is not in eps {eps_values}")
    roc_eps = float(roc_eps)
    attack = config.attack

    protocol: dict[str, Any] = {
        "score_convention": "higher score = more in-distribution; in-distribution samples are the positives",
        "metrics": "AUROC, AUPR-in, AUPR-out, FPR@95%TPR (scikit-learn)",
        "norm": config.norm, "eps": eps_values, "threshold": config.threshold, "n_in": len(in_x),
        "n_ood": {name: len(x) for name, x in sets.items()}, "input_shape": list(in_x.shape[1:]),
        "attack": attack.to_dict(),
        "attack_by_eps": {eps_key(e): attack_protocol(attack, config.norm, e) for e in attacked},
        "warm_start": "each attacker starts at eps_j from its own worst case at eps_(j-1)",
        "early_stop": ("samples scoring above the highest in-distribution score are not attacked further (ranking "
                       "metrics exact; mean worst-case scores are lower bounds)") if attack.early_stop else "off",
        "failed_rows": {name: 0 for name in attack.attackers},
        "failed_rows_note": "rows an attacker returned with NaN/inf values; those samples kept their clean or "
                            "best-so-far input",
        "nan_proposals": {name: 0 for name in attack.attackers if name != "pgd"},
        "seed": config.seed, "roc_eps": roc_eps,
    }
    protocol.update(dict(protocol_extra or {}))
    result: dict[str, Any] = {"format": "atebm-ood", "version": 1, "protocol": protocol, "models": {}}
    scores: dict[str, np.ndarray] = {}
    plots: dict[str, dict[str, Any]] = {}

    for model_name, model in models.items():
        started = time.perf_counter()
        in_scores = checked_scores(model, in_x, attack.batch_size, f"the in-distribution inputs ({model_name!r})")
        stop_above = float(in_scores.max()) if attack.early_stop else None
        scores[f"{model_name}/in"] = in_scores.numpy()
        model_out: dict[str, Any] = {"in_scores": {"mean": float(in_scores.mean()), "std": float(in_scores.std()),
                                                   "max": float(in_scores.max())}, "sets": {}}
        plot_data: dict[str, Any] = {"in": in_scores.numpy(), "clean": {}, "worst": {}, "examples": {}}
        for set_index, (set_name, x) in enumerate(sets.items()):
            clean = checked_scores(model, x, attack.batch_size, f"OOD set {set_name!r} ({model_name!r})")
            scores[f"{model_name}/{set_name}/eps=0"] = clean.numpy()
            entry: dict[str, Any] = {"n": len(x), "clean": detection_metrics(in_scores, clean),
                                     "clean_score_mean": float(clean.mean()), "worst_case": {}}
            auroc_by_eps = {eps_key(0): entry["clean"]["auroc"]} if 0.0 in eps_values else {}
            plot_data["clean"][set_name] = clean.numpy()
            if roc_eps == 0.0:
                plot_data["worst"][set_name] = clean.numpy()
            previous: dict[str, Tensor] | None = None
            for eps in attacked:
                wc = worst_case(model, x, norm=config.norm, eps=eps, config=attack, start=previous,
                                stop_above=stop_above, seed=config.seed + 1000 * set_index, device=device)
                previous = wc.x_by_attacker
                metrics: dict[str, Any] = detection_metrics(in_scores, wc.scores)
                metrics["by_attacker"] = {name: detection_metrics(in_scores, s)["auroc"]
                                          for name, s in wc.by_attacker.items()}
                metrics["score_mean"] = float(wc.scores.mean())
                metrics["mean_l2_change"] = float((wc.x - x).flatten(1).norm(dim=1).mean())
                metrics["failed_rows"] = dict(wc.failed_rows)
                metrics["nan_proposals"] = dict(wc.nan_proposals)
                for name, count in wc.failed_rows.items():
                    protocol["failed_rows"][name] += count
                for name, count in wc.nan_proposals.items():
                    protocol["nan_proposals"][name] += count
                entry["worst_case"][eps_key(eps)] = metrics
                auroc_by_eps[eps_key(eps)] = metrics["auroc"]
                scores[f"{model_name}/{set_name}/eps={eps_key(eps)}"] = wc.scores.numpy()
                for name, s in wc.by_attacker.items():
                    scores[f"{model_name}/{set_name}/eps={eps_key(eps)}/{name}"] = s.numpy()
                if eps == roc_eps:
                    plot_data["worst"][set_name] = wc.scores.numpy()
                    plot_data["examples"][set_name] = (x[:examples], wc.x[:examples])
            entry["auroc_by_eps"] = auroc_by_eps
            entry["eps_below_threshold"] = _first_below(auroc_by_eps, eps_values, config.threshold)
            model_out["sets"][set_name] = entry
        mean_by_eps = {k: float(np.mean([e["auroc_by_eps"][k] for e in model_out["sets"].values()]))
                       for k in next(iter(model_out["sets"].values()))["auroc_by_eps"]}
        model_out["mean_auroc_by_eps"] = mean_by_eps
        model_out["eps_below_threshold"] = {s: e["eps_below_threshold"] for s, e in model_out["sets"].items()}
        model_out["mean_eps_below_threshold"] = _first_below(mean_by_eps, eps_values, config.threshold)
        model_out["seconds"] = time.perf_counter() - started
        result["models"][model_name] = model_out
        plots[model_name] = plot_data
    return OODEvaluation(result=result, scores=scores, plots=plots)


def write_ood(out_dir: str | Path, evaluation: OODEvaluation) -> None:
    """Writes ``ood.json`` (numbers and protocol) and ``ood_scores.npz`` (every per-sample score)."""
    from ..training import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "ood.json", evaluation.result)
    savez: Any = np.savez_compressed                 # numpy's stubs do not type **arrays
    savez(out / "ood_scores.npz", **evaluation.scores)


def evaluate(models: Mapping[str, ScoreFn], in_dist: Tensor, suites: Mapping[str, Tensor],
             config: OODEvalConfig | None = None, *, out_dir: str | Path | None = None, report: Any = None,
             verbose: bool = True, roc_eps: float | None = None, examples: int = 8,
             protocol_extra: Mapping[str, Any] | None = None, device: str | torch.device | None = None,
             **overrides: Any) -> dict[str, Any]:
    """:func:`compute_ood`, then: with ``out_dir`` :func:`write_ood`; with ``verbose`` print :func:`format_table`;
    with ``report`` (a :class:`atebm.report.Report` or a run folder) :func:`add_to_report` (tables, ROC curves and
    score histograms, worst-case example grids; saved). Returns the JSON-able result (what ``ood.json`` holds)."""
    evaluation = compute_ood(models, in_dist, suites, config, roc_eps=roc_eps, examples=examples,
                             protocol_extra=protocol_extra, device=device, **overrides)
    if out_dir is not None:
        write_ood(out_dir, evaluation)
    if verbose:
        print(format_table(evaluation.result))
    if report is not None:
        add_to_report(report, evaluation.result, evaluation.plots)
    return evaluation.result


# ------------------------------------------------------------------------------------------------ rendering
def auroc_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    """Rows of the worst-case AUROC table, shared by the text table and the report: ``[OOD set, model, AUROC at
    each eps (None where not measured), first eps below the threshold or "never"]``, the sets, then ``mean``."""
    eps_values = result["protocol"]["eps"]
    models = result["models"]
    rows = []
    for set_name in list(next(iter(models.values()))["sets"]) + ["mean"]:
        for model_name, model in models.items():
            if set_name == "mean":
                by_eps, below = model["mean_auroc_by_eps"], model["mean_eps_below_threshold"]
            else:
                by_eps = model["sets"][set_name]["auroc_by_eps"]
                below = model["sets"][set_name]["eps_below_threshold"]
            rows.append([set_name, model_name] + [by_eps.get(eps_key(e)) for e in eps_values] +
                        ["never" if below is None else eps_key(below)])
    return rows


def attacker_rows(result: Mapping[str, Any]) -> list[list[Any]]:
    """Rows of the per-attacker table: ``[model, OOD set, attacker or "worst", AUROC at each attacked eps]``."""
    attacked = [e for e in result["protocol"]["eps"] if e > 0]
    attackers = list(result["protocol"]["attack"]["attackers"])
    rows = []
    for model_name, model in result["models"].items():
        for set_name, entry in model["sets"].items():
            for who in attackers + ["worst"]:
                cells = [entry["worst_case"][eps_key(e)]["auroc"] if who == "worst"
                         else entry["worst_case"][eps_key(e)]["by_attacker"][who] for e in attacked]
                rows.append([model_name, set_name, who] + cells)
    return rows


def _cell(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _text_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [[c if isinstance(c, str) else _cell(c) for c in row] for row in rows]
    widths = [max(len(columns[i]), *(len(r[i]) for r in cells)) for i in range(len(columns))]
    header = "  ".join(f"{c:<{w}}" for c, w in zip(columns, widths))
    return [header, "-" * len(header)] + ["  ".join(f"{c:<{w}}" for c, w in zip(r, widths)) for r in cells]


def _auroc_columns(result: Mapping[str, Any]) -> list[str]:
    protocol = result["protocol"]
    return (["OOD set", "model"] + [("clean" if e == 0 else f"eps={eps_key(e)}") for e in protocol["eps"]]
            + [f"AUROC < {protocol['threshold']:g} from eps"])


def _attacker_columns(result: Mapping[str, Any]) -> list[str]:
    return ["model", "OOD set", "attacker"] + [f"eps={eps_key(e)}" for e in result["protocol"]["eps"] if e > 0]


def format_table(result: Mapping[str, Any]) -> str:
    """The worst-case AUROC table, each attacker's AUROC, and the protocol, as plain text."""
    protocol = result["protocol"]
    lines = [f"Worst-case OOD detection AUROC ({protocol['norm'].upper()} ball; in-distribution positive)"]
    lines += _text_table(_auroc_columns(result), auroc_rows(result))
    if any(e > 0 for e in protocol["eps"]):
        lines += ["", "AUROC per attacker (worst = per-sample best of all):"]
        lines += _text_table(_attacker_columns(result), attacker_rows(result))
    lines += ["", "Protocol: " + _protocol_line(protocol)]
    return "\n".join(lines)


def _protocol_line(protocol: Mapping[str, Any]) -> str:
    attack = protocol["attack"]
    parts = [f"n_in={protocol['n_in']}", "n_ood=" + ",".join(f"{k}:{v}" for k, v in protocol["n_ood"].items()),
             f"norm={protocol['norm']}", f"seed={protocol['seed']}"]
    some: Mapping[str, Any] = next(iter(protocol["attack_by_eps"].values()), {})
    if "pgd" in attack["attackers"]:
        sizes = ["{:g}*eps/steps".format(attack["pgd_step_factor"]) if s is None else f"{s:g}"
                 for s in attack["pgd_step_sizes"]]
        parts.append(f"PGD (atebm.pgd) steps {list(attack['pgd_steps'])} x step sizes [{', '.join(sizes)}], "
                     f"{1 + attack['pgd_random_restarts']} run(s) per grid point")
    if "apgd" in attack["attackers"]:
        impl = some.get("apgd", {}).get("implementation", "ART AutoProjectedGradientDescent")
        parts.append(f"APGD ({impl}) {attack['apgd_steps']} steps, {attack['apgd_restarts']} restart(s), "
                     f"loss {attack['apgd_loss']}")
    if "square" in attack["attackers"]:
        impl = some.get("square", {}).get("implementation", "atebm.attacks.square")
        parts.append(f"Square ({impl}) {attack['square_steps']} iterations, {attack['square_restarts']} "
                     f"restart(s), p_init {attack['square_p_init']:g}")
    failed = {k: v for k, v in protocol.get("failed_rows", {}).items() if v}
    parts.append("failed (NaN) rows: " + (", ".join(f"{k} {v}" for k, v in failed.items()) if failed else "none"))
    refused = {k: v for k, v in protocol.get("nan_proposals", {}).items() if v}
    if refused:
        parts.append("NaN proposals refused: " + ", ".join(f"{k} {v}" for k, v in refused.items()))
    parts.append(f"warm start across eps; early stop {'on' if attack['early_stop'] else 'off'}")
    for key in ("in_distribution", "input_geometry", "feature_note", "suites"):
        if key in protocol:
            value = protocol[key]
            parts.append(f"{key}={json.dumps(value) if not isinstance(value, str) else value}")
    return "; ".join(parts)


def compare_models(result: Mapping[str, Any], better: str, baseline: str, min_eps: float = 3.0) -> dict[str, Any]:
    """Whether ``better`` has a higher worst-case AUROC than ``baseline`` on every set at every eps >= ``min_eps``
    (the pattern of G Tab. 2 / E Tab. 4: adversarially trained vs Outlier Exposure)."""
    models = result["models"]
    for name in (better, baseline):
        if name not in models:
            raise ValueError(f"no model {name!r} in the result (models: {list(models)})")
    eps_values = [e for e in result["protocol"]["eps"] if e >= min_eps]
    per_set = {}
    for set_name, entry in models[better]["sets"].items():
        other = models[baseline]["sets"][set_name]["auroc_by_eps"]
        per_set[set_name] = all(entry["auroc_by_eps"][eps_key(e)] > other[eps_key(e)] for e in eps_values)
    return {"eps": eps_values, "per_set": per_set, "all": all(per_set.values()) and bool(eps_values)}


def add_to_report(report: Any, result: Mapping[str, Any], plots: Mapping[str, Any] | None = None,
                  prefix: str = "ood") -> Any:
    """Adds the OOD tables (worst-case AUROC, per attacker, clean metrics) with their protocol and, given the
    ``plots`` of :func:`compute_ood`, ROC curves, score histograms and worst-case example grids; saves it."""
    from ..report import Report

    if not isinstance(report, Report):
        report = Report.open(report)
    protocol = result["protocol"]
    report.add_table(f"{prefix}/auroc", f"Worst-case OOD detection AUROC ({protocol['norm'].upper()})",
                     _auroc_columns(result), auroc_rows(result), protocol={"summary": _protocol_line(protocol)},
                     note="AUROC of the score, in-distribution positive; each OOD input replaced by the highest-"
                          "scoring input in the eps-ball (per sample best of all attackers).")
    attacked = [e for e in protocol["eps"] if e > 0]
    if attacked:
        report.add_table(f"{prefix}/attackers", "Worst-case AUROC per attacker", _attacker_columns(result),
                         attacker_rows(result), protocol=protocol["attack_by_eps"][eps_key(attacked[-1])],
                         note="protocol shown for the largest eps; the PGD step sizes scale with eps.")
    rows = []
    for model_name, model in result["models"].items():
        for set_name, entry in model["sets"].items():
            c = entry["clean"]
            rows.append([model_name, set_name, c["auroc"], c["aupr_in"], c["aupr_out"], c["fpr95"], c["n_in"],
                         c["n_out"]])
    report.add_table(f"{prefix}/clean", "Clean OOD detection",
                     ["model", "OOD set", "AUROC", "AUPR-in", "AUPR-out", "FPR@95%TPR", "n in", "n OOD"], rows,
                     protocol={"metrics": protocol["metrics"], "convention": protocol["score_convention"]})
    if plots:
        _add_figures(report, result, plots, prefix)
    report.save()
    return report


def _add_figures(report: Any, result: Mapping[str, Any], plots: Mapping[str, Any], prefix: str) -> None:
    import matplotlib.pyplot as plt

    from ..io import save_grid
    from ..report.plots import plot_histograms, plot_roc

    roc_eps = result["protocol"]["roc_eps"]
    norm = result["protocol"]["norm"].upper()
    for model_name, data in plots.items():
        fig, axes = plt.subplots(2, 2, figsize=(10, 8.5))
        for column, (kind, label) in enumerate((("clean", "clean"), ("worst", f"worst case, {norm} eps={roc_eps:g}"))):
            groups = data[kind]
            if not groups:
                continue
            curves = {name: roc_points(data["in"], scores) for name, scores in groups.items()}
            plot_roc(axes[0, column], curves, f"{model_name}: ROC, {label}")
            plot_histograms(axes[1, column], data["in"], groups, f"{model_name}: scores, {label}")
        fig.tight_layout()
        safe = "".join(ch if ch.isalnum() else "_" for ch in model_name)
        report.add_figure(f"{prefix}/roc/{safe}", f"ROC curves and score histograms: {model_name}", fig,
                          caption=f"Left: clean OOD inputs; right: worst case at {norm} eps={roc_eps:g}. Legend: "
                                  "AUROC per set.")
        if data["examples"]:
            rows = []
            for clean_x, worst_x in data["examples"].values():
                rows += [clean_x, worst_x]
            k = max(len(r) for r in rows)
            path = report.run_dir / "report_files" / f"{prefix}_examples_{safe}.png"
            grid = torch.cat([torch.cat([r, torch.full((k - len(r), *r.shape[1:]), 1.0)]) for r in rows])
            if grid.dim() == 4:
                save_grid(path, grid, nrow=k, scale=2)
                report.add_image(f"{prefix}/examples/{safe}", f"Worst-case OOD inputs: {model_name}", path.resolve(),
                                 caption=f"Row pairs per OOD set ({', '.join(data['examples'])}): clean inputs, "
                                         f"then their worst case at {norm} eps={roc_eps:g}.")
