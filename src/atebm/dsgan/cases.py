"""DSGAN runs: the named case studies of S Sec. 2.2 (Fig. 2-6), runs on any data, and sampling a trained generator.

Named cases (:data:`CASES`; ``atebm dsgan train --case NAME``):

* ``swissroll-boundary`` (S Fig. 2, 4): p_d = the swiss roll, p_dbar = p_d * N(0, 0.3^2 I): the generator should
  put its points on the roll's boundary, where p_dbar has mass and p_d has little.
* ``disc-low-centre`` (S Fig. 3): p_d = a disc whose density is low in the centre, p_dbar = p_d * N(0, 0.3^2 I):
  boundary points and points in the low-density centre.
* ``mnist-difference`` (S Fig. 5-6): p_d = digit 1, p_dbar = digits {1, 7} of the MNIST 5,000 train split: the
  generator should make 7s (judged by the digit classifier of :func:`atebm.metrics.digit_features`).

:func:`train_case` trains one case in a run folder (``model.pt`` = the discriminator, ``checkpoint.pt`` = the
resumable state with the generator), evaluates it, writes ``case.json``, figures and report sections.
:func:`train_on_data` does the same for p_d / p_dbar given as source strings (``atebm dsgan train --data``), and
:func:`sample_generator` is ``atebm dsgan sample``.
"""
from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ..config import REQUIRED, Config, above, at_least, distinct, each, one_of, satisfies, setting
from ..data import ImageSet, load_dataset, open_source
from ..training import CHECKPOINT_FILE, MODEL_FILE, resolve_device, write_json
from .sources import InterpolationSource, NoisySource, class_subset
from .toy import TOY_MIXTURES, evaluate_2d
from .training import DSGANConfig, DSGANTrainer, load_generator

__all__ = ["Case", "CASE_KINDS", "CASES", "CASE_GENERATOR_LOSS", "get_case", "case_config", "train_case",
           "train_on_data", "train_run", "sample_generator", "evaluate_difference", "difference_classes", "target_sets",
           "describe_source", "parse_pbar", "POINTS_DISCRIMINATOR", "POINTS_GENERATOR"]

#: Networks of the 2D cases: ReLU MLPs (a SiLU MLP of this size stays too smooth to resolve the roll's arms).
POINTS_DISCRIMINATOR: dict[str, Any] = {"arch": "mlp2d", "kwargs": {"hidden": 256, "depth": 3, "activation": "relu"}}
POINTS_GENERATOR: dict[str, Any] = {"arch": "mlp", "kwargs": {"latent_dim": 8, "out_dim": 2, "hidden": 256,
                                                              "depth": 3}}
#: Every case study runs S Alg. 1 as written: the generator descends log(1 - D(G(z))) (line 9). The library's
#: default elsewhere is the non-saturating loss; `benchmarks/results/dsgan/generator_loss.json` compares the two
#: on these cases (no consistent difference at reduced budgets, 3 seeds).
CASE_GENERATOR_LOSS = "minimax"
_POINTS_CONFIG: dict[str, Any] = {"model": POINTS_DISCRIMINATOR, "generator": POINTS_GENERATOR, "batch_size": 256,
                                  "lr": 1e-3, "g_lr": 1e-3, "max_iters": 3000, "log_every": 100, "ckpt_every": 500,
                                  "generator_loss": CASE_GENERATOR_LOSS}


def difference_classes(pd_classes: Sequence[int], pbar_classes: Sequence[int]) -> list[int]:
    """The classes of p_dbar that p_d lacks: the ones the generator should make (S Fig. 5-6: {1, 7} - {1})."""
    return sorted(set(pbar_classes) - set(pd_classes))


#: What a case study trains on: ``points`` (2D, exact densities) or ``images`` (classes of a data set).
CASE_KINDS = {"points": "2D points of a mixture of atebm.dsgan.toy.TOY_MIXTURES, p_dbar = p_d * N(0, tau^2 I)",
              "images": "images of a data set, p_d and p_dbar = sets of its classes"}


