"""``atebm dsgan train|sample|ssl|robust``: the difference-seeking GAN (S). Parsers only; the pipelines are
:func:`atebm.dsgan.train_case`, :func:`atebm.dsgan.train_on_data`, :func:`atebm.dsgan.sample_generator`,
:func:`atebm.dsgan.run_ssl_benchmark` and :func:`atebm.dsgan.run_low_density_at`."""
from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

from ..presets import REGISTRY
from .options import (
    add_checkpoint,
    add_device,
    add_out,
    add_seed,
    add_threads,
    apply_threads,
    non_negative_float,
    pipeline_defaults,
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


def _override_help(config: type, example: str) -> str:
    """Help of a command's ``key=value`` positionals: the fields of the config dataclass they override."""
    keys = ", ".join(f.name for f in dataclasses.fields(config))
    return f"{config.__name__} fields, values parsed as YAML (e.g. {example}); keys: {keys}"


def _command() -> str | None:
    """The command line as typed, when this process is ``atebm dsgan ...`` (recorded in result JSON files)."""
    return "atebm " + " ".join(shlex.quote(a) for a in sys.argv[1:]) if sys.argv[1:2] == ["dsgan"] else None


def _train(args: argparse.Namespace) -> int:
    from ..dsgan import train_case, train_on_data

    if args.case:
        given = [flag for flag, value in (("--pbar", args.pbar), ("--classes", args.classes)) if value is not None]
        if given:
            raise ValueError(f"--case takes no {' or '.join(given)} (a case fixes its own p_d and p_dbar): drop "
                             f"{' and '.join(given)}, or train on data with --data SOURCE --pbar SPEC")
    apply_threads(args)
    overrides = parse_overrides(args.overrides)
    # --n-eval left out: the default of the library function that runs (train_case or train_on_data)
    pipeline = train_case if args.case else train_on_data
    n_eval = pipeline_defaults(pipeline)["n_eval"] if args.n_eval is None else args.n_eval
    if args.case:
        summary = train_case(args.case, args.out, overrides=overrides, resume=args.resume, n_eval=n_eval,
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
                         f"source string); or use --case {{{','.join(REGISTRY.names('dsgan train'))}}}")
    train_on_data(args.out, args.data, args.pbar, classes=args.classes, overrides=overrides, resume=args.resume,
                  n_eval=n_eval, seed=args.seed, device=args.device, log=lambda s: print(s, file=sys.stderr))
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
    from ..dsgan import (
        SSL_MODES,
        DSGANConfig,
        SSLConfig,
        run_ssl_benchmark,
        sample_generator,
        train_case,
        train_on_data,
    )

    case_eval = pipeline_defaults(train_case)["n_eval"]
    data_eval = pipeline_defaults(train_on_data)["n_eval"]
    sample_defaults = pipeline_defaults(sample_generator)
    ssl_defaults = pipeline_defaults(run_ssl_benchmark)

    dsgan = subparsers.add_parser("dsgan", help="difference-seeking GAN: case studies, sampling, semi-supervised",
                                  description="DSGAN (S): a generator of p_g ~ (p_dbar - alpha p_d) / (1 - alpha).")
    sub = dsgan.add_subparsers(dest="dsgan_command", metavar="COMMAND", required=True)

    train = sub.add_parser("train", help="train a DSGAN: a named case study or p_d/p_dbar from data",
                           description="Any DSGANConfig field can be overridden as key=value (e.g. alpha=0.5 "
                                       "critic_steps=5 loss=wgan-gp sampling_trick=false max_iters=500).")
    where = train.add_mutually_exclusive_group(required=True)
    where.add_argument("--case", choices=REGISTRY.names("dsgan train"), help="a named case study (S Fig. 2-6)")
    where.add_argument("--data", metavar="SOURCE", help="p_d: a data-source string (e.g. mnist?split=train)")
    train.add_argument("--classes", type=_classes,
                       help="with --data only: keep only these classes for p_d (e.g. 1)")
    train.add_argument("--pbar", metavar="SPEC",
                       help="with --data only: p_dbar = gaussian:STD | uniform:HALF_WIDTH | classes:1,7 | "
                            "interpolate:LOW,HIGH | a data-source string")
    add_out(train)
    train.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    train.add_argument("--n-eval", type=positive_int, default=None, metavar="N",
                       help=f"generator samples evaluated (--case) or written (--data) (default: {case_eval} with "
                            f"--case, {data_eval} with --data)")
    add_seed(train, help="training seed (2D cases: also the data sample)")
    add_device(train)
    add_threads(train)
    train.add_argument("overrides", nargs="*", metavar="key=value",
                       help=_override_help(DSGANConfig, "alpha=0.5 max_iters=500"))
    train.set_defaults(func=_train)

    sample = sub.add_parser("sample", help="draw samples from a trained DSGAN generator")
    add_checkpoint(sample, help="a DSGAN run folder (its checkpoint.pt holds the generator) or checkpoint file")
    sample.add_argument("--n", type=positive_int, default=sample_defaults["n"],
                        help=f"number of samples (default: {sample_defaults['n']})")
    add_out(sample, help="output folder (samples.npz, samples.png, sample.json)")
    add_seed(sample, help="latent seed")
    add_device(sample, default=sample_defaults["device"])
    add_threads(sample)
    sample.set_defaults(func=_sample)

    ssl = sub.add_parser("ssl", help="semi-supervised learning with DSGAN complement samples (S Sec. 4.1, Tab. 1)",
                         description="Every mode x seed: the K+1-class classifier of S Tab. 4 with DSGAN complements, "
                                     "feature matching (Salimans et al. 2016) or the labels alone. Any SSLConfig "
                                     "field can be overridden as key=value (e.g. max_iters=2000).")
    add_out(ssl)
    ssl.add_argument("--modes", type=_modes, default=list(ssl_defaults["modes"]),
                     help=f"comma-separated, from {', '.join(SSL_MODES)} (default: "
                          f"{','.join(ssl_defaults['modes'])})")
    ssl.add_argument("--seeds", type=_integers, default=list(ssl_defaults["seeds"]),
                     help="comma-separated label draws / training seeds (default: "
                          f"{','.join(map(str, ssl_defaults['seeds']))})")
    ssl.add_argument("--dataset", default=ssl_defaults["dataset"],
                     help=f"named data set with train/test splits (default: {ssl_defaults['dataset']})")
    ssl.add_argument("--per-class", type=positive_int, default=ssl_defaults["per_class"],
                     help=f"labels per class (default: {ssl_defaults['per_class']})")
    add_device(ssl)
    add_threads(ssl)
    ssl.add_argument("overrides", nargs="*", metavar="key=value",
                     help=_override_help(SSLConfig, "max_iters=2000 lr=1e-3"))
    ssl.set_defaults(func=_ssl)

    robust = sub.add_parser("robust", help="adversarial training with DSGAN low-density samples (S Sec. 5.2, Eq. 9)",
                            description="Baseline classifier, feature-space DSGAN with uniform noise, fine-tuning "
                                        "of the head (body frozen) with cross-entropy + w * entropy on generated "
                                        "features; per-image worst case over margin PGD, ART APGD-CE/DLR and "
                                        "Square at every Linf and L2 eps against the baseline, a cross-entropy "
                                        "fine-tuning control and noise-augmented baselines.")
    add_out(robust)
    weights = [1.0, 3.0, 10.0]
    robust.add_argument("--weights", nargs="+", type=non_negative_float, default=weights, metavar="W",
                        help=f"w of S Eq. 9, each >= 0 (default: {' '.join(f'{w:g}' for w in weights)})")
    robust.add_argument("--feature-noise", type=positive_float, default=0.5,
                        help="half-width of the uniform feature noise, in feature standard deviations (default 0.5)")
    robust.add_argument("--pixel-noise", nargs="+", type=positive_float, default=[0.1, 0.2, 0.3],
                        help="half-widths of the noise-augmented baselines (pixels in [0, 1])")
    robust.add_argument("--n-test", type=positive_int, default=1000, help="test images attacked (default: 1000)")
    add_seed(robust)
    add_threads(robust)
    robust.set_defaults(func=_robust)
