"""atebm: energy-based models learned by binary adversarial training.

Higher score = more in-distribution, inputs in [0, 1]; one PGD sampler (:func:`pgd`) does training,
generation, restoration, translation and attacks.

Citations in docstrings ("E Eq. 8", "T Sec. 3.2", "METHOD Sec. 3") are keyed in docs/references.md; METHOD is
docs/method.md, the method in this project's words.
"""
from .models import ScoreModel, build_score_model
from .sampling import pgd, pgd_trajectory, sgld
from .training import CheckpointError, TrainConfig, Trainer, load, load_model

__version__ = "0.1.0"
__all__ = ["pgd", "pgd_trajectory", "sgld", "ScoreModel", "build_score_model", "TrainConfig", "Trainer", "load_model",
           "load", "CheckpointError",
           "__version__"]
