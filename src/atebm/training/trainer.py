"""Binary adversarial training with progressive K (E Alg. 1-2), readable top to bottom.

One iteration::

    x      ~ p_data  (augmented: random resized crop, flip)
    x0     ~ p_0
    x*     = pgd(f, x0, steps=K, step_size)                      # contrastive samples, E Eq. (8)
    x      = pgd(f, x, descent, eps_1(t))  if indist_at_steps    # in-distribution AT, T Eq. 3.45 (eps_1 ramped)
    loss   = BCE(f(x), 1) + BCE(f(x*), 0)                       # = -[mean log D(x) + mean log(1 - D(x*))]
           + r1 · 0.5 · mean ||∇_x f(x)||²                       # R1 on p_data (E Sec. 4.4)
    θ     <- optimiser step on loss

K starts at ``k_start`` and grows by one when the mean batch AUC(p_data vs x*) over the last ``auc_window``
batches exceeds ``auc_threshold``, or after ``epochs_per_k`` epochs, whichever first (Alg. 2 as published);
the last stage ends on the stated budget. Under ``torchrun`` the model is wrapped in DistributedDataParallel
(gloo on CPU, nccl on GPU); each rank draws its own share of every global batch.

What the iteration contrasts and optimises is a strategy, :class:`Objective`: :class:`BinaryAT` (above) by
default; the maximum-likelihood EBM baseline plugs in its SGLD chains and likelihood loss
(:class:`atebm.baselines.MaximumLikelihood`) and reuses everything else: the loop, optimiser, budgets, logging,
checkpoints, resume, callbacks. An objective with a second network (the generator of :class:`atebm.dsgan.DSGAN`)
owns it, puts it on the trainer's device in :meth:`Objective.setup`, updates it in :meth:`Objective.after_step` and
saves it through its ``state_dict``; a loss term that needs the inputs (the WGAN-GP penalty) comes from
:meth:`Objective.penalty`, and the names of its log quantities from :meth:`Objective.log_record`.
"""
from __future__ import annotations

import copy
import json
import math
import os
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.nn import functional as F
from torch.nn.parallel import DistributedDataParallel

from ..data.core import ImageSet
from ..data.loader import BatchLoader
from ..models import ScoreModel, build_score_model, freeze_batchnorm
from ..models.performance import AutocastScore, compile_score, resolve_precision, to_memory_format, use_channels_last
from ..sampling import pgd, scores_gradient
from .checkpoint import CHECKPOINT_FILE, MODEL_FILE, jsonable, load_checkpoint, save_checkpoint, write_json
from .config import TrainConfig

__all__ = ["Trainer", "StopTraining", "ImageSource", "batch_auc", "resolve_device", "fetch_batch", "append_jsonl",
           "ema_update", "ObjectiveHome", "OBJECTIVE_HOMES"]


class ImageSource(Protocol):
    """What the trainer reads: a tensor ``(N, ...)`` in [0, 1], or any object with ``__len__`` and
    ``get_batch(indices) -> Tensor`` (memory-mapped files)."""

    def __len__(self) -> int: ...

    def get_batch(self, indices: Tensor) -> Tensor: ...


#: Config fields a resume may change: budgets, logging and checkpoint cadence, device. Anything else would make
#: the continuation differ from an uninterrupted run.
RESUME_OVERRIDABLE = frozenset({"max_iters", "final_iters", "final_epochs", "time_budget_s", "log_every",
                                "ckpt_every", "progress", "device", "num_workers"})


@dataclass(frozen=True)
class ObjectiveHome:
    """Where the runs of an objective defined outside this module are trained and continued. Kept here, by kind,
    so that a run given to a command that cannot continue it names the one that can, even when the module that
    defines the objective is not imported (then the kind is not in :attr:`Objective.registry`)."""

    module: str                 # defines the Objective subclass (importing it registers the kind)
    command: str | None         # the atebm command that trains such runs (None: the library only)
    resume: str | None          # the command line that continues such a run; ``{out}`` is its run folder
    trainer: str | None = None  # the Trainer subclass whose resume() continues such runs (None: Trainer.resume)

    def trained_by(self, kind: str) -> str:
        return f"by `{self.command}` (objective {kind!r})" if self.command else f"with objective {kind!r}"

    def how_to_resume(self, out: str | os.PathLike = "DIR") -> str:
        python = (f"atebm.{self.trainer}.resume" if self.trainer
                  else f"atebm.Trainer.resume after importing {self.module}")
        if self.resume:
            return f"resume it with {self.resume.format(out=out)} (in Python: {python})"
        return f"resume it in Python with {python}"


#: :class:`ObjectiveHome` by :attr:`Objective.kind`, for every objective of the package not defined in this module
#: (``tests/test_structure.py`` checks that none is missing).
OBJECTIVE_HOMES: dict[str, ObjectiveHome] = {
    "dsgan": ObjectiveHome("atebm.dsgan.training", "atebm dsgan train",
                           "`atebm dsgan train --resume --out {out}` and the --case or --data/--pbar it was trained "
                           "with", trainer="dsgan.DSGANTrainer"),
    "dsgan-ssl": ObjectiveHome("atebm.dsgan.ssl", "atebm dsgan ssl", None),
    "maximum-likelihood": ObjectiveHome("atebm.baselines.ebm", None, None, trainer="baselines.EBMTrainer"),
}


