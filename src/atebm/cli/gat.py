"""``atebm gat train|eval|calibrate|robust-softmax|classify-eval|explain``: the detector committee of T Sec. 3.2
and the generative robust classifier of T Sec. 3.4. Parser only; the pipelines are the ``run_gat_*`` functions of
:mod:`atebm.gat.pipeline` and :func:`atebm.gat.calibration.run_gat_calibrate`, whose signatures hold the defaults
shown here (``atebm gat train key=value`` overrides the detectors' :class:`atebm.TrainConfig` fields).

Examples::

    atebm gat train --out runs/gat                         # preset mnist: MNIST 5,000, Linf 0.3, 2 CPU cores
    atebm gat train --preset mnist-linf0.5-cpu --out runs/gat-linf0.5 max_iters=1000
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
from ..training import TrainConfig
from . import options

__all__ = ["register"]

#: TrainConfig fields ``atebm gat train key=value`` refuses, with the option or preset that sets them.
RESERVED_DETECTOR_KEYS = {"seed": "--seed (each detector's seed derives from it)",
                          "pgd_norm": "--preset (its threat model)", "pgd_eps": "--preset (its threat model)",
                          "pgd_random_start": "--preset (its threat model)"}


#: The options of ``gat robust-softmax`` and ``gat explain`` (flag, pipeline parameter, argparse keywords, help);
#: their defaults are the pipelines'.
ROBUST_SOFTMAX_OPTIONS: tuple[options.OptionRow, ...] = (
    ("--norm", "norm", {"choices": ("linf", "l2")}, "threat model"),
    ("--eps", "eps", {"type": options.non_negative_float}, "training radius"),
    ("--warmup", "warmup", {"type": options.non_negative_int},
     "iterations over which the training radius grows from 0 to --eps"),
    ("--steps", "steps", {"type": options.non_negative_int}, "attack steps"),
    ("--step-size", "step_size", {"type": options.positive_float}, "attack step size"),
    ("--iterations", "iterations", {"type": options.positive_int}, "training iterations"))
EXPLAIN_OPTIONS: tuple[options.OptionRow, ...] = (
    ("--per-class", "per_class", {"type": options.positive_int}, "generated samples per class"),
    ("--counterfactuals", "cf_n", {"type": options.positive_int},
     "test images turned toward their runner-up class"),
    ("--cf-eps", "cf_eps", {"type": options.positive_float}, "L2 radius of the counterfactuals"),
    ("--ig-n", "ig_n", {"type": options.positive_int}, "test images attributed with integrated gradients"))


def _train(args: argparse.Namespace) -> int:
    options.apply_threads(args)
    run_gat_train(args.out, preset=args.preset, data=args.data, resume=args.resume, classes=args.classes,
                  seed=args.seed, workers=args.workers, overrides=options.read_overrides(args), smoke=args.smoke,
                  report=not args.no_report)
    return 0


def _eval(args: argparse.Namespace) -> int:
    options.apply_threads(args)
    run_gat_eval(args.checkpoint, args.out, protocol=args.protocol, sections=args.sections, data=args.data,
                 device=args.device, rule_offsets=args.rule_offsets, resume=args.resume, report=not args.no_report)
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    options.apply_threads(args)
    record = run_gat_calibrate(args.checkpoint, split=args.split, data=args.data, device=args.device,
                               report=not args.no_report)
    e = record["eval"]
    print(f"offsets c_k: {', '.join(f'{c:+.3f}' for c in record['offsets'])}")
    print(f"test accuracy {e['before']['accuracy']:.4f} -> {e['after']['accuracy']:.4f}")
    return 0


def _robust_softmax(args: argparse.Namespace) -> int:
    options.apply_threads(args)
    run_gat_robust_softmax(args.out, data=args.data, seed=args.seed, device=args.device,
                           **options.given(args, *(name for _, name, _, _ in ROBUST_SOFTMAX_OPTIONS)))
    return 0


def _classify_eval(args: argparse.Namespace) -> int:
    options.apply_threads(args)
    run_gat_classify_eval(args.checkpoint, args.out, protocol=args.protocol, norms=args.norms, data=args.data,
                          device=args.device, report=not args.no_report, **options.given(args, "softmax"))
    return 0


def _explain(args: argparse.Namespace) -> int:
    options.apply_threads(args)
    run_gat_explain(args.checkpoint, args.out, data=args.data, seed=args.seed, device=args.device,
                    report=not args.no_report,
                    **options.given(args, "softmax", *(name for _, name, _, _ in EXPLAIN_OPTIONS)))
    return 0


#: The sub-commands: name -> (help, description).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "train": ("train the softmax classifier and one detector per class",
              "Trains f and the detectors d_k (p_data = class k, p_0 = the other classes perturbed inside the preset's "
              "ball) with atebm.Trainer, keeps each detector's best-validation weights and writes committee.pt. "
              "key=value overrides the detectors' TrainConfig (budgets, optimiser, network)."),
    "eval": ("AUC tables, integrated vs generative detection (ours + ART), L2 distortion",
             "Evaluates a committee run folder on the test split of its data and writes OUT/gat_eval.json (protocol "
             "beside every number) and report sections."),
    "calibrate": ("refit the offsets c_k of the generative classifier (T Eq. 3.43)",
                  "Fits c_k by minimising the cross-entropy of argmax_k d_k(x) + c_k on a held-out split, stores them "
                  "in committee.pt (atebm.gat.load returns the calibrated classifier) with calibration.json and score "
                  "histograms."),
    "robust-softmax": ("train the robust softmax baseline (Madry PGD AT, T Eq. 3.16)",
                       "PGD adversarial training of a ten-output T Tab. 3.1 network; writes OUT/robust_softmax.pt."),
    "classify-eval": ("accuracy vs test eps of the generative and softmax classifiers",
                      "Clean and worst-case robust accuracy (T Eq. 3.46-3.48, full-margin, ART APGD attackers, per "
                      "sample) over Linf and L2 eps grids; writes OUT/classify.json, accuracy_vs_eps.png and report "
                      "sections."),
    "explain": ("samples, counterfactuals, integrated gradients and FD (T Fig. 3.8-3.10)",
                "Class-conditional samples from per-class Gaussian seeds, counterfactuals and integrated-gradients "
                "attributions of the generative classifier and the given softmax classifiers; FD with the "
                "digit-classifier features."),
}


def _subcommand(sub: Any, name: str) -> argparse.ArgumentParser:
    """The parser of ``atebm gat NAME`` with its texts from :data:`SUBCOMMANDS`."""
    help_text, description = SUBCOMMANDS[name]
    parser: argparse.ArgumentParser = sub.add_parser(name, help=help_text, description=description)
    return parser


def _committee_options(parser: argparse.ArgumentParser, what: str, softmax: str = "") -> None:
    """``--checkpoint`` (a committee run folder), ``--out`` for ``what`` and ``--softmax`` checkpoints ``softmax``
    (each when given), and ``--data``."""
    options.add_checkpoint(parser, help="committee run folder (or its committee.pt)")
    if what:
        options.add_out(parser, help=f"folder for {what}")
    if softmax:
        options.add_library_option(parser, "--softmax", nargs="*", metavar="PATH", default=(), default_text="none",
                                   help=f"softmax classifier checkpoints {softmax} (named by file stem)")
    options.add_data(parser, None, help="labelled data source (default: the committee's)")


def register(subparsers: Any) -> None:
    """Adds ``gat train|eval|calibrate|robust-softmax|classify-eval|explain``."""
    t, e = options.pipeline_defaults(run_gat_train), options.pipeline_defaults(run_gat_eval)
    gat = subparsers.add_parser("gat", help="adversarial-example detection with per-class detectors (GAT)",
                                description="Train and evaluate the detector committee of T Sec. 3.2.")
    sub = gat.add_subparsers(dest="gat_command",
                             metavar="{train,eval,calibrate,robust-softmax,classify-eval,explain}", required=True)

    train = _subcommand(sub, "train")
    options.add_preset(train, "gat train", default=t["preset"],
                       help="training recipe (`mnist` is the CPU preset; `atebm presets --command 'gat train'`)")
    options.add_data(train, None, help="labelled data source string (default: the preset's, mnist = MNIST 5,000)")
    options.add_out(train, help="committee run folder")
    options.add_resume(train, help="continue an interrupted run in --out")
    train.add_argument("--classes", type=options.non_negative_int, nargs="+", default=None, metavar="K",
                       help="train only these detectors (default: all)")
    train.add_argument("--workers", type=options.positive_int, default=t["workers"],
                       help="detectors trained at once, one process and one thread each (default: one per usable "
                            "CPU core on CPU, 1 on a GPU)")
    train.add_argument("--smoke", action="store_true",
                       help="the preset at a seconds-long budget (2 iterations per detector, 1 classifier epoch), "
                            "for tests and for trying the command; its numbers mean nothing")
    options.add_run_options(train, run_gat_train, seed=True, report="write", device_key="device")
    options.add_overrides(train, TrainConfig, example="max_iters=1000 lr=5e-4", reserved=RESERVED_DETECTOR_KEYS,
                          mirrored={"device": "--device"})
    train.set_defaults(func=_train)

    ev = _subcommand(sub, "eval")
    _committee_options(ev, "gat_eval.json and the report")
    ev.add_argument("--protocol", choices=sorted(EVAL_PROTOCOLS), default=e["protocol"],
                    help="mnist: the reduced CPU protocol; thesis: T Sec. 3.2.3's; smoke: seconds, numbers mean "
                         "nothing; step sizes are relative to the committee's own eps, so each fits any committee "
                         "(default: %(default)s)")
    ev.add_argument("--rule-offsets", choices=RULE_OFFSETS, default=e["rule_offsets"],
                    help="thesis: T Sec. 3.2's detection rules on z_{d_k} (the protocol's default); calibrated: on "
                         "z_{d_k} + c_k, the offsets of Sec. 3.4, labelled so in tables")
    ev.add_argument("--sections", nargs="+", choices=EVAL_SECTIONS, default=e["sections"],
                    help="evaluation blocks to run (default: all)")
    options.add_resume(ev, help="keep the sections already in OUT/gat_eval.json")
    options.add_run_options(ev, run_gat_eval, report="update")
    ev.set_defaults(func=_eval)

    c, r = options.pipeline_defaults(run_gat_calibrate), options.pipeline_defaults(run_gat_robust_softmax)
    ce, x = options.pipeline_defaults(run_gat_classify_eval), options.pipeline_defaults(run_gat_explain)
    cal = _subcommand(sub, "calibrate")
    _committee_options(cal, "")
    cal.add_argument("--split", choices=CALIBRATION_SPLITS, default=c["split"],
                     help="split the offsets are fitted on (default: %(default)s)")
    options.add_run_options(cal, run_gat_calibrate, report="update")
    cal.set_defaults(func=_calibrate)

    rs = _subcommand(sub, "robust-softmax")
    options.add_out(rs, help="folder for robust_softmax.pt (e.g. the committee run folder)")
    options.add_data(rs, r["data"])
    options.add_options_of(rs, r, ROBUST_SOFTMAX_OPTIONS)
    options.add_run_options(rs, run_gat_robust_softmax, seed=True)
    rs.set_defaults(func=_robust_softmax)

    cev = _subcommand(sub, "classify-eval")
    _committee_options(cev, "classify.json and the report", softmax="to compare")
    cev.add_argument("--protocol", choices=sorted(CLASSIFY_PROTOCOLS), default=ce["protocol"],
                     help="mnist: the reduced CPU protocol; full: more inputs, steps and restarts; smoke: "
                          "seconds, numbers mean nothing (default: %(default)s)")
    cev.add_argument("--norms", nargs="+", choices=("linf", "l2"), default=list(ce["norms"]),
                     help=f"eps grids to run (default: {options.shown(ce['norms'])})")
    options.add_run_options(cev, run_gat_classify_eval, report="update")
    cev.set_defaults(func=_classify_eval)

    ex = _subcommand(sub, "explain")
    _committee_options(ex, "explain.json, the grids and the report", softmax="to explain beside the committee")
    options.add_options_of(ex, x, EXPLAIN_OPTIONS)
    options.add_run_options(ex, run_gat_explain, seed=True, report="update")
    ex.set_defaults(func=_explain)
