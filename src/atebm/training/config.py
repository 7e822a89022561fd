"""Training configuration: one flat dataclass, JSON/YAML friendly, validated on construction."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from ..sampling import PRECISIONS

__all__ = ["TrainConfig", "check_known_keys"]


def check_known_keys(cls: type, values: dict[str, Any], what: str) -> None:
    """Rejects keys that are not fields of the dataclass ``cls``, naming the valid ones (typos fail loudly)."""
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"unknown {what} config keys {unknown}; valid keys: {sorted(known)}")


@dataclass
class TrainConfig:
    """Every knob of binary adversarial training (E Alg. 1-2, Sec. 4.4; METHOD Sec. 2).

    Progressive K: training starts at ``k_start`` PGD steps and moves to K+1 when the mean AUC(p_data vs
    perturbed p_0) over the last ``auc_window`` batches exceeds ``auc_threshold`` or after ``epochs_per_k``
    epochs of p_data, whichever comes first. The last stage (K = ``k_max``) ends after ``final_iters``
    iterations or ``final_epochs`` epochs; ``max_iters`` and ``time_budget_s`` cap the whole run.
    """

    model: dict[str, Any] = field(default_factory=lambda: {
        "arch": "convnet", "kwargs": {"in_channels": 1, "width": 32}, "mean": 0.5, "std": 0.5})
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    betas: tuple[float, float] = (0.0, 0.99)
    momentum: float = 0.9
    weight_decay: float = 0.0
    # progressive K (E Alg. 2)
    k_start: int = 0
    k_max: int = 16
    epochs_per_k: float = 5.0
    auc_window: int = 100
    auc_threshold: float = 0.8
    final_iters: int | None = None
    final_epochs: float | None = None
    max_iters: int | None = None
    time_budget_s: float | None = None
    # the PGD attack on p_0 (E Eq. 8)
    step_size: float = 1.0
    pgd_norm: str = "l2"
    pgd_eps: float = math.inf
    pgd_random_start: bool = False  # start the attack uniformly inside the pgd_eps-ball (T Eq. 3.23)
    # objective and regularisation (E Sec. 4.4, 5.3)
    loss: str = "bce"
    r1: float = 0.0
    indist_at_steps: int = 0
    indist_at_eps: float = 0.25
    indist_at_step_size: float = 0.1
    augment_crop_scale: tuple[float, float] | None = None
    augment_flip: bool = False
    freeze_bn: bool = False
    grad_clip: float | None = None
    # exponential moving average of the weights (Trainer.update_ema): None = off
    ema_decay: float | None = None
    # speed (atebm.models.performance): autocast precision "fp32" | "bf16" | "fp16" (fp16 with a gradient scaler;
    # fp32 where the device lacks it, with a log line), NHWC memory layout, torch.compile of the sampler's score,
    # worker processes reading the data sources (0 = in the training process)
    precision: str = "fp32"
    channels_last: bool = False
    compile: bool = False
    num_workers: int = 0
    # bookkeeping
    log_every: int = 50
    ckpt_every: int = 500
    seed: int = 0
    device: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        self.betas = tuple(float(b) for b in self.betas)  # type: ignore[assignment]
        if self.augment_crop_scale is not None:
            self.augment_crop_scale = tuple(float(s) for s in self.augment_crop_scale)  # type: ignore[assignment]
        self.pgd_eps = float(self.pgd_eps)
        self.validate()

    def validate(self) -> None:
        problems = []
        if self.batch_size < 2:
            problems.append(f"batch_size must be >= 2, got {self.batch_size}")
        if self.lr <= 0:
            problems.append(f"lr must be > 0, got {self.lr}")
        if self.optimizer not in ("adam", "sgd"):
            problems.append(f"optimizer must be 'adam' or 'sgd', got {self.optimizer!r}")
        if not 0 <= self.k_start <= self.k_max:
            problems.append(f"need 0 <= k_start <= k_max, got k_start={self.k_start}, k_max={self.k_max}")
        if self.epochs_per_k <= 0:
            problems.append(f"epochs_per_k must be > 0, got {self.epochs_per_k}")
        if self.auc_window < 1 or not 0 < self.auc_threshold <= 1:
            problems.append("auc_window must be >= 1 and auc_threshold in (0, 1]")
        if self.final_iters is None and self.final_epochs is None and self.max_iters is None \
                and self.time_budget_s is None:
            problems.append("the last stage needs a budget: set final_iters, final_epochs, max_iters or time_budget_s")
        if self.step_size < 0:
            problems.append(f"step_size must be >= 0, got {self.step_size}")
        if self.pgd_norm not in ("l2", "linf"):
            problems.append(f"pgd_norm must be 'l2' or 'linf', got {self.pgd_norm!r}")
        if self.pgd_random_start and not math.isfinite(self.pgd_eps):
            problems.append("pgd_random_start needs a finite pgd_eps (it starts uniformly inside the ball)")
        if self.loss not in ("bce", "ebm"):
            problems.append(f"loss must be 'bce' (binary AT) or 'ebm' (the E Sec. 5.3 ablation), got {self.loss!r}")
        if self.r1 < 0:
            problems.append(f"r1 must be >= 0, got {self.r1}")
        if self.grad_clip is not None and self.grad_clip <= 0:
            problems.append(f"grad_clip must be > 0, got {self.grad_clip}")
        decay = self.ema_decay
        if decay is not None and (isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0 < decay < 1):
            problems.append(f"ema_decay must be in (0, 1) or None (no average), got {self.ema_decay}")
        if self.augment_crop_scale is not None:
            lo, hi = self.augment_crop_scale
            if not 0 < lo <= hi <= 1:
                problems.append(f"augment_crop_scale must satisfy 0 < lo <= hi <= 1, got {self.augment_crop_scale}")
        if self.precision not in PRECISIONS:
            problems.append(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if isinstance(self.num_workers, bool) or not isinstance(self.num_workers, int) or self.num_workers < 0:
            problems.append(f"num_workers must be an integer >= 0, got {self.num_workers!r}")
        if self.log_every < 1 or self.ckpt_every < 1:
            problems.append("log_every and ckpt_every must be >= 1")
        if self.device not in ("auto", "cpu", "cuda") and not self.device.startswith("cuda:"):
            problems.append(f"device must be auto, cpu, cuda or cuda:N, got {self.device!r}")
        if problems:
            raise ValueError("invalid training config: " + "; ".join(problems))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        check_known_keys(cls, values, "training")
        values = dict(values)
        for key in ("pgd_eps",):
            if isinstance(values.get(key), str):
                values[key] = float(values[key])
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)
