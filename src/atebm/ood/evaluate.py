"""Clean and worst-case OOD evaluation of one or more score models (METHOD Sec. 3; E Tab. 4, supp. Tab. 8;
G Sec. 5, Tab. 2 and App. J).

For every model, OOD set and radius eps in ``eps_list`` (eps = 0 is the clean set) the OOD inputs are replaced
by their worst case (:func:`atebm.ood.worst_case`: the highest score inside the ball) and scored against the
clean in-distribution inputs: AUROC (in-distribution positive), AUPR-in, AUPR-out and FPR@95%TPR, plus the
AUROC each attacker reaches alone. Radii are processed in increasing order and each attacker continues from
its own worst case at the previous radius (a point inside the larger ball), which makes short attacks strong
at large eps. The result records the first eps at which each model's AUROC falls below ``threshold``.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

from ..metrics.detection import detection_metrics, roc_points
from .attacks import AttackConfig, attack_protocol, batched_scores, worst_case

__all__ = ["evaluate", "format_table", "add_to_report", "compare_models", "eps_key"]

ScoreFn = Callable[[Tensor], Tensor]


def eps_key(eps: float) -> str:
    """The JSON key of a radius: ``0``, ``1``, ``0.5``, ..."""
    return f"{float(eps):g}"


def _check_images(x: Tensor, what: str) -> Tensor:
    x = torch.as_tensor(x).detach().float().cpu()
    if x.dim() < 2 or len(x) < 2:
        raise ValueError(f"{what} must be a batch of at least 2 inputs, got shape {tuple(x.shape)}")
    if float(x.min()) < 0 or float(x.max()) > 1:
        raise ValueError(f"{what} must lie in [0, 1]")
    return x


def _first_below(auroc_by_eps: Mapping[str, float], eps_list: Sequence[float], threshold: float) -> float | None:
    for eps in eps_list:
        if auroc_by_eps[eps_key(eps)] < threshold:
            return float(eps)
    return None


def evaluate(models: Mapping[str, ScoreFn], in_dist: Tensor, suites: Mapping[str, Tensor],
             eps_list: Sequence[float] = (0, 1, 2, 3, 5, 8), *, norm: str = "l2", config: AttackConfig | None = None,
             threshold: float = 0.9, seed: int = 0, out_dir: str | Path | None = None, report: Any = None,
             roc_eps: float | None = None, examples: int = 8, verbose: bool = True,
             protocol_extra: Mapping[str, Any] | None = None, device: str | torch.device | None = None
             ) -> dict[str, Any]:
    """Evaluates every model on every OOD set at every radius; returns a JSON-able dict (see module docstring).

    ``models`` maps a display name to a score model; ``in_dist`` holds clean in-distribution inputs (the
    positives), ``suites`` OOD sets by name. With ``out_dir`` it writes ``ood.json`` (numbers and protocol) and
    ``ood_scores.npz`` (every per-sample score); with ``report`` (a :class:`atebm.report.Report` or a run
    folder) it adds the tables, ROC curves and score histograms (clean and at ``roc_eps``, default 3 when in
    the list, else the largest eps) and worst-case example grids, and saves the report. ``verbose`` prints the
    table with its protocol.
    """
    if not models:
        raise ValueError("models is empty: pass {'name': score_model, ...}")
    if not suites:
        raise ValueError("suites is empty: pass {'set name': images, ...}")
    eps_values = sorted({float(e) for e in eps_list})
    if not eps_values or eps_values[0] < 0 or not all(math.isfinite(e) for e in eps_values):
        raise ValueError(f"eps_list must hold finite radii >= 0, got {list(eps_list)}")
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    config = config or AttackConfig()
    in_x = _check_images(in_dist, "in_dist")
    sets = {name: _check_images(x, f"OOD set {name!r}") for name, x in suites.items()}
    for name, x in sets.items():
        if x.shape[1:] != in_x.shape[1:]:
            raise ValueError(f"OOD set {name!r} has inputs of shape {tuple(x.shape[1:])}, the in-distribution "
                             f"set {tuple(in_x.shape[1:])}")
    attacked = [e for e in eps_values if e > 0]
    if roc_eps is None:
        roc_eps = 3.0 if 3.0 in attacked else (attacked[-1] if attacked else 0.0)
    elif float(roc_eps) not in eps_values:
        raise ValueError(f"roc_eps={roc_eps} is not in eps_list {eps_values}")
    roc_eps = float(roc_eps)

    protocol = {
        "score_convention": "higher score = more in-distribution; in-distribution samples are the positives",
        "metrics": "AUROC, AUPR-in, AUPR-out, FPR@95%TPR (scikit-learn)",
        "norm": norm, "eps": eps_values, "threshold": threshold, "n_in": len(in_x),
        "n_ood": {name: len(x) for name, x in sets.items()}, "input_shape": list(in_x.shape[1:]),
        "attack": config.to_dict(), "attack_by_eps": {eps_key(e): attack_protocol(config, norm, e) for e in attacked},
        "warm_start": "each attacker starts at eps_j from its own worst case at eps_(j-1)",
        "early_stop": ("samples scoring above the highest in-distribution score are not attacked further (ranking "
                       "metrics exact; mean worst-case scores are lower bounds)") if config.early_stop else "off",
        "seed": seed, "roc_eps": roc_eps,
    }
    protocol.update(dict(protocol_extra or {}))
    result: dict[str, Any] = {"format": "atebm-ood", "version": 1, "protocol": protocol, "models": {}}
    arrays: dict[str, np.ndarray] = {}
    plots: dict[str, Any] = {}

    for model_name, model in models.items():
        started = time.perf_counter()
        in_scores = batched_scores(model, in_x, config.batch_size)
        if not torch.isfinite(in_scores).all():
            raise ValueError(f"model {model_name!r} gives non-finite scores on the in-distribution inputs")
        stop_above = float(in_scores.max()) if config.early_stop else None
        arrays[f"{model_name}/in"] = in_scores.numpy()
        model_out: dict[str, Any] = {"in_scores": {"mean": float(in_scores.mean()), "std": float(in_scores.std()),
                                                   "max": float(in_scores.max())}, "sets": {}}
        plot_data = {"in": in_scores.numpy(), "clean": {}, "worst": {}, "examples": {}}
        for set_index, (set_name, x) in enumerate(sets.items()):
            clean = batched_scores(model, x, config.batch_size)
            arrays[f"{model_name}/{set_name}/eps=0"] = clean.numpy()
            entry: dict[str, Any] = {"n": len(x), "clean": detection_metrics(in_scores, clean),
                                     "clean_score_mean": float(clean.mean()), "worst_case": {}}
            auroc_by_eps = {eps_key(0): entry["clean"]["auroc"]} if 0.0 in eps_values else {}
            plot_data["clean"][set_name] = clean.numpy()
            if roc_eps == 0.0:
                plot_data["worst"][set_name] = clean.numpy()
            previous: dict[str, Tensor] | None = None
            for eps in attacked:
                wc = worst_case(model, x, norm=norm, eps=eps, config=config, start=previous, stop_above=stop_above,
                                seed=seed + 1000 * set_index, device=device)
                previous = wc.x_by_attacker
                metrics = detection_metrics(in_scores, wc.scores)
                metrics["by_attacker"] = {name: detection_metrics(in_scores, s)["auroc"]
                                          for name, s in wc.by_attacker.items()}
                metrics["score_mean"] = float(wc.scores.mean())
                metrics["mean_l2_change"] = float((wc.x - x).flatten(1).norm(dim=1).mean())
                entry["worst_case"][eps_key(eps)] = metrics
                auroc_by_eps[eps_key(eps)] = metrics["auroc"]
                arrays[f"{model_name}/{set_name}/eps={eps_key(eps)}"] = wc.scores.numpy()
                for name, s in wc.by_attacker.items():
                    arrays[f"{model_name}/{set_name}/eps={eps_key(eps)}/{name}"] = s.numpy()
                if eps == roc_eps:
                    plot_data["worst"][set_name] = wc.scores.numpy()
                    plot_data["examples"][set_name] = (x[:examples], wc.x[:examples])
            entry["auroc_by_eps"] = auroc_by_eps
            entry["eps_below_threshold"] = _first_below(auroc_by_eps, eps_values, threshold)
            model_out["sets"][set_name] = entry
        mean_by_eps = {k: float(np.mean([e["auroc_by_eps"][k] for e in model_out["sets"].values()]))
                       for k in next(iter(model_out["sets"].values()))["auroc_by_eps"]}
        model_out["mean_auroc_by_eps"] = mean_by_eps
        model_out["eps_below_threshold"] = {s: e["eps_below_threshold"] for s, e in model_out["sets"].items()}
        model_out["mean_eps_below_threshold"] = _first_below(mean_by_eps, eps_values, threshold)
        model_out["seconds"] = time.perf_counter() - started
        result["models"][model_name] = model_out
        plots[model_name] = plot_data

    if out_dir is not None:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        _write_json(out / "ood.json", result)
        np.savez_compressed(out / "ood_scores.npz", **arrays)
    if verbose:
        print(format_table(result))
    if report is not None:
        add_to_report(report, result, plots)
    return result


def _write_json(path: Path, data: Any) -> None:
    from ..training import write_json

    write_json(path, data)


def _cell(value: float | None) -> str:
    return "  -   " if value is None else f"{value:.4f}"


def format_table(result: Mapping[str, Any]) -> str:
    """The worst-case AUROC table (rows: set x model; columns: eps; last: first eps below the threshold), each
    attacker's AUROC, and the protocol, as plain text."""
    protocol = result["protocol"]
    eps_values = protocol["eps"]
    thr = protocol["threshold"]
    models = result["models"]
    set_names = list(next(iter(models.values()))["sets"])
    name_w = max(8, *(len(s) for s in set_names))
    model_w = max(6, *(len(m) for m in models))
    header = f"{'OOD set':<{name_w}}  {'model':<{model_w}}  " + "  ".join(f"eps={eps_key(e):<4}" for e in eps_values)
    header += f"  <{thr:g} at"
    lines = [f"Worst-case OOD detection AUROC ({protocol['norm'].upper()} ball; in-distribution positive)", header,
             "-" * len(header)]
    for set_name in set_names + ["mean"]:
        for model_name, model in models.items():
            if set_name == "mean":
                by_eps, below = model["mean_auroc_by_eps"], model["mean_eps_below_threshold"]
            else:
                by_eps = model["sets"][set_name]["auroc_by_eps"]
                below = model["sets"][set_name]["eps_below_threshold"]
            row = f"{set_name:<{name_w}}  {model_name:<{model_w}}  " + "  ".join(
                f"{_cell(by_eps.get(eps_key(e))):<8}" for e in eps_values)
            lines.append(row + f"  {'never' if below is None else eps_key(below)}")
    attacked = [e for e in eps_values if e > 0]
    if attacked:
        attackers = protocol["attack"]["attackers"]
        lines.append("")
        lines.append("AUROC per attacker (" + ", ".join(attackers) + ", worst = per-sample best of all):")
        for model_name, model in models.items():
            for set_name in set_names:
                cells = []
                for e in attacked:
                    m = model["sets"][set_name]["worst_case"][eps_key(e)]
                    cells.append("/".join(f"{m['by_attacker'][a]:.3f}" for a in attackers) + f"/{m['auroc']:.3f}")
                lines.append(f"  {model_name:<{model_w}} {set_name:<{name_w}} " + "  ".join(
                    f"eps={eps_key(e)}: {c}" for e, c in zip(attacked, cells)))
    lines.append("")
    lines.append("Protocol: " + _protocol_line(protocol))
    return "\n".join(lines)


