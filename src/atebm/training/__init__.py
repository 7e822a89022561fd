"""Binary adversarial training (E Alg. 1-2), its configuration and checkpoints; model selection on a validation
metric (:class:`SelectBest`) and the classifier loop (:func:`train_classifier`)."""
from .checkpoint import (
                         CHECKPOINT_FILE,
                         MODEL_FILE,
                         CheckpointError,
                         load,
                         load_checkpoint,
                         load_model,
                         resolve_model_path,
                         save_checkpoint,
                         write_json,
)
from .classifier import ClassifierRun, accuracy, batched_logits, train_classifier
from .config import TrainConfig
from .selection import Candidate, SelectBest
from .trainer import (
                         RESUME_OVERRIDABLE,
                         BinaryAT,
                         Objective,
                         StopTraining,
                         Trainer,
                         augment,
                         batch_auc,
                         check_resume_overrides,
                         resolve_device,
)

__all__ = ["TrainConfig", "Trainer", "StopTraining", "CheckpointError", "load", "load_model", "load_checkpoint",
           "resolve_model_path", "MODEL_FILE", "CHECKPOINT_FILE",
           "save_checkpoint", "write_json", "augment", "batch_auc", "resolve_device", "Objective", "BinaryAT",
           "check_resume_overrides", "RESUME_OVERRIDABLE", "SelectBest", "Candidate", "train_classifier",
           "ClassifierRun", "accuracy", "batched_logits"]