@dataclass(frozen=True)
class Case(Config):
    """A named DSGAN case study: where p_d and p_dbar come from, the training config and the paper's figure.

    ``config`` holds :class:`DSGANConfig` fields (checked when the case is built). A ``points`` case draws
    ``n_points`` points of the 2D ``mixture`` as p_d and adds N(0, ``tau``^2 I) for p_dbar; an ``images`` case takes
    the train split of ``dataset``, p_d = its ``pd_classes`` and p_dbar = its ``pbar_classes``, which must hold a
    class that p_d lacks (the difference the generator should make, S Fig. 5-6)."""

    name: str = setting(REQUIRED, satisfies(bool, "a non-empty name"))
    description: str = setting(REQUIRED, satisfies(bool, "a non-empty description"))
    paper: str = setting(REQUIRED, satisfies(bool, "the paper's figure or section"))
    kind: str = setting(REQUIRED, one_of(CASE_KINDS))
    config: dict[str, Any] = setting(factory=dict)
    mixture: str | None = setting(None, one_of(*TOY_MIXTURES))
    tau: float = setting(0.3, above(0, why="the std of the noise that makes p_dbar"))
    n_points: int = setting(5000, at_least(2))
    dataset: str = setting("mnist", satisfies(bool, "a data set name"))
    pd_classes: tuple[int, ...] = setting((), each(at_least(0)), distinct())
    pbar_classes: tuple[int, ...] = setting((), each(at_least(0)), distinct())

    def check(self) -> Iterator[str]:
        try:
            self.dsgan_config()
        except (TypeError, ValueError) as error:
            yield f"config: {error}"
        if self.kind == "points" and self.mixture is None:
            yield f"a points case needs mixture, one of {tuple(TOY_MIXTURES)}"
        if self.kind == "images" and not (self.pd_classes and difference_classes(self.pd_classes, self.pbar_classes)):
            yield (f"an images case needs pd_classes and pbar_classes with a class p_d lacks, got "
                   f"{list(self.pd_classes)} and {list(self.pbar_classes)}")

    def dsgan_config(self, **overrides: Any) -> DSGANConfig:
        """The case's :class:`DSGANConfig` with ``overrides`` (any DSGANConfig field) applied."""
        return DSGANConfig.from_dict({**copy.deepcopy(self.config), **overrides})


#: Every case study ``atebm dsgan train --case`` accepts (:data:`atebm.presets.REGISTRY` lists them with their data
#: needs and measured times beside the other commands' presets: ``atebm presets``).
CASES: dict[str, Case] = {
    "swissroll-boundary": Case(
        name="swissroll-boundary",
        description="p_d = swiss roll (sigma 0.1), p_dbar = p_d * N(0, 0.3^2 I): boundary points",
        paper="S Fig. 2 and 4", kind="points", config=dict(_POINTS_CONFIG), mixture="swissroll", tau=0.3),
    "disc-low-centre": Case(
        name="disc-low-centre",
        description="p_d = disc of radius 2 with density ~ r^2 (low centre), p_dbar = p_d * N(0, 0.3^2 I)",
        paper="S Fig. 3", kind="points", config=dict(_POINTS_CONFIG), mixture="disc", tau=0.3),
    "mnist-difference": Case(
        name="mnist-difference",
        description="p_d = digit 1, p_dbar = digits {1, 7} (MNIST 5,000 train split): the generator makes 7s",
        paper="S Fig. 5-6", kind="images",
        config={"max_iters": 3000, "log_every": 100, "ckpt_every": 500, "generator_loss": CASE_GENERATOR_LOSS},
        dataset="mnist", pd_classes=(1,), pbar_classes=(1, 7)),
}


