"""``atebm toy2d``: the 2D maximin vs minimax lab (METHOD Sec. 4). Parser only; the pipeline is
:func:`atebm.toy2d.run_toy2d`, whose signature and the solver settings hold the defaults shown here.

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

from ..toy2d.datasets import DATASETS, P0_KINDS
from ..toy2d.experiment import METHODS, run_toy2d, toy2d_panels
from ..toy2d.solvers import MaximinSettings, MinimaxSettings
from .apps import pipeline_defaults
from .options import add_out, add_seed, add_threads, non_negative_int, positive_float, positive_int

__all__ = ["register"]

_D = " (default: %(default)s)"

_RUN = pipeline_defaults(run_toy2d)


def register(subparsers: Any) -> None:
    """Adds the ``toy2d`` sub-command."""
    mx, mn, d = MaximinSettings(), MinimaxSettings(), _RUN
    p = subparsers.add_parser(
        "toy2d", help="2D maximin vs minimax simulations with field plots and Proposition-1 numbers",
        description="Trains D on 2D data with the maximin solver (binary AT = atebm.Trainer with unconstrained "
                    "PGD) and/or the minimax solver (G Alg. 2), writes toy2d.json (Proposition-1 numbers), PNGs "
                    "(contours of D, unit gradient field, p_data, p_0), GIFs and checkpoints loadable by atebm.load. "
                    f"Runs on {d['threads']} torch thread(s) unless --threads is given.")
    add_out(p, help="output folder")
    p.add_argument("--all", action="store_true",
                   help="run the four panels: maximin/minimax x p0 uniform/corner (ignores --method and --p0)")
    p.add_argument("--method", choices=(*METHODS, "both"), default=d["method"],
                   help="which solver(s) to run on --p0 (without --all)" + _D)
    p.add_argument("--p0", choices=P0_KINDS, default=d["p0"],
                   help="p_0: uniform over the box, the lower-left corner square, or a Gaussian --mixture" + _D)
    p.add_argument("--mixture", default=d["mixture"], help="p_0 mixture components 'x,y,std[,weight]; ...'")
    p.add_argument("--data", choices=sorted(DATASETS), default=d["data"], help="p_data" + _D)
    p.add_argument("--box", type=float, nargs=2, default=d["box"], metavar=("LO", "HI"),
                   help="the square data space [LO, HI]^2 (PGD clamps to it)" + _D)
    add_seed(p, default=d["seed"], help="seed of the data, p_0, the initial D and training")
    g = p.add_argument_group("maximin (E Alg. 1-2 through atebm.Trainer)")
    g.add_argument("--iters", type=positive_int, default=mx.iters, help="training iterations" + _D)
    g.add_argument("--k", type=non_negative_int, default=mx.k, help="final number of PGD steps K" + _D)
    g.add_argument("--k-start", type=non_negative_int, default=mx.k_start, help="first K (progressive K)" + _D)
    g.add_argument("--k-ramp", type=positive_float, default=mx.k_ramp,
                   help="fraction of the iterations after which K has reached --k at the latest" + _D)
    g.add_argument("--step-size", type=positive_float, default=mx.step_size, help="PGD step length lambda" + _D)
    g.add_argument("--batch-size", type=positive_int, default=mx.batch_size, help="m data + m p_0 per iteration" + _D)
    g.add_argument("--init-bumps", type=non_negative_int, default=mx.init_bumps,
                   help="start D with this many random local maxima (0: the MLP's default initialisation)" + _D)
    g.add_argument("--lr", type=positive_float, default=mx.lr, help="Adam learning rate (betas 0, 0.99)" + _D)
    g = p.add_argument_group("minimax (G Alg. 2 / E supp. Alg. 3)")
    g.add_argument("--particles", type=positive_int, default=mn.particles, help="number of particles m" + _D)
    g.add_argument("--rounds", type=positive_int, default=mn.max_rounds, help="maximum alternating rounds" + _D)
    g.add_argument("--minimax-step", type=positive_float, default=mn.step_size,
                   help="length of each particle's step up D" + _D)
    g.add_argument("--d-steps", type=positive_int, default=mn.d_steps, help="max inner D steps per round" + _D)
    g.add_argument("--minimax-init-bumps", type=non_negative_int, default=mn.init_bumps,
                   help="start the minimax D with this many random local maxima" + _D)
    g = p.add_argument_group("model and output")
    g.add_argument("--hidden", type=positive_int, default=mx.hidden, help="MLP width" + _D)
    g.add_argument("--depth", type=positive_int, default=mx.depth, help="MLP hidden layers" + _D)
    g.add_argument("--activation", default=mx.activation,
                   help="MLP activation (silu, relu, lrelu, softplus, elu, tanh)" + _D)
    add_threads(g, default=1)
    g.add_argument("--no-gif", action="store_true", help="skip the animated GIFs")
    g.add_argument("--no-plots", action="store_true", help="only JSON and checkpoints")
    g.add_argument("--dry-run", action="store_true", help="print the resolved settings and exit")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    model = {"hidden": args.hidden, "depth": args.depth, "activation": args.activation, "seed": args.seed}
    maximin = MaximinSettings(iters=args.iters, k=args.k, k_start=args.k_start, k_ramp=args.k_ramp,
                              step_size=args.step_size, batch_size=args.batch_size, lr=args.lr,
                              init_bumps=args.init_bumps, **model)
    minimax = MinimaxSettings(particles=args.particles, max_rounds=args.rounds, step_size=args.minimax_step,
                              d_steps=args.d_steps, init_bumps=args.minimax_init_bumps, **model)
    options = {"all_panels": args.all, "method": args.method, "p0": args.p0, "mixture": args.mixture,
               "data": args.data, "box": tuple(args.box), "seed": args.seed, "maximin": maximin, "minimax": minimax,
               "gif": not args.no_gif, "plots": not args.no_plots,
               "threads": args.threads if args.threads is not None else _RUN["threads"]}
    if args.dry_run:
        panels = toy2d_panels(all_panels=args.all, method=args.method, p0=args.p0)
        print(json.dumps({**options, "panels": panels, "out": args.out, "maximin": maximin.to_dict(),
                          "minimax": minimax.to_dict()}, indent=2))
        return 0
    summary = run_toy2d(args.out, **options)
    print(f"toy2d: wrote {args.out}/toy2d.json{', report.html' if not args.no_plots else ''} and "
          f"{len(summary['panels'])} checkpoint(s) in {summary['seconds_total']:.1f} s")
    return 0
