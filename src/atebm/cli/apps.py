"""Command-line front end of the applications: ``atebm restore denoise|inpaint``, ``atebm translate``,
``atebm interpolate`` and ``atebm compose``.

Every command loads one or more checkpoints (several are combined into one score by :class:`WeightedSum`),
reads images from ``--input`` (NPZ key ``x`` / NPY / image folder) or from an embedded data set (``--data``),
runs the sampler, and writes ``<command>.npz`` + ``<command>.png`` (plus the corrupted inputs, comparison grids,
``<command>.json`` with the protocol and any metrics, and an optional trajectory strip/GIF) into ``--out``,
adding its sections to that folder's ``report.html``.
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor

from .options import non_negative_float, non_negative_int, positive_int
from ..data import load as load_data
from ..io import load_array, save_grid, save_images, save_npz
from ..training import load, load_checkpoint, resolve_device, write_json
from ..apps._images import conform, model_channels
from ..apps.compose import WeightedSum
from ..apps.generate import generate
from ..apps.interpolate import interpolate
from ..apps.quality import summarize
from ..apps.restore import MASK_KINDS, corrupt, denoise, inpaint, make_mask, occlude
from ..apps.trajectory import parse_steps, save_trajectory
from ..apps.translate import translate

__all__ = ["register", "DEFAULT_STEPS"]

# Default number of steps per command. Restoration: fixed numbers in the range that maximised mean val SSIM on
# MNIST (benchmarks/apps_restore.py); step size: the checkpoint's training step size. Generation-like commands
# (None): the generation settings stored in the checkpoint (``extra["generate"]``, written by `atebm train`),
# else the final training K and step size, the settings its contrastive samples were made with.
DEFAULT_STEPS: dict[str, int | None] = {"denoise": 10, "inpaint": 20, "translate": None, "interpolate": None,
                                        "compose": None}


# ----------------------------------------------------------------------------------------------- options


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def _common_options(parser: argparse.ArgumentParser, command: str, several_models: bool = False) -> None:
    models = parser.add_argument_group("model")
    models.add_argument("--checkpoint", nargs="+", required=True, metavar="PATH",
                        help="checkpoint file(s) or run folder(s); several are summed into one score"
                             + (" (the composition)" if several_models else ""))
    models.add_argument("--weights", nargs="+", type=float, metavar="W",
                        help="one weight per checkpoint for the summed score (default: all 1)")
    models.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default: auto)")
    source = parser.add_argument_group("input")
    where = source.add_mutually_exclusive_group(required=True)
    where.add_argument("--input", metavar="PATH", help="NPZ (key x) / NPY array in [0,1] NCHW, or a folder of images")
    where.add_argument("--data", metavar="NAME", help="an embedded data set of atebm.data (mnist, lfw, photos, ...)")
    source.add_argument("--split", default="test", help="split of --data (default: test)")
    source.add_argument("--n", type=positive_int, default=None, metavar="N",
                        help="use the first N images (default: all of --input, 64 of --data)")
    source.add_argument("--size", type=positive_int, default=None,
                        help="resize the images to SIZE x SIZE (default: keep)")
    source.add_argument("--channels", type=int, choices=(1, 3), default=None,
                        help="convert to 1 (grey) or 3 (RGB) channels (default: the model's input channels)")
    sampler = parser.add_argument_group("sampler")
    default = DEFAULT_STEPS[command]
    sampler.add_argument("--steps", type=non_negative_int, default=default,
                         help=f"PGD steps (default: {default if default is not None else 'the checkpoint training K'})")
    sampler.add_argument("--step-size", type=non_negative_float, default=None,
                         help="length of one L2 step, or per-pixel change of one linf step (default: the checkpoint's "
                              "training step size)")
    sampler.add_argument("--norm", choices=("l2", "linf"), default="l2", help="step geometry (default: l2)")
    out = parser.add_argument_group("output")
    out.add_argument("--out", required=True, metavar="DIR", help="output (run) folder")
    out.add_argument("--trajectory", metavar="STEPS", default=None,
                     help="also save the path at these steps: a comma list (0,5,10), 'all' or 'every:N'")
    out.add_argument("--trajectory-samples", type=positive_int, default=16,
                     help="samples shown in the trajectory strip and GIF (default: 16)")
    out.add_argument("--scale", type=positive_int, default=2, help="enlargement of PNG grids (default: 2)")
    out.add_argument("--seed", type=int, default=0, help="seed for noise, masks and data (default: 0)")


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``restore`` (with ``denoise`` and ``inpaint``), ``translate``, ``interpolate`` and ``compose``."""
    restore = subparsers.add_parser("restore", help="denoise or inpaint images by ascending the score",
                                    description="Image restoration by PGD ascent on the score (T Sec. 2.5.3).")
    restore_sub = restore.add_subparsers(dest="restore_command", metavar="TASK", required=True)

    p = restore_sub.add_parser("denoise", help="ascend from noisy images (strength = steps)",
                               description="Denoising: PGD ascent from the noisy image; with --noise the input is "
                                           "taken as clean, corrupted here, and SSIM/PSNR are reported.")
    _common_options(p, "denoise")
    g = p.add_argument_group("denoising")
    g.add_argument("--noise", choices=("none", "gaussian", "salt-pepper"), default="none",
                   help="corrupt the (clean) input first and evaluate against it (default: none = input is noisy)")
    g.add_argument("--sigma", type=non_negative_float, default=0.2, help="Gaussian noise std (default: 0.2)")
    g.add_argument("--amount", type=_fraction, default=0.1, help="salt-and-pepper pixel fraction (default: 0.1)")
    g.add_argument("--eps", type=non_negative_float, default=math.inf,
                   help="L2 (or Linf) radius around the input the result must stay in (default: inf)")
    p.set_defaults(func=_run_denoise, app="restore denoise")

    p = restore_sub.add_parser("inpaint", help="fill missing pixels; the others stay bit-identical",
                               description="Inpainting: PGD ascent that moves only the masked pixels. By default the "
                                           "input is clean, occluded here and evaluated (SSIM/PSNR).")
    _common_options(p, "inpaint")
    g = p.add_argument_group("inpainting")
    g.add_argument("--mask", choices=MASK_KINDS, default="center", help="mask kind (default: center)")
    g.add_argument("--mask-file", metavar="PATH", help="mask image/NPY for --mask file (white = missing)")
    g.add_argument("--mask-size", type=_fraction, default=0.5, help="centre-square side fraction (default: 0.5)")
    g.add_argument("--boxes", type=positive_int, default=3, help="boxes per image (default: 3)")
    g.add_argument("--box-min", type=_fraction, default=0.15, help="smallest box side fraction (default: 0.15)")
    g.add_argument("--box-max", type=_fraction, default=0.35, help="largest box side fraction (default: 0.35)")
    g.add_argument("--fraction", type=_fraction, default=0.5, help="missing-pixel fraction (default: 0.5)")
    g.add_argument("--fill", default="0", help="hole fill: a value in [0,1], 'noise' or 'mean' (default: 0)")
    g.add_argument("--occluded", action="store_true",
                   help="the input is already occluded: only fill the hole, no ground truth to compare with")
    p.set_defaults(func=_run_inpaint, app="restore inpaint")

    p = subparsers.add_parser("translate", help="push images of another domain toward the model",
                              description="Image-to-image translation (E Sec. 5.2): PGD ascent of the target model "
                                          "from source-domain images; use --trajectory for intermediate images.")
    _common_options(p, "translate")
    p.add_argument("--eps", type=non_negative_float, default=math.inf,
                   help="radius around the source image (default: inf)")
    p.set_defaults(func=_run_translate, app="translate")

    p = subparsers.add_parser("interpolate", help="sample along linear interpolations of seed pairs",
                              description="Interpolation (E supp. Fig. 11-13): the sampler on (1-t)a + tb. Pairs are "
                                          "(x[0], x[1]), (x[2], x[3]), ... of --input, or (x[i], y[i]) with --input-b.")
    _common_options(p, "interpolate")
    p.add_argument("--input-b", metavar="PATH", help="second endpoints (same shape as --input)")
    p.add_argument("--num", type=int, default=8, help="points per interpolation, ends included (default: 8)")
    p.add_argument("--blur", type=non_negative_float, default=None,
                   help="Gaussian blur of the seeds in pixels (default: the checkpoint's generation blur, else 0)")
    p.set_defaults(func=_run_interpolate, app="interpolate")

    p = subparsers.add_parser("compose", help="generate from a weighted sum of several models' scores",
                              description="Compositional generation (E supp. Fig. 17): ascend sum_i w_i f_i(x) from "
                                          "the seeds; also samples each model alone from the same seeds.")
    _common_options(p, "compose", several_models=True)
    p.add_argument("--mode", choices=("score", "log_prob"), default="score",
                   help="sum the scores (default) or the log-probabilities log sigmoid(f_i)")
    p.add_argument("--blur", type=non_negative_float, default=None,
                   help="Gaussian blur of the seeds in pixels (default: the checkpoint's generation blur, else 0)")
    p.add_argument("--no-singles", action="store_true", help="skip sampling each model alone")
    p.set_defaults(func=_run_compose, app="compose")


