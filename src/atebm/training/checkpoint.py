"""Checkpoints: a plain ``state_dict`` plus the full config and trainer state, written atomically.

A checkpoint is a ``torch.save`` of a dict of tensors and plain Python values only, so it loads with
``weights_only=True``::

    {"format": "atebm-checkpoint", "version": 1, "model_spec": {...}, "model": state_dict,
     "config": {...}, "trainer": {...} or None, "history": [...], "extra": {...}}

Writing goes to a temporary file in the same folder, is flushed to disk, then ``os.replace``-d over the target,
so a crash mid-write leaves the previous checkpoint untouched. The previous version is also kept beside it as
``<name>.prev`` (a hard link swapped in atomically), so a file corrupted after writing still has a fallback.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..models import ScoreModel, build_score_model

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load", "FORMAT"]

FORMAT = "atebm-checkpoint"
VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or not an atebm checkpoint."""


def _previous(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Atomically writes ``payload`` (see module docstring) to ``path``; keeps the old file as ``path.prev``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(payload, handle)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            link_tmp = path.with_name(f".{path.name}.prev.tmp")
            if link_tmp.exists():
                link_tmp.unlink()
            os.link(path, link_tmp)
            os.replace(link_tmp, _previous(path))
        os.replace(tmp_name, path)
    except BaseException:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a checkpoint with ``weights_only=True``; raises :class:`CheckpointError` with a clear message."""
    path = Path(path)
    if path.is_dir():
        path = path / "checkpoint.pt"
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # torch raises many types for a bad file: report them all the same way
        fallback = _previous(path)
        hint = f"; the previous good checkpoint is {fallback}" if fallback.exists() else ""
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {err}){hint}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an atebm checkpoint (no 'format': '{FORMAT}' entry)")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer atebm (checkpoint version {payload['version']})")
    for key in ("model", "model_spec"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} has no '{key}' entry")
    return payload


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> ScoreModel:
    """Returns the trained score model stored in ``path`` (a checkpoint file or a run folder), in eval mode."""
    payload = load_checkpoint(path, map_location=device)
    model = build_score_model(payload["model_spec"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path}: weights do not match its model spec: {err}") from err
    model.to(device).eval()
    model.checkpoint_config = payload.get("config", {})  # type: ignore[attr-defined]
    return model


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically writes JSON (``inf``/``nan`` become strings so the file stays valid JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(_jsonable(data), indent=2, sort_keys=False))
    os.replace(tmp, path)


def _jsonable(value: Any) -> Any:
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return _jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
