"""One 2D panel = one solver on one (p_data, p_0) pair, with its Proposition-1 numbers, plots and checkpoint.

``run_all`` reproduces the four panels of the papers (E Fig. 1 and supp. Fig. 1, G Fig. 2, 5, 6): maximin and
minimax, each with p_0 uniform over the box and p_0 in the lower-left corner, and writes ``toy2d.json``, the PNGs,
one animated GIF per panel and the checkpoints ``maximin-uniform.pt``, ``maximin-corner.pt``,
``minimax-uniform.pt``, ``minimax-corner.pt`` (readable with :func:`atebm.load`: a score model on ``(N, 2)``).
:func:`run_toy2d` is the ``atebm toy2d`` command: the panels it asks for, then ``report.html``.
"""
from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..sampling import eval_mode, per_sample_scores
from ..training import save_checkpoint, write_json
from .datasets import P0_KINDS, get_dataset, parse_mixture, sample_p0
from .metrics import AscentProtocol, energy_distance, evaluate_d, grid_points, prop1_metrics
from .solvers import MaximinSettings, MinimaxSettings, SolverResult, solve_maximin, solve_minimax

__all__ = ["Panel", "run_panel", "write_panel", "run_all", "run_toy2d", "toy2d_panels", "add_to_report",
           "METHODS", "PANELS"]

METHODS = ("maximin", "minimax")
PANELS = (("maximin", "uniform"), ("maximin", "corner"), ("minimax", "uniform"), ("minimax", "corner"))


@dataclass
class Panel:
    name: str
    method: str
    p0_kind: str
    data_name: str
    box: tuple[float, float]
    data: Tensor
    p0: Tensor
    initial_d: Tensor
    result: SolverResult
    metrics: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)
    files: dict[str, str] = field(default_factory=dict)


def run_panel(method: str, p0_kind: str, *, data_name: str = "gaussian", box: tuple[float, float] = (-4.0, 4.0),
              seed: int = 0, n_data: int = 4000, n_p0: int = 4000,
              mixture: Sequence[tuple[float, float, float, float]] | None = None,
              maximin: MaximinSettings | None = None, minimax: MinimaxSettings | None = None,
              metric_kwargs: dict[str, Any] | None = None, snapshot_grid: int = 80) -> Panel:
    """Trains one panel and measures it. The data and p_0 samples depend only on ``seed`` and the data set, so
    the maximin and minimax panels of one seed see the same points."""
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose from {METHODS}")
    dataset = get_dataset(data_name)
    g = torch.Generator().manual_seed(seed)
    data = dataset.sample(n_data, g).clamp(box[0], box[1])
    p0 = sample_p0(p0_kind, n_p0, box, generator=g, mixture=mixture)
    t0 = time.perf_counter()
    if method == "maximin":
        result = solve_maximin(data, p0, maximin or MaximinSettings(seed=seed), box=box, snapshot_grid=snapshot_grid)
    else:
        result = solve_minimax(data, p0, minimax or MinimaxSettings(seed=seed), box=box, snapshot_grid=snapshot_grid)
    t1 = time.perf_counter()
    metrics = prop1_metrics(result.model, dataset, box, **(metric_kwargs or {}),
                            particles=result.particles if method == "minimax" else None)
    if method == "minimax":
        ref = dataset.sample(result.particles.shape[0], torch.Generator().manual_seed(seed + 777))
        metrics["particles"]["energy_distance_initial"] = energy_distance(p0[:result.particles.shape[0]], ref)
    else:
        metrics["perturbed_p0"] = {"n": int(result.particles.shape[0]),
                                   "frac_on_support": float(dataset.on_support(result.particles).float().mean())}
    metrics["value_U"] = _payoff(result, data, method)
    init_max = result.config.get("init", {}).get("maxima", [])
    off_init = [c for c in init_max if not bool(dataset.on_support(torch.tensor([[c["x"], c["y"]]]))[0])]
    metrics["initial_maxima"] = {"n_off_support": len(off_init), "n_total": len(init_max), "off_support": off_init}
    t2 = time.perf_counter()
    initial = result.snapshots[0].d_grid if result.snapshots and result.snapshots[0].step == 0 else None
    name = f"{method}-{p0_kind}" if data_name == "gaussian" else f"{method}-{p0_kind}-{data_name}"
    return Panel(name, method, p0_kind, data_name, box, data, p0,
                 initial if initial is not None else torch.full((snapshot_grid, snapshot_grid), float("nan")),
                 result, metrics, {"train": t1 - t0, "evaluate": t2 - t1})