# ----------------------------------------------------------------------------------------------- shared steps
class _Context:
    """What every command needs: the score, its parts, the inputs and the output folder."""

    def __init__(self, args: argparse.Namespace, name: str) -> None:
        self.args, self.name = args, name
        self.device = resolve_device(args.device)
        self.models = [load(path, device=self.device) for path in args.checkpoint]
        weights = args.weights
        if weights is not None and len(weights) != len(self.models):
            raise ValueError(f"--weights has {len(weights)} values for {len(self.models)} checkpoints")
        self.weights = list(weights) if weights is not None else [1.0] * len(self.models)
        mode = getattr(args, "mode", "score")
        if len(self.models) == 1 and self.weights == [1.0] and mode == "score":
            self.score: Any = self.models[0]
        else:
            self.score = WeightedSum(self.models, self.weights, mode=mode).to(self.device)
        generation = DEFAULT_STEPS[name] is None
        if args.step_size is not None:
            self.step_size = args.step_size
        else:
            self.step_size = self._default("step_size", "step_size", 1.0, generation, "--step-size")
        if args.steps is None:
            args.steps = int(self._default("steps", "k_max", 16, generation, "--steps"))
        if getattr(args, "blur", 0.0) is None:
            args.blur = self._default("blur", None, 0.0, True, "--blur")
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.x = self.read_images(args.input, args.data)
        self.record = parse_steps(args.trajectory, args.steps) if args.trajectory else None
        self.files: dict[str, str] = {}

    def _default(self, generate_key: str, train_key: str | None, fallback: float, generation: bool,
                 option: str) -> float:
        """A sampler default shared by all checkpoints: the stored generation setting (generation-like commands
        only), else the training setting ``train_key``, else ``fallback``. Checkpoints that disagree need
        ``option``."""
        values = set()
        for path, model in zip(self.args.checkpoint, self.models):
            stored = _generation_settings(path) if generation else {}
            if generate_key in stored:
                values.add(float(stored[generate_key]))
            elif train_key is not None:
                values.add(float(getattr(model, "checkpoint_config", {}).get(train_key, fallback)))
            else:
                values.add(float(fallback))
        if len(values) > 1:
            raise ValueError(f"the checkpoints disagree on the default {generate_key} {sorted(values)}; "
                             f"choose {option}")
        return values.pop()

    def read_images(self, path: str | None, data: str | None) -> Tensor:
        args = self.args
        channels = args.channels if args.channels is not None else model_channels(self.score)
        if path is not None:
            x = load_array(path)
            if args.n is not None:
                x = x[:args.n]
        else:
            x = load_data(data, split=args.split, size=args.size or 28, channels=channels or 1, n=args.n or 64,
                          seed=args.seed).x
        return conform(x, channels, args.size)

    def protocol(self, **extra: Any) -> dict[str, Any]:
        a = self.args
        out = {"command": f"atebm {a.app}", "checkpoints": list(a.checkpoint), "weights": self.weights,
               "input": a.input or f"atebm.data {a.data} ({a.split})", "images": int(self.x.shape[0]),
               "image_shape": list(self.x.shape[1:]), "steps": a.steps, "step_size": self.step_size,
               "norm": a.norm, "seed": a.seed}
        out.update(extra)
        return out

    def save(self, name: str, x: Tensor, nrow: int | None = None) -> None:
        npz, png = save_images(self.out, name, x.cpu(), nrow=nrow, scale=self.args.scale)
        self.files[name] = npz.name
        self.files[f"{name}_grid"] = png.name

    def comparison(self, rows: Sequence[Tensor], count: int = 16) -> Path:
        """One grid: the first ``count`` images of each batch in ``rows``, one batch per row."""
        shown = [r[:count].cpu() for r in rows]
        count = shown[0].shape[0]
        path = save_grid(self.out / f"{self.name}_comparison.png", torch.cat(shown), nrow=count, scale=self.args.scale)
        self.files["comparison"] = path.name
        return path

    def trajectory(self, trajectory: Tensor | None) -> None:
        if trajectory is None or self.record is None:
            return
        paths = save_trajectory(self.out, self.name, trajectory.cpu(), self.record,
                                max_samples=self.args.trajectory_samples, scale=self.args.scale)
        self.files.update({f"trajectory_{k}": p.name for k, p in paths.items()})

    def split(self, result: Tensor | tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor | None]:
        if isinstance(result, tuple):
            return result[0], result[1]
        return result, None

    def finish(self, protocol: dict[str, Any], images: Sequence[tuple[str, str, str]],
               tables: Sequence[tuple[str, str, list[str], list[list[Any]]]] = (),
               metrics: dict[str, Any] | None = None) -> int:
        """Writes ``<name>.json`` and adds the image and table sections to the run's report."""
        from ..report import Report

        write_json(self.out / f"{self.name}.json", {"protocol": protocol, "metrics": metrics or {},
                                                    "files": self.files})
        report = Report.open(self.out)
        for key, heading, columns, rows in tables:
            report.add_table(f"apps/{self.name}/{key}", heading, columns, rows, protocol=protocol)
        for key, heading, caption in images:
            if key in self.files:
                report.add_image(f"apps/{self.name}/{key}", heading, self.files[key], caption=caption)
        if "trajectory_png" in self.files:
            report.add_image(f"apps/{self.name}/trajectory", f"{self.name}: trajectory", self.files["trajectory_png"],
                             caption=f"one row per sample, columns at steps {self.record}")
        path = report.save()
        print(f"{self.name}: wrote {', '.join(sorted(set(self.files.values())))} and {path} in {self.out}")
        return 0


