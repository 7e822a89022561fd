"""``atebm eval-ood``: clean and worst-case OOD evaluation of one or two checkpoints (an adversarially trained
model and, optionally, the K = 0 Outlier Exposure baseline), written to ``ood.json`` and the run report."""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ..ood.pipeline import DEFAULTS, run_eval_ood
from .options import non_negative_float, positive_int

__all__ = ["register"]



def _named_path(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    name, path = text.split("=", 1)
    if not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return name, path


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..ood.suites import EMBEDDED_SUITES

    d = DEFAULTS
    p = subparsers.add_parser(
        "eval-ood", help="clean and worst-case OOD detection (AUROC) of one or two checkpoints",
        description="Scores in-distribution inputs and OOD sets with each checkpoint, replaces every OOD input by "
                    "its worst case (highest score in an eps-ball; atebm PGD and torchattacks APGD, per-sample best) "
                    "and reports AUROC/AUPR/FPR@95 per set and eps. Writes OUT/ood.json, OUT/ood_scores.npz and "
                    "updates OUT/report.html.")
    p.add_argument("--checkpoint", required=True, help="checkpoint of the adversarially trained model")
    p.add_argument("--checkpoint-oe", default=None, help="optional checkpoint of the K=0 Outlier Exposure baseline")
    p.add_argument("--name", default="AT", help="display name of --checkpoint (default: AT)")
    p.add_argument("--name-oe", default="OE (K=0)", help="display name of --checkpoint-oe")
    p.add_argument("--out", required=True, help="run folder for ood.json and the report")
    p.add_argument("--eps", type=non_negative_float, nargs="+", default=list(d["eps"]),
                   help="radii; 0 = clean (default: 0 1 2 3 5 8, L2 on 28x28 images in [0,1])")
    p.add_argument("--norm", choices=("l2", "linf"), default=d["norm"])
    p.add_argument("--n", type=positive_int, default=d["n"], help="OOD samples per set (default: %(default)s)")
    p.add_argument("--n-in", type=positive_int, default=d["n_in"],
                   help="in-distribution samples (default: %(default)s)")
    p.add_argument("--in-dist", default="mnist",
                   help="embedded dataset name (its test split is used), a data-source string "
                        "(cifar10:PATH?split=test, folder:PATH, npz:PATH) or a path; default: mnist")
    p.add_argument("--suites", nargs="*", default=list(EMBEDDED_SUITES), choices=list(EMBEDDED_SUITES),
                   metavar="NAME", help=f"embedded OOD sets (default: all of {', '.join(EMBEDDED_SUITES)})")
    p.add_argument("--suite-file", type=_named_path, action="append", default=[], metavar="NAME=SOURCE",
                   help="an extra OOD set (repeatable): a path (image folder, .npz, .npy) or a data-source string, "
                        "e.g. svhn=/data/svhn_test.npz or cifar100=cifar100:/data/cifar-100-python?split=test")
    p.add_argument("--size", type=positive_int, default=d["size"], help="image size (default: %(default)s)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None,
                   help="image channels (default: the checkpoint's input channels)")
    p.add_argument("--attackers", nargs="+", choices=("pgd", "apgd"), default=list(d["attackers"]))
    p.add_argument("--steps", "--pgd-steps", dest="pgd_steps", type=positive_int, nargs="+",
                   default=list(d["pgd_steps"]), help="PGD step counts of the grid (default: %(default)s)")
    p.add_argument("--step-sizes", "--pgd-step-sizes", dest="pgd_step_sizes", type=non_negative_float, nargs="+",
                   default=None, help="PGD step sizes of the grid (default: 2.5*eps/steps)")
    p.add_argument("--pgd-restarts", type=int, default=d["pgd_restarts"],
                   help="extra random-start PGD runs per grid point (default: %(default)s)")
    p.add_argument("--apgd-steps", type=positive_int, default=d["apgd_steps"])
    p.add_argument("--apgd-restarts", type=positive_int, default=d["apgd_restarts"])
    p.add_argument("--apgd-loss", choices=("dlr", "ce"), default=d["apgd_loss"])
    p.add_argument("--no-early-stop", action="store_true",
                   help="attack every sample fully, even once it outscores all in-distribution inputs")
    p.add_argument("--threshold", type=float, default=d["threshold"],
                   help="report the first eps where AUROC falls below this (default: %(default)s)")
    p.add_argument("--seed", type=int, default=d["seed"])
    p.add_argument("--batch-size", type=positive_int, default=d["batch_size"])
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or auto (default: cpu)")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="torch CPU threads (default: torch's choice; 1 is fastest on a busy shared machine)")
    p.add_argument("--no-report", action="store_true", help="do not update OUT/report.html")
    p.set_defaults(func=_run)


def _load_model(path: str, device: str) -> Any:
    from ..training import CheckpointError, load

    if not Path(path).exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return load(path, device=device)
    except CheckpointError as err:
        raise ValueError(str(err)) from err


def _in_channels(model: Any) -> int:
    spec = getattr(model, "spec", {}) or {}
    return int((spec.get("kwargs") or {}).get("in_channels", 1))


def _run(args: argparse.Namespace) -> int:
    import torch

    from ..training import resolve_device

    if args.threads is not None:
        torch.set_num_threads(args.threads)

    device = str(resolve_device(args.device))
    models = {args.name: _load_model(args.checkpoint, device)}
    if args.checkpoint_oe:
        if args.name_oe == args.name:
            raise ValueError("--name and --name-oe must differ")
        models[args.name_oe] = _load_model(args.checkpoint_oe, device)
    channels = args.channels or _in_channels(models[args.name])
    result = run_eval_ood(models, args.out, eps=args.eps, norm=args.norm, n=args.n, n_in=args.n_in,
                          in_dist=args.in_dist, suites=args.suites, suite_files=dict(args.suite_file),
                          size=args.size, channels=channels, attackers=args.attackers, pgd_steps=args.pgd_steps,
                          pgd_step_sizes=args.pgd_step_sizes, pgd_restarts=args.pgd_restarts,
                          apgd_steps=args.apgd_steps, apgd_restarts=args.apgd_restarts, apgd_loss=args.apgd_loss,
                          early_stop=not args.no_early_stop, threshold=args.threshold, seed=args.seed,
                          batch_size=args.batch_size, report=not args.no_report, device=device,
                          checkpoints={args.name: args.checkpoint,
                                       **({args.name_oe: args.checkpoint_oe} if args.checkpoint_oe else {})})
    print(f"wrote {Path(args.out) / 'ood.json'}" + ("" if args.no_report else f" and {Path(args.out) / 'report.html'}"))
    return 0 if result else 1
