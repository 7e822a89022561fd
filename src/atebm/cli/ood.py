"""``atebm eval-ood``: clean and worst-case OOD evaluation of one or two models (an adversarially trained model
and, optionally, the K = 0 Outlier Exposure baseline), written to ``ood.json`` and the run report. Parses
options only; the pipeline is :func:`atebm.ood.run_eval_ood`, whose defaults (:class:`atebm.ood.OODEvalConfig`)
are the option defaults here. Options that are not given are not passed on, so the config's own defaults apply;
an attacker's options without that attacker in ``--attackers`` are refused."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..ood import ALL_SUITES, ATTACKERS, EMBEDDED_SUITES, OODEvalConfig, run_eval_ood
from . import options

__all__ = ["register"]

#: Display name of the second model (--checkpoint-oe) in tables and the report, unless --name-oe is given.
NAME_OE = "OE (K=0)"
#: The options of each attacker (destination -> flag): given without the attacker in ``--attackers``, refused.
ATTACKER_OPTIONS = {"pgd": {"pgd_steps": "--steps", "pgd_step_sizes": "--step-sizes",
                            "pgd_random_restarts": "--pgd-restarts"},
                    "apgd": {"apgd_steps": "--apgd-steps", "apgd_restarts": "--apgd-restarts",
                             "apgd_loss": "--apgd-loss"},
                    "square": {"square_steps": "--square-steps", "square_restarts": "--square-restarts"}}
#: Every setting of OODEvalConfig (and its attack config) that an option sets, by destination.
SETTINGS = ("eps", "norm", "n", "n_in", "in_dist", "suites", "threshold", "seed", "attackers", "batch_size",
            *(name for names in ATTACKER_OPTIONS.values() for name in names))


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
                    "worst case (highest score in an eps-ball; atebm PGD and ART's APGD, optionally the Square "
                    "attack; per-sample best) and reports AUROC/AUPR/FPR@95 per set and eps. Image size and "
                    "channels come from the checkpoint. Writes OUT/ood.json, OUT/ood_scores.npz and updates "
                    "OUT/report.html.")
    option = options.add_library_option
    options.add_checkpoint(p, help="the adversarially trained model: a run folder (its model.pt) or a model file")
    options.add_checkpoint(p, flag="--checkpoint-oe", required=False,
                           help="optional second model, e.g. the K=0 Outlier Exposure baseline (run folder or file)")
    p.add_argument("--name", default="AT", help="display name of --checkpoint (default: %(default)s)")
    option(p, "--name-oe", default=NAME_OE, help="display name of --checkpoint-oe")
    options.add_out(p, help="run folder for ood.json and the report")
    option(p, "--eps", type=options.non_negative_float, nargs="+", default=d.eps,
           help="radii; 0 = clean (L2 on 28x28 images in [0,1])")
    option(p, "--norm", choices=("l2", "linf"), default=d.norm, help="ball of the attacks")
    option(p, "--n", type=options.positive_int, default=d.n, help="OOD samples per set")
    option(p, "--n-in", type=options.positive_int, default=d.n_in, help="in-distribution samples")
    option(p, "--in-dist", default=d.in_dist,
           help="named dataset (its test split is used), a data-source string (cifar10:PATH?split=test, "
                "folder:PATH, npz:PATH) or a path")
    option(p, "--suites", nargs="*", choices=list(ALL_SUITES), metavar="NAME",
           default=EMBEDDED_SUITES if d.suites is None else d.suites,
           help=f"OOD sets by name: {', '.join(ALL_SUITES)}")
    p.add_argument("--suite-file", type=_named_path, action="append", default=[], metavar="NAME=SOURCE",
                   help="an extra OOD set (repeatable): a path (image folder, .npz, .npy) or a data-source string, "
                        "e.g. svhn=/data/svhn_test.npz or cifar100=cifar100:/data/cifar-100-python?split=test")
    option(p, "--attackers", nargs="+", choices=ATTACKERS, default=a.attackers,
           help="worst-case attackers (square is gradient-free and slower)")
    option(p, "--steps", "--pgd-steps", dest="pgd_steps", type=options.positive_int, nargs="+", metavar="N",
           default=a.pgd_steps, help="PGD step counts of the grid")
    option(p, "--step-sizes", "--pgd-step-sizes", dest="pgd_step_sizes", type=options.positive_float, nargs="+",
           metavar="S", default=None, default_text=f"{a.pgd_step_factor:g}*eps/steps",
           help="PGD step sizes of the grid")
    option(p, "--pgd-restarts", dest="pgd_random_restarts", type=options.non_negative_int, metavar="N",
           default=a.pgd_random_restarts, help="extra random-start PGD runs per grid point")
    option(p, "--apgd-steps", type=options.positive_int, default=a.apgd_steps, help="APGD iterations")
    option(p, "--apgd-restarts", type=options.positive_int, default=a.apgd_restarts, help="APGD random starts")
    option(p, "--apgd-loss", choices=("dlr", "ce"), default=a.apgd_loss, help="APGD loss")
    option(p, "--square-steps", type=options.positive_int, default=a.square_steps, help="Square iterations")
    option(p, "--square-restarts", type=options.positive_int, default=a.square_restarts, help="Square starts")
    p.add_argument("--no-early-stop", action="store_true",
                   help="attack every sample fully, even once it outscores all in-distribution inputs")
    option(p, "--threshold", type=options.fraction, default=d.threshold,
           help="report the first eps where AUROC falls below this")
    option(p, "--seed", type=int, default=d.seed, help="random seed of the sets and the attacks")
    option(p, "--batch-size", type=options.positive_int, default=a.batch_size, help="samples per attack call")
    options.add_device(p, options.library_device())
    options.add_threads(p)
    options.add_no_report(p)
    p.set_defaults(func=_run)


def _settings(args: argparse.Namespace) -> dict[str, object]:
    """The OODEvalConfig settings the command line gave; an attacker's options without the attacker are refused."""
    settings = options.given(args, *SETTINGS)
    attackers = settings.get("attackers", OODEvalConfig().attack.attackers)
    for attacker, flags in ATTACKER_OPTIONS.items():
        if attacker not in attackers:
            options.refuse({flag: f"sets the {attacker} attacker, which --attackers {' '.join(attackers)} does "
                                  "not run" for name, flag in flags.items() if name in settings})
    if args.no_early_stop:
        settings["early_stop"] = False
    return {name: tuple(value) if isinstance(value, list) else value for name, value in settings.items()}


def _run(args: argparse.Namespace) -> int:
    from ..training import load_model, resolve_device

    if "name_oe" in args and not args.checkpoint_oe:
        options.refuse({"--name-oe": "names the model of --checkpoint-oe, which is not given"})
    settings = _settings(args)
    options.apply_threads(args)
    name_oe = getattr(args, "name_oe", NAME_OE)
    if args.checkpoint_oe and name_oe == args.name:
        raise ValueError("--name and --name-oe must differ")
    device = str(resolve_device(args.device))
    paths = {args.name: args.checkpoint, **({name_oe: args.checkpoint_oe} if args.checkpoint_oe else {})}
    for path in paths.values():
        if not Path(path).exists():
            raise FileNotFoundError(f"checkpoint not found: {path}")
    models = {name: load_model(path, device=device) for name, path in paths.items()}
    config = OODEvalConfig().replace(**settings)
    run_eval_ood(models, args.out, config, suite_files=dict(args.suite_file), report=not args.no_report,
                 device=device, checkpoints=paths)
    print(f"wrote {Path(args.out) / 'ood.json'}" + ("" if args.no_report else f" and {Path(args.out) / 'report.html'}"))
    return 0