def get_case(name: str) -> Case:
    """The case study called ``name`` (a key of :data:`CASES`)."""
    if name not in CASES:
        raise ValueError(f"unknown DSGAN case {name!r}; choose from {', '.join(CASES)} (`atebm presets` describes "
                         f"them)")
    return CASES[name]


def case_config(name: str, **overrides: Any) -> DSGANConfig:
    """The :class:`DSGANConfig` of the case called ``name`` with ``overrides`` (any DSGANConfig field) applied."""
    return get_case(name).dsgan_config(**overrides)


def case_data(case: Case, seed: int = 0) -> tuple[Any, Any, dict[str, Any]]:
    """``(p_dbar, p_d, info)`` of a case; 2D samples are drawn with ``seed``."""
    if case.kind == "points":
        assert case.mixture is not None
        mixture = TOY_MIXTURES[case.mixture]()
        points = mixture.sample(case.n_points, torch.Generator().manual_seed(seed))
        return NoisySource(points, "gaussian", case.tau), points, {"mixture": mixture}
    full = load_dataset(case.dataset, split="train")
    p_d, p_dbar = class_subset(full, case.pd_classes), class_subset(full, case.pbar_classes)
    return p_dbar, p_d, {"train": p_dbar}


# ------------------------------------------------------------------------------------------------ runs
def train_run(out: str | os.PathLike, config: DSGANConfig, p_dbar: Any, p_d: Any, *, extra: dict[str, Any],
              resume: bool = False, overrides: dict[str, Any] | None = None, monitor: bool = True,
              callbacks: Sequence[Callable] = (), log: Callable[[str], None] | None = print) -> DSGANTrainer:
    """Trains (or with ``resume`` continues, changing only budgets and logging via ``overrides``) a DSGAN run in
    the folder ``out`` with the failure monitor as a callback, and adds its training curves and monitor status to
    ``out/report.html``."""
    from ..monitor import FailureMonitor

    out = Path(out)
    checkpoint = out / CHECKPOINT_FILE
    watch = [FailureMonitor()] if monitor else []
    extra = {**extra, "meta": {k: v for k, v in extra.items() if k != "meta"}}
    if resume:
        if not checkpoint.exists():
            raise FileNotFoundError(f"--resume: no checkpoint at {checkpoint}")
        trainer = DSGANTrainer.resume(checkpoint, p_dbar, p_d, out_dir=out, callbacks=[*watch, *callbacks],
                                      overrides=overrides, extra={"meta": extra["meta"]})
    else:
        if checkpoint.exists():
            raise ValueError(f"{checkpoint} exists: pass --resume to continue it or choose another --out")
        trainer = DSGANTrainer(config, p_dbar, p_d, out_dir=out, callbacks=[*watch, *callbacks], extra=extra)
    if log:
        c = trainer.dsgan_config
        log(f"DSGAN: {len(p_dbar)} p_dbar vs {len(p_d)} p_d samples, alpha {c.alpha}, k {c.critic_steps}, loss "
            f"{c.loss} (generator: {trainer.dsgan.generator_loss}), sampling trick "
            f"{'on' if c.sampling_trick else 'off'}, device {trainer.device}, out {out}")
    start = time.perf_counter()
    trainer.fit()
    trainer.extra["train_seconds"] = time.perf_counter() - start
    _report_training(out, trainer, watch[0] if watch else None)
    return trainer


def _report_training(out: Path, trainer: DSGANTrainer, monitor: Any) -> None:
    from ..report import Report

    if not trainer.history:
        return
    report = Report.open(out, title=f"DSGAN: {trainer.extra.get('case') or trainer.extra.get('data', 'run')}")
    report.add_curves("dsgan/curves", "Discriminator training curves", trainer.history,
                      caption="loss = discriminator loss; auc_fake = AUC(p_dbar vs the fake mixture) per batch; "
                              "auc_pd = AUC(p_dbar vs p_d) under D; score = D's logit")
    report.add_figure("dsgan/scores", "Scores of real, generated and p_d samples", _scores_figure(trainer.history))
    if monitor is not None:
        monitor.add_to_report(report, key="dsgan/monitor", heading="Failure monitor")
    report.save()


