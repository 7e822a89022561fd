"""Trainers of the modes other than binary AT (DSGAN, the maximum-likelihood EBM): an :class:`atebm.Trainer` built
from one mode config (a :class:`~atebm.training.config.TrainerOptions` subclass) that every checkpoint keeps in
its ``extra``, so that :meth:`ModeTrainer.resume` rebuilds the same config and objective."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, Self

from .checkpoint import load_checkpoint
from .config import TrainerOptions
from .trainer import Objective, Trainer, check_resume_overrides

__all__ = ["ModeTrainer"]


class ModeTrainer(Trainer):
    """Base of a mode's trainer. A subclass names its config class (``config_type``), the ``extra`` key that holds
    the config (``config_key``), the run's ``kind`` and its objective class (``objective_type``), and passes the
    objective it builds from the config to ``ModeTrainer.__init__``."""

    config_type: ClassVar[type[TrainerOptions]]
    config_key: ClassVar[str]
    kind: ClassVar[str]
    objective_type: ClassVar[type[Objective]]

    def __init__(self, config: TrainerOptions, data: Any, p0: Any, *, objective: Objective,
                 out_dir: str | os.PathLike | None = None,
                 callbacks: Sequence[Callable[[Trainer, dict[str, Any]], None]] = (),
                 extra: dict[str, Any] | None = None) -> None:
        if not isinstance(config, self.config_type):
            raise TypeError(f"{type(self).__name__} needs a {self.config_type.__name__}, got {type(config).__name__}")
        extra = {"kind": self.kind, **(extra or {}), self.config_key: config.to_dict()}
        super().__init__(config.train_config(), data, p0, out_dir=out_dir, callbacks=callbacks, extra=extra,
                         objective=objective)

    @classmethod
    def resume(cls, path: str | os.PathLike, data: Any, p0: Any, *, out_dir: str | os.PathLike | None = None,
               callbacks: Sequence[Callable] = (), overrides: dict[str, Any] | None = None,
               extra: dict[str, Any] | None = None) -> Self:
        """Continues a run of this mode exactly (the objective's own state included); ``overrides`` as
        :meth:`atebm.Trainer.resume` (budgets and logging only)."""
        payload = load_checkpoint(path)
        saved_extra = dict(payload.get("extra") or {})
        if payload.get("trainer") is None or cls.config_key not in saved_extra:
            raise ValueError(f"{path} is not a resumable {cls.__name__} checkpoint")
        saved = saved_extra.pop(cls.config_key)
        build = cls.config_type.from_dict
        config = build({**saved, **check_resume_overrides(saved, overrides, build)})
        objective = Objective.from_dict(payload.get("objective"), p0)
        if not isinstance(objective, cls.objective_type):
            raise ValueError(f"{path} was trained with objective {objective.kind!r}, not {cls.objective_type.kind!r}")
        trainer = cls(config, data, p0, objective=objective, callbacks=callbacks,
                      out_dir=out_dir if out_dir is not None else os.path.dirname(path),
                      extra={**saved_extra, **(extra or {})})
        trainer.restore(payload)
        return trainer
