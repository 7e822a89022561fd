"""``atebm dsgan train|sample|ssl|robust``: the difference-seeking GAN (S). Parsers only; the pipelines are
:func:`atebm.dsgan.train_case`, :func:`atebm.dsgan.train_on_data`, :func:`atebm.dsgan.sample_generator`,
:func:`atebm.dsgan.run_ssl_benchmark` and :func:`atebm.dsgan.run_low_density_at`, whose signatures and configs
(:class:`~atebm.dsgan.DSGANConfig`, :class:`~atebm.dsgan.SSLConfig`, :class:`~atebm.dsgan.RobustSettings`) hold
the defaults shown here."""
from __future__ import annotations

import argparse
import shlex
import sys

from ..presets import REGISTRY
from . import options

__all__ = ["register"]


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


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _train(args: argparse.Namespace) -> int:
    from ..dsgan import train_case, train_on_data

    if args.case:
        named = [flag for flag, value in (("--pbar", args.pbar), ("--classes", args.classes)) if value is not None]
        if named:
            raise ValueError(f"--case takes no {' or '.join(named)} (a case fixes its own p_d and p_dbar): drop "
                             f"{' and '.join(named)}, or train on data with --data SOURCE --pbar SPEC")
    elif not args.pbar:
        raise ValueError(f"--data needs --pbar (gaussian:STD, uniform:H, classes:1,7, interpolate:LO,HI or a "
                         f"source string); or use --case {{{','.join(REGISTRY.names('dsgan train'))}}}")
    options.apply_threads(args)
    overrides = options.read_overrides(args)
    # --n-eval left out: the default of the library function that runs (train_case or train_on_data)
    n_eval = options.given(args, "n_eval")
    if args.case:
        summary = train_case(args.case, args.out, overrides=overrides, resume=args.resume, log=_say, **n_eval)
        ev = summary["evaluation"]
        if "generated" in ev:
            g = ev["generated"]
            print(f"{args.case}: {g['in_target_support']:.1%} of the samples in the exact target's support "
                  f"(p_dbar > {ev['thresholds']['target_alpha']:.3g} p_d), {g['pbar_has_mass_and_pd_little']:.1%} "
                  f"where p_dbar has mass and p_d little; energy distance to the target "
                  f"{g['energy_distance_to_target']:.4f} (p_d {g['energy_distance_to_p_d']:.4f}, p_dbar "
                  f"{g['energy_distance_to_p_dbar']:.4f})")
        else:
            print(f"{args.case}: {ev['fraction_target']:.1%} of {ev['n']} samples judged digit(s) "
                  f"{ev['target_classes']} by the digit classifier")
            if "diversity" in ev:
                print(_diversity_line(ev["diversity"], ev["target_classes"]))
        print(f"wrote {args.out}/case.json, model.pt (discriminator), checkpoint.pt (with the generator), report.html")
        return 0
    train_on_data(args.out, args.data, args.pbar, classes=args.classes, overrides=overrides, resume=args.resume,
                  log=_say, **n_eval)
    print(f"wrote {args.out}/samples.png, model.pt, checkpoint.pt, run.json")
    return 0


def _sample(args: argparse.Namespace) -> int:
    from ..dsgan import sample_generator

    options.apply_threads(args)
    protocol = sample_generator(args.checkpoint, args.out, n=args.n, seed=args.seed, device=args.device)
    if "diversity" in protocol:
        print(_diversity_line(protocol["diversity"], protocol["diversity"]["target_classes"]))
    print(f"wrote {args.out}/samples.npz (x: {protocol['shape']}), samples.png and sample.json")
    return 0


def _diversity_line(diversity: dict, target: list[int]) -> str:
    """The printed summary of :func:`atebm.metrics.diversity_metrics` for samples of the digits ``target``."""
    return (f"diversity: Fréchet ratio {diversity['fd_ratio']:.2f} to held-out digit(s) {target} (FD "
            f"{diversity['fd_samples']:.2f} vs {diversity['fd_held_out']:.2f}, {diversity['n_per_fd']} rows each), "
            f"{diversity['classes_covered']} class(es) covered")