def _scores_figure(history: Sequence[dict[str, Any]]) -> Any:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    steps = [r["step"] for r in history]
    for key, label in (("score_data", "p_dbar (real)"), ("score_gen", "G(z) in the fake batch"),
                       ("score_pd", "p_d in the fake batch")):
        if any(key in r for r in history):
            axes[0].plot(steps, [r.get(key, np.nan) for r in history], label=label)
    axes[0].set_title("mean discriminator logit")
    for key in ("loss", "loss_g"):
        if any(key in r for r in history):
            axes[1].plot(steps, [r.get(key, np.nan) for r in history], label=key)
    axes[1].set_title("losses")
    for ax in axes:
        ax.set_xlabel("discriminator step")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return fig


def train_case(name: str, out: str | os.PathLike, *, overrides: dict[str, Any] | None = None, resume: bool = False,
               n_eval: int = 2000, seed: int = 0, device: str | None = None, monitor: bool = True,
               log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """``atebm dsgan train --case NAME``: trains a named case (:data:`CASES`) in ``out`` (``overrides``: DSGANConfig
    fields), evaluates ``n_eval`` generator samples against the case's claim, writes ``case.json``, the figures and
    report sections, and returns the ``case.json`` content. ``seed`` is the training seed (and draws the 2D
    data)."""
    case = get_case(name)
    overrides = dict(overrides or {})
    if device:
        overrides["device"] = device
    overrides.setdefault("seed", seed)
    config = case_config(name, **overrides)
    p_dbar, p_d, info = case_data(case, seed=config.seed)
    extra: dict[str, Any] = {"case": name, "data_kind": case.kind}
    if case.kind == "images":
        extra.update(size=int(p_d.x.shape[-1]), channels=int(p_d.x.shape[1]), pd_classes=list(case.pd_classes),
                     pbar_classes=list(case.pbar_classes), data=f"{case.dataset}?split=train")
    resume_overrides = {k: v for k, v in overrides.items() if k != "seed"} if resume else None
    trainer = train_run(out, config, p_dbar, p_d, extra=extra, resume=resume, overrides=resume_overrides,
                        monitor=monitor, log=log)
    out = Path(out)
    samples = trainer.generate(n_eval)
    if case.kind == "points":
        evaluation = evaluate_2d(samples, info["mixture"], case.tau, trainer.dsgan.mixture_alpha, seed=config.seed,
                                 n_reference=min(2000, max(200, n_eval)))
        _write_points(out, samples)
        figure = _points_figure(trainer, info["mixture"], case, samples, p_d, evaluation["thresholds"]["target_alpha"])
    else:
        evaluation = evaluate_difference(samples, info["train"], case.pd_classes, case.pbar_classes, out)
        figure = None
    summary = {"case": name, "description": case.description, "paper": case.paper,
               "p_dbar": describe_source(p_dbar), "generator_loss": trainer.dsgan.generator_loss,
               "config": trainer.dsgan_config.to_dict(), "iterations": trainer.step, "stop": trainer.stop_reason,
               "train_seconds": trainer.extra.get("train_seconds"), "n_eval": n_eval, "evaluation": evaluation,
               "files": {"model": MODEL_FILE, "checkpoint": CHECKPOINT_FILE}}
    write_json(out / "case.json", summary)
    _report_case(out, summary, figure)
    return summary


def train_on_data(out: str | os.PathLike, data: str, pbar: str, *, classes: Sequence[int] | None = None,
                  overrides: dict[str, Any] | None = None, resume: bool = False, n_eval: int = 64,
                  seed: int = 0, device: str | None = None, monitor: bool = True,
                  log: Callable[[str], None] | None = print) -> dict[str, Any]:
    """``atebm dsgan train --data SOURCE --pbar SPEC``: p_d = the images of the source string ``data`` (only
    ``classes`` when given), p_dbar from :func:`parse_pbar`; image networks sized from the data; ``seed`` is the
    training seed (a ``seed`` in ``overrides`` wins). Writes ``samples.npz``/``samples.png`` of ``n_eval`` samples
    and ``run.json``; returns the latter."""
    full = open_source(data)
    full = full if isinstance(full, ImageSet) else full.load()
    p_d = class_subset(full, classes) if classes else full
    p_dbar = parse_pbar(pbar, p_d, full)
    channels, size = int(p_d.x.shape[1]), int(p_d.x.shape[-1])
    overrides = dict(overrides or {})
    if device:
        overrides["device"] = device
    overrides.setdefault("seed", seed)
    defaults = DSGANConfig()
    overrides.setdefault("model", {**defaults.model, "kwargs": {**defaults.model["kwargs"], "in_channels": channels,
                                                                "input_size": size}})
    overrides.setdefault("generator", {**defaults.generator, "kwargs": {**defaults.generator["kwargs"],
                                                                        "channels": channels, "size": size}})
    config = DSGANConfig.from_dict({**defaults.to_dict(), **overrides})
    extra = {"data": data, "pbar": pbar, "classes": list(classes or []), "data_kind": "images", "size": size,
             "channels": channels}
    trainer = train_run(out, config, p_dbar, p_d, extra=extra, resume=resume,
                        overrides={k: v for k, v in overrides.items() if k not in ("model", "generator", "seed")}
                        if resume else None, monitor=monitor, log=log)
    from ..io import save_images

    save_images(out, "samples", trainer.generate(n_eval))
    summary = {"data": data, "pbar": pbar, "pbar_description": describe_source(p_dbar),
               "classes": list(classes or []), "iterations": trainer.step, "stop": trainer.stop_reason,
               "config": trainer.dsgan_config.to_dict()}
    write_json(Path(out) / "run.json", summary)
    return summary


def describe_source(source: Any) -> str:
    """One line naming a p_dbar source for run records: its ``describe()``, else its name and size."""
    if hasattr(source, "describe"):
        return str(source.describe())
    name = getattr(source, "name", "") or type(source).__name__
    return f"{name} ({len(source)} samples)"


def parse_pbar(spec: str, p_d: ImageSet, full: ImageSet) -> Any:
    """p_dbar from a short spec: ``gaussian:STD`` / ``uniform:HALF_WIDTH`` (p_d plus pixel noise, clamped to
    [0, 1]: valid images, but point masses at 0 and 1 where S convolves without a clamp; ``describe()`` of the
    source and ``run.json``'s ``pbar_description`` say so), ``classes:1,7`` (those classes of the same data set),
    ``interpolate:LOW,HIGH`` (convex combinations of two p_d rows, weight ~ U(LOW, HIGH)), or any data-source
    string."""
    kind, _, value = spec.partition(":")
    try:
        if kind in ("gaussian", "uniform"):
            return NoisySource(p_d, kind, float(value), clamp=(0.0, 1.0))
        if kind == "classes":
            return class_subset(full, [int(v) for v in value.split(",") if v.strip()])
        if kind == "interpolate":
            low, high = (float(v) for v in value.split(","))
            return InterpolationSource(p_d, p_d, (low, high))
    except ValueError as err:
        raise ValueError(f"--pbar {spec!r}: {err}") from err
    try:
        source = open_source(spec, size=int(p_d.x.shape[-1]), channels=int(p_d.x.shape[1]))
    except (ValueError, FileNotFoundError) as err:
        raise ValueError(f"--pbar {spec!r} is neither gaussian:STD, uniform:H, classes:1,7, interpolate:LO,HI nor "
                         f"a data source: {err}") from err
    return source if isinstance(source, ImageSet) else source.load()


# ------------------------------------------------------------------------------------------------ evaluation
def target_sets(train: ImageSet, target: Sequence[int], dataset: str = "mnist") -> tuple[ImageSet, ImageSet]:
    """``(reference, held_out)``: the images of the ``target`` classes in ``train`` and in the test split of
    ``dataset``, the real images generated samples of those classes are compared with."""
    test = load_dataset(dataset, split="test")
    return class_subset(train, target), class_subset(test, target)


def evaluate_difference(samples: Tensor, train: ImageSet, pd_classes: Sequence[int], pbar_classes: Sequence[int],
                        out: str | os.PathLike | None = None, feature_net: Any = None) -> dict[str, Any]:
    """The difference-set claim (S Fig. 5-6) measured: the class fractions of the samples by the digit classifier
    (:func:`atebm.metrics.digit_features`), the fraction in p_dbar's classes that p_d lacks (the target), the
    classes of the nearest p_dbar training images in pixel space, and the distance to them beside the same
    distance for held-out test digits of the target classes (much smaller = memorised), and ``diversity``
    (:func:`atebm.metrics.diversity_metrics`: the Fréchet ratio of the samples to the training images of the target
    classes relative to their held-out test images, in the classifier's features, and the classes covered). With
    ``out`` it writes ``samples.npz``/``samples.png`` and ``nearest.png`` (sample, 4 nearest in pixels | 4 nearest
    in features)."""
    from ..io import save_images
    from ..metrics import digit_features, diversity_metrics, nearest_neighbour_grid, nearest_neighbours

    net = feature_net or digit_features()
    samples = samples.detach().float().cpu()
    probs = net.predict_proba(samples)
    predicted = probs.argmax(1)
    classes = int(probs.shape[1])
    fractions = torch.bincount(predicted, minlength=classes).float() / len(samples)
    target = difference_classes(pd_classes, pbar_classes)
    in_target = torch.isin(predicted, torch.tensor(target))
    assert train.y is not None
    distances, index = nearest_neighbours(samples, train.x, k=1)
    nn_labels = train.y[index[:, 0]]
    reference, held_out = target_sets(train, target)
    test_distances, _ = nearest_neighbours(held_out.x, train.x, k=1)
    result = {
        "n": len(samples), "pd_classes": list(pd_classes), "pbar_classes": list(pbar_classes),
        "target_classes": target,
        "classifier": net.info.get("network"), "classifier_test_accuracy": net.info.get("test_accuracy"),
        "fraction_target": float(in_target.float().mean()),
        "fraction_pd_classes": float(torch.isin(predicted, torch.tensor(list(pd_classes))).float().mean()),
        "class_fractions": {str(c): float(fractions[c]) for c in range(classes)},
        "mean_confidence": float(probs.max(1).values.mean()),
        "nearest_train_is_target": float(torch.isin(nn_labels, torch.tensor(target)).float().mean()),
        "nearest_train_l2_mean": float(distances.mean()),
        "held_out_target_nearest_train_l2_mean": float(test_distances.mean()),
        "n_train_pbar": len(train),
        "diversity": diversity_metrics(samples, reference.x, held_out.x, net),
    }
    if out is not None:
        save_images(out, "samples", samples, nrow=16)
        nearest_neighbour_grid(Path(out) / "nearest.png", samples[in_target][:12] if in_target.any() else samples,
                               train.x, net)
        result["files"] = {"samples": "samples.png", "samples_npz": "samples.npz", "nearest": "nearest.png"}
    return result


def _write_points(out: Path, points: Tensor) -> None:
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "samples.npz", x=points.detach().float().cpu().numpy().astype(np.float32))


