"""Baselines against binary AT.

* :mod:`~atebm.baselines.ebm` – the maximum-likelihood EBM (E Eq. 2-3) with short-run SGLD and a replay buffer
  (JEM / IGEBM practice): :class:`EBMTrainer`, :class:`EBMConfig`, :class:`ReplayBuffer`.
* :mod:`~atebm.baselines.stability` – the E Sec. 5.3 ablation: the EBM loss with PGD samples vs the BCE loss,
  tracking the logit gap.
"""
from .ebm import EBMConfig, EBMTrainer, MaximumLikelihood, ReplayBuffer
from .stability import compare_losses, growth_summary, logit_gap_trace

__all__ = ["EBMConfig", "EBMTrainer", "MaximumLikelihood", "ReplayBuffer", "compare_losses", "growth_summary",
           "logit_gap_trace"]
