"""``atebm gat train|eval|calibrate|robust-softmax|classify-eval|explain``: the detector committee of T Sec. 3.2
and the generative robust classifier of T Sec. 3.4. Parser only; the pipelines are the ``run_gat_*`` functions of
:mod:`atebm.gat.pipeline` and :func:`atebm.gat.calibration.run_gat_calibrate`, whose signatures hold the defaults
shown here.

Examples::

    atebm gat train --out runs/gat                         # preset mnist: MNIST 5,000, Linf 0.3, 2 CPU cores
    atebm gat train --preset mnist-linf0.3 --data fashion --out runs/gat-fashion
    atebm gat eval --checkpoint runs/gat --out runs/gat    # tables, TPR/FPR curves, report sections
    atebm gat calibrate --checkpoint runs/gat               # refit the offsets c_k (train does it at the end)
    atebm gat robust-softmax --out runs/gat                 # Madry PGD-AT softmax baseline -> robust_softmax.pt
    atebm gat classify-eval --checkpoint runs/gat --softmax runs/gat/robust_softmax.pt --out runs/gat
    atebm gat explain --checkpoint runs/gat --softmax runs/gat/robust_softmax.pt runs/gat/classifier.pt --out runs/gat
"""
from __future__ import annotations

import argparse
from typing import Any

from ..gat.calibration import CALIBRATION_SPLITS, run_gat_calibrate
from ..gat.classifier_robustness import CLASSIFY_PROTOCOLS
from ..gat.evaluate import EVAL_PROTOCOLS, EVAL_SECTIONS, RULE_OFFSETS
from ..gat.pipeline import (
    run_gat_classify_eval,
    run_gat_eval,
    run_gat_explain,
    run_gat_robust_softmax,
    run_gat_train,
)
from ..presets import REGISTRY
from .options import (
    add_checkpoint,
    add_device,
    add_out,
    add_seed,
    add_threads,
    apply_threads,
    non_negative_float,
    non_negative_int,
    pipeline_defaults,
    positive_float,
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
                 device=args.device, rule_offsets=args.rule_offsets, resume=args.resume, report=not args.no_report)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    apply_threads(args)
    record = run_gat_calibrate(args.checkpoint, split=args.split, data=args.data, device=args.device,
                               report=not args.no_report)
    e = record["eval"]
    print(f"offsets c_k: {', '.join(f'{c:+.3f}' for c in record['offsets'])}")
    print(f"test accuracy {e['before']['accuracy']:.4f} -> {e['after']['accuracy']:.4f}")
    return 0


def _robust_softmax(args: argparse.Namespace) -> int:
    apply_threads(args)
    run_gat_robust_softmax(args.out, data=args.data, norm=args.norm, eps=args.eps, steps=args.steps,
                           step_size=args.step_size, iterations=args.iterations, warmup=args.warmup, seed=args.seed,
                           device=args.device)
    return 0


def _classify_eval(args: argparse.Namespace) -> int:
    apply_threads(args)
    run_gat_classify_eval(args.checkpoint, args.out, softmax=args.softmax, protocol=args.protocol, norms=args.norms,
                          data=args.data, device=args.device, report=not args.no_report)
    return 0


def _explain(args: argparse.Namespace) -> int:
    apply_threads(args)
    run_gat_explain(args.checkpoint, args.out, softmax=args.softmax, data=args.data, per_class=args.per_class,
                    cf_n=args.counterfactuals, cf_eps=args.cf_eps, ig_n=args.ig_n, seed=args.seed,
                    device=args.device, report=not args.no_report)
    return 0


