"""Training configuration: :class:`TrainerOptions`, the options of :class:`atebm.Trainer` that every training mode
shares, and :class:`TrainConfig`, those plus binary adversarial training's own fields (:mod:`atebm.config`)."""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config import Config, above, at_least, each, in_range, one_of, satisfies, setting
from ..sampling import PRECISIONS

__all__ = ["TrainConfig", "TrainerOptions"]


def _is_device(name: str) -> bool:
    return name in ("auto", "cpu", "cuda") or name.startswith("cuda:")


@dataclass(frozen=True)
class TrainerOptions(Config):
    """The options of :class:`atebm.Trainer` that every mode training through it shares: the score network, the
    optimiser, the budgets, augmentation, the weight average, speed and bookkeeping. :class:`TrainConfig` adds
    binary AT's own fields; the configs of other modes (``DSGANConfig``, ``SSLConfig``, ``EBMConfig``) subclass
    this class, change defaults and add their objective's fields, and hand the trainer :meth:`train_config`.

    Budgets: the run (with progressive K, its last stage) ends after ``final_iters`` iterations or
    ``final_epochs`` epochs of the data; ``max_iters`` and ``time_budget_s`` cap the whole run; one is needed.
    ``ema_decay``: an exponential moving average of the weights (:meth:`atebm.Trainer.update_ema`), None = off.
    Speed (:mod:`atebm.models.performance`): autocast ``precision`` (fp16 with a gradient scaler; fp32 where the
    device lacks it, with a log line), NHWC memory layout, ``torch.compile`` of the sampler's score, and worker
    processes reading the data sources (0 = in the training process).
    """

    model: dict[str, Any] = setting(factory=lambda: {
        "arch": "convnet", "kwargs": {"in_channels": 1, "width": 32}, "mean": 0.5, "std": 0.5})
    batch_size: int = setting(64, at_least(2))
    lr: float = setting(1e-3, above(0))
    optimizer: str = setting("adam", one_of("adam", "sgd"))
    betas: tuple[float, float] = setting((0.0, 0.99), each(in_range(0, 1, hi_open=True)))
    momentum: float = setting(0.9, at_least(0))
    weight_decay: float = setting(0.0, at_least(0))
    final_iters: int | None = setting(None, at_least(1))
    final_epochs: float | None = setting(None, above(0))
    max_iters: int | None = setting(None, at_least(0))
    time_budget_s: float | None = setting(None, above(0))
    augment_crop_scale: tuple[float, float] | None = setting(None, satisfies(
        lambda scale: 0 < scale[0] <= scale[1] <= 1, "a pair (lo, hi) with 0 < lo <= hi <= 1"))
    augment_flip: bool = False
    freeze_bn: bool = False
    grad_clip: float | None = setting(None, above(0))
    ema_decay: float | None = setting(None, in_range(0, 1, lo_open=True, hi_open=True, why="None: no average"))
    precision: str = setting("fp32", one_of(*PRECISIONS))
    channels_last: bool = False
    compile: bool = False
    num_workers: int = setting(0, at_least(0))
    log_every: int = setting(50, at_least(1))
    ckpt_every: int = setting(500, at_least(1))
    seed: int = 0
    device: str = setting("auto", satisfies(_is_device, "auto, cpu, cuda or cuda:N"))
    progress: bool = True

    #: Trainer options that a subclass's objective reads as well (e.g. the generator's Adam betas).
    SHARED_WITH_OBJECTIVE: ClassVar[tuple[str, ...]] = ()

    def check(self) -> Iterator[str]:
        if self.final_iters is None and self.final_epochs is None and self.max_iters is None \
                and self.time_budget_s is None:
            yield "training needs a budget: set final_iters, final_epochs, max_iters or time_budget_s"

    def train_config(self) -> TrainConfig:
        """The trainer's config of a mode other than binary AT: these options, K = 0 (no PGD on p_0), no R1."""
        options = {f.name: getattr(self, f.name) for f in dataclasses.fields(TrainerOptions)}
        return TrainConfig(**options, k_start=0, k_max=0, r1=0.0)

    def objective_options(self) -> dict[str, Any]:
        """The keyword arguments of a subclass's objective: the fields it adds to the trainer's options and those
        of :attr:`SHARED_WITH_OBJECTIVE`."""
        trainer_fields = {f.name for f in dataclasses.fields(TrainerOptions)}
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name not in trainer_fields or f.name in self.SHARED_WITH_OBJECTIVE}