def _ssl(args: argparse.Namespace) -> int:
    from ..dsgan import run_ssl_benchmark

    options.apply_threads(args)
    summary = run_ssl_benchmark(args.out, modes=args.modes, seeds=args.seeds, dataset=args.dataset,
                                per_class=args.per_class, overrides=options.read_overrides(args),
                                device=args.device, log=_say, command=_command())
    for mode, r in summary["results"].items():
        print(f"{mode}: test error {r['error_percent_mean']:.2f} +- {r['error_percent_std']:.2f} % "
              f"({r['n_runs']} runs)")
    return 0


def _robust(args: argparse.Namespace) -> int:
    from ..dsgan import RobustSettings, run_low_density_at

    options.apply_threads(args)
    settings = RobustSettings(**options.read_overrides(args))
    summary = run_low_density_at(args.out, settings, log=_say, command=_command())
    print(f"wrote {args.out}/robust.json and robust_accuracy.png ({len(summary['results'])} models)")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..dsgan import (
        SSL_MODES,
        DSGANConfig,
        RobustSettings,
        SSLConfig,
        run_ssl_benchmark,
        sample_generator,
        train_case,
        train_on_data,
    )

    case_eval = options.pipeline_defaults(train_case)["n_eval"]
    data_eval = options.pipeline_defaults(train_on_data)["n_eval"]
    config = options.config_defaults(DSGANConfig)

    dsgan = subparsers.add_parser("dsgan", help="difference-seeking GAN: case studies, sampling, semi-supervised",
                                  description="DSGAN (S): a generator of p_g ~ (p_dbar - alpha p_d) / (1 - alpha).")
    sub = dsgan.add_subparsers(dest="dsgan_command", metavar="COMMAND", required=True)

    train = sub.add_parser("train", help="train a DSGAN: a named case study or p_d/p_dbar from data",
                           description="Any DSGANConfig field can be overridden as key=value (e.g. alpha=0.5 "
                                       "critic_steps=5 loss=wgan-gp sampling_trick=false max_iters=500).")
    where = train.add_mutually_exclusive_group(required=True)
    where.add_argument("--case", choices=REGISTRY.names("dsgan train"), help="a named case study (S Fig. 2-6)")
    where.add_argument("--data", metavar="SOURCE", help="p_d: a data-source string (e.g. mnist?split=train)")
    train.add_argument("--classes", type=options.integer_list,
                       help="with --data only: keep only these classes for p_d (e.g. 1)")
    train.add_argument("--pbar", metavar="SPEC",
                       help="with --data only: p_dbar = gaussian:STD | uniform:HALF_WIDTH | classes:1,7 | "
                            "interpolate:LOW,HIGH | a data-source string")
    options.add_out(train)
    options.add_resume(train)
    options.add_library_option(train, "--n-eval", type=options.positive_int, metavar="N", default=None,
                               default_text=f"{case_eval} with --case, {data_eval} with --data",
                               help="generator samples evaluated (--case) or written (--data)")
    train.add_argument("--seed", type=int, default=None,
                       help=f"training seed (2D cases: also the data sample) (default: {config['seed']}; or "
                            "seed=..., not both)")
    options.add_device(train, config["device"], key="device")
    options.add_threads(train)
    options.add_overrides(train, DSGANConfig, example="alpha=0.5 max_iters=500",
                          mirrored={"device": "--device", "seed": "--seed"})
    train.set_defaults(func=_train)

    s = options.pipeline_defaults(sample_generator)
    sample = sub.add_parser("sample", help="draw samples from a trained DSGAN generator")
    options.add_checkpoint(sample, help="a DSGAN run folder (its checkpoint.pt holds the generator) or checkpoint file")
    sample.add_argument("--n", type=options.positive_int, default=s["n"],
                        help=f"number of samples (default: {s['n']})")
    options.add_out(sample, help="output folder (samples.npz, samples.png, sample.json)")
    options.add_seed(sample, s["seed"], help="latent seed")
    options.add_run_options(sample, sample_generator)
    sample.set_defaults(func=_sample)

    ssl_defaults = options.pipeline_defaults(run_ssl_benchmark)
    ssl = sub.add_parser("ssl", help="semi-supervised learning with DSGAN complement samples (S Sec. 4.1, Tab. 1)",
                         description="Every mode x seed: the K+1-class classifier of S Tab. 4 with DSGAN complements, "
                                     "feature matching (Salimans et al. 2016) or the labels alone. Any SSLConfig "
                                     "field can be overridden as key=value (e.g. max_iters=2000).")
    options.add_out(ssl)
    ssl.add_argument("--modes", type=_modes, default=list(ssl_defaults["modes"]),
                     help=f"comma-separated, from {', '.join(SSL_MODES)} (default: "
                          f"{','.join(ssl_defaults['modes'])})")
    ssl.add_argument("--seeds", type=options.integer_list, default=list(ssl_defaults["seeds"]),
                     help="comma-separated label draws / training seeds (default: "
                          f"{','.join(map(str, ssl_defaults['seeds']))})")
    ssl.add_argument("--dataset", default=ssl_defaults["dataset"],
                     help=f"named data set with train/test splits (default: {ssl_defaults['dataset']})")
    ssl.add_argument("--per-class", type=options.positive_int, default=ssl_defaults["per_class"],
                     help=f"labels per class (default: {ssl_defaults['per_class']})")
    options.add_run_options(ssl, run_ssl_benchmark)
    options.add_overrides(ssl, SSLConfig, example="max_iters=2000 lr=1e-3",
                          reserved={"mode": "--modes", "seed": "--seeds", "device": "--device"})
    ssl.set_defaults(func=_ssl)

    r = options.config_defaults(RobustSettings)
    robust = sub.add_parser("robust", help="adversarial training with DSGAN low-density samples (S Sec. 5.2, Eq. 9)",
                            description="Baseline classifier, feature-space DSGAN with uniform noise, fine-tuning "
                                        "of the head (body frozen) with cross-entropy + w * entropy on generated "
                                        "features; per-image worst case over margin PGD, ART APGD-CE/DLR and "
                                        "Square at every Linf and L2 eps against the baseline, a cross-entropy "
                                        "fine-tuning control and noise-augmented baselines. Budgets (epochs, "
                                        "dsgan_iters, attack steps, ...) are RobustSettings fields given as "
                                        "key=value. Runs on the CPU: the library trains every stage there.")
    options.add_out(robust)
    mirrored = {"weights": "--weights", "feature_noise": "--feature-noise", "pixel_noise": "--pixel-noise",
                "n_test": "--n-test", "seed": "--seed"}
    options.add_library_option(robust, "--weights", nargs="+", type=options.non_negative_float, metavar="W",
                               default=r["weights"], help="w of S Eq. 9, each >= 0")
    options.add_library_option(robust, "--feature-noise", type=options.positive_float, default=r["feature_noise"],
                               help="half-width of the uniform feature noise, in feature standard deviations")
    options.add_library_option(robust, "--pixel-noise", nargs="+", type=options.positive_float, metavar="H",
                               default=r["pixel_noise"], help="half-widths of the noise-augmented baselines "
                                                              "(pixels in [0, 1])")
    options.add_library_option(robust, "--n-test", type=options.positive_int, default=r["n_test"],
                               help="test images attacked")
    options.add_library_option(robust, "--seed", type=int, default=r["seed"], help="random seed")
    options.add_threads(robust)
    options.add_overrides(robust, RobustSettings, example="epochs=2 dsgan_iters=200 n_test=100",
                          mirrored=mirrored)
    robust.set_defaults(func=_robust)
