"""The detector network of T Tab. 3.1 (the MNIST network of Madry et al. 2018, T ref. [112]): it lives beside the
other score networks as :class:`atebm.models.ConvPoolNet` (architecture name ``"convpool"``)."""
from __future__ import annotations

from ..models import ConvPoolNet

__all__ = ["ConvPoolNet", "ARCH_NAME"]

#: The name under which :func:`atebm.build_score_model` (and so the trainer and checkpoints) builds it.
ARCH_NAME = "convpool"