def _points_figure(trainer: DSGANTrainer, mixture: Any, case: Case, samples: Tensor, p_d: Tensor,
                   target_alpha: float) -> Any:
    """Four panels: p_d, p_dbar, the exact target ``(p_dbar - target_alpha p_d)_+`` (the minimiser of S's
    criterion, :func:`atebm.dsgan.toy.evaluate_2d`) and the generated points over D."""
    from matplotlib.figure import Figure

    from ..sampling import eval_mode, per_sample_scores

    g = torch.Generator().manual_seed(1)
    lim, cells = 4.0, 101
    axis = torch.linspace(-lim, lim, cells)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    grid = torch.stack([xx.reshape(-1), yy.reshape(-1)], 1)
    with eval_mode(trainer.model), torch.no_grad():
        d = torch.sigmoid(per_sample_scores(trainer.model, grid.to(trainer.device))).cpu().view(cells, cells)
    target_density = (mixture.density(grid, extra_std=case.tau) - target_alpha * mixture.density(grid)).clamp_min(0)
    n = min(1500, len(samples))
    panels = [("p_d", p_d[:n], None), (f"p_dbar = p_d * N(0, {case.tau:.2g}^2)",
                                       mixture.sample(n, g, extra_std=case.tau), None),
              (f"exact target (p_dbar - {target_alpha:.3g} p_d)+", mixture.target_sample(n, case.tau, target_alpha, g),
               target_density.view(cells, cells)),
              ("generated (over D(x))", samples[:n], d)]
    fig = Figure(figsize=(15, 3.9), dpi=100)
    axes = fig.subplots(1, 4)
    for ax, (title, points, field_) in zip(axes, panels):
        if field_ is not None:
            ax.contourf(axis.numpy(), axis.numpy(), field_.numpy(), levels=20, cmap="Greys", alpha=0.6)
        pts = points.detach().cpu().numpy()
        ax.scatter(pts[:, 0], pts[:, 1], s=2, alpha=0.6, c="tab:green" if "generated" in title else "tab:blue")
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_aspect("equal")
        ax.set_title(title, fontsize=9)
    return fig


