"""``atebm restore denoise|inpaint``, ``atebm translate``, ``atebm interpolate`` and ``atebm compose``: parsers
only. Each command calls its pipeline in :mod:`atebm.apps.run` (``run_denoise``, ...), whose signature holds
every default shown here; image size and channels come from the checkpoint."""
from __future__ import annotations

import argparse
from typing import Any

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
from .options import (
    add_checkpoint,
    add_device,
    add_input,
    add_out,
    add_seed,
    add_threads,
    apply_threads,
    fraction,
    non_negative_float,
    non_negative_int,
    pipeline_defaults,
    positive_int,
)

__all__ = ["register"]


def _fill(text: str) -> float | str:
    if text in FILL_CHOICES:
        return text
    try:
        return fraction(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1] or one of {', '.join(FILL_CHOICES)}, "
                                         f"got {text!r}") from None


def _show(value: Any) -> str:
    return "from the checkpoint" if value is None else str(value)


def _common(parser: argparse.ArgumentParser, d: dict[str, Any], *, several: bool = False) -> None:
    models = parser.add_argument_group("model")
    add_checkpoint(models, several=True, help="run folder (its model.pt) or model/checkpoint file"
                   + ("; the composed models" if several else ""))
    models.add_argument("--weights", nargs="+", type=float, metavar="W",
                        help="one weight per checkpoint for the summed score (default: all 1)")
    add_device(models, default=d["device"])
    add_threads(models)
    source = parser.add_argument_group("input (converted to the checkpoint's image size and channels)")
    add_input(source)
    sampler = parser.add_argument_group("sampler")
    sampler.add_argument("--steps", type=non_negative_int, default=d["steps"],
                         help=f"PGD steps (default: {_show(d['steps'])})")
    sampler.add_argument("--step-size", type=non_negative_float, default=d["step_size"],
                         help="length of one L2 step, or per-pixel change of one linf step (default: the "
                              "checkpoint's)")
    sampler.add_argument("--norm", choices=("l2", "linf"), default=d["norm"], help=f"step geometry "
                                                                                   f"(default: {d['norm']})")
    out = parser.add_argument_group("output")
    add_out(out)
    out.add_argument("--trajectory", metavar="STEPS", default=d["trajectory"],
                     help="also save the path at these steps: a comma list (0,5,10), 'all' or 'every:N'")
    out.add_argument("--trajectory-samples", type=positive_int, default=d["trajectory_samples"],
                     help=f"samples shown in the trajectory strip and GIF (default: {d['trajectory_samples']})")
    out.add_argument("--scale", type=positive_int, default=d["scale"],
                     help=f"enlargement of PNG grids (default: {d['scale']})")
    add_seed(out, default=d["seed"], help="seed for noise, masks and drawn data")


