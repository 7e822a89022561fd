"""``atebm eval-ood``: clean and worst-case OOD evaluation of one or two models (an adversarially trained model
and, optionally, the K = 0 Outlier Exposure baseline), written to ``ood.json`` and the run report. Parses
options only; the pipeline is :func:`atebm.ood.run_eval_ood`, whose defaults (:class:`atebm.ood.OODEvalConfig`)
are the option defaults here."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..ood import ALL_SUITES, ATTACKERS, EMBEDDED_SUITES, OODEvalConfig, run_eval_ood
from .options import (
    add_checkpoint,
    add_device,
    add_out,
    add_seed,
    add_threads,
    apply_threads,
    fraction,
    non_negative_float,
    non_negative_int,
    positive_float,
    positive_int,
)

__all__ = ["register"]


def _named_path(text: str) -> tuple[str, str]:
    name, _, path = text.partition("=")
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def register(subparsers: argparse._SubParsersAction) -> None:
    d = OODEvalConfig()
    a = d.attack
    p = subparsers.add_parser(
        "eval-ood", help="clean and worst-case OOD detection (AUROC) of one or two models",
        description="Scores in-distribution inputs and OOD sets with each model, replaces every OOD input by its "
                    "worst case (highest score in an eps-ball; atebm PGD and ART's APGD, optionally ART's Square "
                    "attack; per-sample best) and reports AUROC/AUPR/FPR@95 per set and eps. Image size and "
                    "channels come from the checkpoint. Writes OUT/ood.json, OUT/ood_scores.npz and updates "
                    "OUT/report.html.")
    add_checkpoint(p, help="the adversarially trained model: a run folder (its model.pt) or a model file")
    add_checkpoint(p, flag="--checkpoint-oe", required=False,
                   help="optional second model, e.g. the K=0 Outlier Exposure baseline (run folder or file)")
    p.add_argument("--name", default="AT", help="display name of --checkpoint (default: %(default)s)")
    p.add_argument("--name-oe", default="OE (K=0)", help="display name of --checkpoint-oe (default: %(default)s)")
    add_out(p, help="run folder for ood.json and the report")
    p.add_argument("--eps", type=non_negative_float, nargs="+", default=list(d.eps),
                   help="radii; 0 = clean (default: %(default)s, L2 on 28x28 images in [0,1])")
    p.add_argument("--norm", choices=("l2", "linf"), default=d.norm, help="(default: %(default)s)")
    p.add_argument("--n", type=positive_int, default=d.n, help="OOD samples per set (default: %(default)s)")
    p.add_argument("--n-in", type=positive_int, default=d.n_in, help="in-distribution samples (default: %(default)s)")
    p.add_argument("--in-dist", default=d.in_dist,
                   help="named dataset (its test split is used), a data-source string (cifar10:PATH?split=test, "
                        "folder:PATH, npz:PATH) or a path (default: %(default)s)")
    p.add_argument("--suites", nargs="*", default=list(EMBEDDED_SUITES) if d.suites is None else list(d.suites),
                   choices=list(ALL_SUITES), metavar="NAME",
                   help=f"OOD sets by name: {', '.join(ALL_SUITES)} (default: {', '.join(EMBEDDED_SUITES)})")
    p.add_argument("--suite-file", type=_named_path, action="append", default=[], metavar="NAME=SOURCE",
                   help="an extra OOD set (repeatable): a path (image folder, .npz, .npy) or a data-source string, "
                        "e.g. svhn=/data/svhn_test.npz or cifar100=cifar100:/data/cifar-100-python?split=test")
    p.add_argument("--attackers", nargs="+", choices=ATTACKERS, default=list(a.attackers),
                   help="worst-case attackers (default: %(default)s; square is gradient-free and slower)")
    p.add_argument("--steps", "--pgd-steps", dest="pgd_steps", type=positive_int, nargs="+",
                   default=list(a.pgd_steps), help="PGD step counts of the grid (default: %(default)s)")
    p.add_argument("--step-sizes", "--pgd-step-sizes", dest="pgd_step_sizes", type=positive_float, nargs="+",
                   default=None, help=f"PGD step sizes of the grid (default: {a.pgd_step_factor:g}*eps/steps)")
    p.add_argument("--pgd-restarts", type=non_negative_int, default=a.pgd_random_restarts,
                   help="extra random-start PGD runs per grid point (default: %(default)s)")
    p.add_argument("--apgd-steps", type=positive_int, default=a.apgd_steps, help="(default: %(default)s)")
    p.add_argument("--apgd-restarts", type=positive_int, default=a.apgd_restarts, help="(default: %(default)s)")
    p.add_argument("--apgd-loss", choices=("dlr", "ce"), default=a.apgd_loss, help="(default: %(default)s)")
    p.add_argument("--square-steps", type=positive_int, default=a.square_steps, help="(default: %(default)s)")
    p.add_argument("--square-restarts", type=positive_int, default=a.square_restarts, help="(default: %(default)s)")
    p.add_argument("--no-early-stop", action="store_true",
                   help="attack every sample fully, even once it outscores all in-distribution inputs")
    p.add_argument("--threshold", type=fraction, default=d.threshold,
                   help="report the first eps where AUROC falls below this (default: %(default)s)")
    add_seed(p, default=d.seed)
    p.add_argument("--batch-size", type=positive_int, default=a.batch_size, help="(default: %(default)s)")
    add_device(p)
    add_threads(p)
    p.add_argument("--no-report", action="store_true", help="do not update OUT/report.html")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from ..training import load_model, resolve_device

    apply_threads(args)
    if args.checkpoint_oe and args.name_oe == args.name:
        raise ValueError("--name and --name-oe must differ")
    device = str(resolve_device(args.device))
    paths = {args.name: args.checkpoint, **({args.name_oe: args.checkpoint_oe} if args.checkpoint_oe else {})}
    for path in paths.values():
        if not Path(path).exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
    models = {name: load_model(path, device=device) for name, path in paths.items()}
    settings = dict(
        eps=tuple(args.eps), norm=args.norm, n=args.n, n_in=args.n_in, in_dist=args.in_dist, suites=tuple(args.suites),
        threshold=args.threshold, seed=args.seed, attackers=tuple(args.attackers), pgd_steps=tuple(args.pgd_steps),
        pgd_random_restarts=args.pgd_restarts, apgd_steps=args.apgd_steps, apgd_restarts=args.apgd_restarts,
        apgd_loss=args.apgd_loss, square_steps=args.square_steps, square_restarts=args.square_restarts,
        early_stop=not args.no_early_stop, batch_size=args.batch_size)
    if args.pgd_step_sizes:
        settings["pgd_step_sizes"] = tuple(args.pgd_step_sizes)
    config = OODEvalConfig().replace(**settings)
    run_eval_ood(models, args.out, config, suite_files=dict(args.suite_file), report=not args.no_report,
                 device=device, checkpoints=paths)
    print(f"wrote {Path(args.out) / 'ood.json'}" + ("" if args.no_report else f" and {Path(args.out) / 'report.html'}"))
    return 0