def _report_case(out: Path, summary: dict[str, Any], figure: Any) -> None:
    from ..report import Report

    report = Report.open(out)
    ev = summary["evaluation"]
    protocol = {"case": summary["description"], "paper": summary["paper"], "iterations": summary["iterations"],
                "alpha": summary["config"]["alpha"], "k": summary["config"]["critic_steps"],
                "loss": summary["config"]["loss"], "generator loss": summary["generator_loss"],
                "sampling trick": summary["config"]["sampling_trick"],
                "samples evaluated": summary["n_eval"]}
    if "generated" in ev:
        columns = ["points", "in target support", "p_dbar has mass, p_d little", "median p_d/p_dbar",
                   "centre fraction", "energy distance to target", "to p_d", "to p_dbar", "target / nearer other"]
        rows = [[name, *(ev[name][key] for key in ("in_target_support", "pbar_has_mass_and_pd_little",
                                                    "median_pd_over_pbar", "centre_fraction",
                                                    "energy_distance_to_target", "energy_distance_to_p_d",
                                                    "energy_distance_to_p_dbar", "closer_to_target_ratio"))]
                for name in ("generated", "p_d", "p_dbar", "target")]
        target = f"(p_dbar - {ev['thresholds']['target_alpha']:.3g} p_d)+, the minimiser of S's criterion"
        report.add_table("dsgan/case", f"{summary['case']}: where the generated points lie ({summary['paper']})",
                         columns, rows, protocol={**protocol, "exact target": target, "picture": ev["picture"],
                                                  "thresholds": ev["thresholds"]})
        if figure is not None:
            report.add_figure("dsgan/points", "p_d, p_dbar, the exact target and the generated points", figure)
    else:
        rows = [[f"digit {c}", ev["class_fractions"][str(c)]] for c in range(len(ev["class_fractions"]))]
        report.add_table("dsgan/case", f"{summary['case']}: class fractions of the samples ({summary['paper']})",
                         ["class (digit classifier)", "fraction of samples"], rows,
                         protocol={**protocol, "fraction in the target classes": ev["fraction_target"],
                                   "nearest p_dbar training image is a target digit": ev["nearest_train_is_target"],
                                   "mean L2 to the nearest training image": ev["nearest_train_l2_mean"],
                                   "same for held-out target test digits": ev["held_out_target_nearest_train_l2_mean"],
                                   "classifier": ev["classifier"]})
        d = ev["diversity"]
        report.add_table("dsgan/diversity", f"{summary['case']}: diversity against real digits {ev['target_classes']}",
                         ["quantity", "value"],
                         [["Fréchet distance of the samples to the training target digits", d["fd_samples"]],
                          ["same for held-out (test) target digits", d["fd_held_out"]],
                          ["Fréchet ratio (about 1 = as varied as real digits; issue 26 asks <= 3)", d["fd_ratio"]],
                          [f"classes covered (>= {d['min_class_share']:.0%} of the samples)", d["classes_covered"]]],
                         protocol={"rows per Fréchet distance": d["n_per_fd"], "sample chunks": d["sample_chunks"],
                                   "training target digits": d["n_reference"],
                                   "held-out target digits": d["n_held_out"], "features": d["feature_network"]})
        report.add_image("dsgan/samples", "Generator samples", "samples.png")
        report.add_image("dsgan/nearest", "Nearest training images", "nearest.png",
                         "each row: a sample judged a target digit, its 4 nearest p_dbar training images in pixel "
                         "space, a grey separator, its 4 nearest in the digit classifier's feature space")
    report.save()


