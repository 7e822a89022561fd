"""The sampler: projected gradient ascent (or descent) on a score.

One implementation serves every use in atebm: the contrastive samples of training (E Alg. 1-2), image
generation, restoration (denoising, inpainting), translation, interpolation, composition, worst-case OOD
attacks and in-distribution adversarial training.

For the L2 norm the update is E Eq. (8), a per-sample unit-normalised gradient step of length ``step_size``:

    x_{i+1} = Proj_{B(x_0, eps) ∩ box}( x_i ± step_size · ∇_x f(x_i) / ||∇_x f(x_i)||_2 )

so that ``||x_K - x_0||_2 <= step_size · K``.  For the Linf norm the step is ``step_size · sign(∇_x f)``.
With ``eps = inf`` (generative training and generation) only the box clamp applies.

The maximum-likelihood EBM baseline samples with Langevin dynamics (E Eq. 3), :func:`sgld`, which lives here
with the same calling convention.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

__all__ = ["pgd", "pgd_trajectory", "sgld", "ScoreFn", "eval_mode", "per_sample_scores", "input_gradient"]

ScoreFn = Callable[[Tensor], Tensor]
_NORMS = ("l2", "linf")


@contextmanager
def eval_mode(score: ScoreFn) -> Iterator[None]:
    """Puts an ``nn.Module`` score in eval mode (BatchNorm/Dropout frozen) and restores every submodule's mode."""
    if not isinstance(score, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in score.modules()]
    score.eval()
    try:
        yield
    finally:
        for module, training in modes:
            module.training = training


def per_sample_scores(score: ScoreFn, x: Tensor) -> Tensor:
    """``score(x)`` as shape ``(N,)`` (an ``(N, 1)`` output is squeezed); any other shape is a clear error."""
    out = score(x)
    if out.dim() == 2 and out.shape[1] == 1:
        out = out[:, 0]
    if out.shape != (x.shape[0],):
        raise ValueError(
            f"the score must return one value per sample, shape ({x.shape[0]},); got {tuple(out.shape)}. "
            "Wrap a multi-output network with atebm.models.ScoreModel(..., logit=i)."
        )
    return out


def input_gradient(score: ScoreFn, x: Tensor) -> tuple[Tensor, Tensor]:
    """Returns (scores, ∇_x scores) without touching any parameter's ``.grad``."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = per_sample_scores(score, x)
        (grad,) = torch.autograd.grad(s.sum(), x)
    return s.detach(), grad


def _flat_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _direction(grad: Tensor, norm: str) -> Tensor:
    """Unit-L2 per-sample direction (zero where the gradient is zero) or the sign for Linf."""
    if norm == "linf":
        return grad.sign()
    length = _flat_norm(grad)
    return torch.where(length > 0, grad / length.clamp_min(torch.finfo(grad.dtype).tiny), torch.zeros_like(grad))


def _project(x: Tensor, x0: Tensor, norm: str, eps: float) -> Tensor:
    if math.isinf(eps):
        return x
    delta = x - x0
    if norm == "linf":
        return x0 + delta.clamp(-eps, eps)
    length = _flat_norm(delta)
    return x0 + delta * torch.clamp(eps / length.clamp_min(1e-12), max=1.0)


def _random_start(x0: Tensor, norm: str, eps: float, generator: torch.Generator | None) -> Tensor:
    noise = torch.randn(x0.shape, generator=generator, device="cpu").to(x0)
    if norm == "linf":
        return x0 + (torch.rand(x0.shape, generator=generator, device="cpu").to(x0) * 2 - 1) * eps
    dim = x0[0].numel()
    radius = eps * torch.rand((x0.shape[0],), generator=generator, device="cpu").to(x0) ** (1.0 / dim)
    return x0 + noise / _flat_norm(noise).clamp_min(1e-12) * radius.view(-1, *([1] * (x0.dim() - 1)))


def _apply_box_and_mask(x: Tensor, x0: Tensor, clamp: tuple[float, float] | None, mask: Tensor | None) -> Tensor:
    if clamp is not None:
        x = x.clamp(clamp[0], clamp[1])
    if mask is not None:
        x = torch.where(mask, x, x0)
    return x


def _check_common(x: Tensor, steps: int, step_size: float, record: Sequence[int] | None) -> list[int] | None:
    if not torch.is_floating_point(x):
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"x must be batched, shape (N, ...); got {tuple(x.shape)}")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    if step_size < 0:
        raise ValueError(f"step_size must be >= 0, got {step_size}")
    if record is None:
        return None
    wanted = [int(i) for i in record]
    bad = [i for i in wanted if not 0 <= i <= steps]
    if bad:
        raise ValueError(f"record indices must lie in [0, steps={steps}]; got {bad}")
    return wanted


def _prepare_mask(mask: Tensor | None, x: Tensor) -> Tensor | None:
    if mask is None:
        return None
    mask = mask.to(device=x.device)
    try:
        return torch.broadcast_to(mask != 0, x.shape)
    except RuntimeError as err:
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to x of shape {tuple(x.shape)}") from err


def pgd(
    score: ScoreFn,
    x: Tensor,
    *,
    steps: int,
    step_size: float,
    norm: str = "l2",
    eps: float = float("inf"),
    descent: bool = False,
    mask: Tensor | None = None,
    random_start: bool = False,
    restarts: int = 1,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Projected gradient ascent on ``score`` (E Eq. 6-8; descent with ``descent=True``).

    ``score`` is any callable mapping a batch to one score per sample (higher = more in-distribution); an
    ``nn.Module`` is run in eval mode and its train/eval mode is restored afterwards; no parameter ``.grad`` is
    written. Each step moves ``x`` by ``step_size`` along the per-sample unit-L2 gradient (``norm="l2"``) or by
    ``step_size · sign(grad)`` (``norm="linf"``), then projects onto the ``eps``-ball around the start and onto the
    ``clamp`` box. Pixels where ``mask`` is 0 never change (the gradient is masked before normalisation, so the
    step length is measured over the moving pixels). A zero gradient gives a zero step.

    ``random_start`` starts uniformly inside the eps-ball (finite ``eps`` required); with ``restarts > 1`` every
    sample keeps the run whose final score is best (highest for ascent, lowest for descent).

    Returns the final iterate, detached. :func:`pgd_trajectory` runs the same loop and also returns iterates.
    """
    final, _ = _pgd(score, x, steps=steps, step_size=step_size, norm=norm, eps=eps, descent=descent, mask=mask,
                    random_start=random_start, restarts=restarts, clamp=clamp, record=None, generator=generator)
    return final


