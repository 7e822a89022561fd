"""A hand-built linear model shared by the attack tests: its worst cases are known in closed form."""
from __future__ import annotations

import torch
from torch import nn


class Linear(nn.Module):
    """z(x) = W x + b on flattened inputs: a K-logit classifier, or with one row a detector (one score)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.flatten(1) @ self.weight.t() + self.bias
        return z[:, 0] if z.shape[1] == 1 else z
