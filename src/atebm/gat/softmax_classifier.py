"""The softmax classifier f of integrated detection (T Fig. 3.1, Sec. 3.2.1): the T Tab. 3.1 network with K
outputs, trained with cross-entropy on the clean training split, best validation accuracy kept.

Trained by the library's classifier loop (:func:`atebm.training.train_classifier`): :class:`atebm.Trainer` is the
binary (one score per sample) adversarial trainer, and this classifier is neither binary nor adversarially trained.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..training import (
                        CheckpointError,
                        SelectBest,
                        accuracy,
                        batched_logits,
                        load_checkpoint,
                        resolve_device,
                        save_checkpoint,
                        train_classifier,
)
from .data import LabelledSplits
from .networks import ConvPoolNet
from .presets import detector_model_spec

__all__ = ["SoftmaxClassifier", "train_softmax_classifier", "save_classifier", "load_classifier",
           "CLASSIFIER_ARCH", "batched_logits"]

CLASSIFIER_ARCH = "gat-classifier"


class SoftmaxClassifier(nn.Module):
    """``forward(x) -> (N, K)`` logits z_f(x) of [0, 1] images; ``spec`` is a model spec of
    :func:`~atebm.gat.detector_model_spec` form with ``out_dim = K`` (normalisation inside the model)."""

    mean: Tensor
    std: Tensor

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        self.spec = dict(spec)
        self.backbone = ConvPoolNet(**spec["kwargs"])
        self.register_buffer("mean", torch.tensor(float(spec.get("mean") or 0.0)))
        self.register_buffer("std", torch.tensor(float(spec.get("std") or 1.0)))
        self.meta: dict[str, Any] = {}

    def forward(self, x: Tensor) -> Tensor:
        return self.backbone((x - self.mean) / self.std)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        return self(x).argmax(dim=1)


def train_softmax_classifier(splits: LabelledSplits, *, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
                             seed: int = 0, spec: dict[str, Any] | None = None, device: str = "auto"
                             ) -> SoftmaxClassifier:
    """Trains f with Adam and cross-entropy on ``splits.train``; keeps the epoch with the best ``splits.val``
    accuracy (ties go to the earlier epoch; :class:`~atebm.training.SelectBest` at the end of every epoch).
    ``meta`` records the recipe, the chosen epoch and the val/test accuracies."""
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0; got {epochs}, {batch_size}, {lr}")
    run_device = resolve_device(device)
    x, y = splits.train.x, splits.train.y
    val_y, test_y = splits.val.y, splits.test.y
    assert y is not None and val_y is not None and test_y is not None
    spec = spec or detector_model_spec(int(x.shape[-1]), int(x.shape[1]), out_dim=splits.num_classes)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SoftmaxClassifier(spec).to(run_device)
    per_epoch = math.ceil(len(x) / batch_size)
    select = SelectBest(lambda m: accuracy(m, splits.val.x, val_y), by="val_accuracy", goal="max", every=per_epoch,
                        ties="earlier")
    run = train_classifier(model, x, y, epochs=epochs, batch_size=batch_size, lr=lr, select=select, seed=seed)
    assert select.best is not None
    model.meta = {"recipe": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                             "optimizer": "adam", "loss": "cross-entropy", "augmentation": None},
                  "selected_epoch": select.best.step // per_epoch, "val_accuracy": select.best.values["val_accuracy"],
                  "test_accuracy": accuracy(model, splits.test.x, test_y),
                  "train_seconds": round(run.seconds, 1), "data": splits.source}
    return model


def save_classifier(path: str | os.PathLike, model: SoftmaxClassifier) -> Path:
    return save_checkpoint(path, {"model_spec": {"arch": CLASSIFIER_ARCH, "backbone": model.spec},
                                  "model": model.state_dict(), "config": {}, "trainer": None, "extra": model.meta})


def load_classifier(path: str | os.PathLike, device: str | torch.device = "cpu") -> SoftmaxClassifier:
    payload = load_checkpoint(path, map_location=device)
    spec = payload["model_spec"]
    if not isinstance(spec, dict) or spec.get("arch") != CLASSIFIER_ARCH:
        raise CheckpointError(f"{path} is not a GAT softmax classifier (model_spec arch {spec.get('arch')!r})")
    model = SoftmaxClassifier(spec["backbone"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the classifier spec: {err}") from err
    model.meta = dict(payload.get("extra") or {})
    return model.to(device).eval()
