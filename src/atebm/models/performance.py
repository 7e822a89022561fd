"""Speed switches for a score model: mixed precision, channels-last memory layout and ``torch.compile``.

None of them changes what is computed, only how: autocast runs convolutions and matrix products in bfloat16 or
float16 (scores move by the rounding of those dtypes; a float16 loss needs a gradient scaler), channels-last
stores 4-d tensors NHWC (faster convolutions on tensor cores and oneDNN), and ``torch.compile`` fuses the
forward and backward passes (it needs a C compiler; it cannot differentiate twice, so the R1 term runs eager).
:func:`resolve_precision` says which switches a device honours and logs the ones it ignores.
"""
from __future__ import annotations

import logging
from typing import Any

import torch
from torch import Tensor, nn

from ..sampling import PRECISIONS, ScoreFn, autocast

__all__ = ["resolve_precision", "to_memory_format", "use_channels_last", "AutocastScore", "compile_score"]

logger = logging.getLogger("atebm.performance")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """The precision a run uses on ``device``: ``precision`` where the device supports it, else ``"fp32"`` with a
    log line saying why. CUDA takes bf16 when the GPU has it (compute capability 8.0+) and always fp16; a CPU
    takes bf16 or fp16 only when oneDNN reports native support (e.g. AVX512-BF16 / AMX; emulated bf16 is slower
    than float32)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    if precision == "fp32":
        return precision
    device = torch.device(device)
    if device.type == "cuda":
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            logger.warning("precision bf16 ignored: this GPU has no bfloat16 support; training in fp32")
            return "fp32"
        return precision
    if device.type == "cpu":
        supported = {"bf16": torch.ops.mkldnn._is_mkldnn_bf16_supported,
                     "fp16": torch.ops.mkldnn._is_mkldnn_fp16_supported}[precision]()
        if not supported:
            logger.warning("precision %s ignored: this CPU has no native %s arithmetic; running in fp32",
                           precision, precision)
            return "fp32"
        return precision
    logger.warning("precision %s ignored on device %s; running in fp32", precision, device)
    return "fp32"


def to_memory_format(x: Tensor, channels_last: bool) -> Tensor:
    """``x`` stored channels-last (NHWC strides, same shape and values) when asked and 4-d; else ``x``."""
    if channels_last and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def use_channels_last(module: nn.Module) -> nn.Module:
    """Stores ``module``'s 4-d weights channels-last, in place (the parameters stay the same objects, so an
    optimiser built before or after sees them); returns ``module``."""
    return module.to(memory_format=torch.channels_last)  # type: ignore[call-overload]


class AutocastScore(nn.Module):
    """Runs ``module``'s forward under :func:`atebm.sampling.autocast` and returns float32 scores, so that the
    losses and the R1 penalty computed from them stay in float32. Holds no parameters of its own (``state_dict``
    keys are those of ``module`` prefixed by ``module.``; the trainer saves the inner model)."""

    def __init__(self, module: nn.Module, precision: str) -> None:
        super().__init__()
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        self.module = module
        self.precision = precision

    def forward(self, x: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        with autocast(self.precision, x.device):
            out = self.module(x, *args, **kwargs)
        return out.float()


def compile_score(model: nn.Module, enabled: bool = True) -> ScoreFn:
    """``torch.compile(model)`` when ``enabled`` (the compiled module shares the weights, and its ``train``/
    ``eval`` switch reaches ``model``); ``model`` itself otherwise. Raises a RuntimeError naming the reason when
    compiling is impossible here (no C compiler on the PATH)."""
    if not enabled:
        return model
    import shutil

    if not any(shutil.which(cc) for cc in ("cc", "gcc", "clang")):
        raise RuntimeError("compile=True needs a C compiler (cc, gcc or clang) on the PATH for torch.compile; "
                           "install one or set compile=False")
    return torch.compile(model)