def pgd_trajectory(score: ScoreFn, x: Tensor, *, record: Sequence[int], **pgd_options) -> tuple[Tensor, Tensor]:
    """:func:`pgd` that also keeps iterates: returns ``(x_final, path)`` where ``path[r]`` is the iterate after
    ``record[r]`` steps (0 = the start), shape ``(len(record), *x.shape)``. ``pgd_options`` are :func:`pgd`'s."""
    final, path = _pgd(score, x, record=list(record), **pgd_options)
    assert path is not None
    return final, path


@torch.no_grad()
def _pgd(
    score: ScoreFn,
    x: Tensor,
    *,
    steps: int,
    step_size: float,
    norm: str = "l2",
    eps: float = float("inf"),
    descent: bool = False,
    mask: Tensor | None = None,
    random_start: bool = False,
    restarts: int = 1,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    record: Sequence[int] | None,
    generator: torch.Generator | None = None,
) -> tuple[Tensor, Tensor | None]:
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    wanted = _check_common(x, steps, step_size, record)
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if random_start and math.isinf(eps):
        raise ValueError("random_start needs a finite eps (it starts uniformly inside the eps-ball)")
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 repeat the same deterministic path unless random_start=True")
    x0 = x.detach()
    moving = _prepare_mask(mask, x0)
    sign = -1.0 if descent else 1.0

    best_x, best_traj, best_score = None, None, None
    with eval_mode(score):
        for _ in range(restarts):
            xi = _random_start(x0, norm, eps, generator) if random_start else x0.clone()
            xi = _apply_box_and_mask(_project(xi, x0, norm, eps), x0, clamp, moving)
            traj = [xi] if wanted is not None and 0 in wanted else []
            for i in range(1, steps + 1):
                _, grad = input_gradient(score, xi)
                if moving is not None:
                    grad = grad * moving
                xi = xi + sign * step_size * _direction(grad, norm)
                xi = _apply_box_and_mask(_project(xi, x0, norm, eps), x0, clamp, moving)
                if wanted is not None and i in wanted:
                    traj.append(xi)
            if restarts == 1:
                best_x, best_traj = xi, traj
                break
            with torch.enable_grad():
                final = per_sample_scores(score, xi).detach()
            if best_x is None:
                best_x, best_traj, best_score = xi, traj, final
                continue
            better = final < best_score if descent else final > best_score
            keep = better.view(-1, *([1] * (x0.dim() - 1)))
            best_x = torch.where(keep, xi, best_x)
            best_traj = [torch.where(keep, new, old) for new, old in zip(traj, best_traj)]
            best_score = torch.where(better, final, best_score)

    if wanted is None:
        return best_x, None
    by_step = dict(zip(sorted(set(wanted)), best_traj))
    return best_x, torch.stack([by_step[i] for i in wanted])


@torch.no_grad()
def sgld(
    score: ScoreFn,
    x: Tensor,
    *,
    steps: int,
    step_size: float,
    noise_std: float | None = None,
    clamp: tuple[float, float] | None = (0.0, 1.0),
    generator: torch.Generator | None = None,
) -> Tensor:
    """Stochastic gradient Langevin dynamics on ``score`` (E Eq. 3), the maximum-likelihood EBM sampler:

        x_{i+1} = x_i + (step_size / 2) · ∇_x f(x_i) + noise_std · ξ,   ξ ~ N(0, I)

    with ``noise_std = sqrt(step_size)`` by default (the textbook Langevin scale; JEM/IGEBM use a much smaller
    one). Same conventions as :func:`pgd`: eval mode during sampling, box clamp.
    """
    _check_common(x, steps, step_size, None)
    std = math.sqrt(step_size) if noise_std is None else float(noise_std)
    xi = x.detach().clone()
    if clamp is not None:
        xi = xi.clamp(clamp[0], clamp[1])
    with eval_mode(score):
        for _ in range(steps):
            _, grad = input_gradient(score, xi)
            noise = torch.randn(xi.shape, generator=generator, device="cpu").to(xi)
            xi = xi + 0.5 * step_size * grad + std * noise
            if clamp is not None:
                xi = xi.clamp(clamp[0], clamp[1])
    return xi
