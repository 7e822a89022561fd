"""``atebm toy2d``: the 2D maximin vs minimax lab (METHOD Sec. 4). Parser only; the pipeline is
:func:`atebm.toy2d.run_toy2d`, whose signature and the solver settings (:class:`~atebm.toy2d.solvers.MaximinSettings`,
:class:`~atebm.toy2d.solvers.MinimaxSettings`) hold the defaults shown here. Options that are not given are not
passed on; an option of a solver or a p_0 that no panel of the run uses is refused.

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
from . import options

__all__ = ["register", "main"]

#: The options of each solver and of the MLP (flag, settings field, argparse keywords, help); their defaults are
#: the fields' of MaximinSettings / MinimaxSettings; the MLP options (and --seed) go to both solvers.
MAXIMIN_OPTIONS: tuple[options.OptionRow, ...] = (
    ("--iters", "iters", {"type": options.positive_int}, "training iterations"),
    ("--k", "k", {"type": options.non_negative_int}, "final number of PGD steps K"),
    ("--k-start", "k_start", {"type": options.non_negative_int}, "first K (progressive K)"),
    ("--k-ramp", "k_ramp", {"type": options.positive_float},
     "fraction of the iterations after which K has reached --k at the latest"),
    ("--step-size", "step_size", {"type": options.positive_float}, "PGD step length lambda"),
    ("--batch-size", "batch_size", {"type": options.positive_int}, "m data + m p_0 per iteration"),
    ("--init-bumps", "init_bumps", {"type": options.non_negative_int},
     "start D with this many random local maxima (0: the MLP's default initialisation)"),
    ("--lr", "lr", {"type": options.positive_float}, "Adam learning rate (betas 0, 0.99)"))
MINIMAX_OPTIONS: tuple[options.OptionRow, ...] = (
    ("--particles", "particles", {"type": options.positive_int}, "number of particles m"),
    ("--rounds", "max_rounds", {"type": options.positive_int}, "maximum alternating rounds"),
    ("--minimax-step", "step_size", {"type": options.positive_float}, "length of each particle's step up D"),
    ("--d-steps", "d_steps", {"type": options.positive_int}, "max inner D steps per round"),
    ("--minimax-init-bumps", "init_bumps", {"type": options.non_negative_int},
     "start the minimax D with this many random local maxima"))
MODEL_OPTIONS: tuple[options.OptionRow, ...] = (
    ("--hidden", "hidden", {"type": options.positive_int}, "MLP width"),
    ("--depth", "depth", {"type": options.positive_int}, "MLP hidden layers"),
    ("--activation", "activation", {}, "MLP activation (silu, relu, lrelu, softplus, elu, tanh)"))


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _settings_of(args: argparse.Namespace, rows: tuple[options.OptionRow, ...]) -> dict[str, Any]:
    """The settings fields of ``rows`` whose options the command line gave (each row's destination is its flag's,
    as two solvers share field names)."""
    return {field: getattr(args, _dest(flag)) for flag, field, _, _ in rows if _dest(flag) in args}


def _add_rows(group: Any, defaults: dict[str, Any], rows: tuple[options.OptionRow, ...]) -> None:
    """The options of ``rows`` under their flags' destinations, with the defaults of their settings fields."""
    options.add_options_of(group, {_dest(flag): defaults[field] for flag, field, _, _ in rows},
                           [(flag, _dest(flag), keywords, text) for flag, _, keywords, text in rows])


