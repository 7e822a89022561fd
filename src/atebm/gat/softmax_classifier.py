"""The softmax classifier f of integrated detection (T Fig. 3.1, Sec. 3.2.1): the T Tab. 3.1 network with K
outputs, trained with cross-entropy on the clean training split, best validation accuracy kept.

Its own short loop: :class:`atebm.Trainer` is the binary (one score per sample) adversarial trainer, and this
classifier is neither binary nor adversarially trained.
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from ..training import CheckpointError, load_checkpoint, resolve_device, save_checkpoint
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


@torch.no_grad()
def batched_logits(model: nn.Module, x: Tensor, batch_size: int = 500) -> Tensor:
    """``model(x)`` in eval mode and in batches, on the model's device; returns CPU logits."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = [model(x[i:i + batch_size].to(device)).float().cpu() for i in range(0, len(x), batch_size)]
    finally:
        model.train(was_training)
    return torch.cat(out) if out else torch.zeros(0)


def _accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    return float((batched_logits(model, x).argmax(1) == y).float().mean())


def train_softmax_classifier(splits: LabelledSplits, *, epochs: int = 10, batch_size: int = 64, lr: float = 1e-3,
                             seed: int = 0, spec: dict[str, Any] | None = None, device: str = "auto"
                             ) -> SoftmaxClassifier:
    """Trains f with Adam and cross-entropy on ``splits.train``; keeps the epoch with the best ``splits.val``
    accuracy. ``meta`` records the recipe, the chosen epoch and the val/test accuracies."""
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"need epochs >= 1, batch_size >= 1 and lr > 0; got {epochs}, {batch_size}, {lr}")
    run_device = resolve_device(device)
    x, y = splits.train.x, splits.train.y
    assert y is not None and splits.val.y is not None and splits.test.y is not None
    spec = spec or detector_model_spec(int(x.shape[-1]), int(x.shape[1]), out_dim=splits.num_classes)
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SoftmaxClassifier(spec).to(run_device)
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)
    best: tuple[float, int, dict[str, Tensor]] | None = None
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        for i in range(0, len(x), batch_size):
            index = order[i:i + batch_size]
            loss = F.cross_entropy(model(x[index].to(run_device)), y[index].to(run_device))
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
        val = _accuracy(model, splits.val.x, splits.val.y)
        if best is None or val > best[0]:
            best = (val, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()})
    assert best is not None
    model.load_state_dict(best[2])
    model.eval()
    model.meta = {"recipe": {"epochs": epochs, "batch_size": batch_size, "lr": lr, "seed": seed,
                             "optimizer": "adam", "loss": "cross-entropy", "augmentation": None},
                  "selected_epoch": best[1], "val_accuracy": best[0],
                  "test_accuracy": _accuracy(model, splits.test.x, splits.test.y),
                  "train_seconds": round(time.perf_counter() - start, 1), "data": splits.source}
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
