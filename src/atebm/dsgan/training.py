"""DSGAN training (S Alg. 1) in :class:`atebm.Trainer`: the discriminator is the trainer's score model, the generator
belongs to the :class:`DSGAN` objective.

One trainer iteration is one discriminator step (S Alg. 1 lines 3-6)::

    x_real ~ p_dbar                                   (the trainer's data source)
    x_d    ~ p_d                                      (the trainer's p_0 source)
    fake   = [G(z) for round((1-alpha) m) z] + [alpha m rows of x_d]        # sampling trick, S Eq. 10
             (or m of each, weighted 1 - alpha and alpha, without the trick: S Eq. 2)
             the generator rows are the first of a forward pass of m latents, so that the generator's batch norm
             normalises them with the statistics of m rows, as in its own step and at sampling
    loss_D = -mean log D(x_real) - mean_w log(1 - D(fake))    (or the WGAN-GP critic loss + 10 * penalty)

and after every ``critic_steps``-th (k, S Alg. 1) discriminator step the objective takes one generator step on a
fresh batch of ``m`` latents (lines 8-9). The trainer supplies everything else: budgets, logging, the failure
monitor as a callback, ``model.pt`` (the discriminator as a score model: higher = more like p_dbar) and
``checkpoint.pt`` with the objective's generator, its optimiser and random state, so :meth:`DSGANTrainer.resume`
continues a run exactly.

Where this departs from S Alg. 1: the generator loss defaults to the non-saturating ``-log D(G(z))``, while line 9
descends ``log(1 - D(G(z)))`` (``generator_loss="minimax"``, which every case study of :mod:`~atebm.dsgan.cases`
uses; :class:`DSGANConfig` gives the measurement); the sampling trick (S App. C) is on by default; the WGAN-GP
penalty (S Sec. 5) interpolates the real rows with every fake row, the p_d rows of the mixture included.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..config import above, at_least, checked_by, in_range, one_of, setting
from ..training import Objective, Trainer, load_checkpoint
from ..training.checkpoint import CHECKPOINT_FILE
from ..training.config import TrainerOptions
from ..training.modes import ModeTrainer
from ..training.trainer import ema_update
from .losses import (
    DISCRIMINATOR_LOSSES,
    GENERATOR_LOSSES,
    check_alpha,
    discriminator_loss,
    fake_weights,
    generator_loss,
    gradient_penalty,
    mixture_sizes,
)
from .networks import build_generator

__all__ = ["DSGAN", "DSGANConfig", "DSGANTrainer", "load_generator", "IMAGE_DISCRIMINATOR", "IMAGE_GENERATOR"]

#: Defaults for 28x28 grey images: a small ConvNet discriminator whose head reads the flattened feature map (where
#: the strokes are, not only which strokes: the global-average-pooled head let the generator collapse) and the
#: DCGAN-style transposed-convolution generator (S Tab. 5 uses one for SVHN / CIFAR-10; S Tab. 4's fully connected
#: MNIST generator, arch ``image``, is S's SSL network and stays the SSL default). Measured on ``mnist-difference``
#: (benchmarks/results/dsgan/README.md, "The MNIST difference set and the image networks"; seed 0): Fréchet ratio
#: to held-out sevens 31.85 with the S Tab. 4 generator and the pooled head, 7.63 with the flattened head, 3.72 with
#: the DCGAN-style generator, 1.37 with both (1.44 and 1.61 on seeds 1 and 2).
IMAGE_DISCRIMINATOR: dict[str, Any] = {"arch": "convnet", "kwargs": {"in_channels": 1, "width": 16, "head": "flatten",
                                                                     "input_size": 28}, "mean": 0.5, "std": 0.5}
IMAGE_GENERATOR: dict[str, Any] = {"arch": "conv", "kwargs": {"latent_dim": 64, "channels": 1, "size": 28}}


def generator_loss_of(loss: str, generator_loss: str | None) -> str:
    """The generator loss that goes with the discriminator ``loss``: ``generator_loss``, by default
    ``non-saturating`` for ``gan`` and ``wgan`` for ``wgan-gp``; a pair that does not go together is refused."""
    generator_loss = generator_loss or ("wgan" if loss == "wgan-gp" else "non-saturating")
    if generator_loss not in GENERATOR_LOSSES:
        raise ValueError(f"generator_loss must be one of {GENERATOR_LOSSES}, got {generator_loss!r}")
    if (loss == "wgan-gp") != (generator_loss == "wgan"):
        raise ValueError(f"generator_loss {generator_loss!r} does not go with loss {loss!r}: the WGAN-GP critic "
                         "needs generator_loss 'wgan', the GAN loss 'minimax' or 'non-saturating'")
    return generator_loss


class DSGAN(Objective):
    """The DSGAN strategy of one :class:`atebm.Trainer` iteration (module doc). Owns the generator, its Adam
    optimiser and its random generator (latents, penalty interpolation weights); all three are in the checkpoint.

    ``alpha`` in [0, 1) is the weight of p_d in the fake mixture (0: an ordinary GAN of p_dbar);
    ``critic_steps`` = k discriminator steps per generator step; ``loss`` ``gan`` or ``wgan-gp``;
    ``generator_loss`` defaults to ``non-saturating`` for ``gan`` (S Alg. 1's is ``minimax``; see
    :class:`DSGANConfig`) and must be ``wgan`` for ``wgan-gp``;
    ``sampling_trick`` switches S Eq. 10 on (default) or off (S Eq. 2 / Alg. 1); ``batch_size`` is the training
    batch m: every forward pass of the generator, in both steps and in :meth:`generate`, holds m latents, so its
    batch norm always normalises with the statistics of m rows. ``g_ema_decay`` = d (None: off) keeps an
    exponential moving average of the generator's weights over its optimiser steps (Yazici et al. 2019, "The
    unusual effectiveness of averaging in GAN training"; :func:`atebm.training.ema_update`, bias-corrected), and
    :meth:`generate` then samples the average: the training steps and the discriminator still see the raw
    generator.

    Its log lines hold (means over the log window; D's scores are logits): ``loss`` (the discriminator's),
    ``score_data`` (on p_dbar, the real rows), ``score_fake`` (on the fake mixture), ``score_gen`` / ``score_pd`` (on
    its generator / p_d rows), ``auc_fake`` (AUC of p_dbar against the fake mixture per batch), ``auc_pd`` (AUC of
    p_dbar against p_d under D at the log step), ``gp`` (WGAN-GP), and after generator steps ``loss_g`` and
    ``score_g`` (on G's samples); no ``k``: there is no PGD."""

    kind = "dsgan"
    perturbs_p0 = False
    log_names = {"k": None, "r1": None, "score_adv": "score_fake", "auc_adv": "auc_fake", "auc_clean": "auc_pd"}

    def __init__(self, *, generator: dict[str, Any] | None = None, alpha: float = 0.8, critic_steps: int = 1,
                 loss: str = "gan", generator_loss: str | None = None, gp_weight: float = 10.0,
                 sampling_trick: bool = True, g_lr: float = 2e-4, betas: Sequence[float] = (0.5, 0.999),
                 batch_size: int = 64, seed: int = 0, g_ema_decay: float | None = None) -> None:
        self.alpha = check_alpha(alpha)
        if int(critic_steps) != critic_steps or critic_steps < 1:
            raise ValueError(f"critic_steps (k, discriminator steps per generator step) must be an integer >= 1, "
                             f"got {critic_steps}")
        if loss not in DISCRIMINATOR_LOSSES:
            raise ValueError(f"loss must be one of {DISCRIMINATOR_LOSSES}, got {loss!r}")
        generator_loss = generator_loss_of(loss, generator_loss)
        if gp_weight < 0 or g_lr <= 0:
            raise ValueError(f"need gp_weight >= 0 and g_lr > 0, got {gp_weight}, {g_lr}")
        if int(batch_size) != batch_size or batch_size < 1:
            raise ValueError(f"batch_size (m, the training batch) must be an integer >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.generator_spec = dict(generator or IMAGE_GENERATOR)
        self.critic_steps, self.loss_kind, self.generator_loss = int(critic_steps), loss, generator_loss
        self.gp_weight, self.sampling_trick, self.g_lr = float(gp_weight), bool(sampling_trick), float(g_lr)
        self.betas = tuple(float(b) for b in betas)
        self.seed = int(seed)
        self.generator = build_generator(self.generator_spec, seed=self.seed + 2)
        self.rng = torch.Generator().manual_seed(self.seed + 3)
        self.optimizer: torch.optim.Optimizer = torch.optim.Adam(self.generator.parameters(), lr=self.g_lr,
                                                                 betas=(self.betas[0], self.betas[1]))
        if g_ema_decay is not None and not 0 < g_ema_decay < 1:
            raise ValueError(f"g_ema_decay (the generator's weight average) must be in (0, 1) or None, got "
                             f"{g_ema_decay}")
        self.g_ema_decay = None if g_ema_decay is None else float(g_ema_decay)
        self.g_ema: dict[str, Tensor] | None = None if self.g_ema_decay is None else {
            k: v.detach().clone() for k, v in self.generator.state_dict().items()}
        self.g_ema_steps = 0
        self._layout = (0, 0)

    # ----------------------------------------------------------------------------------- checkpoint plumbing
    @classmethod
    def restore(cls, options: dict[str, Any], p0: Any) -> DSGAN:
        return cls(**options)

    def options(self) -> dict[str, Any]:
        return {"generator": self.generator_spec, "alpha": self.alpha, "critic_steps": self.critic_steps,
                "loss": self.loss_kind, "generator_loss": self.generator_loss, "gp_weight": self.gp_weight,
                "sampling_trick": self.sampling_trick, "g_lr": self.g_lr, "betas": list(self.betas),
                "batch_size": self.batch_size, "seed": self.seed, "g_ema_decay": self.g_ema_decay}

    def state_dict(self) -> dict[str, Any]:
        state = {"generator": {k: v.detach().cpu() for k, v in self.generator.state_dict().items()},
                 "optimizer": self.optimizer.state_dict(), "rng": self.rng.get_state()}
        if self.g_ema is not None:
            state["g_ema"] = {k: v.detach().cpu() for k, v in self.g_ema.items()}
            state["g_ema_steps"] = self.g_ema_steps
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "generator" in state:
            self.generator.load_state_dict(state["generator"])
        if self.g_ema is not None:
            if state.get("g_ema") is None:
                raise ValueError("the checkpoint holds no generator average although g_ema_decay is set")
            self.g_ema = {k: v.detach().clone().to(self.g_ema[k].device) for k, v in state["g_ema"].items()}
            self.g_ema_steps = int(state["g_ema_steps"])
        if state.get("rng") is not None:
            self.rng.set_state(state["rng"])
        if state.get("optimizer") is not None:
            self.optimizer.load_state_dict(state["optimizer"])

    def setup(self, trainer: Trainer) -> None:
        """Moves the generator and its optimiser to the trainer's device (:meth:`Objective.setup`)."""
        if trainer.world > 1:
            raise ValueError("DSGAN trains in one process: its generator is not wrapped for several ranks")
        self.place(self.generator, self.optimizer, trainer.device)
        if self.g_ema is not None:
            self.g_ema = {k: v.to(trainer.device) for k, v in self.g_ema.items()}

    # ----------------------------------------------------------------------------------- one iteration
    def fake_layout(self, m: int) -> tuple[int, int]:
        """``(n_gen, n_data)`` of the fake batch for ``m`` p_d rows: S Eq. 10 with the trick, else ``(m, m)``
        (``(m, 0)`` at alpha = 0, where p_d has no weight)."""
        if self.sampling_trick:
            return mixture_sizes(m, self.alpha)
        return m, (m if self.alpha > 0 else 0)

    @property
    def mixture_alpha(self) -> float:
        """The weight of p_d in the fake mixture the discriminator is trained against, the alpha of S Eq. 2-3 that
        the generator's optimum answers to: ``alpha`` without the sampling trick; with it the share of p_d rows in a
        fake batch of ``batch_size`` (S Eq. 10 rounds ``(1 - alpha) m`` generator rows: 205 / 256 at alpha 0.8)."""
        if not self.sampling_trick:
            return self.alpha
        n_gen, n_data = mixture_sizes(self.batch_size, self.alpha)
        return n_data / (n_gen + n_data)

    def negatives(self, trainer: Trainer, x0: Tensor) -> Tensor:
        m = x0.shape[0]
        n_gen, n_data = self.fake_layout(m)
        with torch.no_grad():
            generated = self.generator.draw(n_gen, self.rng, batch=m)
        self._layout = (n_gen, n_data)
        return torch.cat([generated.to(x0), x0[:n_data]])

    def weights(self) -> Tensor:
        n_gen, n_data = self._layout
        return fake_weights(n_gen, n_data, self.alpha, self.sampling_trick)

    def loss(self, trainer: Trainer, s_data: Tensor, s_neg: Tensor) -> tuple[Tensor, dict[str, float]]:
        n_gen, n_data = self._layout
        loss = discriminator_loss(s_data, s_neg, self.weights(), self.loss_kind)
        stats = {"score_gen": float(s_neg[:n_gen].detach().mean())}
        if n_data:
            stats["score_pd"] = float(s_neg[n_gen:].detach().mean())
        return loss, stats

    def penalty(self, trainer: Trainer, x_data: Tensor, x_neg: Tensor) -> tuple[Tensor, dict[str, float]] | None:
        if self.loss_kind != "wgan-gp" or self.gp_weight == 0:
            return None
        gp = gradient_penalty(trainer.network, x_data, x_neg, self.weights(), self.rng)
        return self.gp_weight * gp, {"gp": float(gp.detach())}

    def after_step(self, trainer: Trainer) -> dict[str, float]:
        """One generator step after every k-th discriminator step (``trainer.step`` counts the steps before
        this one)."""
        if (trainer.step + 1) % self.critic_steps:
            return {}
        self.generator.train()
        scores = trainer.network(self.generator.draw(trainer.local_batch, self.rng))
        loss = generator_loss(scores, self.generator_loss)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward(inputs=list(self.generator.parameters()))
        self.optimizer.step()
        if self.g_ema is not None and self.g_ema_decay is not None:
            self.g_ema_steps += 1
            ema_update(self.g_ema, self.generator, self.g_ema_decay, self.g_ema_steps)
        return {"loss_g": float(loss.detach()), "score_g": float(scores.detach().mean())}

    @torch.no_grad()
    def generate(self, n: int) -> Tensor:
        """``n`` samples of p_g on the CPU, drawn as the discriminator saw them in training: forward passes of
        ``batch_size`` latents (the generator's ``draw``), so batch norm uses the statistics of m rows. The random
        state of training is untouched: latents come from a generator seeded with ``seed``, and the first samples
        do not depend on ``n``. With ``g_ema_decay`` the samples are the weight average's."""
        rng = torch.Generator().manual_seed(self.seed + 12345)
        if self.g_ema is None or self.g_ema_steps == 0:
            return self.generator.draw(n, rng, batch=self.batch_size).cpu()
        raw = {k: v.detach().clone() for k, v in self.generator.state_dict().items()}
        self.generator.load_state_dict(self.g_ema)
        try:
            return self.generator.draw(n, rng, batch=self.batch_size).cpu()
        finally:
            self.generator.load_state_dict(raw)


@dataclass(frozen=True)
class DSGANConfig(TrainerOptions):
    """Knobs of DSGAN training: the trainer's options (:class:`~atebm.training.config.TrainerOptions`: budgets,
    optimiser of the discriminator, weight average, speed, bookkeeping) and the objective's fields below.
    Defaults: S Alg. 1 (k = 1, alpha = 0.8), the sampling trick on (S App. C), the GAN loss, Adam(0.5, 0.999) at
    2e-4 for both networks (DCGAN practice), and for 28x28 grey images :data:`IMAGE_GENERATOR` (DCGAN-style) and
    :data:`IMAGE_DISCRIMINATOR` (a small ConvNet with a flattened head). For the WGAN-GP critic
    (``loss="wgan-gp"``, lambda = ``gp_weight`` = 10) Gulrajani et al. use Adam(0.5, 0.9) and k = 5.

    The generator loss departs from S Alg. 1 by default: ``generator_loss=None`` means ``non-saturating``
    (descend ``-log D(G(z))``, Goodfellow et al. 2014), where line 9 descends ``log(1 - D(G(z)))`` (``minimax``;
    same fixed point, S Prop. 1-3). The case studies (:data:`atebm.dsgan.CASES`) set ``minimax``; data runs
    (``atebm dsgan train --data``), the low-density AT and the GAN baseline keep ``non-saturating``, the loss their
    committed results used. Measured on the three cases with both losses, 3 seeds at reduced budgets
    (``benchmarks/dsgan_generator_loss.py``, ``benchmarks/results/dsgan/generator_loss.json``), neither is
    consistently better: energy distance to the target 0.090 vs 0.128 (swiss roll, minimax first) and 0.201 vs
    0.174 (disc), Fréchet ratio to held-out sevens 54 vs 37 (both collapsed, 2 of 3 seeds make 7s with either).
    ``max_iters`` counts discriminator steps. ``g_ema_decay`` samples a weight average of the generator
    (:class:`DSGAN`; off by default)."""

    model: dict[str, Any] = setting(factory=lambda: dict(IMAGE_DISCRIMINATOR))
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    max_iters: int | None = 2000
    generator: dict[str, Any] = setting(factory=lambda: dict(IMAGE_GENERATOR))
    alpha: float = setting(0.8, checked_by(check_alpha))
    critic_steps: int = setting(1, at_least(1, why="k, discriminator steps per generator step"))
    loss: str = setting("gan", one_of(*DISCRIMINATOR_LOSSES))
    generator_loss: str | None = None  # None: the usual one of ``loss`` (generator_loss_of)
    gp_weight: float = setting(10.0, at_least(0))
    sampling_trick: bool = True
    g_lr: float = setting(2e-4, above(0))
    g_ema_decay: float | None = setting(None, in_range(0, 1, lo_open=True, hi_open=True,
                                                       why="None: sample the raw generator"))
    SHARED_WITH_OBJECTIVE = ("betas", "batch_size", "seed")

    def check(self) -> Iterator[str]:
        yield from super().check()
        try:
            generator_loss_of(self.loss, self.generator_loss)
        except ValueError as error:
            yield str(error)


class DSGANTrainer(ModeTrainer):
    """:class:`atebm.Trainer` with the :class:`DSGAN` objective, configured by one :class:`DSGANConfig`:
    ``DSGANTrainer(config, p_dbar, p_d, out_dir=None, callbacks=(), extra=None)``. p_dbar is the trainer's data
    (real), p_d its p_0 source (mixed into the fakes). ``fit()``, ``save()``, :meth:`resume`, the callbacks
    (e.g. :class:`atebm.monitor.FailureMonitor`) and the run folder are the trainer's; :meth:`generate` draws
    from the generator."""

    config_type, config_key, kind, objective_type = DSGANConfig, "dsgan", "dsgan", DSGAN

    def __init__(self, config: DSGANConfig, p_dbar: Any, p_d: Any, *, out_dir: str | os.PathLike | None = None,
                 callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
                 extra: dict[str, Any] | None = None, objective: DSGAN | None = None) -> None:
        if len(p_dbar) < 1 or len(p_d) < 1:
            raise ValueError(f"p_dbar and p_d must be non-empty (got {len(p_dbar)} and {len(p_d)} samples)")
        self.dsgan_config = config
        super().__init__(config, p_dbar, p_d, out_dir=out_dir, callbacks=callbacks, extra=extra,
                         objective=objective or DSGAN(**config.objective_options()))

    @property
    def dsgan(self) -> DSGAN:
        assert isinstance(self.objective, DSGAN)
        return self.objective

    @property
    def generator(self) -> torch.nn.Module:
        return self.dsgan.generator

    def generate(self, n: int) -> Tensor:
        """``n`` generator samples on the CPU (see :meth:`DSGAN.generate`)."""
        return self.dsgan.generate(n)


def load_generator(path: str | os.PathLike) -> tuple[DSGAN, dict[str, Any]]:
    """The DSGAN objective (with its trained generator) of a run folder's ``checkpoint.pt`` (or a checkpoint
    file), and the run's ``extra`` (case name, data shape, ...)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    payload = load_checkpoint(path)
    objective = payload.get("objective") or {}
    if objective.get("kind") != DSGAN.kind:
        raise ValueError(f"{path} holds no DSGAN generator (objective {objective.get('kind')!r}); pass the run "
                         "folder of `atebm dsgan train`")
    restored = Objective.from_dict(objective, None)
    assert isinstance(restored, DSGAN)
    return restored, dict(payload.get("extra") or {})
