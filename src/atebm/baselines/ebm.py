"""The maximum-likelihood EBM baseline (E Eq. 1-3, Sec. 3.1), trained the JEM / IGEBM way.

Model: ``p_theta(x) = exp(f_theta(x)) / Z(theta)`` with the same score networks as binary AT (higher score = more
in-distribution). Likelihood gradient (E Eq. 2)::

    grad_theta E_data[log p_theta] = E_data[grad f] - E_{p_theta}[grad f]

so one iteration minimises ::

    L = -(mean f(x_data) - mean f(x_sgld)) + alpha · (mean f(x_data)^2 + mean f(x_sgld)^2)

where the second term is the small L2 regulariser on the scores of IGEBM (Du & Mordatch 2019) that keeps f bounded,
and ``x_sgld`` are short-run SGLD chains (E Eq. 3, :func:`atebm.sgld`)::

    x_{i+1} = x_i + (lambda / 2) grad_x f(x_i) + noise_std · xi,     xi ~ N(0, I)

started from a **replay buffer** of past samples: each chain starts from a buffer entry, except with probability
``reinit_prob`` (5 %) from a fresh p_0 sample (noise), and the final samples are written back (JEM / IGEBM practice).

:class:`MaximumLikelihood` is this loss and sampler as an :class:`atebm.training.Objective`: the EBM baseline
runs in :class:`atebm.Trainer` itself (same loop, optimiser, budgets, logging, checkpoints with the replay buffer,
exact resume, callbacks). :class:`EBMTrainer` is that trainer built from one :class:`EBMConfig`; ``p0`` is the
noise the chains are (re)initialised from, and the p_0 batch of every iteration supplies the fresh starts.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from ..config import at_least, in_range, setting
from ..sampling import sgld
from ..training import Objective, Trainer
from ..training.config import TrainerOptions
from ..training.modes import ModeTrainer
from ..training.trainer import fetch_batch

__all__ = ["EBMConfig", "EBMTrainer", "MaximumLikelihood", "ReplayBuffer"]

@dataclass(frozen=True)
class EBMConfig(TrainerOptions):
    """Knobs of maximum-likelihood EBM training with short-run SGLD and a replay buffer: the trainer's options
    (:class:`~atebm.training.config.TrainerOptions`) and the objective's fields below.

    Defaults follow JEM / IGEBM: 20 SGLD steps, buffer of 10,000, 5 % re-initialisation, L2 score regulariser 0.1,
    Adam(0, 0.999) at 1e-4, noise 0.005 (IGEBM). The gradient step ``sgld_step_size / 2 = 5`` is IGEBM-like; JEM's
    step (``y += 1 · grad_y f`` on inputs in [-1, 1], i.e. ``sgld_step_size = 0.5`` on our [0, 1] inputs) left the
    chains of the MNIST ConvNet in ``benchmarks/sgld_vs_at.py`` looking like noise after 285 iterations, where 10
    gave digit-like replay-buffer samples.
    """

    lr: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.999)
    max_iters: int | None = 1000
    progress: bool = False
    sgld_steps: int = setting(20, at_least(0))
    sgld_step_size: float = setting(10.0, at_least(0))
    sgld_noise_std: float | None = setting(0.005, at_least(0))
    buffer_size: int = setting(10000, at_least(1))
    reinit_prob: float = setting(0.05, in_range(0, 1))
    l2_reg: float = setting(0.1, at_least(0))
    SHARED_WITH_OBJECTIVE = ("seed",)

    def check(self) -> Iterator[str]:
        yield from super().check()
        if self.buffer_size < self.batch_size:
            yield f"buffer_size ({self.buffer_size}) must be >= batch_size ({self.batch_size})"


class ReplayBuffer:
    """Past SGLD samples. ``draw`` returns chain starts: buffer entries, each replaced by a fresh p_0 sample with
    probability ``reinit_prob``; ``store`` writes the chains' end points back at the same slots."""

    def __init__(self, p0: Any, size: int, reinit_prob: float, generator: torch.Generator) -> None:
        if len(p0) < 1:
            raise ValueError("p0 is empty")
        self.p0, self.reinit_prob, self.generator = p0, reinit_prob, generator
        self.samples = self.fresh(size)

    def state_dict(self) -> dict[str, Any]:
        return {"samples": self.samples, "generator": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if tuple(state["samples"].shape) != tuple(self.samples.shape):
            raise ValueError(f"replay buffer of shape {tuple(state['samples'].shape)} does not match "
                             f"{tuple(self.samples.shape)}")
        self.samples = state["samples"].clone()
        self.generator.set_state(state["generator"])

    def fresh(self, n: int) -> Tensor:
        """``n`` fresh samples of p_0 (drawn with replacement)."""
        idx = torch.randint(len(self.p0), (n,), generator=self.generator)
        return fetch_batch(self.p0, idx).to(torch.float32).cpu()

    def __len__(self) -> int:
        return self.samples.shape[0]

    def draw(self, n: int) -> tuple[Tensor, Tensor, Tensor]:
        """``(starts, slots, fresh_mask)``: ``n`` chain starts, their buffer slots, and which ones are fresh p_0."""
        slots = torch.randint(len(self), (n,), generator=self.generator)
        starts = self.samples[slots].clone()
        fresh = torch.rand(n, generator=self.generator) < self.reinit_prob
        if fresh.any():
            starts[fresh] = self.fresh(int(fresh.sum()))
        return starts, slots, fresh

    def store(self, slots: Tensor, samples: Tensor) -> None:
        self.samples[slots] = samples.detach().to(self.samples.dtype).cpu()


class MaximumLikelihood(Objective):
    """Maximum-likelihood EBM training as a :class:`atebm.training.Objective` (module doc, E Eq. 1-3).

    Negatives: short-run SGLD chains started from the replay buffer (a ``reinit_prob`` share from the iteration's
    fresh p_0 batch), written back to the buffer. Loss: ``-(mean f(x) - mean f(x_sgld)) + l2_reg ·
    (mean f(x)² + mean f(x_sgld)²)``."""

    kind = "maximum-likelihood"

    def __init__(self, p0: Any, *, sgld_steps: int = 20, sgld_step_size: float = 10.0,
                 sgld_noise_std: float | None = 0.005, buffer_size: int = 10000, reinit_prob: float = 0.05,
                 l2_reg: float = 0.1, seed: int = 0) -> None:
        self.sgld_steps, self.sgld_step_size, self.sgld_noise_std = sgld_steps, sgld_step_size, sgld_noise_std
        self.l2_reg, self.seed = l2_reg, seed
        self.generator = torch.Generator().manual_seed(seed + 1)
        self.buffer = ReplayBuffer(p0, buffer_size, reinit_prob, self.generator)

    @classmethod
    def restore(cls, options: dict[str, Any], p0: Any) -> MaximumLikelihood:
        return cls(p0, **options)

    def options(self) -> dict[str, Any]:
        return {"sgld_steps": self.sgld_steps, "sgld_step_size": self.sgld_step_size,
                "sgld_noise_std": self.sgld_noise_std, "buffer_size": len(self.buffer),
                "reinit_prob": self.buffer.reinit_prob, "l2_reg": self.l2_reg, "seed": self.seed}

    def state_dict(self) -> dict[str, Any]:
        return {"buffer": self.buffer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "buffer" in state:
            self.buffer.load_state_dict(state["buffer"])

    def run_chains(self, model: Any, starts: Tensor, clamp: tuple[float, float] | None,
                   steps: int | None = None) -> Tensor:
        """SGLD (E Eq. 3) from ``starts`` with the configured step size and noise, box-clamped."""
        return sgld(model, starts, steps=self.sgld_steps if steps is None else steps, step_size=self.sgld_step_size,
                    noise_std=self.sgld_noise_std, clamp=clamp, generator=self.generator)

    def negatives(self, trainer: Trainer, x0: Tensor) -> Tensor:
        n = x0.shape[0]
        slots = torch.randint(len(self.buffer), (n,), generator=self.generator)
        starts = self.buffer.samples[slots].clone().to(x0.device)
        fresh = (torch.rand(n, generator=self.generator) < self.buffer.reinit_prob).to(x0.device)
        starts = torch.where(fresh.view(-1, *([1] * (x0.dim() - 1))), x0, starts)
        self._fresh_fraction = float(fresh.float().mean())
        x_neg = self.run_chains(trainer.model, starts, trainer._clamp())
        self.buffer.store(slots, x_neg)
        return x_neg

    def loss(self, trainer: Trainer, s_data: Tensor, s_neg: Tensor) -> tuple[Tensor, dict[str, float]]:
        gap = s_data.mean() - s_neg.mean()
        reg = s_data.pow(2).mean() + s_neg.pow(2).mean()
        return -gap + self.l2_reg * reg, {"gap": float(gap.detach()), "reg": float(reg.detach()),
                                          "fresh_fraction": getattr(self, "_fresh_fraction", 0.0),
                                          "sgld_steps": float(self.sgld_steps)}


class EBMTrainer(ModeTrainer):
    """:class:`atebm.Trainer` with the :class:`MaximumLikelihood` objective, configured by one
    :class:`EBMConfig`: ``EBMTrainer(config, data, p0, out_dir=None, callbacks=(), extra={"clamp": (lo, hi) or
    None})``. ``fit()``, ``save()``, :meth:`resume` and the run folder (``model.pt``, ``checkpoint.pt`` with the
    replay buffer) are the trainer's; ``sample(n)`` runs fresh short-run chains from p_0."""

    config_type, config_key, kind, objective_type = EBMConfig, "ebm", "sgld-ebm", MaximumLikelihood

    def __init__(self, config: EBMConfig, data: Any, p0: Any, *, out_dir: str | os.PathLike | None = None,
                 callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
                 extra: dict[str, Any] | None = None, objective: MaximumLikelihood | None = None) -> None:
        if len(data) < 1:
            raise ValueError("the data source is empty")
        self.ebm_config = config
        super().__init__(config, data, p0, out_dir=out_dir, callbacks=callbacks, extra=extra,
                         objective=objective or MaximumLikelihood(p0, **config.objective_options()))

    @property
    def buffer(self) -> ReplayBuffer:
        return self.likelihood.buffer

    @property
    def likelihood(self) -> MaximumLikelihood:
        assert isinstance(self.objective, MaximumLikelihood)
        return self.objective

    def run_chains(self, starts: Tensor, steps: int | None = None) -> Tensor:
        """SGLD (E Eq. 3) from ``starts`` with the configured step size and noise, box-clamped."""
        return self.likelihood.run_chains(self.model, starts.to(self.device), self._clamp(), steps)

    def sample(self, n: int, steps: int | None = None, *, from_buffer: bool = False) -> Tensor:
        """``n`` samples: short-run SGLD chains from fresh p_0 noise (default) or from the replay buffer."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if from_buffer:
            starts = self.buffer.samples[torch.randint(len(self.buffer), (n,), generator=self.likelihood.generator)]
        else:
            starts = self.buffer.fresh(n)
        return self.run_chains(starts, steps)
