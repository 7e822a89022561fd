"""The detector committee H = {d_k} (T Sec. 3.2.1, Eq. 3.22-3.23, 3.27, 3.31) as one ``nn.Module``.

``committee(x)`` maps [0, 1] images to the ``(N, K)`` matrix ``z_{d_k}(x) + c_k``: the logit of detector d_k
(trained on clean class-k data against perturbed data of the other classes) plus a per-class offset c_k. The
offsets are the calibration constants of the generative classifier (T Eq. 3.40-3.43); they are 0 until a
calibration step sets them. ``committee.detector(k)`` is d_k alone, a score model (one score per sample,
higher = more class-k-like).

On disk a committee is ``committee.pt`` in the run folder: the state dict of all detectors and offsets plus the
model spec of each detector, written and read with the project's checkpoint functions (``weights_only=True``).
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from ..models import ScoreModel, build_score_model
from ..training import CheckpointError, load_checkpoint, save_checkpoint
from . import networks  # noqa: F401  (registers the T Tab. 3.1 network for build_score_model)

__all__ = ["Committee", "save_committee", "load_committee", "COMMITTEE_FILE", "COMMITTEE_ARCH"]

COMMITTEE_FILE = "committee.pt"
#: ``model_spec["arch"]`` of a committee file (a single-score loader refuses it with a clear message).
COMMITTEE_ARCH = "gat-committee"


class Committee(nn.Module):
    """K detectors, one per class, read together: ``forward(x) -> (N, K)`` logits ``z_{d_k}(x) + c_k``.

    ``offsets`` (buffer ``c``, shape ``(K,)``, default zeros) are the calibration constants of T Eq. 3.42;
    ``meta`` carries what users of the committee need (``size``, ``channels``, ``norm``, ``eps``, the preset
    and data source, per-detector selection).
    """

    offsets: Tensor

    def __init__(self, detectors: Sequence[ScoreModel], offsets: Tensor | Sequence[float] | None = None,
                 meta: dict[str, Any] | None = None) -> None:
        super().__init__()
        if len(detectors) < 2:
            raise ValueError(f"a committee needs at least 2 detectors (one per class), got {len(detectors)}")
        self.detectors = nn.ModuleList(detectors)
        c = torch.zeros(len(detectors)) if offsets is None else torch.as_tensor(offsets, dtype=torch.float32)
        if c.shape != (len(detectors),):
            raise ValueError(f"offsets must have one value per detector ({len(detectors)}), got {tuple(c.shape)}")
        self.register_buffer("offsets", c.clone())
        self.meta: dict[str, Any] = dict(meta or {})

    @property
    def num_classes(self) -> int:
        return len(self.detectors)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([d(x) for d in self.detectors], dim=1) + self.offsets

    def detector(self, k: int) -> ScoreModel:
        """d_k as a score model: ``(N,)`` logits z_{d_k}(x), without the offset c_k."""
        if not 0 <= int(k) < self.num_classes:
            raise ValueError(f"class index must lie in [0, {self.num_classes - 1}], got {k}")
        return self.detectors[int(k)]  # type: ignore[return-value]

    def set_offsets(self, offsets: Tensor | Sequence[float]) -> None:
        """Replaces the calibration constants c_k (T Eq. 3.42-3.43)."""
        c = torch.as_tensor(offsets, dtype=self.offsets.dtype, device=self.offsets.device)
        if c.shape != self.offsets.shape:
            raise ValueError(f"offsets must have shape {tuple(self.offsets.shape)}, got {tuple(c.shape)}")
        self.offsets.copy_(c)

    @torch.no_grad()
    def predict(self, x: Tensor) -> Tensor:
        """The generative classifier H(x) = argmax_k z_{d_k}(x) + c_k (T Eq. 3.27, 3.42)."""
        return self(x).argmax(dim=1)


def save_committee(path: str | os.PathLike, committee: Committee) -> Path:
    """Writes ``committee`` to ``path`` (a file, or a run folder -> ``committee.pt``), atomically."""
    path = Path(path)
    if path.is_dir() or path.suffix == "":
        path = path / COMMITTEE_FILE
    specs = [getattr(d, "spec", None) for d in committee.detectors]
    if any(not s for s in specs):
        raise ValueError("every detector must be a ScoreModel built by atebm.build_score_model (it needs a spec)")
    return save_checkpoint(path, {
        "model_spec": {"arch": COMMITTEE_ARCH, "detectors": specs},
        "model": committee.state_dict(), "config": {}, "trainer": None, "extra": dict(committee.meta),
    })


def load_committee(path: str | os.PathLike, device: str | torch.device = "cpu") -> Committee:
    """The committee stored in ``path`` (its ``committee.pt`` when ``path`` is a run folder), in eval mode."""
    path = Path(path)
    if path.is_dir():
        file = path / COMMITTEE_FILE
        if not file.exists():
            done = sorted(p.name for p in path.glob("detector_*") if (p / "done.json").exists())
            hint = (f"; {len(done)} detector(s) finished: resume with `atebm gat train --resume --out {path}`"
                    if done else "")
            raise CheckpointError(f"no committee in {path} (missing {COMMITTEE_FILE}){hint}")
        path = file
    payload = load_checkpoint(path, map_location=device)
    spec = payload["model_spec"]
    if not isinstance(spec, dict) or spec.get("arch") != COMMITTEE_ARCH:
        raise CheckpointError(f"{path} is not a detector committee (model_spec arch {spec.get('arch')!r}); load a "
                              "single score model with atebm.load_model")
    detectors = [build_score_model(s) for s in spec["detectors"]]
    committee = Committee(detectors, meta=dict(payload.get("extra") or {}))
    try:
        committee.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise CheckpointError(f"{path}: weights do not match the committee spec: {err}") from err
    committee.meta["path"] = str(path)
    return committee.to(device).eval()
