"""The application commands as library functions, with the command line's defaults (``atebm restore denoise``
is :func:`run_denoise`, ``atebm restore inpaint`` :func:`run_inpaint`, ``atebm translate`` :func:`run_translate`,
``atebm interpolate`` :func:`run_interpolate`, ``atebm compose`` :func:`run_compose`; the parsers read their
defaults from these signatures).

Each one

1. takes one model or several: run folders / checkpoint files (loaded with :func:`atebm.load_model` on
   ``device``) or score objects; several are summed into one score by :class:`~atebm.apps.WeightedSum`;
2. reads its images with :func:`read_images` and converts them to the model's input channels and size
   (``model.meta``; never a fixed size);
3. runs the application with sampler defaults from the checkpoint (below);
4. writes into ``out``: ``<command>.npz`` + ``<command>.png`` (the result), the images the ascent started from,
   a comparison grid ``<command>_comparison.png`` (interpolation: the seed grid), ``<command>.json`` (protocol,
   metrics, files), with ``trajectory`` the path as ``<command>_trajectory.png/.gif/.npz``, and its sections of
   ``out/report.html``;
5. returns an :class:`AppRun`.

Sampler defaults: restoration uses fixed numbers of steps (:data:`RESTORATION_STEPS`: in the range that maximised
mean val SSIM on MNIST, ``benchmarks/apps_restore.py``) and the checkpoint's training step size. The
generation-like commands (translate, interpolate, compose) use the generation settings the checkpoint stores
(``model.meta["generate"]``: steps, step_size, blur; written by ``atebm train``), else the final training K and
step size, the settings its contrastive samples were made with. Several models must agree on a default, else
the caller chooses. A score object without ``meta`` needs ``steps`` and ``step_size``.
"""
from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..io import save_grid, save_images, save_npz
from ..sampling import PGDTrace, ScoreFn, per_sample_scores
from ..training import load_model, resolve_device, write_json
from ._images import check_images, conform, model_channels, model_device, model_size
from .compose import WeightedSum
from .generate import generate
from .interpolate import interpolate, interpolation_seeds
from .quality import summarize
from .restore import (
    MASK_KINDS,
    NOISE_MODELS,
    corrupt,
    denoise,
    inpaint,
    make_mask,
    occlude,
)
from .trajectory import parse_steps, save_trajectory
from .translate import translate

__all__ = ["AppRun", "read_images", "run_denoise", "run_inpaint", "run_translate", "run_interpolate", "run_compose",
           "RESTORATION_STEPS", "DATA_COUNT", "NOISE_CHOICES", "FILL_CHOICES", "COMPOSE_MODES"]

#: Default number of steps of the restoration commands (see the module docstring).
RESTORATION_STEPS = {"denoise": 10, "inpaint": 20}
#: Images drawn from a named data set (or any data-source string) when ``n`` is not given.
DATA_COUNT = 64
NOISE_CHOICES = ("none", *NOISE_MODELS)
FILL_CHOICES = ("noise", "mean")
COMPOSE_MODES = ("score", "log_prob")

ModelLike = ScoreFn | str | os.PathLike
Models = ModelLike | Sequence[ModelLike]
ImagesLike = Tensor | np.ndarray | str | os.PathLike
Trajectory = str | Sequence[int] | None

_STAT_COLUMNS = ["mean", "std", "min", "q1", "median", "q3", "max"]


@dataclass
class AppRun:
    """What an application command produced (tensors on the CPU)."""

    command: str
    #: The result: restored / translated / composed images (N, C, H, W); interpolation (pairs, num, C, H, W).
    output: Tensor
    #: The images the ascent started from: noisy, occluded, converted source images or seeds (same layout).
    start: Tensor
    #: The recorded path, ``path[r]`` after ``record[r]`` steps, shape (len(record), *output.shape); or None.
    path: Tensor | None
    record: list[int] | None
    protocol: dict[str, Any]
    metrics: dict[str, Any]
    #: Role -> file name inside ``out``.
    files: dict[str, str] = field(default_factory=dict)
    out: Path = Path(".")