def _generation_settings(path: str) -> dict[str, Any]:
    """``extra["generate"]`` of a checkpoint (steps, step_size, blur), or {} when it stores none."""
    extra = load_checkpoint(path).get("extra") or {}
    settings = extra.get("generate") if isinstance(extra, dict) else None
    return dict(settings) if isinstance(settings, dict) else {}


_STAT_COLUMNS = ["mean", "std", "min", "q1", "median", "q3", "max"]


def _quality(images: Tensor, reference: Tensor) -> tuple[Any, Any]:
    """Per-image SSIM and PSNR against the reference (atebm.metrics, imported here: it pulls in scikit-learn)."""
    from ..metrics import psnr, ssim

    return ssim(images, reference).numpy(), psnr(images, reference).numpy()


def _stat_row(label: str, values: Any) -> list[Any]:
    s = summarize(values)
    return [label] + [round(s[c], 4) if c in s else "n/a" for c in _STAT_COLUMNS]


# ----------------------------------------------------------------------------------------------- commands
def _run_denoise(args: argparse.Namespace) -> int:
    ctx = _Context(args, "denoise")
    clean = None
    if args.noise != "none":
        clean = ctx.x
        level = args.sigma if args.noise == "gaussian" else args.amount
        noisy = corrupt(clean, args.noise, level, seed=args.seed)
        ctx.save("noisy", noisy)
    else:
        noisy = ctx.x
    restored, path = ctx.split(denoise(ctx.score, noisy, args.steps, ctx.step_size, eps=args.eps, norm=args.norm,
                                       record=ctx.record))
    restored = restored.cpu()
    ctx.save("denoise", restored)
    ctx.trajectory(path)
    ctx.comparison([noisy, restored] if clean is None else [clean, noisy, restored])
    protocol = ctx.protocol(noise=args.noise, sigma=args.sigma if args.noise == "gaussian" else None,
                            amount=args.amount if args.noise == "salt-pepper" else None, eps=args.eps)
    tables, metrics = [], {}
    if clean is not None:
        (s_noisy, p_noisy), (s_rest, p_rest) = _quality(noisy, clean), _quality(restored, clean)
        metrics = {"ssim_noisy": summarize(s_noisy), "ssim_restored": summarize(s_rest),
                   "psnr_noisy": summarize(p_noisy), "psnr_restored": summarize(p_rest)}
        rows = [_stat_row("SSIM noisy", s_noisy), _stat_row("SSIM restored", s_rest),
                _stat_row("PSNR noisy (dB)", p_noisy), _stat_row("PSNR restored (dB)", p_rest)]
        tables.append(("quality", "Denoising: quality against the clean images", ["images"] + _STAT_COLUMNS, rows))
    caption = "rows: clean, noisy, restored" if clean is not None else "rows: input, restored"
    return ctx.finish(protocol, [("comparison", "Denoising", caption)], tables, metrics)