# ------------------------------------------------------------------------------------------------ sampling
def sample_generator(checkpoint: str | os.PathLike, out: str | os.PathLike, *, n: int = 64, seed: int = 0,
                     device: str = "auto") -> dict[str, Any]:
    """``atebm dsgan sample``: ``n`` samples of a DSGAN run's generator (read from its ``checkpoint.pt``) written
    to ``out/samples.npz`` (key ``x``, float32: ``(n, C, H, W)`` images in [0, 1] or ``(n, 2)`` points) and
    ``out/samples.png`` (an image grid or a scatter plot); ``sample.json`` records the protocol. The generator
    runs on ``device`` (``auto``: CUDA when available); its latents are drawn on the CPU from ``seed`` and its
    samples come back to the CPU (:meth:`~atebm.dsgan.DSGAN.generate`). For a run of an image case (and
    ``n >= 2``) ``sample.json`` also holds ``diversity``: :func:`atebm.metrics.diversity_metrics` of the samples
    against the case's target classes (as in ``case.json``)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    objective, extra = load_generator(checkpoint)
    objective.seed = int(seed)
    objective.generator.to(resolve_device(device))
    x = objective.generate(n)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if x.dim() == 4:
        from ..io import save_images

        save_images(out, "samples", x.clamp(0, 1))
    else:
        _write_points(out, x)
        _scatter_png(out / "samples.png", x)
    protocol: dict[str, Any] = {"checkpoint": str(checkpoint), "n": n, "seed": seed, "shape": list(x.shape),
                                "case": extra.get("case"), "generator": objective.generator_spec}
    case = CASES.get(extra.get("case") or "")
    if case is not None and case.kind == "images" and n >= 2:
        from ..metrics import digit_features, diversity_metrics

        target = difference_classes(case.pd_classes, case.pbar_classes)
        reference, held_out = target_sets(case_data(case)[2]["train"], target, case.dataset)
        protocol["diversity"] = {"target_classes": target,
                                 **diversity_metrics(x, reference.x, held_out.x, digit_features())}
    write_json(out / "sample.json", protocol)
    return protocol


def _scatter_png(path: Path, points: Tensor) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 4), dpi=100)
    ax = fig.subplots()
    pts = points.numpy()
    ax.scatter(pts[:, 0], pts[:, 1], s=3, alpha=0.6, c="tab:green")
    ax.set_aspect("equal")
    fig.savefig(path, bbox_inches="tight")