# ----------------------------------------------------------------------------------------------- reading images
def read_images(source: ImagesLike, *, channels: int | None = None, size: int | tuple[int, int] | None = None,
                n: int | None = None, split: str = "test", seed: int = 0) -> tuple[Tensor, str]:
    """Images for an application, converted to ``channels`` and ``size`` (``None`` keeps the images' own), and a
    description of where they came from.

    ``source`` is a tensor or array (NCHW, floats in [0, 1]), the path of an ``.npz`` (array ``x``) / ``.npy``
    file or of an image folder, or a data-source string of :mod:`atebm.data` (a named data set such as ``"mnist"``,
    or ``KIND:PATH?options``), all read by :func:`atebm.data.read_source`: the first ``n`` images of a file or
    folder in file order (all when ``n`` is ``None``), or ``n`` images of a source string drawn with ``seed``
    (:data:`DATA_COUNT` of a named data set), from ``split`` when a named data set's string gives none. Bad
    values (NaN, inf, out of [0, 1], wrong shape or dtype) raise ValueError / TypeError naming the problem.
    """
    from ..data import DATASETS, read_source

    if n is not None and n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if isinstance(source, (Tensor, np.ndarray)):
        x, where = check_images(source, "input images"), f"in-memory images {tuple(source.shape)}"
    elif isinstance(source, (str, os.PathLike)):
        text = str(source)
        where, count = text, None  # a file or folder of the user's: its first n images, in file order
        kind, options = _source_kind(text)
        if kind in DATASETS:
            if size is None or channels is None:
                raise ValueError(f"reading the data set {text!r} needs the model's input size and channels, "
                                 "which it does not record (model.meta); give the images as an .npz/.npy file "
                                 "or tensor")
            where, count = f"atebm.data {text} ({options.get('split', split)})", n or DATA_COUNT
        x = read_source(text, size=size, channels=channels, n=count, seed=seed, split=split).x
    else:
        raise TypeError(f"images must be a tensor, an array, a path or a data-source string; got "
                        f"{type(source).__name__}")
    x = conform(x, channels, size)
    return (x[:n] if n is not None else x), where


def _source_kind(text: str) -> tuple[str | None, dict[str, Any]]:
    """The kind and options of a data-source string; ``(None, {})`` for an existing path or unparsable text
    (which :func:`atebm.data.read_source` then reads or refuses with its own message)."""
    from ..data import parse_source

    if Path(text).exists():
        return None, {}
    try:
        kind, _, options = parse_source(text)
    except ValueError:
        return None, {}
    return kind, options


# ----------------------------------------------------------------------------------------------- shared steps
def _as_list(models: Models) -> list[ModelLike]:
    if isinstance(models, (str, os.PathLike)) or callable(models):
        return [models]
    items = list(models)
    if not items:
        raise ValueError("no model given")
    return items


def _model_name(model: ModelLike) -> str:
    if isinstance(model, (str, os.PathLike)):
        return str(model)
    meta = getattr(model, "meta", None)
    return str(meta.get("path")) if isinstance(meta, dict) and meta.get("path") else type(model).__name__


def _ascent(record: list[int] | None, app: Callable[..., Tensor], *args: Any,
            **kwargs: Any) -> tuple[Tensor, Tensor | None]:
    """Runs an application, with a :class:`~atebm.sampling.PGDTrace` that records its path at the steps of
    ``record`` when one is to be recorded; returns the result and the path (``None`` without ``record``) on CPU."""
    trace = None if record is None else PGDTrace(record)
    result = app(*args, trace=trace, **kwargs)
    return result.cpu(), (None if trace is None or trace.path is None else trace.path.cpu())


def _stat_row(label: str, values: Any) -> list[Any]:
    s = summarize(values)
    return [label] + [round(s[c], 4) if c in s else "n/a" for c in _STAT_COLUMNS]