def register(subparsers: Any) -> None:
    """Adds ``gat train|eval|calibrate|robust-softmax|classify-eval|explain``."""
    t, e = pipeline_defaults(run_gat_train), pipeline_defaults(run_gat_eval)
    gat = subparsers.add_parser("gat", help="adversarial-example detection with per-class detectors (GAT)",
                                description="Train and evaluate the detector committee of T Sec. 3.2.")
    sub = gat.add_subparsers(dest="gat_command",
                             metavar="{train,eval,calibrate,robust-softmax,classify-eval,explain}", required=True)

    train = sub.add_parser("train", help="train the softmax classifier and one detector per class",
                           description="Trains f and the detectors d_k (p_data = class k, p_0 = the other classes "
                                       "perturbed inside the preset's ball) with atebm.Trainer, keeps each "
                                       "detector's best-validation weights and writes committee.pt.")
    train.add_argument("--preset", choices=REGISTRY.names("gat train"), default=t["preset"],
                       help="training recipe (default: %(default)s; `mnist` is the CPU preset)")
    train.add_argument("--data", default=None,
                       help="labelled data source string (default: the preset's, mnist = MNIST 5,000)")
    add_out(train, help="committee run folder")
    train.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    train.add_argument("--classes", type=non_negative_int, nargs="+", default=None, metavar="K",
                       help="train only these detectors (default: all)")
    train.add_argument("--workers", type=positive_int, default=t["workers"],
                       help="detectors trained at once, one process and one thread each (default: one per usable "
                            "CPU core on CPU, 1 on a GPU)")
    add_device(train, default=t["device"])
    add_seed(train, default=t["seed"])
    add_threads(train)
    train.add_argument("--no-report", action="store_true", help="do not write report.html")
    train.set_defaults(func=_train)

    ev = sub.add_parser("eval", help="AUC tables, integrated vs generative detection (ours + ART), L2 distortion",
                        description="Evaluates a committee run folder on the test split of its data and writes "
                                    "OUT/gat_eval.json (protocol beside every number) and report sections.")
    add_checkpoint(ev, help="committee run folder (or its committee.pt)")
    add_out(ev, help="folder for gat_eval.json and the report")
    ev.add_argument("--protocol", choices=sorted(EVAL_PROTOCOLS), default=e["protocol"],
                    help="mnist: the reduced CPU protocol (default); thesis: T Sec. 3.2.3's; step sizes are "
                         "relative to the committee's own eps, so either fits any committee")
    ev.add_argument("--rule-offsets", choices=RULE_OFFSETS, default=None,
                    help="thesis: T Sec. 3.2's detection rules on z_{d_k} (the protocol's default); calibrated: on "
                         "z_{d_k} + c_k, the offsets of Sec. 3.4, labelled so in tables")
    ev.add_argument("--sections", nargs="+", choices=EVAL_SECTIONS, default=None,
                    help="evaluation blocks to run (default: all)")
    ev.add_argument("--data", default=None, help="labelled data source (default: the committee's)")
    ev.add_argument("--resume", action="store_true", help="keep the sections already in OUT/gat_eval.json")
    add_device(ev, default=e["device"])
    add_threads(ev)
    ev.add_argument("--no-report", action="store_true", help="do not update report.html")
    ev.set_defaults(func=_eval)

    c, r = pipeline_defaults(run_gat_calibrate), pipeline_defaults(run_gat_robust_softmax)
    ce, x = pipeline_defaults(run_gat_classify_eval), pipeline_defaults(run_gat_explain)
    cal = sub.add_parser("calibrate", help="refit the offsets c_k of the generative classifier (T Eq. 3.43)",
                         description="Fits c_k by minimising the cross-entropy of argmax_k d_k(x) + c_k on a "
                                     "held-out split, stores them in committee.pt (atebm.gat.load returns the "
                                     "calibrated classifier) with calibration.json and score histograms.")
    add_checkpoint(cal, help="committee run folder (or its committee.pt)")
    cal.add_argument("--split", choices=CALIBRATION_SPLITS, default=c["split"],
                     help="split the offsets are fitted on (default: %(default)s)")
    cal.add_argument("--data", default=None, help="labelled data source (default: the committee's)")
    add_device(cal, default=c["device"])
    add_threads(cal)
    cal.add_argument("--no-report", action="store_true", help="do not update report.html")
    cal.set_defaults(func=_calibrate)

    rs = sub.add_parser("robust-softmax", help="train the robust softmax baseline (Madry PGD AT, T Eq. 3.16)",
                        description="PGD adversarial training of a ten-output T Tab. 3.1 network; writes "
                                    "OUT/robust_softmax.pt.")
    add_out(rs, help="folder for robust_softmax.pt (e.g. the committee run folder)")
    rs.add_argument("--data", default=r["data"], help="labelled data source (default: %(default)s)")
    rs.add_argument("--norm", choices=("linf", "l2"), default=r["norm"], help="threat model (default: %(default)s)")
    rs.add_argument("--eps", type=non_negative_float, default=r["eps"], help="training radius (default: %(default)s)")
    rs.add_argument("--steps", type=non_negative_int, default=r["steps"], help="attack steps (default: %(default)s)")
    rs.add_argument("--step-size", type=positive_float, default=r["step_size"],
                    help="attack step size (default: %(default)s)")
    rs.add_argument("--iterations", type=positive_int, default=r["iterations"],
                    help="training iterations (default: %(default)s)")
    rs.add_argument("--warmup", type=non_negative_int, default=r["warmup"],
                    help="iterations over which the training radius grows from 0 to --eps (default: %(default)s)")
    add_device(rs, default=r["device"])
    add_seed(rs, default=r["seed"])
    add_threads(rs)
    rs.set_defaults(func=_robust_softmax)

    cev = sub.add_parser("classify-eval", help="accuracy vs test eps of the generative and softmax classifiers",
                         description="Clean and worst-case robust accuracy (T Eq. 3.46-3.48, full-margin, ART "
                                     "APGD attackers, per sample) over Linf and L2 eps grids; writes "
                                     "OUT/classify.json, accuracy_vs_eps.png and report sections.")
    add_checkpoint(cev, help="committee run folder (or its committee.pt)")
    cev.add_argument("--softmax", nargs="*", default=list(ce["softmax"]), metavar="PATH",
                     help="softmax classifier checkpoints to compare (named by file stem)")
    add_out(cev, help="folder for classify.json and the report")
    cev.add_argument("--protocol", choices=sorted(CLASSIFY_PROTOCOLS), default=ce["protocol"],
                     help="mnist: the reduced CPU protocol (default); full: more inputs, steps and restarts")
    cev.add_argument("--norms", nargs="+", choices=("linf", "l2"), default=list(ce["norms"]),
                     help="eps grids to run (default: both)")
    cev.add_argument("--data", default=None, help="labelled data source (default: the committee's)")
    add_device(cev, default=ce["device"])
    add_threads(cev)
    cev.add_argument("--no-report", action="store_true", help="do not update report.html")
    cev.set_defaults(func=_classify_eval)

    ex = sub.add_parser("explain", help="samples, counterfactuals, integrated gradients and FD (T Fig. 3.8-3.10)",
                        description="Class-conditional samples from per-class Gaussian seeds, counterfactuals "
                                    "and integrated-gradients attributions of the generative classifier and the "
                                    "given softmax classifiers; FD with the digit-classifier features.")
    add_checkpoint(ex, help="committee run folder (or its committee.pt)")
    ex.add_argument("--softmax", nargs="*", default=list(x["softmax"]), metavar="PATH",
                    help="softmax classifier checkpoints (named by file stem)")
    add_out(ex, help="folder for explain.json, the grids and the report")
    ex.add_argument("--data", default=None, help="labelled data source (default: the committee's)")
    ex.add_argument("--per-class", type=positive_int, default=x["per_class"],
                    help="generated samples per class (default: %(default)s)")
    ex.add_argument("--counterfactuals", type=positive_int, default=x["cf_n"],
                    help="test images turned toward their runner-up class (default: %(default)s)")
    ex.add_argument("--cf-eps", type=positive_float, default=x["cf_eps"],
                    help="L2 radius of the counterfactuals (default: %(default)s)")
    ex.add_argument("--ig-n", type=positive_int, default=x["ig_n"],
                    help="test images attributed with integrated gradients (default: %(default)s)")
    add_device(ex, default=x["device"])
    add_seed(ex, default=x["seed"])
    add_threads(ex)
    ex.add_argument("--no-report", action="store_true", help="do not update report.html")
    ex.set_defaults(func=_explain)
