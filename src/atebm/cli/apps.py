"""``atebm restore denoise|inpaint``, ``atebm translate``, ``atebm interpolate`` and ``atebm compose``: parsers
only. Each command calls its pipeline in :mod:`atebm.apps.run` (``run_denoise``, ...), whose signature holds
every default shown here; options that are not given are not passed on, so those defaults apply. Image size and
channels come from the checkpoint. An option that the chosen noise or mask ignores is refused."""
from __future__ import annotations

import argparse
from collections.abc import Callable

from ..apps.restore import MASK_KINDS
from ..apps.run import (
    COMPOSE_MODES,
    FILL_CHOICES,
    NOISE_CHOICES,
    AppRun,
    run_compose,
    run_denoise,
    run_inpaint,
    run_interpolate,
    run_translate,
)
from . import options

__all__ = ["register"]


def _fill(text: str) -> float | str:
    if text in FILL_CHOICES:
        return text
    try:
        return options.fraction(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or one of {', '.join(FILL_CHOICES)}, "
                                         f"got {text!r}") from None


#: Each command's own options: (flag, pipeline parameter, argparse keywords, help). Their defaults are read from
#: the pipeline's signature.
OWN_OPTIONS: dict[str, tuple[options.OptionRow, ...]] = {
    "denoise": (
        ("--noise", "noise", {"choices": NOISE_CHOICES},
         "corrupt the (clean) input first and evaluate against it (none: the input is the noisy image)"),
        ("--sigma", "sigma", {"type": options.non_negative_float}, "Gaussian noise std (with --noise gaussian)"),
        ("--amount", "amount", {"type": options.fraction}, "salt-and-pepper pixel fraction (with --noise salt-pepper)"),
        ("--eps", "eps", {"type": options.non_negative_float},
         "L2 (or Linf) radius around the input the result must stay in")),
    "inpaint": (
        ("--mask", "mask", {"choices": MASK_KINDS}, "mask kind"),
        ("--mask-file", "mask_file", {"metavar": "PATH"}, "mask image/NPY for --mask file (white = missing)"),
        ("--mask-size", "mask_size", {"type": options.fraction}, "centre-square side fraction (--mask center)"),
        ("--boxes", "boxes", {"type": options.positive_int}, "boxes per image (--mask boxes)"),
        ("--box-min", "box_min", {"type": options.fraction}, "smallest box side fraction (--mask boxes)"),
        ("--box-max", "box_max", {"type": options.fraction}, "largest box side fraction (--mask boxes)"),
        ("--fraction", "fraction", {"type": options.fraction}, "missing-pixel fraction (--mask pixels)"),
        ("--fill", "fill", {"type": _fill}, "hole fill of a clean input: a value in [0,1], 'noise' or 'mean'")),
    "translate": (
        ("--eps", "eps", {"type": options.non_negative_float}, "radius around the source image"),),
    "interpolate": (
        ("--input-b", "images_b", {"metavar": "PATH"}, "second endpoints (as many images as --input)"),
        ("--num", "num", {"type": options.positive_int}, "points per interpolation, ends included"),
        ("--blur", "blur", {"type": options.non_negative_float}, "Gaussian blur of the seeds in pixels")),
    "compose": (
        ("--mode", "mode", {"choices": COMPOSE_MODES},
         "sum the scores (score) or the log-probabilities log sigmoid(f_i) (log_prob)"),
        ("--blur", "blur", {"type": options.non_negative_float}, "Gaussian blur of the seeds in pixels")),
}

#: Options that apply to one choice of another option only: flag -> (dest of the choice, the choices it needs).
ONLY_WITH = {"--sigma": ("noise", ("gaussian",)), "--amount": ("noise", ("salt-pepper",)),
             "--mask-size": ("mask", ("center",)), "--boxes": ("mask", ("boxes",)),
             "--box-min": ("mask", ("boxes",)), "--box-max": ("mask", ("boxes",)),
             "--fraction": ("mask", ("pixels",)), "--mask-file": ("mask", ("file",))}

#: Defaults the pipelines resolve from the checkpoint when the signature says None.
FROM_CHECKPOINT = {"steps": "the checkpoint's generation steps", "step_size": "the checkpoint's training step",
                   "blur": "the checkpoint's generation blur, else 0", "images_b": "none: pairs of --input"}


def _dest(flag: str) -> str:
    return flag.lstrip("-").replace("-", "_")