class Objective:
    """The strategy of one :class:`Trainer` iteration: which negatives the data is contrasted with and which loss
    is minimised. Subclasses register under ``kind`` so that :meth:`Trainer.resume` can rebuild them from the
    checkpoint (``options()`` are constructor keywords; ``state_dict()`` is any extra state, e.g. a buffer)."""

    kind = "objective"
    registry: dict[str, type[Objective]] = {}
    #: The negatives are perturbed p_0 samples of the same shape (their mean L2 distance to the seeds is logged as
    #: ``perturbation_l2``); False for objectives whose negatives are not (a GAN generator's samples).
    perturbs_p0 = True
    #: How the trainer's log quantities are named in this objective's log lines (:meth:`log_record`): trainer key
    #: -> the objective's key, or ``None`` to leave it out (e.g. ``k`` and the AUCs of binary AT in a GAN's log).
    #: Keys not listed keep their names; the objective's own statistics (``loss``/``penalty``/``after_step``) are
    #: logged as they are named.
    log_names: dict[str, str | None] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        Objective.registry[cls.kind] = cls

    def negatives(self, trainer: Trainer, x0: Tensor) -> Tensor:
        raise NotImplementedError

    def loss(self, trainer: Trainer, s_data: Tensor, s_neg: Tensor) -> tuple[Tensor, dict[str, float]]:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def penalty(self, trainer: Trainer, x_data: Tensor, x_neg: Tensor) -> tuple[Tensor, dict[str, float]] | None:
        """An extra term added to the loss that needs the inputs, not only their scores (e.g. the WGAN-GP
        gradient penalty of :mod:`atebm.dsgan`); ``None`` (the default) adds nothing."""
        return None

    def after_step(self, trainer: Trainer) -> dict[str, float]:
        """Called after each optimiser step of the score model; an objective with a second network (the
        generator of :mod:`atebm.dsgan`) updates it here. Returns statistics to log."""
        return {}

    def setup(self, trainer: Trainer) -> None:
        """Called by the trainer at the end of its construction and again after :meth:`Trainer.restore`, before any
        step: an objective with networks of its own (the DSGAN generator, the SSL critic) moves them and their
        optimisers to ``trainer.device`` here (:meth:`place`) and refuses a set-up it cannot train in (several
        ranks). It may be called more than once; the default does nothing."""

    @staticmethod
    def place(network: nn.Module, optimizer: torch.optim.Optimizer, device: torch.device) -> None:
        """Moves ``network`` to ``device`` together with the state of its ``optimizer`` (a state loaded from a
        checkpoint before the trainer existed lies on the CPU); a no-op when it is there already."""
        if all(t.device == device for t in (*network.parameters(), *network.buffers())):
            return
        network.to(device)
        optimizer.load_state_dict(optimizer.state_dict())  # puts every state tensor beside its parameter

    def log_record(self, trainer: Trainer, record: dict[str, Any]) -> dict[str, Any]:
        """The log line of this objective from the trainer's ``record`` (``step``, ``k``, ``epoch``, the window
        means of the step statistics, ``auc_clean``, ``iters_per_s``, ``elapsed_s``): by default renamed and
        filtered by :attr:`log_names`. Called on every log line before the callbacks see it."""
        if not self.log_names:
            return record
        renamed: dict[str, Any] = {}
        for key, value in record.items():
            name = self.log_names.get(key, key)
            if name is not None:
                renamed[name] = value
        return renamed

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "options": self.options(), "state": self.state_dict()}

    @staticmethod
    def from_dict(payload: dict[str, Any] | None, p0: Any) -> Objective:
        if not payload:
            return BinaryAT()
        kind = payload.get("kind")
        if kind not in Objective.registry:
            home = OBJECTIVE_HOMES.get(str(kind))
            if home is not None:
                raise ValueError(f"the checkpoint was trained {home.trained_by(str(kind))}, whose objective is not "
                                 f"loaded; {home.how_to_resume()}")
            raise ValueError(f"the checkpoint was trained with objective {kind!r}, which is not loaded (known: "
                             f"{sorted(Objective.registry)}); import the module that defines that Objective subclass "
                             "first")
        objective = Objective.registry[kind].restore(payload.get("options") or {}, p0)
        objective.load_state_dict(payload.get("state") or {})
        return objective

    @classmethod
    def restore(cls, options: dict[str, Any], p0: Any) -> Objective:
        return cls(**options)


class BinaryAT(Objective):
    """Binary adversarial training (E Alg. 1): negatives are p_0 samples after K PGD ascent steps (none at K = 0,
    Outlier Exposure); loss ``BCE(f(x), 1) + BCE(f(x*), 0)`` (E Eq. 4), or with ``config.loss == "ebm"`` the
    unbounded logit gap ``-(mean f(x) - mean f(x*))`` of the E Sec. 5.3 stability ablation."""

    kind = "binary-at"

    def negatives(self, trainer: Trainer, x0: Tensor) -> Tensor:
        return trainer.sample_p0(x0, trainer.k) if trainer.k > 0 else x0

    def loss(self, trainer: Trainer, s_data: Tensor, s_neg: Tensor) -> tuple[Tensor, dict[str, float]]:
        if trainer.config.loss == "bce":
            loss = F.binary_cross_entropy_with_logits(s_data, torch.ones_like(s_data)) + \
                F.binary_cross_entropy_with_logits(s_neg, torch.zeros_like(s_neg))
        else:
            loss = -(s_data.mean() - s_neg.mean())
        return loss, {}