def _protocol_line(protocol: Mapping[str, Any]) -> str:
    attack = protocol["attack"]
    parts = [f"n_in={protocol['n_in']}", "n_ood=" + ",".join(f"{k}:{v}" for k, v in protocol["n_ood"].items()),
             f"norm={protocol['norm']}", f"seed={protocol['seed']}"]
    if "pgd" in attack["attackers"]:
        sizes = ["{:g}*eps/steps".format(attack["pgd_step_factor"]) if s is None else f"{s:g}"
                 for s in attack["pgd_step_sizes"]]
        parts.append(f"PGD (atebm.pgd) steps {list(attack['pgd_steps'])} x step sizes [{', '.join(sizes)}], "
                     f"{1 + attack['pgd_random_restarts']} run(s) per grid point")
    if "apgd" in attack["attackers"]:
        some = next(iter(protocol["attack_by_eps"].values()), {})
        impl = some.get("apgd", {}).get("implementation", "torchattacks.APGD")
        parts.append(f"APGD ({impl}) {attack['apgd_steps']} steps, {attack['apgd_restarts']} restart(s), "
                     f"loss {attack['apgd_loss']}")
    parts.append(f"warm start across eps; early stop {'on' if attack['early_stop'] else 'off'}")
    for key in ("in_distribution", "feature_note", "suites"):
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
    ``plots`` data of :func:`evaluate`, ROC curves, score histograms and worst-case example grids; saves it."""
    from ..report import Report

    if not isinstance(report, Report):
        report = Report.open(report)
    protocol = result["protocol"]
    eps_values = protocol["eps"]
    models = result["models"]
    set_names = list(next(iter(models.values()))["sets"])
    thr = protocol["threshold"]
    short_protocol = {"summary": _protocol_line(protocol)}
    columns = ["OOD set", "model"] + [("clean" if e == 0 else f"eps={eps_key(e)}") for e in eps_values] + \
        [f"AUROC < {thr:g} from eps"]
    rows = []
    for set_name in set_names + ["mean"]:
        for model_name, model in models.items():
            if set_name == "mean":
                by_eps, below = model["mean_auroc_by_eps"], model["mean_eps_below_threshold"]
            else:
                by_eps = model["sets"][set_name]["auroc_by_eps"]
                below = model["sets"][set_name]["eps_below_threshold"]
            rows.append([set_name, model_name] + [by_eps.get(eps_key(e)) for e in eps_values] +
                        ["never" if below is None else eps_key(below)])
    report.add_table(f"{prefix}/auroc", f"Worst-case OOD detection AUROC ({protocol['norm'].upper()})", columns,
                     rows, protocol=short_protocol,
                     note="AUROC of the score, in-distribution positive; each OOD input replaced by the highest-"
                          "scoring input in the eps-ball (per sample best of all attackers).")
    attacked = [e for e in eps_values if e > 0]
    if attacked:
        attackers = list(protocol["attack"]["attackers"])
        rows = []
        for model_name, model in models.items():
            for set_name in set_names:
                for who in attackers + ["worst"]:
                    cells = []
                    for e in attacked:
                        m = model["sets"][set_name]["worst_case"][eps_key(e)]
                        cells.append(m["auroc"] if who == "worst" else m["by_attacker"][who])
                    rows.append([model_name, set_name, who] + cells)
        report.add_table(f"{prefix}/attackers", "Worst-case AUROC per attacker",
                         ["model", "OOD set", "attacker"] + [f"eps={eps_key(e)}" for e in attacked], rows,
                         protocol=protocol["attack_by_eps"][eps_key(attacked[-1])],
                         note="protocol shown for the largest eps; the PGD step sizes scale with eps.")
    rows = []
    for model_name, model in models.items():
        for set_name in set_names:
            c = model["sets"][set_name]["clean"]
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