@dataclass(frozen=True)
class TrainConfig(TrainerOptions):
    """Every knob of binary adversarial training (E Alg. 1-2, Sec. 4.4; METHOD Sec. 2): :class:`TrainerOptions`
    and the fields below.

    Progressive K: training starts at ``k_start`` PGD steps and moves to K+1 when the mean AUC(p_data vs
    perturbed p_0) over the last ``auc_window`` batches exceeds ``auc_threshold`` or after ``epochs_per_k``
    epochs of p_data, whichever comes first. The last stage (K = ``k_max``) ends after ``final_iters``
    iterations or ``final_epochs`` epochs; ``max_iters`` and ``time_budget_s`` cap the whole run.

    In-distribution AT (T Eq. 3.45, first term: ``max_{||δ|| <= eps_1} BCE(f(x + δ), 1)``): with ``indist_at_steps``
    > 0 every p_data batch is lowered by that many PGD descent steps inside the ``pgd_norm`` ball of radius eps_1.
    Its curriculum, like K's: eps_1 grows linearly from ``indist_at_eps_start`` (None: ``indist_at_eps``, no
    curriculum) at iteration 0 to ``indist_at_eps`` at iteration ``indist_at_warmup`` and stays there; the step
    size keeps the ratio ``indist_at_step_size / indist_at_eps``, so the attack reaches the edge of every ball on
    the way (:meth:`indist_radius`).
    """

    # progressive K (E Alg. 2)
    k_start: int = setting(0, at_least(0))
    k_max: int = setting(16, at_least(0))
    epochs_per_k: float = setting(5.0, above(0))
    auc_window: int = setting(100, at_least(1))
    auc_threshold: float = setting(0.8, in_range(0, 1, lo_open=True))
    # the PGD attack on p_0 (E Eq. 8)
    step_size: float = setting(1.0, at_least(0))
    pgd_norm: str = setting("l2", one_of("l2", "linf"))
    pgd_eps: float = setting(math.inf, at_least(0))
    pgd_random_start: bool = False  # start the attack uniformly inside the pgd_eps-ball (T Eq. 3.23)
    # objective and regularisation (E Sec. 4.4, 5.3)
    loss: str = setting("bce", one_of({"bce": "binary AT", "ebm": "the E Sec. 5.3 ablation"}))
    r1: float = setting(0.0, at_least(0))
    indist_at_steps: int = setting(0, at_least(0))
    indist_at_eps: float = setting(0.25, at_least(0))
    indist_at_step_size: float = setting(0.1, at_least(0))
    indist_at_eps_start: float | None = setting(None, at_least(0, why="None: indist_at_eps from the start"))
    indist_at_warmup: int = setting(0, at_least(0, why="iterations of the linear ramp; 0: none"))

    def check(self) -> Iterator[str]:
        yield from super().check()
        if self.k_start > self.k_max:
            yield f"need k_start <= k_max, got k_start={self.k_start}, k_max={self.k_max}"
        if self.pgd_random_start and not math.isfinite(self.pgd_eps):
            yield "pgd_random_start needs a finite pgd_eps (it starts uniformly inside the ball)"
        start = self.indist_at_eps_start
        if start is not None and start > self.indist_at_eps:
            yield (f"need indist_at_eps_start <= indist_at_eps (the curriculum widens the radius), got "
                   f"indist_at_eps_start={start:g}, indist_at_eps={self.indist_at_eps:g}")
        if start is not None and start != self.indist_at_eps and self.indist_at_warmup == 0:
            yield (f"indist_at_eps_start={start:g} differs from indist_at_eps={self.indist_at_eps:g} but "
                   "indist_at_warmup=0: set indist_at_warmup to the iterations of the ramp")

    def indist_radius(self, step: int) -> tuple[float, float]:
        """The in-distribution radius eps_1 and step size of the iteration that follows ``step`` completed
        iterations: ``eps_1(t) = a + (b - a) · min(1, t / indist_at_warmup)`` with a = ``indist_at_eps_start``,
        b = ``indist_at_eps`` (b from the first iteration without a warm-up); step size ``indist_at_step_size ·
        eps_1(t) / b``. A function of the step alone, so a resumed run continues the curriculum exactly."""
        final = self.indist_at_eps
        start = final if self.indist_at_eps_start is None else self.indist_at_eps_start
        if self.indist_at_warmup == 0 or step >= self.indist_at_warmup or start == final:
            return final, self.indist_at_step_size
        radius = start + (final - start) * step / self.indist_at_warmup
        return radius, self.indist_at_step_size * radius / final

    def train_config(self) -> TrainConfig:
        """This config itself: binary AT trains with every field."""
        return self