def _blur(parser: argparse.ArgumentParser, d: dict[str, Any]) -> None:
    parser.add_argument("--blur", type=non_negative_float, default=d["blur"],
                        help="Gaussian blur of the seeds in pixels (default: the checkpoint's generation blur, else 0)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``restore`` (with ``denoise`` and ``inpaint``), ``translate``, ``interpolate`` and ``compose``."""
    restore = subparsers.add_parser("restore", help="denoise or inpaint images by ascending the score",
                                    description="Image restoration by PGD ascent on the score (T Sec. 2.5.3).")
    restore_sub = restore.add_subparsers(dest="restore_command", metavar="TASK", required=True)

    d = pipeline_defaults(run_denoise)
    p = restore_sub.add_parser("denoise", help="ascend from noisy images (strength = steps)",
                               description="Denoising: PGD ascent from the noisy image; with --noise the input is "
                                           "taken as clean, corrupted here, and SSIM/PSNR are reported.")
    _common(p, d)
    g = p.add_argument_group("denoising")
    g.add_argument("--noise", choices=NOISE_CHOICES, default=d["noise"],
                   help="corrupt the (clean) input first and evaluate against it (default: none = input is noisy)")
    g.add_argument("--sigma", type=non_negative_float, default=d["sigma"],
                   help=f"Gaussian noise std (default: {d['sigma']})")
    g.add_argument("--amount", type=fraction, default=d["amount"],
                   help=f"salt-and-pepper pixel fraction (default: {d['amount']})")
    g.add_argument("--eps", type=non_negative_float, default=d["eps"],
                   help="L2 (or Linf) radius around the input the result must stay in (default: inf)")
    p.set_defaults(func=_denoise)

    d = pipeline_defaults(run_inpaint)
    p = restore_sub.add_parser("inpaint", help="fill missing pixels; the others stay bit-identical",
                               description="Inpainting: PGD ascent that moves only the masked pixels. By default the "
                                           "input is clean, occluded here and evaluated (SSIM/PSNR).")
    _common(p, d)
    g = p.add_argument_group("inpainting")
    g.add_argument("--mask", choices=MASK_KINDS, default=d["mask"], help=f"mask kind (default: {d['mask']})")
    g.add_argument("--mask-file", metavar="PATH", help="mask image/NPY for --mask file (white = missing)")
    g.add_argument("--mask-size", type=fraction, default=d["mask_size"],
                   help=f"centre-square side fraction (default: {d['mask_size']})")
    g.add_argument("--boxes", type=positive_int, default=d["boxes"], help=f"boxes per image (default: {d['boxes']})")
    g.add_argument("--box-min", type=fraction, default=d["box_min"],
                   help=f"smallest box side fraction (default: {d['box_min']})")
    g.add_argument("--box-max", type=fraction, default=d["box_max"],
                   help=f"largest box side fraction (default: {d['box_max']})")
    g.add_argument("--fraction", type=fraction, default=d["fraction"],
                   help=f"missing-pixel fraction (default: {d['fraction']})")
    g.add_argument("--fill", type=_fill, default=d["fill"],
                   help=f"hole fill: a value in [0,1], 'noise' or 'mean' (default: {d['fill']})")
    g.add_argument("--occluded", action="store_true",
                   help="the input is already occluded: only fill the hole, no ground truth to compare with")
    p.set_defaults(func=_inpaint)

    d = pipeline_defaults(run_translate)
    p = subparsers.add_parser("translate", help="push images of another domain toward the model",
                              description="Image-to-image translation (E Sec. 5.2): PGD ascent of the target model "
                                          "from source-domain images; use --trajectory for intermediate images.")
    _common(p, d)
    p.add_argument("--eps", type=non_negative_float, default=d["eps"],
                   help="radius around the source image (default: inf)")
    p.set_defaults(func=_translate)

    d = pipeline_defaults(run_interpolate)
    p = subparsers.add_parser("interpolate", help="sample along linear interpolations of seed pairs",
                              description="Interpolation (E supp. Fig. 11-13): the sampler on (1-t)a + tb. Pairs are "
                                          "(x[0], x[1]), (x[2], x[3]), ... of --input, or (x[i], y[i]) with --input-b.")
    _common(p, d)
    p.add_argument("--input-b", metavar="PATH", help="second endpoints (as many images as --input)")
    p.add_argument("--num", type=positive_int, default=d["num"],
                   help=f"points per interpolation, ends included (default: {d['num']})")
    _blur(p, d)
    p.set_defaults(func=_interpolate)

    d = pipeline_defaults(run_compose)
    p = subparsers.add_parser("compose", help="generate from a weighted sum of several models' scores",
                              description="Compositional generation (E supp. Fig. 17): ascend sum_i w_i f_i(x) from "
                                          "the seeds; also samples each model alone from the same seeds.")
    _common(p, d, several=True)
    p.add_argument("--mode", choices=COMPOSE_MODES, default=d["mode"],
                   help="sum the scores (default) or the log-probabilities log sigmoid(f_i)")
    _blur(p, d)
    p.add_argument("--no-singles", action="store_true", help="skip sampling each model alone")
    p.set_defaults(func=_compose)


# ----------------------------------------------------------------------------------------------- calls
def _shared(args: argparse.Namespace) -> dict[str, Any]:
    """The options every command passes on, in the pipelines' names."""
    apply_threads(args)
    return {"weights": args.weights, "steps": args.steps, "step_size": args.step_size, "norm": args.norm,
            "n": args.n, "split": args.split, "seed": args.seed, "trajectory": args.trajectory,
            "trajectory_samples": args.trajectory_samples, "scale": args.scale, "device": args.device}


def _images(args: argparse.Namespace) -> str:
    return args.input if args.input is not None else args.data


def _done(result: AppRun) -> int:
    print(f"{result.command}: wrote {', '.join(sorted(set(result.files.values())))} in {result.out}")
    return 0


def _denoise(args: argparse.Namespace) -> int:
    return _done(run_denoise(args.checkpoint, _images(args), args.out, noise=args.noise, sigma=args.sigma,
                             amount=args.amount, eps=args.eps, **_shared(args)))


def _inpaint(args: argparse.Namespace) -> int:
    return _done(run_inpaint(args.checkpoint, _images(args), args.out, mask=args.mask, mask_file=args.mask_file,
                             mask_size=args.mask_size, boxes=args.boxes, box_min=args.box_min, box_max=args.box_max,
                             fraction=args.fraction, fill=args.fill, occluded=args.occluded, **_shared(args)))


def _translate(args: argparse.Namespace) -> int:
    return _done(run_translate(args.checkpoint, _images(args), args.out, eps=args.eps, **_shared(args)))


def _interpolate(args: argparse.Namespace) -> int:
    if args.input_b is not None and args.input is None:
        raise ValueError("--input-b pairs with --input")
    return _done(run_interpolate(args.checkpoint, _images(args), args.out, images_b=args.input_b, num=args.num,
                                 blur=args.blur, **_shared(args)))


def _compose(args: argparse.Namespace) -> int:
    return _done(run_compose(args.checkpoint, _images(args), args.out, mode=args.mode, blur=args.blur,
                             singles=not args.no_singles, **_shared(args)))
