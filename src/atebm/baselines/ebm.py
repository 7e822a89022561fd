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

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from ..sampling import sgld
from ..training import Objective, TrainConfig, Trainer, check_resume_overrides, load_checkpoint
from ..training.config import check_known_keys
from ..training.trainer import fetch_batch

__all__ = ["EBMConfig", "EBMTrainer", "MaximumLikelihood", "ReplayBuffer"]

#: EBMConfig fields that configure the objective (the rest configure the trainer).
_OBJECTIVE_FIELDS = ("sgld_steps", "sgld_step_size", "sgld_noise_std", "buffer_size", "reinit_prob", "l2_reg")


@dataclass
class EBMConfig:
    """Knobs of maximum-likelihood EBM training with short-run SGLD and a replay buffer.

    Defaults follow JEM / IGEBM: 20 SGLD steps, buffer of 10,000, 5 % re-initialisation, L2 score regulariser 0.1,
    Adam(0, 0.999) at 1e-4, noise 0.005 (IGEBM). The gradient step ``sgld_step_size / 2 = 5`` is IGEBM-like; JEM's
    step (``y += 1 · grad_y f`` on inputs in [-1, 1], i.e. ``sgld_step_size = 0.5`` on our [0, 1] inputs) left the
    chains of the MNIST ConvNet in ``benchmarks/sgld_vs_at.py`` looking like noise after 285 iterations, where 10
    gave digit-like replay-buffer samples.
    """

    model: dict[str, Any] = field(default_factory=lambda: {
        "arch": "convnet", "kwargs": {"in_channels": 1, "width": 32}, "mean": 0.5, "std": 0.5})
    batch_size: int = 64
    lr: float = 1e-4
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.0, 0.999)
    momentum: float = 0.9
    weight_decay: float = 0.0
    max_iters: int | None = 1000
    time_budget_s: float | None = None
    sgld_steps: int = 20
    sgld_step_size: float = 10.0
    sgld_noise_std: float | None = 0.005
    buffer_size: int = 10000
    reinit_prob: float = 0.05
    l2_reg: float = 0.1
    grad_clip: float | None = None
    log_every: int = 50
    ckpt_every: int = 500
    seed: int = 0
    device: str = "auto"
    progress: bool = False

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        problems = []
        if self.max_iters is None and self.time_budget_s is None:
            problems.append("set a budget: max_iters or time_budget_s")
        if self.sgld_steps < 0 or self.sgld_step_size < 0:
            problems.append("sgld_steps and sgld_step_size must be >= 0")
        if self.sgld_noise_std is not None and self.sgld_noise_std < 0:
            problems.append(f"sgld_noise_std must be >= 0, got {self.sgld_noise_std}")
        if self.buffer_size < self.batch_size:
            problems.append(f"buffer_size ({self.buffer_size}) must be >= batch_size ({self.batch_size})")
        if not 0 <= self.reinit_prob <= 1:
            problems.append(f"reinit_prob must lie in [0, 1], got {self.reinit_prob}")
        if self.l2_reg < 0:
            problems.append(f"l2_reg must be >= 0, got {self.l2_reg}")
        if problems:
            raise ValueError("invalid EBM config: " + "; ".join(problems))
        self.train_config()  # the trainer's fields are checked where they are defined

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> EBMConfig:
        check_known_keys(cls, values, "EBM")
        return cls(**values)

    def train_config(self) -> TrainConfig:
        """The trainer's part: K = 0 (no PGD), no R1, the budgets, optimiser and bookkeeping of this config."""
        shared = {k: v for k, v in self.to_dict().items() if k not in _OBJECTIVE_FIELDS}
        return TrainConfig(k_start=0, k_max=0, r1=0.0, **shared)

    def objective_options(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in _OBJECTIVE_FIELDS}


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


class EBMTrainer(Trainer):
    """:class:`atebm.Trainer` with the :class:`MaximumLikelihood` objective, configured by one
    :class:`EBMConfig`: ``EBMTrainer(config, data, p0, out_dir=None, callbacks=(), extra={"clamp": (lo, hi) or
    None})``. ``fit()``, ``save()``, :meth:`resume` and the run folder (``model.pt``, ``checkpoint.pt`` with the
    replay buffer) are the trainer's; ``sample(n)`` runs fresh short-run chains from p_0."""

    def __init__(self, config: EBMConfig, data: Any, p0: Any, *, out_dir: str | os.PathLike | None = None,
                 callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
                 extra: dict[str, Any] | None = None, objective: MaximumLikelihood | None = None) -> None:
        if len(data) < 1:
            raise ValueError("the data source is empty")
        self.ebm_config = config
        extra = {"kind": "sgld-ebm", **(extra or {}), "ebm": config.to_dict()}
        objective = objective or MaximumLikelihood(p0, seed=config.seed, **config.objective_options())
        super().__init__(config.train_config(), data, p0, out_dir=out_dir, callbacks=callbacks, extra=extra,
                         objective=objective)

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

    @classmethod
    def resume(cls, path: str | os.PathLike, data: Any, p0: Any, *, out_dir: str | os.PathLike | None = None,
               callbacks: Sequence[Callable] = (), overrides: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None) -> EBMTrainer:
        """Continues an EBM run exactly (replay buffer included); ``overrides`` as :meth:`atebm.Trainer.resume`."""
        payload = load_checkpoint(path)
        saved_extra = dict(payload.get("extra") or {})
        if payload.get("trainer") is None or "ebm" not in saved_extra:
            raise ValueError(f"{path} is not a resumable EBM checkpoint")
        saved = saved_extra.pop("ebm")
        config = EBMConfig.from_dict({**saved, **check_resume_overrides(saved, overrides, EBMConfig.from_dict)})
        objective = Objective.from_dict(payload.get("objective"), p0)
        assert isinstance(objective, MaximumLikelihood)
        trainer = cls(config, data, p0, out_dir=out_dir if out_dir is not None else os.path.dirname(path),
                      callbacks=callbacks, extra={**saved_extra, **(extra or {})}, objective=objective)
        trainer.restore(payload)
        return trainer
