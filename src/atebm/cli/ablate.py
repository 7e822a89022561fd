"""``atebm ablate NAME --out DIR``: the papers' ablations at CPU scale. Parser only; the pipeline is
:func:`atebm.ablate.run_ablation` (one library function per ablation in :mod:`atebm.ablate`).

Examples::

    atebm ablate p0-diversity --out benchmarks/results/ablations/p0-diversity
    atebm ablate p0-diversity --out runs/p0 --arm dsgan=npz:benchmarks/results/dsgan/boundary.npz
    atebm ablate final-k --out runs/k --budget 30      # 30 training CPU seconds per arm and seed
    atebm ablate r1 --out runs/r1 --seeds 0 1 2 3 4    # five seeds instead of the default three
    atebm ablate stability --out runs/s --smoke        # seconds; numbers mean nothing
"""
from __future__ import annotations

import argparse
import json
from typing import Any

from . import options

__all__ = ["register"]


def _arm(text: str) -> tuple[str, str]:
    name, sep, source = text.partition("=")
    if not sep or not name.strip() or not source.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=SOURCE (e.g. dsgan=npz:samples.npz), got {text!r}")
    return name.strip(), source.strip()


def register(subparsers: Any) -> None:
    """Adds the ``ablate`` sub-command."""
    from ..ablate import ABLATIONS, run_ablation

    p = subparsers.add_parser(
        "ablate", help="the papers' ablations at CPU scale (JSON result, plots, report, verdict)",
        description="Runs one ablation: every arm trains the same preset with one setting changed under an equal "
                    "CPU budget; writes OUT/result.json (with this command and a verdict on the paper's claim), "
                    "plots and OUT/report.html. Ablations: " + ", ".join(ABLATIONS) + ".")
    p.add_argument("name", choices=list(ABLATIONS), metavar="NAME", help="one of: " + ", ".join(ABLATIONS))
    options.add_out(p, help="output folder (result.json, report.html, plots)")
    p.add_argument("--budget", type=options.positive_float, default=None, metavar="S",
                   help="training CPU seconds per arm (default: the ablation's own, see result.json)")
    p.add_argument("--arm", type=_arm, action="append", default=None, metavar="NAME=SOURCE",
                   help="p0-diversity only: an extra p_0 arm from a data-source string (repeatable)")
    p.add_argument("--smoke", action="store_true", help="a seconds-long run for tests; its numbers mean nothing")
    default_seeds = options.pipeline_defaults(run_ablation)["seeds"]
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seeds", type=int, nargs="+", default=list(default_seeds), metavar="N",
                       help="train and measure every arm once per seed; a verdict needs at least 3 (default: "
                            f"{' '.join(map(str, default_seeds))})")
    seeds.add_argument("--seed", type=int, default=None, metavar="N",
                       help="one seed only, the same as --seeds N (its verdict is 'not decided')")
    options.add_threads(p, default=1, why="; the budgets are CPU seconds of one thread")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..ablate import run_ablation

    options.apply_threads(args)
    seeds = args.seeds if args.seed is None else [args.seed]
    result = run_ablation(args.name, args.out, budget_s=args.budget, smoke=args.smoke, seeds=seeds,
                          extra_arms=dict(args.arm) if args.arm else None)
    print(json.dumps({"ablation": result["ablation"], "seeds": result["seeds"], "outcome": result["outcome"],
                      "holds": result["holds"], "verdict": result["verdict"], "out": args.out}, indent=1))
    return 0
