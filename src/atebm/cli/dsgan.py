"""``atebm dsgan train|sample|ssl|robust``: the difference-seeking GAN (S). Parsers only; the pipelines are
:func:`atebm.dsgan.train_case`, :func:`atebm.dsgan.train_on_data`, :func:`atebm.dsgan.sample_generator`,
:func:`atebm.dsgan.run_ssl_benchmark` and :func:`atebm.dsgan.run_low_density_at`."""
from __future__ import annotations

import argparse
import shlex
import sys

from .options import (
    add_checkpoint,
    add_device,
    add_out,
    add_seed,
    add_threads,
    apply_threads,
    positive_float,
    positive_int,
)
from .train import parse_overrides

__all__ = ["register"]


def _classes(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected class labels like 1 or 1,7, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one class label")
    return values


def _integers(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected integers like 0,1,2, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one integer")
    return values


def _modes(text: str) -> list[str]:
    from ..dsgan import SSL_MODES

    modes = [m.strip() for m in text.split(",") if m.strip()]
    unknown = [m for m in modes if m not in SSL_MODES]
    if unknown or not modes:
        raise argparse.ArgumentTypeError(f"modes must be from {', '.join(SSL_MODES)}, got {text!r}")
    return modes


def _command() -> str | None:
    """The command line as typed, when this process is ``atebm dsgan ...`` (recorded in result JSON files)."""
    return "atebm " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["dsgan"] else None


def _train(args: argparse.Namespace) -> int:
    from ..dsgan import CASES, train_case, train_on_data

    apply_threads(args)
    overrides = parse_overrides(args.overrides)
    if args.case:
        summary = train_case(args.case, args.out, overrides=overrides, resume=args.resume, n_eval=args.n_eval,
                             seed=args.seed, device=args.device, log=lambda s: print(s, file=sys.stderr))
        ev = summary["evaluation"]
        if "generated" in ev:
            g = ev["generated"]
            print(f"{args.case}: {g['in_target_support']:.1%} of the samples in the target's support "
                  f"(p_dbar > alpha p_d), {g['pbar_has_mass_and_pd_little']:.1%} where p_dbar has mass and p_d "
                  f"little; energy distance to the target {g['energy_distance_to_target']:.4f}")
        else:
            print(f"{args.case}: {ev['fraction_target']:.1%} of {ev['n']} samples judged digit(s) "
                  f"{ev['target_classes']} by the digit classifier")
        print(f"wrote {args.out}/case.json, model.pt (discriminator), checkpoint.pt (with the generator), report.html")
        return 0
    if not args.pbar:
        raise ValueError(f"--data needs --pbar (gaussian:STD, uniform:H, classes:1,7, interpolate:LO,HI or a "
                         f"source string); or use --case {{{','.join(CASES)}}}")
    train_on_data(args.out, args.data, args.pbar, classes=args.classes, overrides=overrides, resume=args.resume,
                  n_eval=args.n_eval, seed=args.seed, device=args.device, log=lambda s: print(s, file=sys.stderr))
    print(f"wrote {args.out}/samples.png, model.pt, checkpoint.pt, run.json")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from ..dsgan import sample_generator

    apply_threads(args)
    protocol = sample_generator(args.checkpoint, args.out, n=args.n, seed=args.seed, device=args.device)
    print(f"wrote {args.out}/samples.npz (x: {protocol['shape']}) and samples.png")
    return 0


def _ssl(args: argparse.Namespace) -> int:
    from ..dsgan import run_ssl_benchmark

    apply_threads(args)
    command = _command()
    summary = run_ssl_benchmark(args.out, modes=args.modes, seeds=args.seeds, dataset=args.dataset,
                                per_class=args.per_class, overrides=parse_overrides(args.overrides),
                                device=args.device, log=lambda s: print(s, file=sys.stderr), command=command)
    for mode, r in summary["results"].items():
        print(f"{mode}: test error {r['error_percent_mean']:.2f} +- {r['error_percent_std']:.2f} % "
              f"({r['n_runs']} runs)")
    return 0


def _robust(args: argparse.Namespace) -> int:
    from ..dsgan import RobustSettings, run_low_density_at

    apply_threads(args)
    settings = RobustSettings(seed=args.seed, weights=tuple(args.weights), feature_noise=args.feature_noise,
                              pixel_noise=tuple(args.pixel_noise), n_test=args.n_test)
    summary = run_low_density_at(args.out, settings, log=lambda s: print(s, file=sys.stderr), command=_command())
    print(f"wrote {args.out}/robust.json and robust_accuracy.png ({len(summary['results'])} models)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..dsgan import CASES, SSL_MODES

    dsgan = subparsers.add_parser("dsgan", help="difference-seeking GAN: case studies, sampling, semi-supervised",
                                  description="DSGAN (S): a generator of p_g ~ (p_dbar - alpha p_d) / (1 - alpha).")
    sub = dsgan.add_subparsers(dest="dsgan_command", metavar="COMMAND", required=True)

    train = sub.add_parser("train", help="train a DSGAN: a named case study or p_d/p_dbar from data",
                           description="Any DSGANConfig field can be overridden as key=value (e.g. alpha=0.5 "
                                       "critic_steps=5 loss=wgan-gp sampling_trick=false max_iters=500).")
    where = train.add_mutually_exclusive_group(required=True)
    where.add_argument("--case", choices=sorted(CASES), help="a named case study (S Fig. 2-6)")
    where.add_argument("--data", metavar="SOURCE", help="p_d: a data-source string (e.g. mnist?split=train)")
    train.add_argument("--classes", type=_classes, help="with --data: keep only these classes for p_d (e.g. 1)")
    train.add_argument("--pbar", metavar="SPEC",
                       help="with --data: p_dbar = gaussian:STD | uniform:HALF_WIDTH | classes:1,7 | "
                            "interpolate:LOW,HIGH | a data-source string")
    add_out(train)
    train.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    train.add_argument("--n-eval", type=positive_int, default=2000, help="samples evaluated (default: 2000)")
    add_seed(train, help="training seed (2D cases: also the data sample)")
    add_device(train)
    add_threads(train)
    train.add_argument("overrides", nargs="*", metavar="key=value")
    train.set_defaults(func=_train)

    sample = sub.add_parser("sample", help="draw samples from a trained DSGAN generator")
    add_checkpoint(sample, help="a DSGAN run folder (its checkpoint.pt holds the generator) or checkpoint file")
    sample.add_argument("--n", type=positive_int, default=64, help="number of samples (default: 64)")
    add_out(sample, help="output folder (samples.npz, samples.png, sample.json)")
    add_seed(sample, help="latent seed")
    add_device(sample, default="cpu")
    add_threads(sample)
    sample.set_defaults(func=_sample)

    ssl = sub.add_parser("ssl", help="semi-supervised learning with DSGAN complement samples (S Sec. 4.1, Tab. 1)",
                         description="Every mode x seed: the K+1-class classifier of S Tab. 4 with DSGAN complements, "
                                     "feature matching (Salimans et al. 2016) or the labels alone. Any SSLConfig "
                                     "field can be overridden as key=value (e.g. max_iters=2000).")
    add_out(ssl)
    ssl.add_argument("--modes", type=_modes, default=list(SSL_MODES),
                     help=f"comma-separated, from {', '.join(SSL_MODES)} (default: all)")
    ssl.add_argument("--seeds", type=_integers, default=[0, 1, 2],
                     help="comma-separated label draws / training seeds (default: 0,1,2)")
    ssl.add_argument("--dataset", default="mnist", help="named data set with train/test splits (default: mnist)")
    ssl.add_argument("--per-class", type=positive_int, default=10, help="labels per class (default: 10)")
    add_device(ssl)
    add_threads(ssl)
    ssl.add_argument("overrides", nargs="*", metavar="key=value")
    ssl.set_defaults(func=_ssl)

    robust = sub.add_parser("robust", help="adversarial training with DSGAN low-density samples (S Sec. 5.2, Eq. 9)",
                            description="Baseline classifier, feature-space DSGAN with uniform noise, fine-tuning "
                                        "with cross-entropy + w * entropy on generated features; FGSM, PGD and "
                                        "DeepFool from adversarial-robustness-toolbox against the baseline, a "
                                        "cross-entropy fine-tuning control and noise-augmented baselines.")
    add_out(robust)
    robust.add_argument("--weights", nargs="+", type=float, default=[1.0, 3.0, 10.0], help="w of S Eq. 9")
    robust.add_argument("--feature-noise", type=positive_float, default=0.5,
                        help="half-width of the uniform feature noise, in feature standard deviations (default 0.5)")
    robust.add_argument("--pixel-noise", nargs="+", type=positive_float, default=[0.1, 0.2, 0.3],
                        help="half-widths of the noise-augmented baselines (pixels in [0, 1])")
    robust.add_argument("--n-test", type=positive_int, default=1000, help="test images attacked (default: 1000)")
    add_seed(robust)
    add_threads(robust)
    robust.set_defaults(func=_robust)
