"""``atebm toy2d``: the 2D maximin vs minimax lab (METHOD Sec. 4).

Examples::

    atebm toy2d --all --out runs/toy2d                      # the four panels of the papers, JSON, PNGs, checkpoints
    atebm toy2d --method maximin --p0 corner --out runs/c   # one panel
    atebm toy2d --all --data moons --out runs/moons         # the same on another data set
    atebm toy2d --method maximin --p0 mixture --mixture "-3,3,0.3; 3,-3,0.3" --out runs/mix
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from .options import non_negative_int, positive_float, positive_int
from ..toy2d.datasets import DATASETS, P0_KINDS, parse_mixture
from ..toy2d.solvers import MaximinSettings, MinimaxSettings

__all__ = ["register", "main"]


def register(subparsers: Any) -> None:
    """Adds the ``toy2d`` sub-command."""
    mx, mn = MaximinSettings(), MinimaxSettings()
    p = subparsers.add_parser(
        "toy2d", help="2D maximin vs minimax simulations with field plots and Proposition-1 numbers",
        description="Trains D on 2D data with the maximin solver (binary AT = atebm.Trainer with unconstrained "
                    "PGD) and/or the minimax solver (G Alg. 2), writes toy2d.json (Proposition-1 numbers), PNGs "
                    "(contours of D, unit gradient field, p_data, p_0), GIFs and checkpoints loadable by atebm.load.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--all", action="store_true",
                   help="run the four panels: maximin/minimax x p0 uniform/corner (ignores --method and --p0)")
    p.add_argument("--method", choices=("maximin", "minimax", "both"), default="maximin",
                   help="which solver(s) to run on --p0 (without --all)")
    p.add_argument("--p0", choices=P0_KINDS, default="uniform",
                   help="p_0: uniform over the box, the lower-left corner square, or a Gaussian --mixture")
    p.add_argument("--mixture", default=None, help="p_0 mixture components 'x,y,std[,weight]; ...'")
    p.add_argument("--data", choices=sorted(DATASETS), default="gaussian", help="p_data")
    p.add_argument("--box", type=float, nargs=2, default=(-4.0, 4.0), metavar=("LO", "HI"),
                   help="the square data space [LO, HI]^2 (PGD clamps to it)")
    p.add_argument("--seed", type=int, default=0, help="seed of the data, p_0, the initial D and training")
    g = p.add_argument_group("maximin (E Alg. 1-2 through atebm.Trainer)")
    g.add_argument("--iters", type=positive_int, default=mx.iters, help="training iterations")
    g.add_argument("--k", type=non_negative_int, default=mx.k, help="final number of PGD steps K")
    g.add_argument("--k-start", type=non_negative_int, default=mx.k_start, help="first K (progressive K)")
    g.add_argument("--k-ramp", type=positive_float, default=mx.k_ramp,
                   help="fraction of the iterations after which K has reached --k at the latest")
    g.add_argument("--step-size", type=positive_float, default=mx.step_size, help="PGD step length lambda")
    g.add_argument("--batch-size", type=positive_int, default=mx.batch_size, help="m data + m p_0 per iteration")
    g.add_argument("--init-bumps", type=non_negative_int, default=mx.init_bumps,
                   help="start D with this many random local maxima (0: the MLP's default initialisation)")
    g.add_argument("--lr", type=positive_float, default=mx.lr, help="Adam learning rate (betas 0, 0.99)")
    g = p.add_argument_group("minimax (G Alg. 2 / E supp. Alg. 3)")
    g.add_argument("--particles", type=positive_int, default=mn.particles, help="number of particles m")
    g.add_argument("--rounds", type=positive_int, default=mn.max_rounds, help="maximum alternating rounds")
    g.add_argument("--minimax-step", type=positive_float, default=mn.step_size,
                   help="length of each particle's step up D")
    g.add_argument("--d-steps", type=positive_int, default=mn.d_steps, help="max inner D steps per round")
    g.add_argument("--minimax-init-bumps", type=non_negative_int, default=mn.init_bumps,
                   help="start the minimax D with this many random local maxima")
    g = p.add_argument_group("model and output")
    g.add_argument("--hidden", type=positive_int, default=mx.hidden, help="MLP width")
    g.add_argument("--depth", type=positive_int, default=mx.depth, help="MLP hidden layers")
    g.add_argument("--activation", default=mx.activation, help="MLP activation (silu, relu, lrelu, softplus, ...)")
    g.add_argument("--threads", type=positive_int, default=1,
                   help="torch intra-op threads while this command runs (tiny 2D MLPs run fastest on one)")
    g.add_argument("--no-gif", action="store_true", help="skip the animated GIFs")
    g.add_argument("--no-plots", action="store_true", help="only JSON and checkpoints")
    g.add_argument("--dry-run", action="store_true", help="print the resolved settings and exit")
    p.set_defaults(func=main)


def _settings(args: argparse.Namespace) -> tuple[MaximinSettings, MinimaxSettings]:
    if args.k_start > args.k:
        raise ValueError(f"--k-start ({args.k_start}) must not exceed --k ({args.k})")
    if args.k_ramp > 1:
        raise ValueError(f"--k-ramp must lie in (0, 1], got {args.k_ramp}")
    if not args.box[1] > args.box[0]:
        raise ValueError(f"--box needs LO < HI, got {args.box}")
    model = {"hidden": args.hidden, "depth": args.depth, "activation": args.activation, "seed": args.seed}
    maximin = MaximinSettings(iters=args.iters, k=args.k, k_start=args.k_start, k_ramp=args.k_ramp,
                              step_size=args.step_size,
                              batch_size=args.batch_size, lr=args.lr, init_bumps=args.init_bumps, **model)
    minimax = MinimaxSettings(particles=args.particles, max_rounds=args.rounds, step_size=args.minimax_step,
                              d_steps=args.d_steps, init_bumps=args.minimax_init_bumps, **model)
    return maximin, minimax


def main(args: argparse.Namespace) -> int:
    from ..models import make_activation

    make_activation(args.activation)  # clear error for a bad name before any work
    maximin, minimax = _settings(args)
    mixture = parse_mixture(args.mixture) if args.mixture else None
    if args.all:
        panels = [("maximin", "uniform"), ("maximin", "corner"), ("minimax", "uniform"), ("minimax", "corner")]
    else:
        if args.p0 == "mixture" and mixture is None:
            raise ValueError("--p0 mixture needs --mixture 'x,y,std[,weight]; ...'")
        methods = ("maximin", "minimax") if args.method == "both" else (args.method,)
        panels = [(m, args.p0) for m in methods]
    if args.dry_run:
        print(json.dumps({"panels": panels, "data": args.data, "box": list(args.box), "out": args.out,
                          "maximin": maximin.to_dict(), "minimax": minimax.to_dict(), "mixture": mixture}, indent=2))
        return 0
    import torch

    from ..toy2d.experiment import run_all

    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        summary = run_all(args.out, data_name=args.data, box=tuple(args.box), seed=args.seed, maximin=maximin,
                          minimax=minimax, panels=panels, mixture=mixture, gif=not args.no_gif,
                          plots=not args.no_plots)
    finally:
        torch.set_num_threads(threads)
    if not args.no_plots:
        add_to_report(summary, args.out)
    print(f"toy2d: wrote {args.out}/toy2d.json, {args.out}/report.html and {len(summary['panels'])} checkpoint(s) "
          f"in {summary['seconds_total']:.1f} s")
    return 0


def add_to_report(summary: dict[str, Any], out: str) -> None:
    """The run's report: the Proposition-1 numbers of every panel as one table, then the figures."""
    from pathlib import Path

    from ..report import Report

    report = Report.open(out, title="atebm toy2d: maximin vs minimax in 2D")
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
    if summary.get("figure"):  # every file lies in `out`
        report.add_image("toy2d/panels", "Initial and final states", Path(summary["figure"]).name,
                         "contours of D, unit gradient field, p_data (blue) and p_0 / perturbed p_0 (red)")
    for name, panel in summary["panels"].items():
        strip = panel["files"].get("strip")
        if strip:
            report.add_image(f"toy2d/{name}/strip", f"{name}: the optimisation over time", Path(strip).name,
                             "snapshots of D and the particles during training")
    report.save()
