"""atebm's own Square Attack: score-based random search in the Linf or L2 ball, vectorised over a batch with one
square window per sample (Andriushchenko, Croce, Flammarion & Hein, ECCV 2020, "Square Attack: a query-efficient
black-box adversarial attack via random search").

The attack *maximises* a margin ``m`` (positive exactly when the attack succeeded, :mod:`atebm.attacks.objectives`)
without reading a gradient. Each sample holds a current point ``x̂`` in ``B(x, eps) ∩ [0, 1]^d`` and its margin
(paper Alg. 1):

* start: Linf, vertical stripes of ``±eps`` (one sign per column and channel, Sec. 3.1); L2, a grid of tiles, each
  a "meta pseudo-Gaussian" bump (two opposite pseudo-Gaussian halves, possibly transposed) with a random sign per
  channel, the whole perturbation scaled to norm eps (Sec. 3.2); clipped to the box. This point is query 1.
* each iteration proposes, per sample, a change inside square windows of side ``s`` whose area is the fraction
  ``p`` of the image (``p`` from :func:`p_at`), at a random position of its own:

  - Linf (Alg. 2): the window is set to ``x + v_c`` for a fresh ``v_c = ±eps`` per channel (drawn again while
    the window would not change), clipped to the box;
  - L2 (Alg. 3): window 1 receives a new bump (random sign per channel) plus its old content, and its
    perturbation mass grows by the mass of window 2, which is emptied, so that the per-channel mass of the two
    windows plus the budget left (``eps² - ||δ||²``) moves into window 1; the whole perturbation is rescaled to
    norm eps and the point clipped to the box;

* the proposal is kept where its margin is strictly higher; a NaN/inf margin is refused (the proposal rejected)
  and counted.

Cost: one forward pass of the margin per iteration, on the rows still active; a row whose margin passes its stop
threshold leaves the search, so the cost falls as inputs break. Random draws come from a ``torch.Generator`` on the
device, seeded by the caller; the global generators are not touched.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from ..sampling import ScoreFn, eval_mode, per_sample_scores
from .art import MarginFactory

__all__ = ["SquareRun", "square_attack", "p_at", "check_square_images", "SQUARE_MIN_SIDE"]

#: Square's tiles need images at least this many pixels high and wide.
SQUARE_MIN_SIDE = 8
#: Where the official schedule halves p, in iterations of a 10,000-query run; a run of n queries rescales them by
#: n / 10,000.
_P_HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
#: Linf: redraws of an unchanged window before its channel signs are flipped (a flip always changes it).
_LINF_REDRAWS = 8


@dataclass
class SquareRun:
    """What :func:`square_attack` found: per row the best input ``x`` (CPU) and its ``margin`` (CPU float; ``-inf``
    where every proposal of the row was refused), the margin evaluations ``queries`` spent per row (the start point
    included), and the number of ``refused`` proposals (NaN/inf margins)."""

    x: Tensor
    margin: Tensor
    queries: Tensor
    refused: int


def check_square_images(x: Tensor) -> None:
    """Refuses inputs that Square's windows cannot tile: NCHW images smaller than :data:`SQUARE_MIN_SIDE`."""
    if x.dim() != 4 or min(x.shape[-2:]) < SQUARE_MIN_SIDE:
        raise ValueError(f"the square attacker needs NCHW images of at least {SQUARE_MIN_SIDE}x{SQUARE_MIN_SIDE} "
                         f"px, got shape {tuple(x.shape)}")


def p_at(p_init: float, iteration: int, queries: int) -> float:
    """The fraction of the image changed at ``iteration`` (0-based) of a ``queries``-query run: ``p_init`` halved
    at each of the official schedule's steps (10, 50, 200, 500, 1k, 2k, 4k, 6k, 8k of 10,000 queries) rescaled to
    ``queries / 10,000``."""
    scaled = iteration * 10000 // queries
    return p_init / 2 ** sum(scaled > step for step in _P_HALVINGS)


def _windows(top: Tensor, left: Tensor, side: int, h: int, w: int) -> Tensor:
    """Per row a boolean ``(n, 1, h, w)`` mask of the ``side`` x ``side`` window at ``(top, left)``."""
    rows = torch.arange(h, device=top.device)
    cols = torch.arange(w, device=top.device)
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + side)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + side)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


def _positions(n: int, side: int, h: int, w: int, generator: torch.Generator, device: torch.device) -> tuple[Tensor,
                                                                                                               Tensor]:
    """Uniform top-left corners of ``n`` windows of side ``side`` inside an ``h`` x ``w`` image."""
    top = torch.randint(0, h - side + 1, (n,), generator=generator, device=device)
    left = torch.randint(0, w - side + 1, (n,), generator=generator, device=device)
    return top, left


def _signs(shape: tuple[int, ...], generator: torch.Generator, device: torch.device) -> Tensor:
    return torch.randint(0, 2, shape, generator=generator, device=device).float() * 2 - 1


