"""Score networks and the score-model wrapper. Build by name with :func:`build_score_model` (used by checkpoints)."""
from __future__ import annotations

from typing import Any

from torch import nn

from .networks import MLP2D, CifarResNet, ConvNet, ConvPoolNet, Discriminator, make_activation
from .score import ScoreModel, freeze_batchnorm
from .ssl import SSLClassifier

__all__ = [
    "ScoreModel", "freeze_batchnorm", "MLP2D", "ConvNet", "ConvPoolNet", "CifarResNet", "Discriminator",
    "SSLClassifier", "make_activation",
    "ARCHITECTURES", "build_score_model",
]

ARCHITECTURES: dict[str, type[nn.Module]] = {
    "mlp2d": MLP2D,
    "convnet": ConvNet,
    "convpool": ConvPoolNet,
    "cifar_resnet": CifarResNet,
    "discriminator": Discriminator,
    "ssl_mlp": SSLClassifier,
}


#: Architecture names used by checkpoints written before a rename; they still load.
_FORMER_NAMES = {"resnet32": "cifar_resnet"}


def build_score_model(spec: dict[str, Any]) -> ScoreModel:
    """Builds a :class:`ScoreModel` from a plain dict (JSON/YAML friendly)::

        {"arch": "convnet", "kwargs": {"in_channels": 1, "width": 32}, "mean": 0.5, "std": 0.5, "logit": None}
    """
    spec = dict(spec)
    arch = _FORMER_NAMES.get(str(spec.get("arch")), spec.get("arch"))
    if arch not in ARCHITECTURES:
        raise ValueError(f"unknown architecture {arch!r}; choose from {sorted(ARCHITECTURES)}")
    kwargs = dict(spec.get("kwargs") or {})
    try:
        backbone = ARCHITECTURES[arch](**kwargs)
    except TypeError as err:
        raise ValueError(f"bad arguments for architecture {arch!r}: {err}") from err
    return ScoreModel(backbone, mean=spec.get("mean"), std=spec.get("std"), logit=spec.get("logit"),
                      spec={"arch": arch, "kwargs": kwargs, "mean": spec.get("mean"), "std": spec.get("std"),
                            "logit": spec.get("logit")})
