"""``atebm gat train|eval``: the detector committee of T Sec. 3.2. Parser only; the pipelines are
:func:`atebm.gat.pipeline.run_gat_train` and :func:`atebm.gat.pipeline.run_gat_eval`, whose signatures hold the
defaults shown here.

Examples::

    atebm gat train --out runs/gat                         # preset mnist: MNIST 5,000, Linf 0.3, 2 CPU cores
    atebm gat train --preset mnist-linf0.3 --data fashion --out runs/gat-fashion
    atebm gat eval --checkpoint runs/gat --out runs/gat    # tables, TPR/FPR curves, report sections
"""
from __future__ import annotations

import argparse
from typing import Any

from ..gat.evaluate import EVAL_PROTOCOLS
from ..gat.pipeline import EVAL_SECTIONS, run_gat_eval, run_gat_train
from ..gat.presets import GAT_PRESETS
from .options import (
    add_checkpoint,
    add_device,
    add_out,
    add_seed,
    add_threads,
    apply_threads,
    non_negative_int,
    pipeline_defaults,
    positive_int,
)

__all__ = ["register"]


def _train(args: argparse.Namespace) -> int:
    apply_threads(args)
    run_gat_train(args.out, preset=args.preset, data=args.data, resume=args.resume, device=args.device,
                  classes=args.classes, seed=args.seed, workers=args.workers, report=not args.no_report)
    return 0


def _eval(args: argparse.Namespace) -> int:
    apply_threads(args)
    run_gat_eval(args.checkpoint, args.out, protocol=args.protocol, sections=args.sections, data=args.data,
                 device=args.device, resume=args.resume, report=not args.no_report)
    return 0


def register(subparsers: Any) -> None:
    """Adds ``gat train`` and ``gat eval``."""
    t, e = pipeline_defaults(run_gat_train), pipeline_defaults(run_gat_eval)
    gat = subparsers.add_parser("gat", help="adversarial-example detection with per-class detectors (GAT)",
                                description="Train and evaluate the detector committee of T Sec. 3.2.")
    sub = gat.add_subparsers(dest="gat_command", metavar="{train,eval}", required=True)

    train = sub.add_parser("train", help="train the softmax classifier and one detector per class",
                           description="Trains f and the detectors d_k (p_data = class k, p_0 = the other classes "
                                       "perturbed inside the preset's ball) with atebm.Trainer, keeps each "
                                       "detector's best-validation weights and writes committee.pt.")
    train.add_argument("--preset", choices=sorted(GAT_PRESETS), default=t["preset"],
                       help="training recipe (default: %(default)s; `mnist` is the CPU preset)")
    train.add_argument("--data", default=None,
                       help="labelled data source string (default: the preset's, mnist = MNIST 5,000)")
    add_out(train, help="committee run folder")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    train.add_argument("--classes", type=non_negative_int, nargs="+", default=None, metavar="K",
                       help="train only these detectors (default: all)")
    train.add_argument("--workers", type=positive_int, default=t["workers"],
                       help="detectors trained at once, one process and one thread each (default: %(default)s; "
                            "2 on a 2-core machine)")
    add_device(train, default=t["device"])
    add_seed(train, default=t["seed"])
    add_threads(train)
    train.add_argument("--no-report", action="store_true", help="do not write report.html")
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="AUC tables, integrated vs generative detection, ART check, L2 distortion",
                        description="Evaluates a committee run folder on the test split of its data and writes "
                                    "OUT/gat_eval.json (protocol beside every number) and report sections.")
    add_checkpoint(ev, help="committee run folder (or its committee.pt)")
    add_out(ev, help="folder for gat_eval.json and the report")
    ev.add_argument("--protocol", choices=sorted(EVAL_PROTOCOLS), default=e["protocol"],
                    help="mnist: the reduced CPU protocol (default); thesis: T Sec. 3.2.3's")
    ev.add_argument("--sections", nargs="+", choices=EVAL_SECTIONS, default=None,
                    help="evaluation blocks to run (default: all)")
    ev.add_argument("--data", default=None, help="labelled data source (default: the committee's)")
    ev.add_argument("--resume", action="store_true", help="keep the sections already in OUT/gat_eval.json")
    add_device(ev, default=e["device"])
    add_threads(ev)
    ev.add_argument("--no-report", action="store_true", help="do not update report.html")
    ev.set_defaults(func=_eval)
