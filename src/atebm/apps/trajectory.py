"""Saving sampler paths: an image strip (one row per sample, one column per recorded step), an animated GIF
(one frame per recorded step) and the raw frames as NPZ, as in the intermediate-result figures E supp.
Fig. 14-16 and T Fig. 2.11."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..io import save_gif, save_grid, save_npz

__all__ = ["parse_steps", "save_trajectory"]


def parse_steps(text: str, total: int) -> list[int]:
    """Parses a ``--trajectory`` value into sorted step counts in ``[0, total]``.

    Accepts a comma list (``"0,2,5,10"``), ``"all"`` (every step) or ``"every:N"`` (0, N, 2N, ... and the last
    step). Raises ValueError for anything else or for steps outside the range.
    """
    text = text.strip().lower()
    if total < 0:
        raise ValueError(f"total steps must be >= 0, got {total}")
    if text == "all":
        return list(range(total + 1))
    if text.startswith("every:"):
        try:
            every = int(text.split(":", 1)[1])
        except ValueError as err:
            raise ValueError(f"bad trajectory spec {text!r}: expected every:N with an integer N") from err
        if every < 1:
            raise ValueError(f"bad trajectory spec {text!r}: N must be >= 1")
        steps = list(range(0, total + 1, every))
        if steps[-1] != total:
            steps.append(total)
        return steps
    try:
        steps = sorted({int(part) for part in text.split(",") if part.strip()})
    except ValueError as err:
        raise ValueError(f"bad trajectory spec {text!r}: expected 'all', 'every:N' or a comma list of steps") from err
    if not steps:
        raise ValueError("the trajectory needs at least one step")
    bad = [s for s in steps if not 0 <= s <= total]
    if bad:
        raise ValueError(f"trajectory steps {bad} lie outside [0, {total}]")
    return steps


def save_trajectory(out_dir: str | os.PathLike, name: str, trajectory: Tensor, steps: Sequence[int],
                    max_samples: int = 16, scale: int = 2, duration_ms: int = 150) -> dict[str, Path]:
    """Writes ``<name>_trajectory.png`` (strip), ``<name>_trajectory.gif`` and ``<name>_trajectory.npz``.

    ``trajectory`` has shape (T, N, C, H, W) with ``trajectory[t]`` the iterate after ``steps[t]`` sampler steps
    (the path of :func:`atebm.pgd_trajectory` and of the ``*_trajectory`` applications). The strip and GIF show
    the first ``max_samples`` samples; the NPZ holds all of them as key ``x`` of shape (T·N, C, H, W) in step-major
    order, with ``steps`` and ``num_samples`` beside it.
    """
    trajectory = torch.as_tensor(trajectory).detach().cpu().float()
    if trajectory.dim() != 5:
        raise ValueError(f"a trajectory must have shape (T, N, C, H, W), got {tuple(trajectory.shape)}")
    steps = [int(s) for s in steps]
    if len(steps) != trajectory.shape[0]:
        raise ValueError(f"{len(steps)} step labels for a trajectory of {trajectory.shape[0]} frames")
    if max_samples < 1:
        raise ValueError(f"max_samples must be >= 1, got {max_samples}")
    out_dir = Path(out_dir)
    t, n = trajectory.shape[:2]
    shown = trajectory[:, :max_samples]
    strip = shown.transpose(0, 1).reshape(-1, *trajectory.shape[2:])  # sample-major: one row per sample
    paths = {
        "png": save_grid(out_dir / f"{name}_trajectory.png", strip, nrow=t, scale=scale),
        "gif": save_gif(out_dir / f"{name}_trajectory.gif", list(shown), scale=scale, duration_ms=duration_ms),
        "npz": save_npz(out_dir / f"{name}_trajectory.npz", trajectory.reshape(t * n, *trajectory.shape[2:]),
                        steps=np.asarray(steps, dtype=np.int64), num_samples=np.asarray(n, dtype=np.int64)),
    }
    return paths