def _parse_fill(text: str) -> float | str:
    if text in ("noise", "mean"):
        return text
    try:
        value = float(text)
    except ValueError as err:
        raise ValueError(f"--fill must be a number in [0, 1], 'noise' or 'mean'; got {text!r}") from err
    if not 0 <= value <= 1:
        raise ValueError(f"--fill must lie in [0, 1], got {value}")
    return value


def _run_inpaint(args: argparse.Namespace) -> int:
    ctx = _Context(args, "inpaint")
    if args.mask == "file" and not args.mask_file:
        raise ValueError("--mask file needs --mask-file PATH")
    if args.mask_file and args.mask != "file":
        raise ValueError(f"--mask-file is only read with --mask file (got --mask {args.mask})")
    fill = _parse_fill(args.fill)
    mask = make_mask(args.mask, ctx.x.shape, size=args.mask_size, count=args.boxes, min_size=args.box_min,
                     max_size=args.box_max, fraction=args.fraction, path=args.mask_file, seed=args.seed)
    clean = None if args.occluded else ctx.x
    occluded = ctx.x if args.occluded else occlude(ctx.x, mask, fill, seed=args.seed)
    restored, path = ctx.split(inpaint(ctx.score, occluded, mask, args.steps, ctx.step_size, norm=args.norm,
                                       record=ctx.record))
    restored = restored.cpu()
    ctx.save("inpaint", restored)
    save_npz(ctx.out / "mask.npz", mask.float())
    ctx.files["mask"] = "mask.npz"
    if clean is not None:
        ctx.save("occluded", occluded)
    ctx.trajectory(path)
    ctx.comparison([occluded, restored] if clean is None else [clean, occluded, restored])
    protocol = ctx.protocol(mask=args.mask, mask_file=args.mask_file, fill=fill, occluded_input=args.occluded,
                            missing_fraction=round(float(mask.float().mean()), 4),
                            **({"mask_size": args.mask_size} if args.mask == "center" else {}),
                            **({"boxes": args.boxes, "box_sides": [args.box_min, args.box_max]}
                               if args.mask == "boxes" else {}),
                            **({"fraction": args.fraction} if args.mask == "pixels" else {}))
    tables, metrics = [], {}
    if clean is not None:
        (s_occ, p_occ), (s_rest, p_rest) = _quality(occluded, clean), _quality(restored, clean)
        metrics = {"ssim_occluded": summarize(s_occ), "ssim_restored": summarize(s_rest),
                   "psnr_occluded": summarize(p_occ), "psnr_restored": summarize(p_rest)}
        rows = [_stat_row("SSIM occluded", s_occ), _stat_row("SSIM restored", s_rest),
                _stat_row("PSNR occluded (dB)", p_occ), _stat_row("PSNR restored (dB)", p_rest)]
        tables.append(("quality", "Inpainting: quality against the clean images", ["images"] + _STAT_COLUMNS, rows))
    caption = "rows: clean, occluded, restored" if clean is not None else "rows: occluded input, restored"
    return ctx.finish(protocol, [("comparison", "Inpainting", caption)], tables, metrics)


