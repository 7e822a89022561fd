"""Field plots of the theory lab (E Fig. 1, G Fig. 2, 4-6), drawn with matplotlib's object-oriented API
(:class:`matplotlib.figure.Figure`, rendered by the Agg canvas), so importing this module leaves the user's
pyplot backend alone.

One panel shows the contours of ``D = sigmoid(f)`` on the box, the unit-normalised gradient field of D (arrows of
equal length: only the direction of ascent matters to the PGD sampler), the p_data points (blue) and the p_0
particles, perturbed or not (red). A *strip* lays several snapshots side by side; the *animation* is the same
frames as a GIF (written with :func:`atebm.io.save_gif`).
"""
from __future__ import annotations

import io as _io
import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib.ticker
import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor

from ..io import save_gif
from ..sampling import ScoreFn, eval_mode, input_gradient
from .metrics import grid_points
from .solvers import Snapshot

__all__ = ["draw_state", "plot_state", "plot_strip", "plot_panels", "save_animation", "gradient_field"]


def gradient_field(score: ScoreFn, box: tuple[float, float], n: int = 21) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit-length ascent directions of f (= of D) on an ``n x n`` grid: ``(points, u, v)``; zero gradients give
    zero arrows."""
    pts = grid_points(box, n)
    with eval_mode(score):
        _, grad = input_gradient(score, pts)
    length = grad.norm(dim=1, keepdim=True)
    unit = torch.where(length > 0, grad / length.clamp_min(1e-30), torch.zeros_like(grad))
    return pts.numpy(), unit[:, 0].numpy(), unit[:, 1].numpy()


def draw_state(ax, d_grid: Tensor, box: tuple[float, float], *, data: Tensor | None = None,
               particles: Tensor | None = None, field: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
               title: str = "", colorbar: bool = True, n_show: int = 300) -> None:
    """Draws one state on ``ax``. ``d_grid`` is D on a square grid over the box (rows = y)."""
    d = d_grid.detach().cpu().numpy()
    n = d.shape[0]
    axis = np.linspace(box[0], box[1], n)
    lo, hi = float(d.min()), float(d.max())
    if hi - lo < 1e-6:
        lo, hi = lo - 5e-7, hi + 5e-7
    levels = np.linspace(lo, hi, 21)
    filled = ax.contourf(axis, axis, d, levels=levels, cmap="viridis")
    if lo < 0.5 < hi:
        ax.contour(axis, axis, d, levels=[0.5], colors="white", linewidths=1.0, linestyles="--")
    if colorbar:
        bar = ax.figure.colorbar(filled, ax=ax, fraction=0.046, pad=0.03)
        bar.ax.tick_params(labelsize=7)
        span = hi - lo
        digits = 3 if span >= 0.01 else min(8, 2 - int(np.floor(np.log10(span))))
        bar.ax.yaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter(f"%.{digits}f"))
    if field is not None:
        pts, u, v = field
        ax.quiver(pts[:, 0], pts[:, 1], u, v, color="white", alpha=0.75, scale=28, width=0.004, headwidth=3.5)
    if data is not None:
        shown = data[:n_show].cpu().numpy()
        ax.scatter(shown[:, 0], shown[:, 1], s=4, c="#1f77ff", alpha=0.7, linewidths=0, label="p_data")
    if particles is not None:
        shown = particles[:n_show].cpu().numpy()
        ax.scatter(shown[:, 0], shown[:, 1], s=5, c="#ff2b2b", alpha=0.8, linewidths=0, label="p_0 / p_T")
    ax.set_xlim(*box)
    ax.set_ylim(*box)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=9)


def plot_state(path: str | os.PathLike, d_grid: Tensor, box: tuple[float, float], **kwargs) -> Path:
    """One state as a PNG (see :func:`draw_state` for the keyword arguments)."""
    fig = Figure(figsize=(4.6, 4.0), dpi=110)
    draw_state(fig.subplots(), d_grid, box, **kwargs)
    return _save(fig, path)


def plot_strip(path: str | os.PathLike, snapshots: Sequence[Snapshot], box: tuple[float, float], *,
               data: Tensor | None = None, label: str = "iteration", title: str = "") -> Path:
    """Snapshots of a run side by side (G Fig. 4): D, and where the p_0 particles are (after K PGD steps for
    maximin; the current particles for minimax)."""
    if not snapshots:
        raise ValueError("plot_strip needs at least one snapshot")
    fig, axes = _grid(len(snapshots), 6, (2.7, 2.6))
    for ax, snap in zip(axes, snapshots):
        draw_state(ax, snap.d_grid, box, data=data, particles=snap.particles, colorbar=True,
                   title=f"{label} {snap.step}: D in [{float(snap.d_grid.min()):.2f}, {float(snap.d_grid.max()):.2f}]",
                   n_show=200)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def plot_panels(path: str | os.PathLike, panels: Sequence[dict], box: tuple[float, float], title: str = "") -> Path:
    """A grid of panels; each dict has ``d_grid`` and optionally ``data``, ``particles``, ``field``, ``title``."""
    fig, axes = _grid(len(panels), 4, (4.0, 3.6))
    for ax, panel in zip(axes, panels):
        panel = dict(panel)
        draw_state(ax, panel.pop("d_grid"), box, **panel)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save(fig, path)


def save_animation(path: str | os.PathLike, snapshots: Sequence[Snapshot], box: tuple[float, float], *,
                   data: Tensor | None = None, label: str = "iteration", duration_ms: int = 600) -> Path:
    """The snapshots as an animated GIF, one rendered panel per frame."""
    frames = []
    for snap in snapshots:
        fig = Figure(figsize=(4.4, 3.8), dpi=80)
        draw_state(fig.subplots(), snap.d_grid, box, data=data, particles=snap.particles, title=f"{label} {snap.step}",
                   n_show=250)
        frames.append(_render(fig))
    return save_gif(path, frames, scale=1, duration_ms=duration_ms)


def _grid(count: int, max_cols: int, cell: tuple[float, float]) -> tuple[Figure, list]:
    """A figure with ``count`` axes in rows of at most ``max_cols``, each ``cell`` inches (spare axes hidden)."""
    cols = min(count, max_cols)
    rows = (count + cols - 1) // cols
    fig = Figure(figsize=(cell[0] * cols, cell[1] * rows + 0.3), dpi=100)
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.axis("off")
    return fig, list(axes[:count])


def _render(fig: Figure) -> Tensor:
    """The figure as a (1, 3, H, W) float tensor in [0, 1]."""
    buffer = _io.BytesIO()
    fig.savefig(buffer, format="png")
    buffer.seek(0)
    with Image.open(buffer) as image:
        array = np.asarray(image.convert("RGB"), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).unsqueeze(0)


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path)
    return path