def _add_command(parser: argparse.ArgumentParser, command: str, pipeline: Callable[..., AppRun], *,
                 several: bool = False) -> None:
    """The options every apps command has (model, input, sampler, output) and ``command``'s own."""
    d = options.pipeline_defaults(pipeline)
    option = options.add_library_option
    models = parser.add_argument_group("model")
    options.add_checkpoint(models, several=True, help="run folder (its model.pt) or model/checkpoint file"
                           + ("; the composed models" if several else ""))
    option(models, "--weights", nargs="+", type=float, metavar="W", default=d["weights"], default_text="all 1",
           help="one weight per checkpoint for the summed score")
    options.add_device(models, d["device"])
    options.add_threads(models)
    source = parser.add_argument_group("input (converted to the checkpoint's image size and channels)")
    options.add_input(source, d)
    sampler = parser.add_argument_group("sampler")
    option(sampler, "--steps", type=options.non_negative_int, default=d["steps"],
           default_text=FROM_CHECKPOINT["steps"] if d["steps"] is None else None, help="PGD steps")
    option(sampler, "--step-size", type=options.non_negative_float, default=d["step_size"],
           default_text=FROM_CHECKPOINT["step_size"],
           help="length of one L2 step, or per-pixel change of one linf step")
    option(sampler, "--norm", choices=("l2", "linf"), default=d["norm"], help="step geometry")
    out = parser.add_argument_group("output")
    options.add_out(out)
    option(out, "--trajectory", metavar="STEPS", default=d["trajectory"],
           help="also save the path at these steps: a comma list (0,5,10), 'all' or 'every:N'")
    option(out, "--trajectory-samples", type=options.positive_int, default=d["trajectory_samples"],
           help="samples shown in the trajectory strip and GIF (with --trajectory)")
    option(out, "--scale", type=options.positive_int, default=d["scale"], help="enlargement of PNG grids")
    option(out, "--seed", type=int, default=d["seed"], help="seed for noise, masks and drawn data")
    options.add_options_of(parser.add_argument_group(command), d, OWN_OPTIONS[command],
                           default_texts={name: text for name, text in FROM_CHECKPOINT.items() if d.get(name) is None})
    parser.set_defaults(pipeline=pipeline)


def _run(args: argparse.Namespace) -> int:
    """Calls the command's pipeline with the options given; the pipeline's defaults fill in the rest."""
    options.apply_threads(args)
    if "trajectory_samples" in args and "trajectory" not in args:
        options.refuse({"--trajectory-samples": "sizes the strip of --trajectory, which is not given"})
    for flag, (choice, needs) in ONLY_WITH.items():
        if _dest(flag) in args:
            current = getattr(args, choice, options.pipeline_defaults(args.pipeline)[choice])
            if current not in needs:
                options.refuse({flag: f"applies to --{choice} {' or '.join(needs)} only, not --{choice} {current}"})
    if getattr(args, "occluded", False) and "fill" in args:
        options.refuse({"--fill": "fills the hole of a clean input; --occluded inputs already have theirs"})
    if "images_b" in args and args.input is None:
        raise ValueError("--input-b pairs with --input")
    names = ["weights", "steps", "step_size", "norm", "n", "split", "seed", "trajectory", "trajectory_samples",
             "scale", *(name for _, name, _, _ in OWN_OPTIONS[args.app])]
    extra = {"occluded": True} if getattr(args, "occluded", False) else {}
    if args.app == "compose" and args.no_singles:
        extra["singles"] = False
    result = args.pipeline(args.checkpoint, args.input if args.input is not None else args.data, args.out,
                           device=args.device, **options.given(args, *names), **extra)
    print(f"{result.command}: wrote {', '.join(sorted(set(result.files.values())))} in {result.out}")
    return 0


#: The commands: (pipeline, help, description).
COMMANDS: dict[str, tuple[Callable[..., AppRun], str, str]] = {
    "denoise": (run_denoise, "ascend from noisy images (strength = steps)",
                "Denoising: PGD ascent from the noisy image; with --noise the input is taken as clean, corrupted "
                "here, and SSIM/PSNR are reported."),
    "inpaint": (run_inpaint, "fill missing pixels; the others stay bit-identical",
                "Inpainting: PGD ascent that moves only the masked pixels. By default the input is clean, occluded "
                "here and evaluated (SSIM/PSNR)."),
    "translate": (run_translate, "push images of another domain toward the model",
                  "Image-to-image translation (E Sec. 5.2): PGD ascent of the target model from source-domain "
                  "images; use --trajectory for intermediate images."),
    "interpolate": (run_interpolate, "sample along linear interpolations of seed pairs",
                    "Interpolation (E supp. Fig. 11-13): the sampler on (1-t)a + tb. Pairs are (x[0], x[1]), "
                    "(x[2], x[3]), ... of --input, or (x[i], y[i]) with --input-b."),
    "compose": (run_compose, "generate from a weighted sum of several models' scores",
                "Compositional generation (E supp. Fig. 17): ascend sum_i w_i f_i(x) from the seeds; also samples "
                "each model alone from the same seeds."),
}


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``restore`` (with ``denoise`` and ``inpaint``), ``translate``, ``interpolate`` and ``compose``."""
    restore = subparsers.add_parser("restore", help="denoise or inpaint images by ascending the score",
                                    description="Image restoration by PGD ascent on the score (T Sec. 2.5.3).")
    restore_sub = restore.add_subparsers(dest="restore_command", metavar="TASK", required=True)
    for command, (pipeline, help_text, description) in COMMANDS.items():
        group = restore_sub if command in ("denoise", "inpaint") else subparsers
        parser = group.add_parser(command, help=help_text, description=description)
        _add_command(parser, command, pipeline, several=command == "compose")
        parser.set_defaults(func=_run, app=command)
        if command == "inpaint":
            parser.add_argument("--occluded", action="store_true",
                                help="the input is already occluded: only fill the hole, no ground truth to "
                                     "compare with")
        if command == "compose":
            parser.add_argument("--no-singles", action="store_true", help="skip sampling each model alone")