def register(subparsers: Any) -> None:
    """Adds the ``toy2d`` sub-command."""
    mx, mn = options.config_defaults(MaximinSettings), options.config_defaults(MinimaxSettings)
    d = options.pipeline_defaults(run_toy2d)
    option = options.add_library_option
    p = subparsers.add_parser(
        "toy2d", help="2D maximin vs minimax simulations with field plots and Proposition-1 numbers",
        description="Trains D on 2D data with the maximin solver (binary AT = atebm.Trainer with unconstrained "
                    "PGD) and/or the minimax solver (G Alg. 2), writes toy2d.json (Proposition-1 numbers), PNGs "
                    "(contours of D, unit gradient field, p_data, p_0), GIFs and checkpoints loadable by atebm.load. "
                    f"Runs on {d['threads']} torch thread(s) unless --threads is given.")
    options.add_out(p, help="output folder")
    p.add_argument("--all", action="store_true",
                   help="run the four panels: maximin/minimax x p0 uniform/corner (instead of --method and --p0)")
    option(p, "--method", choices=(*METHODS, "both"), default=d["method"], help="which solver(s) to run on --p0")
    option(p, "--p0", choices=P0_KINDS, default=d["p0"],
           help="p_0: uniform over the box, the lower-left corner square, or a Gaussian --mixture")
    option(p, "--mixture", default=d["mixture"], help="p_0 mixture components 'x,y,std[,weight]; ...' (--p0 mixture)")
    option(p, "--data", choices=sorted(DATASETS), default=d["data"], help="p_data")
    option(p, "--box", type=float, nargs=2, default=d["box"], metavar=("LO", "HI"),
           help="the square data space [LO, HI]^2 (PGD clamps to it)")
    option(p, "--seed", type=int, default=d["seed"], help="seed of the data, p_0, the initial D and training")
    _add_rows(p.add_argument_group("maximin (E Alg. 1-2 through atebm.Trainer)"), mx, MAXIMIN_OPTIONS)
    _add_rows(p.add_argument_group("minimax (G Alg. 2 / E supp. Alg. 3)"), mn, MINIMAX_OPTIONS)
    g = p.add_argument_group("model and output")
    _add_rows(g, mx, MODEL_OPTIONS)
    options.add_threads(g, default=d["threads"])
    g.add_argument("--no-gif", action="store_true", help="skip the animated GIFs")
    g.add_argument("--no-plots", action="store_true", help="only JSON and checkpoints")
    g.add_argument("--dry-run", action="store_true", help="print the resolved settings and exit")
    p.set_defaults(func=main)


def _panels(args: argparse.Namespace) -> list[tuple[str, str]]:
    """The panels the options select; options that no panel uses are refused."""
    if args.all:
        options.refuse({flag: "chooses one panel, and --all runs the four" for flag in ("--method", "--p0")
                        if _dest(flag) in args})
    selected = {k: getattr(args, k) for k in ("method", "p0") if k in args}
    panels = toy2d_panels(all_panels=args.all, **selected)
    if "mixture" in args and all(p0 != "mixture" for _, p0 in panels):
        options.refuse({"--mixture": "gives the components of --p0 mixture, which no panel uses"})
    for solver, rows in (("maximin", MAXIMIN_OPTIONS), ("minimax", MINIMAX_OPTIONS)):
        if all(method != solver for method, _ in panels):
            options.refuse({flag: f"sets the {solver} solver, which no panel of this run uses"
                            for flag, _, _, _ in rows if _dest(flag) in args})
    return panels


def main(args: argparse.Namespace) -> int:
    panels = _panels(args)
    model = {**_settings_of(args, MODEL_OPTIONS), **options.given(args, "seed")}
    maximin = MaximinSettings(**model, **_settings_of(args, MAXIMIN_OPTIONS))
    minimax = MinimaxSettings(**model, **_settings_of(args, MINIMAX_OPTIONS))
    run_options: dict[str, Any] = {"all_panels": args.all, "maximin": maximin, "minimax": minimax,
                                   "gif": not args.no_gif, "plots": not args.no_plots,
                                   **options.given(args, "method", "p0", "mixture", "data", "seed", "threads")}
    if "box" in args:
        run_options["box"] = tuple(args.box)
    if args.dry_run:
        print(json.dumps({**run_options, "panels": panels, "out": args.out, "maximin": maximin.to_dict(),
                          "minimax": minimax.to_dict()}, indent=2))
        return 0
    summary = run_toy2d(args.out, **run_options)
    print(f"toy2d: wrote {args.out}/toy2d.json{', report.html' if not args.no_plots else ''} and "
          f"{len(summary['panels'])} checkpoint(s) in {summary['seconds_total']:.1f} s")
    return 0