def _quality(images: Tensor, reference: Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per-image SSIM and PSNR against the reference (atebm.metrics pulls in scikit-learn: imported on use)."""
    from ..metrics import psnr, ssim

    return ssim(images, reference).numpy(), psnr(images, reference).numpy()


Table = tuple[str, str, list[str], list[list[Any]]]


def _restoration_quality(task: str, label: str, start: Tensor, restored: Tensor, clean: Tensor | None
                         ) -> tuple[list[Table], dict[str, Any]]:
    """SSIM/PSNR of the ``label`` images (noisy, occluded) and of the restored ones against the clean images:
    ``([table], metrics)``; ``([], {})`` when there are no clean images to compare with."""
    if clean is None:
        return [], {}
    (s_start, p_start), (s_rest, p_rest) = _quality(start, clean), _quality(restored, clean)
    metrics = {f"ssim_{label}": summarize(s_start), "ssim_restored": summarize(s_rest),
               f"psnr_{label}": summarize(p_start), "psnr_restored": summarize(p_rest)}
    rows = [_stat_row(f"SSIM {label}", s_start), _stat_row("SSIM restored", s_rest),
            _stat_row(f"PSNR {label} (dB)", p_start), _stat_row("PSNR restored (dB)", p_rest)]
    return [("quality", f"{task}: quality against the clean images", ["images"] + _STAT_COLUMNS, rows)], metrics


class _Command:
    """One command's models, score, defaults and output folder."""

    def __init__(self, command: str, models: Models, weights: Sequence[float] | None, device: str | torch.device,
                 out: str | os.PathLike, scale: int, mode: str = "score") -> None:
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        if mode not in COMPOSE_MODES:
            raise ValueError(f"mode must be one of {COMPOSE_MODES}, got {mode!r}")
        items = _as_list(models)
        if weights is not None and len(weights) != len(items):
            raise ValueError(f"weights has {len(weights)} values for {len(items)} models")
        self.command, self.scale = command, scale
        self.names = [_model_name(m) for m in items]
        target = resolve_device(str(device))
        self.models: list[Any] = [load_model(m, device=target) if isinstance(m, (str, os.PathLike)) else m
                                  for m in items]
        for name, model in zip(self.names, self.models):
            if not callable(model):
                raise TypeError(f"model {name} is not callable (a score maps a batch to one score per sample)")
        self.weights = [float(w) for w in weights] if weights is not None else [1.0] * len(items)
        if len(self.models) == 1 and self.weights == [1.0] and mode == "score":
            self.score: Any = self.models[0]
        else:
            self.score = WeightedSum(self.models, self.weights, mode=mode).to(model_device(self.models[0]))
        self.channels, self.size = model_channels(self.score), model_size(self.score)
        self.out = Path(out)
        self.files: dict[str, str] = {}

    def default(self, value: float | None, option: str, generate_key: str | None, config_key: str | None,
                fallback: float | None = None) -> float:
        """``value``, else the setting every model agrees on: its stored generation setting ``generate_key``,
        else its training setting ``config_key``, else ``fallback``."""
        if value is not None:
            return value
        found = set()
        for name, model in zip(self.names, self.models):
            meta = getattr(model, "meta", None) or {}
            stored = meta.get("generate") or {} if generate_key else {}
            config = meta.get("config") or {}
            if generate_key and generate_key in stored:
                found.add(float(stored[generate_key]))
            elif config_key and config_key in config:
                found.add(float(config[config_key]))
            elif fallback is not None:
                found.add(float(fallback))
            else:
                raise ValueError(f"model {name} records no default {option} (model.meta); pass {option}")
        if len(found) > 1:
            raise ValueError(f"the models disagree on the default {option} {sorted(found)}; choose {option}")
        return found.pop()

    def read(self, source: ImagesLike, n: int | None, split: str, seed: int) -> tuple[Tensor, str]:
        return read_images(source, channels=self.channels, size=self.size, n=n, split=split, seed=seed)

    def record(self, trajectory: Trajectory, steps: int) -> list[int] | None:
        if trajectory is None:
            return None
        if isinstance(trajectory, str):
            return parse_steps(trajectory, steps)
        return parse_steps(",".join(str(int(s)) for s in trajectory), steps)

    def protocol(self, where: str, start: Tensor, steps: int, step_size: float, norm: str, seed: int,
                 **extra: Any) -> dict[str, Any]:
        shape = list(start.shape[-3:])
        out = {"command": self.command, "models": self.names, "weights": self.weights, "input": where,
               "images": int(start.reshape(-1, *shape).shape[0]), "image_shape": shape, "steps": steps,
               "step_size": step_size, "norm": norm, "seed": seed}
        out.update(extra)
        return out

    def save(self, name: str, x: Tensor, nrow: int | None = None) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        npz, png = save_images(self.out, name, x.cpu(), nrow=nrow, scale=self.scale)
        self.files[name], self.files[f"{name}_grid"] = npz.name, png.name

    def comparison(self, rows: Sequence[Tensor], count: int = 16) -> None:
        """One grid: the first ``count`` images of each batch in ``rows``, one batch per row."""
        shown = [r[:count].cpu() for r in rows]
        path = save_grid(self.out / f"{self.command}_comparison.png", torch.cat(shown), nrow=shown[0].shape[0],
                         scale=self.scale)
        self.files["comparison"] = path.name

    def trajectory(self, path: Tensor | None, record: list[int] | None, samples: int) -> None:
        if path is None or record is None:
            return
        frames = path.reshape(path.shape[0], -1, *path.shape[-3:])
        written = save_trajectory(self.out, self.command, frames, record, max_samples=samples, scale=self.scale)
        self.files.update({f"trajectory_{k}": p.name for k, p in written.items()})

    def finish(self, output: Tensor, start: Tensor, path: Tensor | None, record: list[int] | None,
               protocol: dict[str, Any], images: Sequence[tuple[str, str, str]],
               tables: Sequence[Table] = (),
               metrics: dict[str, Any] | None = None) -> AppRun:
        """Writes ``<command>.json`` and adds the image and table sections to the run's report."""
        from ..report import Report

        metrics = metrics or {}
        write_json(self.out / f"{self.command}.json", {"protocol": protocol, "metrics": metrics, "files": self.files})
        report = Report.open(self.out)
        for key, heading, columns, rows in tables:
            report.add_table(f"apps/{self.command}/{key}", heading, columns, rows, protocol=protocol)
        for key, heading, caption in images:
            if key in self.files:
                report.add_image(f"apps/{self.command}/{key}", heading, self.files[key], caption=caption)
        if "trajectory_png" in self.files:
            report.add_image(f"apps/{self.command}/trajectory", f"{self.command}: trajectory",
                             self.files["trajectory_png"], caption=f"one row per sample, columns at steps {record}")
        report.save()
        files = {**self.files, "json": f"{self.command}.json", "report": report.path.name}
        return AppRun(self.command, output, start, path, record, protocol, metrics, files, self.out)


# ----------------------------------------------------------------------------------------------- commands
def run_denoise(models: Models, images: ImagesLike, out: str | os.PathLike, *, weights: Sequence[float] | None = None,
                noise: str = "none", sigma: float = 0.2, amount: float = 0.1, eps: float = math.inf,
                steps: int = RESTORATION_STEPS["denoise"], step_size: float | None = None, norm: str = "l2",
                n: int | None = None, split: str = "test", seed: int = 0, trajectory: Trajectory = None,
                trajectory_samples: int = 16, scale: int = 2, device: str = "auto") -> AppRun:
    """Denoising (T Sec. 2.5.3) by :func:`~atebm.apps.denoise`: ascent from the noisy images, at most ``eps``
    from them. With ``noise`` ("gaussian" with std ``sigma``, or "salt-pepper" with pixel fraction ``amount``)
    the images are taken as clean, corrupted here with ``seed``, and SSIM/PSNR against them are reported; with
    ``noise="none"`` they are the noisy input. Writes ``denoise.*`` (and ``noisy.*``) into ``out``."""
    if noise not in NOISE_CHOICES:
        raise ValueError(f"noise must be one of {NOISE_CHOICES}, got {noise!r}")
    run = _Command("denoise", models, weights, device, out, scale)
    step_size = run.default(step_size, "step_size", None, "step_size")
    record = run.record(trajectory, steps)
    x, where = run.read(images, n, split, seed)
    clean = x if noise != "none" else None
    noisy = corrupt(x, noise, sigma if noise == "gaussian" else amount, seed=seed) if clean is not None else x
    restored, path = _ascent(record, denoise, run.score, noisy, steps, step_size, eps=eps, norm=norm)
    if clean is not None:
        run.save("noisy", noisy)
    run.save("denoise", restored)
    run.trajectory(path, record, trajectory_samples)
    run.comparison([noisy, restored] if clean is None else [clean, noisy, restored])
    protocol = run.protocol(where, noisy, steps, step_size, norm, seed, noise=noise,
                            sigma=sigma if noise == "gaussian" else None,
                            amount=amount if noise == "salt-pepper" else None, eps=eps)
    tables, metrics = _restoration_quality("Denoising", "noisy", noisy, restored, clean)
    caption = "rows: clean, noisy, restored" if clean is not None else "rows: input, restored"
    return run.finish(restored, noisy, path, record, protocol, [("comparison", "Denoising", caption)], tables, metrics)


def run_inpaint(models: Models, images: ImagesLike, out: str | os.PathLike, *, weights: Sequence[float] | None = None,
                mask: str = "center", mask_file: str | os.PathLike | None = None, mask_size: float = 0.5,
                boxes: int = 3, box_min: float = 0.15, box_max: float = 0.35, fraction: float = 0.5,
                fill: float | str = 0.0, occluded: bool = False, steps: int = RESTORATION_STEPS["inpaint"],
                step_size: float | None = None, norm: str = "l2", n: int | None = None, split: str = "test",
                seed: int = 0, trajectory: Trajectory = None, trajectory_samples: int = 16, scale: int = 2,
                device: str = "auto") -> AppRun:
    """Inpainting (T Sec. 2.5.3) by :func:`~atebm.apps.inpaint`: ascent that moves only the missing pixels.

    The mask (True = missing) is ``mask``: "center" (a square of side ``mask_size``), "boxes" (``boxes`` boxes
    of sides in [``box_min``, ``box_max``]), "pixels" (each missing with probability ``fraction``) or "file"
    (``mask_file``: an image or NPY/NPZ, white = missing). By default the images are clean: the hole is filled
    with ``fill`` (a value in [0, 1], "noise" or "mean") and SSIM/PSNR against the clean images are reported;
    ``occluded=True`` takes them as already occluded (no ground truth). Writes ``inpaint.*``, ``mask.npz`` and
    ``occluded.*`` into ``out``."""
    if mask not in MASK_KINDS:
        raise ValueError(f"mask must be one of {MASK_KINDS}, got {mask!r}")
    if mask == "file" and not mask_file:
        raise ValueError("mask 'file' needs a mask file (--mask-file PATH)")
    if mask_file and mask != "file":
        raise ValueError(f"a mask file is only read with mask 'file' (got mask {mask!r})")
    if isinstance(fill, str) and fill not in FILL_CHOICES:
        raise ValueError(f"fill must be a number in [0, 1] or one of {FILL_CHOICES}, got {fill!r}")
    run = _Command("inpaint", models, weights, device, out, scale)
    step_size = run.default(step_size, "step_size", None, "step_size")
    record = run.record(trajectory, steps)
    x, where = run.read(images, n, split, seed)
    holes = make_mask(mask, x.shape, size=mask_size, count=boxes, min_size=box_min, max_size=box_max,
                      fraction=fraction, path=mask_file, seed=seed)
    clean = None if occluded else x
    start = x if occluded else occlude(x, holes, fill, seed=seed)
    restored, path = _ascent(record, inpaint, run.score, start, holes, steps, step_size, norm=norm)
    run.save("inpaint", restored)
    run.out.mkdir(parents=True, exist_ok=True)
    save_npz(run.out / "mask.npz", holes.float())
    run.files["mask"] = "mask.npz"
    if clean is not None:
        run.save("occluded", start)
    run.trajectory(path, record, trajectory_samples)
    run.comparison([start, restored] if clean is None else [clean, start, restored])
    shape_of_mask = ({"mask_size": mask_size} if mask == "center" else
                     {"boxes": boxes, "box_sides": [box_min, box_max]} if mask == "boxes" else
                     {"fraction": fraction} if mask == "pixels" else {})
    protocol = run.protocol(where, start, steps, step_size, norm, seed, mask=mask,
                            mask_file=str(mask_file) if mask_file else None, fill=fill, occluded_input=occluded,
                            missing_fraction=round(float(holes.float().mean()), 4), **shape_of_mask)
    tables, metrics = _restoration_quality("Inpainting", "occluded", start, restored, clean)
    caption = "rows: clean, occluded, restored" if clean is not None else "rows: occluded input, restored"
    return run.finish(restored, start, path, record, protocol, [("comparison", "Inpainting", caption)], tables,
                      metrics)


def run_translate(models: Models, images: ImagesLike, out: str | os.PathLike, *,
                  weights: Sequence[float] | None = None, eps: float = math.inf, steps: int | None = None,
                  step_size: float | None = None, norm: str = "l2", n: int | None = None, split: str = "test",
                  seed: int = 0, trajectory: Trajectory = None, trajectory_samples: int = 16, scale: int = 2,
                  device: str = "auto") -> AppRun:
    """Image-to-image translation (E Sec. 5.2) by :func:`~atebm.apps.translate`: ascent of the target model from
    images of another domain, converted to its input format, at most ``eps`` from them. Reports the target
    model's score before and after. Writes ``translate.*`` and ``translate_source.*`` into ``out``."""
    run = _Command("translate", models, weights, device, out, scale)
    steps = int(run.default(steps, "steps", "steps", "k_max"))
    step_size = run.default(step_size, "step_size", "step_size", "step_size")
    record = run.record(trajectory, steps)
    source, where = run.read(images, n, split, seed)
    result, path = _ascent(record, translate, run.score, source, steps, step_size, eps=eps, norm=norm)
    run.save("translate_source", source)
    run.save("translate", result)
    run.trajectory(path, record, trajectory_samples)
    run.comparison([source, result])
    where_model = model_device(run.score)
    with torch.no_grad():
        before = per_sample_scores(run.score, source.to(where_model)).cpu().numpy()
        after = per_sample_scores(run.score, result.to(where_model)).cpu().numpy()
    metrics = {"score_source": summarize(before), "score_translated": summarize(after)}
    rows = [_stat_row("score of source", before), _stat_row("score of translation", after)]
    tables: list[Table] = [("scores", "Translation: target model's score before and after",
                            ["images"] + _STAT_COLUMNS, rows)]
    protocol = run.protocol(where, source, steps, step_size, norm, seed, eps=eps)
    return run.finish(result, source, path, record, protocol,
                      [("comparison", "Translation", "rows: source, translated")], tables, metrics)


def run_interpolate(models: Models, images: ImagesLike, out: str | os.PathLike, *,
                    images_b: ImagesLike | None = None, weights: Sequence[float] | None = None, num: int = 8,
                    blur: float | None = None, steps: int | None = None, step_size: float | None = None,
                    norm: str = "l2", n: int | None = None, split: str = "test", seed: int = 0,
                    trajectory: Trajectory = None, trajectory_samples: int = 16, scale: int = 2,
                    device: str = "auto") -> AppRun:
    """Interpolation (E supp. Fig. 11-13) by :func:`~atebm.apps.interpolate`: the sampler on ``num`` points
    ``(1-t)a + tb`` of each pair, ends included. Pairs are ``(x[0], x[1]), (x[2], x[3]), ...`` of ``images``, or
    ``(x[i], y[i])`` with ``images_b``. ``blur`` (seed blur in pixels) defaults to the checkpoint's generation
    blur, else 0. Writes ``interpolate.*`` (one row per pair) and ``interpolate_seeds.*`` into ``out``."""
    if num < 2:
        raise ValueError(f"num must be >= 2 (the two ends), got {num}")
    run = _Command("interpolate", models, weights, device, out, scale)
    steps = int(run.default(steps, "steps", "steps", "k_max"))
    step_size = run.default(step_size, "step_size", "step_size", "step_size")
    blur = run.default(blur, "blur", "blur", None, fallback=0.0)
    record = run.record(trajectory, steps)
    x, where = run.read(images, n, split, seed)
    if images_b is not None:
        a, (b, where_b) = x, run.read(images_b, n, split, seed)
        if a.shape != b.shape:
            raise ValueError(f"the two inputs hold images of different shapes {tuple(a.shape)} and {tuple(b.shape)}")
        where = f"{where} -> {where_b}"
    else:
        if x.shape[0] < 2:
            raise ValueError("interpolation needs at least two images (pairs x[0]-x[1], x[2]-x[3], ...)")
        pairs = x.shape[0] // 2
        a, b = x[0:2 * pairs:2], x[1:2 * pairs:2]
    samples, path = _ascent(record, interpolate, run.score, a, b, num, steps, step_size, blur, norm=norm)
    seeds = interpolation_seeds(a, b, num)
    run.save("interpolate", samples.reshape(-1, *samples.shape[2:]), nrow=num)
    run.save("interpolate_seeds", seeds.reshape(-1, *seeds.shape[2:]), nrow=num)
    run.trajectory(path, record, trajectory_samples)
    protocol = run.protocol(where, seeds, steps, step_size, norm, seed, pairs=int(a.shape[0]), points=num,
                            blur_sigma=blur)
    images_shown = [("interpolate_grid", "Interpolation", f"one row per pair, {num} points from a to b"),
                    ("interpolate_seeds_grid", "Interpolation seeds",
                     "the linear interpolations the sampler started from")]
    return run.finish(samples, seeds, path, record, protocol, images_shown)


def run_compose(models: Models, images: ImagesLike, out: str | os.PathLike, *,
                weights: Sequence[float] | None = None, mode: str = "score", blur: float | None = None,
                singles: bool = True, steps: int | None = None, step_size: float | None = None, norm: str = "l2",
                n: int | None = None, split: str = "test", seed: int = 0, trajectory: Trajectory = None,
                trajectory_samples: int = 16, scale: int = 2, device: str = "auto") -> AppRun:
    """Compositional generation (E supp. Fig. 17): ascent of ``Σ_i w_i f_i`` (``mode="score"``) or
    ``Σ_i w_i log σ(f_i)`` (``"log_prob"``; :class:`~atebm.apps.WeightedSum`) from the seeds ``images``; with
    ``singles`` also each model alone from the same seeds. Writes ``compose.*``, ``compose_seeds.*`` and
    ``compose_single<i>.*`` into ``out``."""
    run = _Command("compose", models, weights, device, out, scale, mode=mode)
    steps = int(run.default(steps, "steps", "steps", "k_max"))
    step_size = run.default(step_size, "step_size", "step_size", "step_size")
    blur = run.default(blur, "blur", "blur", None, fallback=0.0)
    record = run.record(trajectory, steps)
    seeds, where = run.read(images, n, split, seed)
    result, path = _ascent(record, generate, run.score, seeds, steps, step_size, blur, norm=norm)
    run.save("compose_seeds", seeds)
    run.save("compose", result)
    run.trajectory(path, record, trajectory_samples)
    rows, caption = [seeds, result], "rows: seeds, composition"
    if singles:
        for i, model in enumerate(run.models):
            single = generate(model, seeds, steps, step_size, blur, norm=norm).cpu()
            run.save(f"compose_single{i}", single)
            rows.append(single)
            caption += f", model {i} alone"
    run.comparison(rows)
    protocol = run.protocol(where, seeds, steps, step_size, norm, seed, mode=mode, blur_sigma=blur)
    return run.finish(result, seeds, path, record, protocol, [("comparison", "Composition", caption)])
