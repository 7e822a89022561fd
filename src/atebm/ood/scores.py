"""OOD scores of classifiers, as score models the OOD evaluation attacks like any other (higher = more
in-distribution)."""
from __future__ import annotations

from typing import Any

from torch import Tensor, nn
from torch.nn import functional as F

__all__ = ["MaxSoftmaxScore"]


class MaxSoftmaxScore(nn.Module):
    """Hendrycks & Gimpel (2017)'s OOD score of a classifier ``z(x) -> (N, K)`` logits, as its log:
    ``s(x) = max_k log softmax(z(x))_k``. Monotone in the maximum softmax probability, so every ranking metric equals
    the probability's; the log keeps a useful gradient for the attacks where the probability saturates at 1.
    ``meta`` is the classifier's (the input geometry the OOD pipeline reads)."""

    def __init__(self, classifier: nn.Module) -> None:
        super().__init__()
        self.classifier = classifier
        self.meta: dict[str, Any] = dict(getattr(classifier, "meta", None) or {})

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(self.classifier(x), dim=1).max(dim=1).values
