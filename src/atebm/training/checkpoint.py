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
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch

from ..models import ScoreModel, build_score_model

__all__ = ["CheckpointError", "save_checkpoint", "load_checkpoint", "load_model", "load", "resolve_model_path",
           "FORMAT", "MODEL_FILE", "CHECKPOINT_FILE"]

FORMAT = "atebm-checkpoint"
VERSION = 1
#: Inside a run folder: the run's one model (selected weights, no training state) and the resumable state.
MODEL_FILE = "model.pt"
CHECKPOINT_FILE = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, corrupt or not an atebm checkpoint."""


def _previous(path: Path) -> Path:
    return path.with_name(path.name + ".prev")


def save_checkpoint(path: str | os.PathLike, payload: dict[str, Any]) -> Path:
    """Atomically writes ``payload`` (see module docstring) to ``path``; keeps the old file as ``path.prev``."""
    path = Path(path)
    payload = {"format": FORMAT, "version": VERSION, **payload}
    tmp_name: str | None = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
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
    except OSError as err:
        _remove_quietly(tmp_name)
        reason = err.strerror or str(err)
        raise CheckpointError(f"cannot write checkpoint {path}: {reason}; the previous file, if any, is unchanged"
                              ) from err
    except BaseException:
        _remove_quietly(tmp_name)
        raise
    return path


def _remove_quietly(name: str | None) -> None:
    if name is not None and os.path.exists(name):
        try:
            os.unlink(name)
        except OSError:
            pass


def _hint(path: Path) -> str:
    fallback = _previous(path)
    return f"; the previous good checkpoint is {fallback}" if fallback.exists() else ""


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Reads a checkpoint with ``weights_only=True`` (a pickle that would run code is refused, and nothing in it
    runs); raises :class:`CheckpointError` with a clear message. A run folder means its resumable
    ``checkpoint.pt``; use :func:`load_model` for the run's model."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err) and "global" not in str(err).lower():
            raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({err.__class__.__name__}){_hint(path)}"
                                  ) from err
        raise CheckpointError(f"{path} is refused: it holds Python objects other than tensors and plain values "
                              f"(loading it could run code; atebm loads checkpoints with weights_only=True)") from err
    except Exception as err:  # torch raises many types for a bad file: report them all the same way
        raise CheckpointError(f"checkpoint {path} is truncated or corrupt ({type(err).__name__}: {err})"
                              f"{_hint(path)}") from err
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not an atebm checkpoint (no 'format': '{FORMAT}' entry)")
    if payload.get("version", 0) > VERSION:
        raise CheckpointError(f"{path} was written by a newer atebm (checkpoint version {payload['version']})")
    for key in ("model", "model_spec"):
        if key not in payload:
            raise CheckpointError(f"checkpoint {path} has no '{key}' entry")
    return payload


def resolve_model_path(path: str | os.PathLike) -> Path:
    """A run folder -> its ``model.pt`` (its ``checkpoint.pt`` only for folders written without one, e.g. by a
    run that predates ``model.pt``); a file -> itself."""
    path = Path(path)
    if path.is_dir():
        model_file = path / MODEL_FILE
        return model_file if model_file.exists() else path / CHECKPOINT_FILE
    return path


def load_model(path: str | os.PathLike, device: str | torch.device = "cpu") -> ScoreModel:
    """Returns the score model of a run folder or a model/checkpoint file, in eval mode, on ``device``.

    A run folder has one model: ``model.pt``, the weights the run selected (by validation Fréchet distance in
    the demo; the last weights when a run has no selection). ``checkpoint.pt`` beside it is the training state
    for ``--resume``. ``model.meta`` carries what commands need to use the model: ``size`` and ``channels`` of
    its inputs, ``config`` (training config), ``generate`` (generation defaults), ``selection`` and the source
    strings of the run, when the checkpoint has them."""
    path = resolve_model_path(path)
    payload = load_checkpoint(path, map_location=device)
    if str(payload["model_spec"].get("arch", "")).startswith("gat-"):
        raise CheckpointError(f"{path} holds a GAT detector committee, not one score model: load it with "
                              "atebm.gat.load(path)")
    model = build_score_model(payload["model_spec"])
    try:
        model.load_state_dict(payload["model"])
    except RuntimeError as err:
        raise CheckpointError(f"checkpoint {path}: weights do not match its model spec: {err}") from err
    model.to(device).eval()
    extra = dict(payload.get("extra") or {})
    meta: dict[str, Any] = {k: v for k, v in extra.items() if k != "meta"}
    meta.setdefault("channels", (payload["model_spec"].get("kwargs") or {}).get("in_channels"))
    meta["config"] = dict(payload.get("config") or {})
    meta["selection"] = payload.get("selection") or {"by": "last"}
    meta["path"] = str(path)
    model.meta = meta
    return model


#: The published name of :func:`load_model` (README, earlier releases).
load = load_model


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Atomically writes JSON (``inf``/``nan`` become strings so the file stays valid JSON)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(jsonable(data), indent=2, sort_keys=False))
    os.replace(tmp, path)


def jsonable(value: Any) -> Any:
    """``value`` with ``inf``/``nan`` as strings, tensors and NumPy scalars as Python values: valid JSON."""
    if isinstance(value, float) and (math.isinf(value) or math.isnan(value)):
        return str(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return jsonable(value.tolist())
    if hasattr(value, "item") and callable(value.item):
        return value.item()
    return value
