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

:class:`EBMTrainer` has the constructor of :class:`atebm.Trainer` (config dataclass, ``data``, ``p0``, ``out_dir``,
``callbacks``, ``extra={"clamp": ..., "meta": ...}``), works on 2D points and on images, logs the same history
fields where they apply (``score_data``, ``score_adv`` = the SGLD samples' score, ``loss``, ``elapsed_s``, ...) and
writes checkpoints that :func:`atebm.load` reads. The checkpoint holds the weights, the config and the history, not
the replay buffer, so it is not resumable.
"""
from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch import Tensor

from ..models import ScoreModel, build_score_model
from ..sampling import sgld
from ..training import StopTraining, batch_auc, resolve_device, save_checkpoint, write_json
from ..training.config import check_known_keys
from ..training.trainer import append_jsonl, fetch_batch

__all__ = ["EBMConfig", "EBMTrainer", "ReplayBuffer"]


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
        if self.batch_size < 2:
            problems.append(f"batch_size must be >= 2, got {self.batch_size}")
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("adam", "sgd"):
            problems.append(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if self.max_iters is None and self.time_budget_s is None:
            problems.append("set a budget: max_iters or time_budget_s")
        if self.max_iters is not None and self.max_iters < 1:
            problems.append(f"max_iters must be >= 1, got {self.max_iters}")
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
        if self.grad_clip is not None and self.grad_clip <= 0:
            problems.append(f"grad_clip must be > 0, got {self.grad_clip}")
        if self.log_every < 1 or self.ckpt_every < 1:
            problems.append("log_every and ckpt_every must be >= 1")
        if problems:
            raise ValueError("invalid EBM config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "EBMConfig":
        check_known_keys(cls, values, "EBM")
        return cls(**values)


class ReplayBuffer:
    """Past SGLD samples. ``draw`` returns chain starts: buffer entries, each replaced by a fresh p_0 sample with
    probability ``reinit_prob``; ``store`` writes the chains' end points back at the same slots."""

    def __init__(self, p0: Any, size: int, reinit_prob: float, generator: torch.Generator) -> None:
        if len(p0) < 1:
            raise ValueError("p0 is empty")
        self.p0, self.reinit_prob, self.generator = p0, reinit_prob, generator
        self.samples = self.fresh(size)

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


class EBMTrainer:
    """Maximum-likelihood EBM trainer (module doc). Same constructor shape as :class:`atebm.Trainer`:
    ``EBMTrainer(config, data, p0, out_dir=None, callbacks=(), extra={"clamp": (lo, hi) or None})``; ``p0`` is the
    noise the chains are (re)initialised from. ``fit()`` returns the history; ``save(path)`` writes a checkpoint for
    :func:`atebm.load`; ``sample(n)`` runs fresh short-run chains from p_0."""

    def __init__(self, config: EBMConfig, data: Any, p0: Any, *, out_dir: str | os.PathLike | None = None,
                 callbacks: Sequence[Callable[["EBMTrainer", dict[str, Any]], None]] = (),
                 extra: dict[str, Any] | None = None) -> None:
        if len(data) < 1:
            raise ValueError("the data source is empty")
        self.config = config
        self.data, self.p0 = data, p0
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.callbacks = list(callbacks)
        self.extra = dict(extra or {})
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self.model: ScoreModel = build_score_model(config.model).to(self.device)
        if config.optimizer == "adam":
            self.optimizer: torch.optim.Optimizer = torch.optim.Adam(
                self.model.parameters(), lr=config.lr, betas=config.betas, weight_decay=config.weight_decay)
        else:
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=config.lr, momentum=config.momentum,
                                             weight_decay=config.weight_decay)
        self.generator = torch.Generator().manual_seed(config.seed + 1)
        self.buffer = ReplayBuffer(p0, config.buffer_size, config.reinit_prob, self.generator)
        self.step = 0
        self.elapsed_s = 0.0
        self.history: list[dict[str, Any]] = []
        self.stop_reason: str | None = None

    def _clamp(self) -> tuple[float, float] | None:
        return self.extra.get("clamp", (0.0, 1.0))

    def run_chains(self, starts: Tensor, steps: int | None = None) -> Tensor:
        """SGLD (E Eq. 3) from ``starts`` with the configured step size and noise, box-clamped."""
        c = self.config
        return sgld(self.model, starts.to(self.device), steps=c.sgld_steps if steps is None else steps,
                    step_size=c.sgld_step_size, noise_std=c.sgld_noise_std, clamp=self._clamp(),
                    generator=self.generator)

    def train_step(self) -> dict[str, float]:
        c = self.config
        idx = torch.randint(len(self.data), (c.batch_size,), generator=self.generator)
        x = fetch_batch(self.data, idx).to(self.device, torch.float32)
        starts, slots, fresh = self.buffer.draw(c.batch_size)
        x_neg = self.run_chains(starts)
        self.buffer.store(slots, x_neg)

        self.model.train()
        scores = self.model(torch.cat([x, x_neg]))
        s_pos, s_neg = scores[:c.batch_size], scores[c.batch_size:]
        gap = s_pos.mean() - s_neg.mean()
        reg = s_pos.pow(2).mean() + s_neg.pow(2).mean()
        loss = -gap + c.l2_reg * reg
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if c.grad_clip is not None:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), c.grad_clip)
        self.optimizer.step()
        return {"loss": float(loss.detach()), "reg": float(reg.detach()), "gap": float(gap.detach()),
                "score_data": float(s_pos.detach().mean()), "score_adv": float(s_neg.detach().mean()),
                "auc_adv": batch_auc(s_pos, s_neg), "fresh_fraction": float(fresh.float().mean())}

    def _finished(self) -> str | None:
        c = self.config
        if c.max_iters is not None and self.step >= c.max_iters:
            return "max_iters reached"
        if c.time_budget_s is not None and self.elapsed_s >= c.time_budget_s:
            return "time budget reached"
        return None

    def fit(self) -> list[dict[str, Any]]:
        """Trains until ``max_iters`` / ``time_budget_s`` (or a callback raises :class:`atebm.training.StopTraining`);
        returns the history (one record per ``log_every`` iterations, values averaged over the window)."""
        c = self.config
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.out_dir / "config.json", {"ebm": c.to_dict(), **self.extra.get("meta", {})})
        acc: dict[str, list[float]] = {}
        window_start, window_iters = time.perf_counter(), 0
        try:
            while (reason := self._finished()) is None:
                t0 = time.perf_counter()
                stats = self.train_step()
                self.step += 1
                window_iters += 1
                self.elapsed_s += time.perf_counter() - t0
                for key, value in stats.items():
                    acc.setdefault(key, []).append(value)
                if not np.isfinite(stats["loss"]):
                    raise StopTraining(f"non-finite loss at step {self.step}")
                if self.step % c.log_every == 0:
                    now = time.perf_counter()
                    record = {"step": self.step, **{k: float(np.mean(v)) for k, v in acc.items()},
                              "sgld_steps": c.sgld_steps, "iters_per_s": window_iters / (now - window_start),
                              "elapsed_s": self.elapsed_s}
                    acc, window_start, window_iters = {}, now, 0
                    self.history.append(record)
                    if self.out_dir is not None:
                        append_jsonl(self.out_dir / "log.jsonl", record)
                    for callback in self.callbacks:
                        callback(self, record)
                if self.step % c.ckpt_every == 0:
                    self.save()
            self.stop_reason = reason
        except StopTraining as stop:
            self.stop_reason = f"stopped: {stop}"
        self.save()
        return self.history

    def save(self, path: str | os.PathLike | None = None) -> Path | None:
        """Weights + config + history (``atebm.load`` reads it). Default: ``out_dir/checkpoint.pt``."""
        if path is None:
            if self.out_dir is None:
                return None
            path = self.out_dir / "checkpoint.pt"
        return save_checkpoint(path, {
            "model_spec": self.model.spec, "model": self.model.state_dict(), "config": {"ebm": self.config.to_dict()},
            "trainer": None, "history": self.history,
            "extra": {"kind": "sgld-ebm", "clamp": self._clamp()},
        })

    def sample(self, n: int, steps: int | None = None, *, from_buffer: bool = False) -> Tensor:
        """``n`` samples: short-run SGLD chains from fresh p_0 noise (default) or from the replay buffer."""
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        if from_buffer:
            starts = self.buffer.samples[torch.randint(len(self.buffer), (n,), generator=self.generator)]
        else:
            starts = self.buffer.fresh(n)
        return self.run_chains(starts, steps)