def _pseudo_gaussian(height: int, width: int, device: torch.device) -> Tensor:
    """The paper's pseudo-Gaussian rectangle: at Chebyshev distance ``d`` from the centre ``(height // 2,
    width // 2)`` the value ``sum_{k=d}^{K-1} 1 / (k + 1)²`` (``K = max(height, width) // 2 + 1``: nested
    rectangles, each adding ``1 / (k + 1)²``), scaled to unit L2 norm."""
    reach = max(height, width) // 2 + 1
    weights = 1.0 / torch.arange(1, reach + 1, device=device, dtype=torch.float32) ** 2
    tail = weights.flip(0).cumsum(0).flip(0)           # tail[d] = sum_{k >= d} 1 / (k + 1)²
    di = (torch.arange(height, device=device) - height // 2).abs()
    dj = (torch.arange(width, device=device) - width // 2).abs()
    bump = tail[torch.maximum(di[:, None], dj[None, :])]
    return bump / bump.norm()


def _meta_bumps(side: int, transposed: Tensor) -> Tensor:
    """Per entry of ``transposed`` a ``side`` x ``side`` meta pseudo-Gaussian bump of unit L2 norm: the upper half
    a pseudo-Gaussian rectangle, the lower half one with the opposite sign (transposed where asked)."""
    device = transposed.device
    bump = torch.cat([_pseudo_gaussian(side // 2, side, device), -_pseudo_gaussian(side - side // 2, side, device)])
    bump = bump / bump.norm()
    return torch.where(transposed.view(-1, 1, 1), bump.t(), bump)


def _linf_start(x0: Tensor, eps: float, generator: torch.Generator) -> Tensor:
    """Vertical stripes: every column of every channel moved by ``±eps`` (Sec. 3.1), clipped to the box."""
    n, c, _, w = x0.shape
    return (x0 + eps * _signs((n, c, 1, w), generator, x0.device)).clamp(0, 1)


def _l2_start(x0: Tensor, eps: float, generator: torch.Generator) -> Tensor:
    """A grid of tiles of side ``min(h, w) // 5``, centred in the image, each a meta pseudo-Gaussian bump with a
    random sign per channel and orientation per tile; the whole perturbation at norm eps (Sec. 3.2), clipped."""
    n, c, h, w = x0.shape
    side = max(min(h, w) // 5, 1)
    tiles_h, tiles_w = h // side, w // side
    transposed = torch.randint(0, 2, (n * tiles_h * tiles_w,), generator=generator, device=x0.device).bool()
    bumps = _meta_bumps(side, transposed).view(n, 1, tiles_h, tiles_w, side, side)
    tiles = bumps * _signs((n, c, tiles_h, tiles_w), generator, x0.device)[..., None, None]
    top, left = (h - tiles_h * side) // 2, (w - tiles_w * side) // 2
    delta = torch.zeros_like(x0)
    delta[:, :, top:top + tiles_h * side, left:left + tiles_w * side] = \
        tiles.permute(0, 1, 2, 4, 3, 5).reshape(n, c, tiles_h * side, tiles_w * side)
    return (x0 + eps * delta / delta.flatten(1).norm(dim=1).view(-1, 1, 1, 1)).clamp(0, 1)


def _linf_proposal(x0: Tensor, current: Tensor, eps: float, p: float, generator: torch.Generator) -> Tensor:
    """Alg. 2: per row one window of side ``round(sqrt(p h w))`` (at least 1, at most ``min(h, w) - 1``) set to
    ``x0 + v_c`` with ``v_c = ±eps`` per channel, clipped to the box; the signs are drawn again where the window would
    not change."""
    n, c, h, w = x0.shape
    side = max(1, min(round(math.sqrt(p * h * w)), min(h, w) - 1))
    mask = _windows(*_positions(n, side, h, w, generator, x0.device), side, h, w)
    values = eps * _signs((n, c), generator, x0.device)
    proposal = torch.where(mask, (x0 + values[:, :, None, None]).clamp(0, 1), current)
    for attempt in range(_LINF_REDRAWS + 1):
        unchanged = (proposal == current).flatten(1).all(dim=1)
        if not bool(unchanged.any()):
            break
        redraw = -values if attempt == _LINF_REDRAWS else eps * _signs((n, c), generator, x0.device)
        values = torch.where(unchanged[:, None], redraw, values)
        proposal = torch.where(mask & unchanged.view(-1, 1, 1, 1), (x0 + values[:, :, None, None]).clamp(0, 1),
                               proposal)
    return proposal


def _gather_window(t: Tensor, top: Tensor, left: Tensor, side: int) -> tuple[tuple[Tensor, ...], Tensor]:
    """The index of each row's window (for reading and writing ``t[index]``) and its content ``(n, c, side, side)``."""
    n, c = t.shape[:2]
    span = torch.arange(side, device=t.device)
    index = (torch.arange(n, device=t.device).view(n, 1, 1, 1), torch.arange(c, device=t.device).view(1, c, 1, 1),
             (top[:, None] + span).view(n, 1, side, 1), (left[:, None] + span).view(n, 1, 1, side))
    return index, t[index]


def _l2_proposal(x0: Tensor, current: Tensor, eps: float, p: float, generator: torch.Generator) -> Tensor:
    """Alg. 3: per row two windows of side ``round(sqrt(p h w))`` (odd, at least 3, at most ``min(h, w)``). Per
    channel, window 1 becomes ``b·σ_c + δ_1 / ||δ_1||`` (``b`` a meta pseudo-Gaussian bump, ``σ_c = ±1``) rescaled to
    the norm ``sqrt((eps² - ||δ||²)_+ / c + ||δ on windows 1 ∪ 2||²)``, window 2 (outside window 1) is emptied,
    and the whole perturbation is rescaled to norm eps, then clipped to the box."""
    n, c, h, w = x0.shape
    side = max(round(math.sqrt(p * h * w)), 3)
    side = min(side + 1 - side % 2, min(h, w))
    delta = current - x0
    first = _positions(n, side, h, w, generator, x0.device)
    second = _positions(n, side, h, w, generator, x0.device)
    union = _windows(*first, side, h, w) | _windows(*second, side, h, w)
    mass_of_windows = (delta.square() * union).sum(dim=(2, 3), keepdim=True)        # per row and channel
    budget_left = (eps ** 2 - delta.square().sum(dim=(1, 2, 3), keepdim=True)).clamp_min(0) / c
    index, old = _gather_window(delta, *first, side)
    bumps = _meta_bumps(side, torch.randint(0, 2, (n,), generator=generator, device=x0.device).bool())
    fresh = bumps[:, None] * _signs((n, c), generator, x0.device)[:, :, None, None]
    new = fresh + old / (old.square().sum(dim=(2, 3), keepdim=True).sqrt() + 1e-10)
    size = new.square().sum(dim=(2, 3), keepdim=True).sqrt()
    new = torch.where(size > 1e-6, new / size.clamp_min(1e-12), fresh)   # the old content cancelled the bump
    moved = delta.clone()
    second_index, _ = _gather_window(moved, *second, side)
    moved[second_index] = 0.0
    moved[index] = new * (budget_left + mass_of_windows).sqrt()
    scale = eps / moved.flatten(1).norm(dim=1).clamp_min(1e-12)
    return (x0 + moved * scale.view(-1, 1, 1, 1)).clamp(0, 1)


def _margins(margin: ScoreFn, x: Tensor) -> Tensor:
    with eval_mode(margin):
        return per_sample_scores(margin, x).detach().float()


@torch.no_grad()
def square_attack(margin_for: MarginFactory, x0: Tensor, rows: Tensor, *, norm: str, eps: float, queries: int,
                  p_init: float, seed: int, device: torch.device, stop_at: Tensor | None = None) -> SquareRun:
    """One run of the Square Attack (module docstring) on the rows ``rows`` of an attack problem whose clean inputs
    are ``x0`` (one per entry of ``rows``, in [0, 1]), maximising ``margin_for(rows)``.

    ``norm``: ``"linf"`` or ``"l2"``, ``eps > 0`` its radius; ``queries``: margin evaluations per row, the start
    point included (``queries - 1`` iterations, the p schedule of :func:`p_at` from ``p_init``). ``stop_at``: a row
    whose margin exceeds its value (one per row) leaves the search (``None``: every row runs to the end). Runs on
    ``device`` with a generator seeded by ``seed``."""
    check_square_images(x0)
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if not (eps > 0 and math.isfinite(eps)) or queries < 1 or not 0 < p_init < 1:
        raise ValueError(f"square needs a finite eps > 0, queries >= 1 and 0 < p_init < 1; got eps={eps}, "
                         f"queries={queries}, p_init={p_init}")
    if len(rows) != len(x0):
        raise ValueError(f"need one row index per input, got {len(rows)} for {len(x0)} inputs")
    generator = torch.Generator(device=device).manual_seed(seed)
    origin = x0.detach().to(device=device, dtype=torch.float32)
    threshold = torch.full((len(x0),), math.inf, device=device) if stop_at is None else \
        stop_at.detach().to(device=device, dtype=torch.float32).view(-1)
    propose = _linf_proposal if norm == "linf" else _l2_proposal

    bound_rows, bound = rows, margin_for(rows)
    current = (_linf_start if norm == "linf" else _l2_start)(origin, eps, generator)
    margin = _margins(bound, current)
    finite = torch.isfinite(margin)
    refused = int((~finite).sum())
    margin = torch.where(finite, margin, -math.inf)
    spent = torch.ones(len(x0), dtype=torch.long, device=device)
    for iteration in range(queries - 1):
        active = torch.nonzero(margin <= threshold).view(-1)
        if len(active) == 0:
            break
        if len(active) != len(bound_rows):              # rows only ever leave, so the count names the set
            bound_rows = rows[active.cpu()]
            bound = margin_for(bound_rows)
        proposal = propose(origin[active], current[active], eps, p_at(p_init, iteration, queries), generator)
        value = _margins(bound, proposal)
        finite = torch.isfinite(value)
        refused += int((~finite).sum())
        better = finite & (value > margin[active])
        current[active[better]] = proposal[better]
        margin[active[better]] = value[better]
        spent[active] += 1
    return SquareRun(x=current.cpu(), margin=margin.cpu(), queries=spent.cpu(), refused=refused)