class StopTraining(Exception):
    """Raised by a callback to end training early; the last checkpoint written stays the run's checkpoint."""


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {name!r} requested but CUDA is not available; use --device cpu")
    return torch.device(name)


def batch_auc(positive: Tensor, negative: Tensor) -> float:
    """Mann-Whitney AUROC of ``positive`` scores against ``negative`` ones (ties count 1/2). Used for the
    online gate; the evaluation reports use scikit-learn."""
    return float(_mann_whitney_auc(positive, negative))


def _mann_whitney_auc(positive: Tensor, negative: Tensor) -> Tensor:
    """:func:`batch_auc` as a 0-d tensor on the scores' device (no host transfer)."""
    diff = positive.detach().view(-1, 1) - negative.detach().view(1, -1)
    return ((diff > 0).float() + 0.5 * (diff == 0).float()).mean()


def _to_floats(values: dict[str, Tensor]) -> dict[str, float]:
    """One-element tensors as Python floats with one transfer to the host (one synchronisation on a GPU instead of
    one per value); each float equals ``float(value)``."""
    stacked = torch.stack([value.detach().reshape(()).to(torch.float64) for value in values.values()])
    return dict(zip(values, stacked.tolist()))


def _scores_samples_apart(model: nn.Module) -> bool:
    """Whether ``model``, in its current train/eval modes, scores each sample on its own, so that scoring a batch
    in parts gives the scores of the whole: no BatchNorm layer in training mode (its batch statistics couple the
    samples) and no Dropout layer in training mode (its random draws would be split differently)."""
    return not any(module.training and isinstance(module, (nn.modules.batchnorm._BatchNorm,
                                                           nn.modules.dropout._DropoutNd))
                   for module in model.modules())


def fetch_batch(source: Tensor | ImageSource, indices: Tensor) -> Tensor:
    """Rows ``indices`` of a data source: a tensor, an object with ``get_batch``, or any indexable of images."""
    if isinstance(source, Tensor):
        return source[indices]
    if hasattr(source, "get_batch"):
        return source.get_batch(indices)
    indexable: Any = source
    return torch.stack([torch.as_tensor(indexable[int(i)]) for i in indices])


class _EpochStream:
    """Draws indices epoch by epoch from a seeded permutation; its state is two integers, so resuming is exact.
    With several ranks, every rank sees the same permutation and takes its own interleaved share."""

    def __init__(self, size: int, seed: int, rank: int = 0, world: int = 1) -> None:
        if size < 1:
            raise ValueError("a data source is empty")
        self.size, self.seed, self.rank, self.world = size, seed, rank, world
        self.epoch, self.position = 0, 0
        self._perm: Tensor | None = None

    def _permutation(self) -> Tensor:
        if self._perm is None:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
            self._perm = torch.randperm(self.size, generator=g)[self.rank::self.world]
        return self._perm

    def next(self, count: int) -> Tensor:
        taken: list[Tensor] = []
        while count > 0:
            perm = self._permutation()
            if len(perm) == 0:
                raise ValueError(f"a data source of {self.size} items is too small for {self.world} ranks")
            chunk = perm[self.position:self.position + count]
            taken.append(chunk)
            count -= len(chunk)
            self.position += len(chunk)
            if self.position >= len(perm):
                self.epoch, self.position, self._perm = self.epoch + 1, 0, None
        return torch.cat(taken)

    def state(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position}

    def load_state(self, state: dict[str, int]) -> None:
        self.epoch, self.position, self._perm = int(state["epoch"]), int(state["position"]), None


