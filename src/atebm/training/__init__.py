"""Binary adversarial training (E Alg. 1-2), its configuration and checkpoints."""
from .checkpoint import CheckpointError, load, load_checkpoint, save_checkpoint, write_json
from .config import TrainConfig
from .trainer import StopTraining, Trainer, augment, batch_auc, resolve_device

__all__ = ["TrainConfig", "Trainer", "StopTraining", "CheckpointError", "load", "load_checkpoint",
           "save_checkpoint", "write_json", "augment", "batch_auc", "resolve_device"]
