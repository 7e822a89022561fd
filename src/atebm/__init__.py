"""atebm: energy-based models learned by binary adversarial training.

Higher score = more in-distribution, inputs in [0, 1]; one PGD sampler (:func:`pgd`) does training,
generation, restoration, translation and attacks.
"""
from .models import ScoreModel, build_score_model
from .sampling import pgd, sgld
from .training import CheckpointError, TrainConfig, Trainer, load

__version__ = "0.1.0"
__all__ = ["pgd", "sgld", "ScoreModel", "build_score_model", "TrainConfig", "Trainer", "load", "CheckpointError",
           "__version__"]