@torch.no_grad()
def _payoff(result: SolverResult, data: Tensor, method: str) -> dict[str, float]:
    """U(D, p_T) = E_data[log D] + E_{p_T}[log(1 - D)] on the final particles; the optimum is -log 4 = -1.386."""
    with eval_mode(result.model):
        s_data = per_sample_scores(result.model, data[:2000])
        s_part = per_sample_scores(result.model, result.particles)
    u = torch.nn.functional.logsigmoid(s_data).mean() + torch.nn.functional.logsigmoid(-s_part).mean()
    return {"U": float(u), "optimum": -1.3862943611198906}


def _thin(history: list[dict[str, Any]], keep: int = 60) -> list[dict[str, Any]]:
    if len(history) <= keep:
        return history
    stride = -(-len(history) // keep)
    thinned = history[::stride]
    if thinned[-1] is not history[-1]:
        thinned.append(history[-1])
    return thinned


def write_panel(panel: Panel, out_dir: str | os.PathLike, *, gif: bool = True, plots: bool = True) -> dict[str, str]:
    """Writes ``<name>.pt`` (loadable by :func:`atebm.load`), and with ``plots`` the PNGs
    ``<name>-initial.png``, ``<name>-final.png``, ``<name>-strip.png`` and ``<name>.gif``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    result = panel.result
    model = result.model
    ckpt = save_checkpoint(out / f"{panel.name}.pt", {
        "model_spec": model.spec, "model": model.state_dict(),
        "config": {"toy2d": {"method": panel.method, "p0": panel.p0_kind, "data": panel.data_name,
                             "box": list(panel.box), **result.config}},
        "trainer": None, "history": result.history,
    })
    files = {"checkpoint": str(ckpt)}
    if plots:
        from .plots import gradient_field, plot_state, plot_strip, save_animation

        box = panel.box
        grid = panel.initial_d.shape[0]
        final_d = evaluate_d(model, grid_points(box, grid)).view(grid, grid)
        label = "iteration" if panel.method == "maximin" else "round"
        moved = "after K PGD steps" if panel.method == "maximin" else "particles"
        if not torch.isnan(panel.initial_d).any():
            files["initial"] = str(plot_state(out / f"{panel.name}-initial.png", panel.initial_d, box,
                                              data=panel.data, particles=panel.p0,
                                              title=f"{panel.name}: initial D, p_data (blue), p_0 (red)"))
        files["final"] = str(plot_state(out / f"{panel.name}-final.png", final_d, box, data=panel.data,
                                        particles=result.particles, field=gradient_field(model, box),
                                        title=f"{panel.name}: final D, gradient field, p_0 {moved}"))
        files["strip"] = str(plot_strip(out / f"{panel.name}-strip.png", result.snapshots, box, data=panel.data,
                                        label=label, title=f"{panel.name}: the alternating optimisation"))
        if gif:
            files["animation"] = str(save_animation(out / f"{panel.name}.gif", result.snapshots, box,
                                                    data=panel.data, label=label))
    panel.files = files
    return files


def panel_summary(panel: Panel) -> dict[str, Any]:
    res = panel.result
    return {
        "method": panel.method, "p0": panel.p0_kind, "data": panel.data_name, "box": list(panel.box),
        "seconds": {k: round(v, 2) for k, v in panel.seconds.items()},
        "config": res.config, "metrics": panel.metrics, "history": _thin(res.history), "files": panel.files,
    }


def run_all(out_dir: str | os.PathLike, *, data_name: str = "gaussian", box: tuple[float, float] = (-4.0, 4.0),
            seed: int = 0, maximin: MaximinSettings | None = None, minimax: MinimaxSettings | None = None,
            panels: Sequence[tuple[str, str]] = PANELS, mixture: Sequence[tuple[float, float, float, float]] | None
            = None, gif: bool = True, plots: bool = True, metric_kwargs: dict[str, Any] | None = None,
            log=print) -> dict[str, Any]:
    """Runs the panels, writes everything under ``out_dir`` and returns the ``toy2d.json`` content."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    done: list[Panel] = []
    for method, p0_kind in panels:
        log(f"toy2d: {method} with p0 {p0_kind} on {data_name} ...")
        panel = run_panel(method, p0_kind, data_name=data_name, box=box, seed=seed, mixture=mixture,
                          maximin=maximin, minimax=minimax, metric_kwargs=metric_kwargs)
        write_panel(panel, out, gif=gif, plots=plots)
        m = panel.metrics
        on_support = m["d_on_support_data"]
        log(f"  {panel.name}: D on support {on_support['mean']:.3f} +- {on_support['std']:.3f}, "
            f"max D off support {m['d_off_support_grid']['max']:.3f}, ascents ending on support "
            f"{m['ascent']['frac_end_on_support']:.1%}, off-support maxima {m['maxima']['n_off_support_maxima']}"
            + (f", energy distance {m['particles']['energy_distance_to_data']:.4f}" if "particles" in m else "")
            + f" ({panel.seconds['train']:.1f} s)")
        done.append(panel)
    summary: dict[str, Any] = {
        "description": "2D maximin vs minimax (E Fig. 1 / supp. Fig. 1, G Fig. 2, 4-6); Proposition-1 numbers",
        "data": data_name, "box": list(box), "seed": seed,
        "support_definition": "points within 3 sigma of the data set's noiseless skeleton (gaussian: the disc of "
                              "radius 1.5 = 3 x 0.5 around the origin); checkerboard: the filled squares",
        "ascent_protocol": (AscentProtocol() if not metric_kwargs or "protocol" not in metric_kwargs
                            else metric_kwargs["protocol"]).to_dict(),
        "panels": {p.name: panel_summary(p) for p in done},
    }
    if plots and len(done) > 1:
        from .plots import gradient_field, plot_panels

        entries = []
        for p in done:
            entries.append({"d_grid": p.initial_d, "data": p.data, "particles": p.p0, "title": f"{p.name}: initial"})
        for p in done:
            grid = p.initial_d.shape[0]
            final_d = evaluate_d(p.result.model, grid_points(box, grid)).view(grid, grid)
            entries.append({"d_grid": final_d, "data": p.data, "particles": p.result.particles,
                            "field": gradient_field(p.result.model, box), "title": f"{p.name}: final"})
        summary["figure"] = str(plot_panels(out / "panels.png", entries, box,
                                            title="top: initial state; bottom: final state (blue p_data, red p_0 / "
                                                  "p_T; white arrows: unit gradient of D)"))
    summary["seconds_total"] = round(time.perf_counter() - start, 2)
    write_json(out / "toy2d.json", summary)
    return summary


def toy2d_panels(*, all_panels: bool = False, method: str = "maximin", p0: str = "uniform"
                 ) -> list[tuple[str, str]]:
    """The (method, p0) panels of a run: the papers' four with ``all_panels`` (maximin/minimax x p_0 uniform/
    corner), else ``method`` ("maximin", "minimax" or "both") on ``p0``."""
    if all_panels:
        return list(PANELS)
    if method not in (*METHODS, "both"):
        raise ValueError(f"method must be one of {(*METHODS, 'both')}, got {method!r}")
    if p0 not in P0_KINDS:
        raise ValueError(f"p0 must be one of {P0_KINDS}, got {p0!r}")
    return [(m, p0) for m in (METHODS if method == "both" else (method,))]


def run_toy2d(out_dir: str | os.PathLike, *, all_panels: bool = False, method: str = "maximin", p0: str = "uniform",
              mixture: str | Sequence[tuple[float, float, float, float]] | None = None, data: str = "gaussian",
              box: tuple[float, float] = (-4.0, 4.0), seed: int = 0, maximin: MaximinSettings | None = None,
              minimax: MinimaxSettings | None = None, gif: bool = True, plots: bool = True, threads: int | None = 1,
              log=print) -> dict[str, Any]:
    """``atebm toy2d``: runs the panels of :func:`toy2d_panels` (:func:`run_all`) and, with ``plots``, adds the
    Proposition-1 table and the figures to ``out_dir/report.html``. ``mixture`` (p_0 components, a string
    ``"x,y,std[,weight]; ..."`` or parsed) is needed for ``p0="mixture"``. ``threads``: torch intra-op threads
    while the run lasts (tiny 2D MLPs run fastest on one: 11 s against 88 s for a 200-iteration panel on a busy
    2-core machine); None leaves torch's setting. Returns the ``toy2d.json`` content."""
    panels = toy2d_panels(all_panels=all_panels, method=method, p0=p0)
    components = parse_mixture(mixture) if isinstance(mixture, str) else mixture
    if any(kind == "mixture" for _, kind in panels) and not components:
        raise ValueError("p0 'mixture' needs mixture components 'x,y,std[,weight]; ...'")
    if not box[1] > box[0]:
        raise ValueError(f"the box needs LO < HI, got {tuple(box)}")
    get_dataset(data)  # a clear error for an unknown name before any work
    if threads is not None and threads < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        summary = run_all(out_dir, data_name=data, box=(float(box[0]), float(box[1])), seed=seed, maximin=maximin,
                          minimax=minimax, panels=panels, mixture=components, gif=gif, plots=plots, log=log)
    finally:
        torch.set_num_threads(before)
    if plots:
        add_to_report(summary, out_dir)
    return summary


def add_to_report(summary: dict[str, Any], out_dir: str | os.PathLike) -> None:
    """The run's report: the Proposition-1 numbers of every panel as one table, then the figures."""
    from ..report import Report

    report = Report.open(out_dir, title="atebm toy2d: maximin vs minimax in 2D")
    rows = []
    for name, panel in summary["panels"].items():
        m = panel["metrics"]
        rows.append([name, m["d_on_support_data"]["mean"], m["d_on_support_data"]["std"],
                     m["d_off_support_grid"]["max"], m["ascent"]["frac_end_on_support"],
                     m["initial_maxima"]["n_off_support"], m["maxima"]["n_off_support_maxima"],
                     m["particles"]["energy_distance_to_data"] if "particles" in m else None])
    report.add_table("toy2d/prop1", "Proposition 1 check (E Prop. 1, G Table 1)",
                     ["panel", "mean D on support", "std D on support", "max D off support",
                      "ascents ending on support", "off-support maxima before", "off-support maxima after",
                      "energy distance to p_data"], rows,
                     protocol={"support": summary["support_definition"], "ascent": summary["ascent_protocol"],
                               "data": summary["data"], "box": summary["box"], "seed": summary["seed"]})
    if summary.get("figure"):  # every file lies in out_dir
        report.add_image("toy2d/panels", "Initial and final states", Path(summary["figure"]).name,
                         "contours of D, unit gradient field, p_data (blue) and p_0 / perturbed p_0 (red)")
    for name, panel in summary["panels"].items():
        strip = panel["files"].get("strip")
        if strip:
            report.add_image(f"toy2d/{name}/strip", f"{name}: the optimisation over time", Path(strip).name,
                             "snapshots of D and the particles during training")
    report.save()