def augment(x: Tensor, crop_scale: tuple[float, float] | None, flip: bool, generator: torch.Generator) -> Tensor:
    """Random resized crop (area fraction in ``crop_scale``, aspect ratio kept) and horizontal flip, per sample,
    resampled bilinearly to the input size (E supp. Sec. 3)."""
    if x.dim() != 4 or (crop_scale is None and not flip):
        return x
    n = x.shape[0]
    theta = torch.zeros(n, 2, 3)
    if crop_scale is not None:
        lo, hi = crop_scale
        side = torch.sqrt(lo + (hi - lo) * torch.rand(n, generator=generator))
        max_shift = 1 - side
        tx = (torch.rand(n, generator=generator) * 2 - 1) * max_shift
        ty = (torch.rand(n, generator=generator) * 2 - 1) * max_shift
        theta[:, 0, 0], theta[:, 1, 1], theta[:, 0, 2], theta[:, 1, 2] = side, side, tx, ty
    else:
        theta[:, 0, 0], theta[:, 1, 1] = 1.0, 1.0
    if flip:
        flips = torch.rand(n, generator=generator) < 0.5
        theta[flips, 0, 0] *= -1
    grid = F.affine_grid(theta.to(x), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class Trainer:
    """Trains a score model on ``data`` (p_data) against ``p0`` by binary adversarial training.

    ``out_dir`` is the run folder. At every save (every ``ckpt_every`` iterations and at the end) it receives
    ``model.pt``, the run's one model (the weights chosen with :meth:`select_weights`, else the current ones;
    what :func:`atebm.load_model` loads from the folder), and ``checkpoint.pt``, the full training state used only
    by :meth:`resume`; also ``config.json`` and ``log.jsonl``. ``callbacks`` are called as
    ``callback(trainer, record)`` on every log line and may raise :class:`StopTraining`; one with an
    ``on_fit_end(trainer)`` method is also called once when the loop ends, before the last save (a selection made
    there is saved even after a stop). Use :meth:`Trainer.resume` to continue an interrupted run exactly.
    """

    def __init__(
        self,
        config: TrainConfig,
        data: Tensor | ImageSource,
        p0: Tensor | ImageSource,
        *,
        out_dir: str | os.PathLike | None = None,
        callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
        extra: dict[str, Any] | None = None,
        objective: Objective | None = None,
    ) -> None:
        self.config = config
        self.objective = objective if objective is not None else BinaryAT()
        self.data, self.p0 = data, p0
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = list(callbacks)
        self.extra = dict(extra or {})
        self.rank, self.world = self._setup_distributed()
        self.device = self._rank_device(resolve_device(config.device))

        torch.manual_seed(config.seed)
        self.model: ScoreModel = build_score_model(config.model).to(self.device)
        if config.channels_last:
            use_channels_last(self.model)
        self.model.meta.update({k: v for k, v in self.extra.items() if k != "meta"}, config=config.to_dict())
        self._broadcast_parameters()
        self.network: nn.Module = (
            DistributedDataParallel(self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
            if self.world > 1 else self.model
        )
        # speed switches (atebm.models.performance); the sampler's K passes run the compiled score when asked
        self.precision = resolve_precision(config.precision, self.device)
        if self.precision != "fp32":
            self.network = AutocastScore(self.network, self.precision)
        self.sampler_score = compile_score(self.model, config.compile)
        self.grad_scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")
        self._loaders: dict[str, BatchLoader] = {}
        self.optimizer = self._make_optimizer()
        if config.batch_size % self.world:
            raise ValueError(f"batch_size {config.batch_size} is not divisible by the {self.world} ranks")
        self.local_batch = config.batch_size // self.world
        self.data_stream = _EpochStream(len(data), config.seed, self.rank, self.world)
        self.p0_stream = _EpochStream(len(p0), config.seed + 1, self.rank, self.world)
        self.aug_generator = torch.Generator().manual_seed(config.seed * 7919 + self.rank)
        self.iters_per_epoch = max(1, math.ceil(len(data) / config.batch_size))

        self.step = 0
        self.k = config.k_start
        self.k_iters = 0
        self.auc_window: deque[float] = deque(maxlen=config.auc_window)
        self.history: list[dict[str, Any]] = []
        self.stop_reason: str | None = None
        self.elapsed_s = 0.0
        self.selection: dict[str, Any] | None = None
        self._selected_weights: dict[str, Tensor] | None = None
        # the exponential moving average of the weights (update_ema); ema_steps = optimiser steps averaged
        self.ema: dict[str, Tensor] | None = None
        if config.ema_decay is not None:
            self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.ema_steps = 0
        self._ema_model: ScoreModel | None = None
        self.objective.setup(self)

    # ----------------------------------------------------------------------------------------- set-up
    @staticmethod
    def _setup_distributed() -> tuple[int, int]:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            backend = "nccl" if torch.cuda.is_available() else "gloo"
            dist.init_process_group(backend=backend)
        if dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
        return 0, 1

    def _rank_device(self, device: torch.device) -> torch.device:
        if device.type == "cuda" and self.world > 1:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
        return device

    def _broadcast_parameters(self) -> None:
        if self.world > 1:
            for tensor in list(self.model.parameters()) + list(self.model.buffers()):
                dist.broadcast(tensor.data, src=0)

    def _make_optimizer(self) -> torch.optim.Optimizer:
        c = self.config
        if c.optimizer == "adam":
            return torch.optim.Adam(self.model.parameters(), lr=c.lr, betas=c.betas, weight_decay=c.weight_decay)
        return torch.optim.SGD(self.model.parameters(), lr=c.lr, momentum=c.momentum, weight_decay=c.weight_decay)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ----------------------------------------------------------------------------------------- one step
    def sample_p0(self, x0: Tensor, steps: int) -> Tensor:
        """The contrastive samples: ``steps`` of unconstrained (or eps-bounded) PGD ascent from p_0 samples (from a
        uniform point of the eps-ball with ``pgd_random_start``)."""
        c = self.config
        return pgd(self.sampler_score, x0, steps=steps, step_size=c.step_size, norm=c.pgd_norm, eps=c.pgd_eps,
                   random_start=c.pgd_random_start, clamp=self._clamp(), precision=self.precision)

    def _clamp(self) -> tuple[float, float] | None:
        return self.extra.get("clamp", (0.0, 1.0))

    def _read(self, which: str) -> Tensor:
        """The next batch of ``data`` or ``p0`` on the device, read here or, with ``num_workers`` > 0 and a lazy
        file source (:class:`~atebm.data.TinyImages`, :class:`~atebm.data.ImageFolder`, ...), by worker processes
        ahead of the stream (:mod:`atebm.data.loader`). The stream advances the same either way, so a checkpoint's
        stream state and the resume stay exact. In-memory sources (a tensor, an :class:`~atebm.data.ImageSet`)
        are always read here."""
        source, stream = (self.data, self.data_stream) if which == "data" else (self.p0, self.p0_stream)
        if self.config.num_workers == 0 or isinstance(source, (Tensor, ImageSet)):  # in memory: nothing to gain
            x = fetch_batch(source, stream.next(self.local_batch))
        else:
            if which not in self._loaders:
                self._loaders[which] = BatchLoader(source, stream, self.local_batch, read=fetch_batch,
                                                   num_workers=self.config.num_workers,
                                                   pin_memory=self.device.type == "cuda")
            indices, x = self._loaders[which].next()
            if not torch.equal(indices, stream.next(self.local_batch)):
                raise RuntimeError(f"the {which} loader's batch order differs from the trainer's stream")
        return to_memory_format(x.to(self.device, torch.float32, non_blocking=True), self.config.channels_last)

    def close_loaders(self) -> None:
        """Stops the data-reading worker processes (:meth:`fit` does at its end; a later step restarts them)."""
        for loader in self._loaders.values():
            loader.close()
        self._loaders = {}

    def train_step(self) -> dict[str, Any]:
        c = self.config
        x = self._read("data")
        x = augment(x, c.augment_crop_scale, c.augment_flip, self.aug_generator)
        x0 = self._read("p0")
        x_adv = self.objective.negatives(self, x0)
        if c.indist_at_steps > 0:
            radius, step_size = c.indist_radius(self.step)  # the curriculum of eps_1 (TrainConfig)
            if radius > 0:  # radius 0 (a ramp's start) leaves the batch as drawn
                x = pgd(self.model, x, steps=c.indist_at_steps, step_size=step_size, norm=c.pgd_norm, eps=radius,
                        descent=True, clamp=self._clamp(), precision=self.precision)

        self.network.train()
        if c.freeze_bn:
            freeze_batchnorm(self.network)
        m = x.shape[0]
        if c.r1 > 0 and _scores_samples_apart(self.model):
            # R1's input gradient and its double backward need the data half only; scored apart from x*, neither
            # pass runs over the p_0 half (same per-sample scores; parameter gradients summed in another order)
            r1_inputs = to_memory_format(x.detach(), c.channels_last).requires_grad_(True)
            s_data = self.network(r1_inputs)
            s_adv = self.network(to_memory_format(x_adv, c.channels_last))
        else:
            r1_inputs = to_memory_format(torch.cat([x, x_adv]), c.channels_last)
            if c.r1 > 0:
                r1_inputs.requires_grad_(True)
            scores = self.network(r1_inputs)
            s_data, s_adv = scores[:m], scores[m:]
        loss, objective_stats = self.objective.loss(self, s_data, s_adv)
        penalty = self.objective.penalty(self, x, x_adv)
        if penalty is not None:
            loss = loss + penalty[0]
            objective_stats = {**objective_stats, **penalty[1]}
        r1_value = torch.zeros((), device=self.device)
        if c.r1 > 0:
            grad = scores_gradient(s_data, r1_inputs, create_graph=True)
            r1_value = 0.5 * grad[:m].pow(2).flatten(1).sum(1).mean()
            loss = loss + c.r1 * r1_value
        self.optimizer.zero_grad(set_to_none=True)
        self.grad_scaler.scale(loss).backward()
        if c.grad_clip is not None:
            self.grad_scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.grad_scaler.step(self.optimizer)
        self.grad_scaler.update()
        self.update_ema()
        objective_stats = {**objective_stats, **self.objective.after_step(self)}

        step_statistics = {"loss": loss, "r1": r1_value, "auc_adv": _mann_whitney_auc(s_data, s_adv),
                           "score_data": s_data.detach().mean(), "score_adv": s_adv.detach().mean()}
        if self.objective.perturbs_p0:
            step_statistics["perturbation_l2"] = (x_adv - x0).flatten(1).norm(dim=1).mean()
        values = _to_floats(step_statistics)
        if self.world > 1:
            values["auc_adv"] = self._all_mean(values["auc_adv"])
        return {
            **values,
            **objective_stats,
            "_x_data": x.detach(),
            "_x0": x0.detach(),
        }

    def _all_mean(self, value: float) -> float:
        t = torch.tensor([value], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return float(t) / self.world

    # ----------------------------------------------------------------------------------------- the loop
    def _final_stage_done(self) -> bool:
        c = self.config
        if self.k < c.k_max:
            return False
        if c.final_iters is not None and self.k_iters >= c.final_iters:
            return True
        return c.final_epochs is not None and self.k_iters >= c.final_epochs * self.iters_per_epoch

    def _finished(self) -> str | None:
        c = self.config
        if self._final_stage_done():
            return "final-stage budget reached"
        if c.max_iters is not None and self.step >= c.max_iters:
            return "max_iters reached"
        if c.time_budget_s is not None and self.elapsed_s >= c.time_budget_s:
            return "time budget reached"
        return None

    def _advance_k(self) -> None:
        c = self.config
        if self.k >= c.k_max:
            return
        gate = len(self.auc_window) == c.auc_window and float(np.mean(self.auc_window)) > c.auc_threshold
        if gate or self.k_iters >= c.epochs_per_k * self.iters_per_epoch:
            self.k += 1
            self.k_iters = 0
            self.auc_window.clear()

    def fit(self) -> list[dict[str, Any]]:
        """Runs until the budget is spent (or a callback stops it); returns the log history."""
        c = self.config
        if self.is_main and self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.out_dir / "config.json", {"train": c.to_dict(), **self.extra.get("meta", {})})
        progress = _progress(c, self.is_main, self.step)
        window_start, window_iters = time.perf_counter(), 0
        accumulated: dict[str, list[float]] = {}
        try:
            while (reason := self._finished()) is None:
                t0 = time.perf_counter()
                stats = self.train_step()
                if not math.isfinite(stats["loss"]):
                    raise StopTraining(f"non-finite loss at step {self.step + 1}")
                self.step += 1
                self.k_iters += 1
                window_iters += 1
                self.auc_window.append(stats["auc_adv"])
                for key, value in stats.items():
                    if not key.startswith("_"):
                        accumulated.setdefault(key, []).append(value)
                k_used = self.k
                self._advance_k()
                self.elapsed_s += self._synchronised_elapsed(time.perf_counter() - t0)
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(K=k_used, loss=f"{stats['loss']:.3f}", auc=f"{stats['auc_adv']:.2f}")
                if self.step % c.log_every == 0:
                    now = time.perf_counter()
                    record = self._log_record(accumulated, stats, k_used, window_iters / (now - window_start))
                    accumulated, window_start, window_iters = {}, now, 0
                    self.history.append(record)
                    try:
                        for callback in self.callbacks:  # callbacks may add keys (e.g. val_fd) or stop the run
                            callback(self, record)
                    finally:
                        if self.is_main and self.out_dir is not None:
                            append_jsonl(self.out_dir / "log.jsonl", record)
                if self.step % c.ckpt_every == 0:
                    self.save()
            self.stop_reason = reason
        except StopTraining as stop:
            self.stop_reason = f"stopped: {stop}"
        finally:
            if progress is not None:
                progress.close()
            self.close_loaders()
        selection = self.selection
        for callback in self.callbacks:  # e.g. SelectBest judges the final weights (atebm.training.selection)
            on_fit_end = getattr(callback, "on_fit_end", None)
            if on_fit_end is not None:
                on_fit_end(self)
        stopped = (self.stop_reason or "").startswith("stopped")
        if (not stopped and self.step % c.ckpt_every != 0) or self.selection is not selection:
            self.save()
        return self.history

    def _synchronised_elapsed(self, seconds: float) -> float:
        """Time budgets must end every rank on the same iteration: use rank 0's clock."""
        if self.world > 1 and self.config.time_budget_s is not None:
            t = torch.tensor([seconds], dtype=torch.float64, device=self.device)
            dist.broadcast(t, src=0)
            return float(t)
        return seconds

    @torch.no_grad()
    def _log_record(self, acc: dict[str, list[float]], stats: dict[str, Any], k: int, its: float) -> dict[str, Any]:
        self.model.eval()
        clean = self.model(stats["_x0"])
        data = self.model(stats["_x_data"])
        auc_clean = batch_auc(data, clean)
        if self.world > 1:
            auc_clean = self._all_mean(auc_clean)
        record = {"step": self.step, "k": k, "epoch": self.step / self.iters_per_epoch}
        if self.config.indist_at_steps > 0:  # the in-distribution radius of the last iteration
            record["indist_eps"] = self.config.indist_radius(self.step - 1)[0]
        record.update({key: float(np.mean(values)) for key, values in acc.items()})
        record["auc_clean"] = auc_clean
        record["iters_per_s"] = its
        record["elapsed_s"] = self.elapsed_s
        return self.objective.log_record(self, record)

    # ----------------------------------------------------------------------------------------- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "step": self.step, "k": self.k, "k_iters": self.k_iters, "elapsed_s": self.elapsed_s,
            "auc_window": list(self.auc_window), "optimizer": self.optimizer.state_dict(),
            "data_stream": self.data_stream.state(), "p0_stream": self.p0_stream.state(),
            "aug_generator": self.aug_generator.get_state(), "torch_rng": torch.get_rng_state(),
            "grad_scaler": self.grad_scaler.state_dict(),
            "world": self.world, "ema": self.ema, "ema_steps": self.ema_steps,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if int(state.get("world", 1)) != self.world:
            raise ValueError(f"checkpoint was written with {state['world']} ranks; resume with the same number "
                             f"(got {self.world}) for an exact continuation")
        self.step, self.k, self.k_iters = int(state["step"]), int(state["k"]), int(state["k_iters"])
        self.elapsed_s = float(state.get("elapsed_s", 0.0))
        self.auc_window = deque(state["auc_window"], maxlen=self.config.auc_window)
        self.optimizer.load_state_dict(state["optimizer"])
        self.data_stream.load_state(state["data_stream"])
        self.p0_stream.load_state(state["p0_stream"])
        self.aug_generator.set_state(state["aug_generator"])
        torch.set_rng_state(state["torch_rng"])
        if state.get("grad_scaler"):
            self.grad_scaler.load_state_dict(state["grad_scaler"])
        self.close_loaders()  # they had read ahead of the old stream position
        if self.ema is not None:
            if state.get("ema") is None:
                raise ValueError("the checkpoint holds no weight average although its config sets ema_decay")
            self.ema = {k: v.detach().clone().to(self.device) for k, v in state["ema"].items()}
            self.ema_steps = int(state["ema_steps"])

    def select_weights(self, weights: dict[str, Tensor] | None = None, *, by: str, value: float,
                       ema: bool = False) -> None:
        """Makes ``weights`` (default: the current ones, or with ``ema=True`` the weight average of
        :meth:`update_ema`) the run's model, the one written to ``model.pt``.

        Called by model-selection callbacks (e.g. the demo's lowest validation Fréchet distance, E supp. Sec. 3);
        ``by`` names the criterion and ``value`` its value at this step. The choice survives :meth:`resume`."""
        if ema and self.ema is None:
            raise ValueError("select_weights(ema=True): this run keeps no weight average (set ema_decay)")
        state = weights if weights is not None else self.ema if ema else self.model.state_dict()
        assert state is not None
        self._selected_weights = {k: v.detach().clone() for k, v in state.items()}
        self.selection = {"by": by, "value": float(value), "step": self.step, "k": self.k,
                          "weights": "ema" if ema else "raw"}

    def model_weights(self) -> tuple[dict[str, Tensor], dict[str, Any]]:
        """The run's model and how it was chosen: the selected weights, else the last ones (the weight average
        when ``ema_decay`` is set, the raw weights otherwise)."""
        if self._selected_weights is not None and self.selection is not None:
            return self._selected_weights, dict(self.selection)
        if self.ema is not None:
            return self.ema, {"by": "last", "step": self.step, "k": self.k, "weights": "ema"}
        return self.model.state_dict(), {"by": "last", "step": self.step, "k": self.k, "weights": "raw"}

    @torch.no_grad()
    def update_ema(self) -> None:
        """Updates the exponential moving average of the weights; called after each optimiser step when
        ``config.ema_decay`` = d is set (a standard remedy for the oscillating sample quality of GAN/EBM training).

        After optimiser step t (t = 1, 2, ...) with parameters θ_t, the average is the bias-corrected
        exponentially weighted mean of every iterate so far::

            ema_t = Σ_{i<=t} w_i θ_i,   w_i = (1 - d) d^(t-i) / (1 - d^t)
                  = ema_{t-1} + c_t (θ_t - ema_{t-1}),   c_t = (1 - d) / (1 - d^t)      (so ema_1 = θ_1)

        i.e. the usual ``ema <- d·ema + (1 - d)·θ`` without the pull towards the initial weights early on
        (c_t -> 1 - d as t grows; about 1 / (1 - d) steps are averaged). Buffers (BatchNorm statistics) are copied
        from the current model, not averaged. The average is saved in ``checkpoint.pt`` and resumed exactly;
        without a selection it is the weights written to ``model.pt``."""
        if self.ema is None or self.config.ema_decay is None:
            return
        self.ema_steps += 1
        ema_update(self.ema, self.model, float(self.config.ema_decay), self.ema_steps)

    def ema_model(self) -> ScoreModel:
        """The score model with the averaged weights of :meth:`update_ema`, in eval mode (a copy kept by the trainer
        and refreshed on each call; e.g. for validation callbacks)."""
        if self.ema is None:
            raise ValueError("this run keeps no weight average: set ema_decay in the training config")
        if self._ema_model is None:
            self._ema_model = copy.deepcopy(self.model)  # a copy, not a new build: building would draw random numbers
            self._ema_model.requires_grad_(False)
        self._ema_model.load_state_dict(self.ema)
        return self._ema_model.eval()

    def save(self, path: str | os.PathLike | None = None) -> Path | None:
        """Writes ``model.pt`` and the resumable ``checkpoint.pt`` (rank 0 only) into ``out_dir``, or only the
        resumable checkpoint to ``path`` when given. Returns the checkpoint path."""
        if not self.is_main:
            return None
        if path is None:
            if self.out_dir is None:
                return None
            path = self.out_dir / "checkpoint.pt"
            self.export_model(self.out_dir / MODEL_FILE)
        return save_checkpoint(path, {
            "model_spec": self.model.spec, "model": self.model.state_dict(), "config": self.config.to_dict(),
            "trainer": self.state_dict(), "history": self.history, "extra": self._saved_extra(),
            "selection": self.selection, "selected_model": self._selected_weights,
            "objective": self.objective.to_dict(),
        })

    def export_model(self, path: str | os.PathLike) -> Path:
        """Writes the run's model (see :meth:`model_weights`) without training state: what users load."""
        weights, selection = self.model_weights()
        return save_checkpoint(path, {
            "model_spec": self.model.spec, "model": weights, "config": self.config.to_dict(), "trainer": None,
            "extra": self._saved_extra(), "selection": selection,
        })

    def _saved_extra(self) -> dict[str, Any]:
        return {k: v for k, v in self.extra.items() if k != "meta"}

    @classmethod
    def resume(cls, path: str | os.PathLike, data: Tensor | ImageSource, p0: Tensor | ImageSource, *,
               out_dir: str | os.PathLike | None = None, callbacks: Sequence[Callable] = (),
               overrides: dict[str, Any] | None = None, extra: dict[str, Any] | None = None) -> Trainer:
        """Rebuilds a trainer from a checkpoint and continues with the same K, step, optimiser and RNG state.

        ``overrides`` may change only what leaves the continuation exact: the budgets and the logging/checkpoint
        cadence (:data:`RESUME_OVERRIDABLE`); any other changed field (batch size, seed, model, step size, ...) is
        refused with a ValueError that names it. A run of an objective that another trainer continues
        (:data:`OBJECTIVE_HOMES`, e.g. a DSGAN run) is refused with the command that does."""
        payload = load_checkpoint(path)
        if payload.get("trainer") is None:
            raise ValueError(f"{path} holds only model weights, not a trainer state; it cannot be resumed")
        kind = str((payload.get("objective") or {}).get("kind", BinaryAT.kind))
        home = OBJECTIVE_HOMES.get(kind)
        if home is not None and home.trainer is not None and home.trainer.rpartition(".")[2] != cls.__name__:
            where = Path(path).parent if Path(path).name == CHECKPOINT_FILE else Path(path)
            raise ValueError(f"{where} was trained {home.trained_by(kind)}: {home.how_to_resume(where)}")
        config = TrainConfig.from_dict({**payload["config"], **check_resume_overrides(payload["config"], overrides,
                                                                                     TrainConfig.from_dict)})
        saved_extra = payload.get("extra") or {}
        trainer = cls(config, data, p0, out_dir=out_dir if out_dir is not None else Path(path).parent,
                      callbacks=callbacks, extra={**saved_extra, **(extra or {})},
                      objective=Objective.from_dict(payload.get("objective"), p0))
        trainer.restore(payload)
        return trainer

    def restore(self, payload: dict[str, Any]) -> None:
        """Loads the model, selection, history and trainer state of a resumable checkpoint into this trainer."""
        self.model.load_state_dict(payload["model"])
        if payload.get("selected_model") is not None and payload.get("selection") is not None:
            self._selected_weights, self.selection = payload["selected_model"], dict(payload["selection"])
        self.history = list(payload.get("history") or [])
        self.load_state_dict(payload["trainer"])
        self._truncate_log()
        self.objective.setup(self)

    def _truncate_log(self) -> None:
        """Drops the log lines a crashed run wrote after its last checkpoint: the resumed run writes them again."""
        if not self.is_main or self.out_dir is None or not (self.out_dir / "log.jsonl").exists():
            return
        log = self.out_dir / "log.jsonl"
        kept = [line for line in log.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= self.step]
        tmp = log.with_name(".log.jsonl.tmp")
        tmp.write_text("".join(line + "\n" for line in kept))
        os.replace(tmp, log)


@torch.no_grad()
def ema_update(average: dict[str, Tensor], model: nn.Module, decay: float, step: int) -> None:
    """One step of :meth:`Trainer.update_ema` on any state dict ``average`` of ``model``: after optimiser step
    ``step`` (counted from 1), ``average <- average + c (θ - average)`` with ``c = (1 - decay) / (1 - decay^step)``
    for the parameters; buffers are copied."""
    rate = (1.0 - decay) / (1.0 - decay ** step)
    parameters = {name for name, _ in model.named_parameters()}
    for name, value in model.state_dict().items():
        if name in parameters and value.is_floating_point():
            average[name].lerp_(value.detach(), rate)
        else:
            average[name].copy_(value)


def check_resume_overrides(saved: dict[str, Any], overrides: dict[str, Any] | None,
                           build: Callable[[dict[str, Any]], Any]) -> dict[str, Any]:
    """Returns ``overrides`` when each one that changes the saved config is in :data:`RESUME_OVERRIDABLE`;
    raises a ValueError naming the others (they would make the continuation differ from an uninterrupted run).
    ``build`` turns a config dict into the config object (so that ``1e-3`` and ``0.001`` compare equal)."""
    overrides = dict(overrides or {})
    reference = build(dict(saved)).to_dict()
    candidate = build({**saved, **overrides}).to_dict()
    refused = sorted(k for k in overrides if candidate.get(k) != reference.get(k) and k not in RESUME_OVERRIDABLE)
    if refused:
        raise ValueError(f"cannot resume with {', '.join(f'{k}={overrides[k]!r}' for k in refused)}: it would not "
                         f"continue the run exactly (saved: {', '.join(f'{k}={reference.get(k)!r}' for k in refused)})"
                         f"; a resume may change only {', '.join(sorted(RESUME_OVERRIDABLE))}")
    return overrides


def append_jsonl(path: Path, record: dict[str, Any]) -> None:
    """Appends one JSON line (``inf``/``nan`` written as strings, as :func:`write_json` does)."""
    with path.open("a") as handle:
        handle.write(json.dumps(jsonable(record)) + "\n")


def _progress(config: TrainConfig, is_main: bool, initial: int):
    if not (config.progress and is_main):
        return None
    from tqdm.auto import tqdm

    total = config.max_iters
    return tqdm(total=total, initial=initial, desc="train", unit="it", dynamic_ncols=True, leave=False)