def _run_translate(args: argparse.Namespace) -> int:
    ctx = _Context(args, "translate")
    result, path = ctx.split(translate(ctx.score, ctx.x, args.steps, ctx.step_size, eps=args.eps, norm=args.norm,
                                       record=ctx.record))
    result = result.cpu()
    ctx.save("translate_source", ctx.x)
    ctx.save("translate", result)
    ctx.trajectory(path)
    ctx.comparison([ctx.x, result])
    with torch.no_grad():
        before = ctx.score(ctx.x.to(ctx.device)).cpu()
        after = ctx.score(result.to(ctx.device)).cpu()
    metrics = {"score_source": summarize(before.numpy()), "score_translated": summarize(after.numpy())}
    rows = [_stat_row("score of source", before.numpy()), _stat_row("score of translation", after.numpy())]
    tables = [("scores", "Translation: target model's score before and after", ["images"] + _STAT_COLUMNS, rows)]
    return ctx.finish(ctx.protocol(eps=args.eps), [("comparison", "Translation", "rows: source, translated")],
                      tables, metrics)


def _run_interpolate(args: argparse.Namespace) -> int:
    ctx = _Context(args, "interpolate")
    if args.num < 2:
        raise ValueError(f"--num must be >= 2, got {args.num}")
    if args.input_b is not None:
        if args.input is None:
            raise ValueError("--input-b pairs with --input")
        a, b = ctx.x, ctx.read_images(args.input_b, None)
        if a.shape != b.shape:
            raise ValueError(f"--input {tuple(a.shape)} and --input-b {tuple(b.shape)} differ in shape")
    else:
        if ctx.x.shape[0] < 2:
            raise ValueError("interpolation needs at least two images (pairs x[0]-x[1], x[2]-x[3], ...)")
        pairs = ctx.x.shape[0] // 2
        a, b = ctx.x[0:2 * pairs:2], ctx.x[1:2 * pairs:2]
    out = interpolate(ctx.score, a, b, args.num, args.steps, ctx.step_size, args.blur, norm=args.norm,
                      record=ctx.record)
    samples, seeds = out[0].cpu(), out[1].cpu()
    flat = samples.reshape(-1, *samples.shape[2:])
    ctx.save("interpolate", flat, nrow=args.num)
    ctx.save("interpolate_seeds", seeds.reshape(-1, *seeds.shape[2:]), nrow=args.num)
    if ctx.record is not None:
        traj = out[2].cpu()
        ctx.trajectory(traj.reshape(traj.shape[0], -1, *traj.shape[3:]))
    protocol = ctx.protocol(pairs=int(a.shape[0]), points=args.num, blur_sigma=args.blur)
    images = [("interpolate_grid", "Interpolation", f"one row per pair, {args.num} points from a to b"),
              ("interpolate_seeds_grid", "Interpolation seeds", "the linear interpolations the sampler started from")]
    return ctx.finish(protocol, images)


def _run_compose(args: argparse.Namespace) -> int:
    ctx = _Context(args, "compose")
    result, path = ctx.split(generate(ctx.score, ctx.x, args.steps, ctx.step_size, args.blur, norm=args.norm,
                                      record=ctx.record))
    result = result.cpu()
    ctx.save("compose_seeds", ctx.x)
    ctx.save("compose", result)
    ctx.trajectory(path)
    rows = [ctx.x, result]
    images = []
    if not args.no_singles:
        for i, model in enumerate(ctx.models):
            single = generate(model, ctx.x, args.steps, ctx.step_size, args.blur, norm=args.norm).cpu()
            ctx.save(f"compose_single{i}", single)
            rows.append(single)
    ctx.comparison(rows)
    caption = "rows: seeds, composition"
    if not args.no_singles:
        caption += "".join(f", model {i} alone" for i in range(len(ctx.models)))
    images.append(("comparison", "Composition", caption))
    protocol = ctx.protocol(mode=args.mode, blur_sigma=args.blur)
    return ctx.finish(protocol, images)
