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

:func:`pgd` has two step rules: the normalised step above and an Adam update of the perturbation (T Tab. 3.1-3.2,
``rule="adam"``), and can keep per sample the best iterate of any step and restart (``keep="best"``), which the
attack layer (:mod:`atebm.attacks`) uses to count a success found mid-run.
"""
from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

import torch
from torch import Tensor, nn

__all__ = ["pgd", "pgd_best", "pgd_trajectory", "PGDTrace", "trajectory_twin", "sgld", "ScoreFn", "eval_mode",
           "per_sample_scores", "input_gradient", "scores_gradient", "check_inputs", "declared_input_shape",
           "project_onto_ball", "AdamStep", "PRECISIONS", "STEP_RULES", "autocast"]

ScoreFn = Callable[[Tensor], Tensor]
_NORMS = ("l2", "linf")
#: Arithmetic of the score's forward (and backward) passes: float32, or autocast to bfloat16 / float16.
PRECISIONS = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(precision: str | None, device: torch.device | str) -> AbstractContextManager:
    """``torch.autocast`` to the dtype of ``precision`` (``"bf16"``, ``"fp16"``) on ``device``'s type; a null
    context for ``"fp32"`` or ``None``. Inside it convolutions and matrix products run in the low precision while
    reductions and losses stay in float32; gradients with respect to float32 inputs come back in float32."""
    if precision is None or precision == "fp32":
        return nullcontext()
    if precision not in _AUTOCAST_DTYPES:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    return torch.autocast(torch.device(device).type, dtype=_AUTOCAST_DTYPES[precision])


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


@contextmanager
def _input_gradient_only(score: ScoreFn) -> Iterator[None]:
    """Makes the parameters of an ``nn.Module`` score stop requiring grad (the ascent needs ``∇_x f`` only, so no
    parameter enters the recorded graph) and restores each one's flag afterwards, also after an exception."""
    if not isinstance(score, nn.Module):
        yield
        return
    trainable = [p for p in score.parameters() if p.requires_grad]
    for p in trainable:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)


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


def declared_input_shape(score: ScoreFn) -> tuple[int | None, tuple[int, int] | None]:
    """``(channels, (height, width))`` of the inputs a score model declares: its ``meta`` (filled by
    :func:`atebm.load_model`), else the spec's ``in_channels``; ``None`` where unknown."""
    meta = getattr(score, "meta", None) or {}
    spec_kwargs = (getattr(score, "spec", None) or {}).get("kwargs") or {}
    channels = meta.get("channels", spec_kwargs.get("in_channels"))
    size = meta.get("size")
    if isinstance(size, int):
        size = (size, size)
    elif isinstance(size, (list, tuple)) and len(size) == 2:
        size = (int(size[0]), int(size[1]))
    else:
        size = None
    return (int(channels) if channels is not None else None), size


def check_inputs(x: object, *, what: str = "x", box: tuple[float, float] | None = (0.0, 1.0),
                 score: ScoreFn | None = None) -> None:
    """Refuses inputs that the sampler and the attacks cannot use, with a one-line error naming the problem.

    ``TypeError``: not a tensor, or not floating point (integer images must be scaled to [0, 1] first).
    ``ValueError``: not batched (``(N, ...)``), NaN or inf values, values outside ``box`` (when given; float
    rounding of 1e-6 of the box width is tolerated), or, for a ``score`` model whose ``meta``/``spec`` records
    them, images whose channel count or size differs from the model's.
    """
    if not isinstance(x, Tensor):
        raise TypeError(f"{what} must be a torch.Tensor, got {type(x).__name__}")
    if not torch.is_floating_point(x):
        raise TypeError(f"{what} must be a floating-point tensor (images in [0, 1]), got {x.dtype}")
    if x.dim() < 2:
        raise ValueError(f"{what} must be batched, shape (N, ...); got {tuple(x.shape)}")
    if x.numel() == 0:
        return
    # one pass and one host transfer: min and max propagate NaN and show an inf, so both finite <=> all finite
    low, high = torch.stack(torch.aminmax(x.detach())).tolist()
    if not (math.isfinite(low) and math.isfinite(high)):
        finite = torch.isfinite(x)
        rows = int((~finite).flatten(1).any(dim=1).sum())
        kind = "NaN" if bool(torch.isnan(x).any()) else "inf"
        raise ValueError(f"{what} holds {kind} values ({rows} of {x.shape[0]} samples)")
    if box is not None:
        tolerance = 1e-6 * (box[1] - box[0])
        if low < box[0] - tolerance or high > box[1] + tolerance:
            raise ValueError(f"{what} must lie in [{box[0]:g}, {box[1]:g}]; its values span [{low:.4g}, {high:.4g}]")
    if score is None or x.dim() != 4:
        return
    channels, size = declared_input_shape(score)
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{what} has {x.shape[1]} channel(s), shape {tuple(x.shape)}; the model takes {channels}")
    if size is not None and tuple(x.shape[-2:]) != size:
        raise ValueError(f"{what} has images of {x.shape[-2]}x{x.shape[-1]} px; the model takes {size[0]}x{size[1]}")


def input_gradient(score: ScoreFn, x: Tensor, *, create_graph: bool = False) -> tuple[Tensor, Tensor]:
    """Returns (scores, ∇_x scores) at ``x`` (detached from whatever made it) without touching any parameter's
    ``.grad``. With ``create_graph=True`` both keep their graph, so that a loss on the gradient reaches the score's
    parameters (the WGAN-GP penalty of :mod:`atebm.dsgan`); otherwise both come back detached."""
    with torch.enable_grad():
        x = x.detach().requires_grad_(True)
        s = per_sample_scores(score, x)
        grad = scores_gradient(s, x, create_graph=create_graph)
    return (s, grad) if create_graph else (s.detach(), grad)


def scores_gradient(scores: Tensor, x: Tensor, *, create_graph: bool = False) -> Tensor:
    """``∇_x Σ_i scores_i`` for scores already computed from ``x`` (which requires grad): the per-sample input
    gradients when row i of ``scores`` depends only on row i of ``x``. The sibling of :func:`input_gradient` for a
    forward pass that also serves a loss (the trainer's R1 term on p_data, E Sec. 4.4); ``create_graph=True`` keeps
    the graph for a penalty on the gradient. Parameters' ``.grad`` are not touched."""
    (grad,) = torch.autograd.grad(scores.sum(), x, create_graph=create_graph)
    return grad


def _flat_norm(t: Tensor) -> Tensor:
    return t.flatten(1).norm(dim=1).view(-1, *([1] * (t.dim() - 1)))


def _direction(grad: Tensor, norm: str) -> Tensor:
    """Unit-L2 per-sample direction (zero where the gradient is zero) or the sign for Linf."""
    if norm == "linf":
        return grad.sign()
    length = _flat_norm(grad)
    return torch.where(length > 0, grad / length.clamp_min(torch.finfo(grad.dtype).tiny), 0.0)


def _project(x: Tensor, x0: Tensor, norm: str, eps: float) -> Tensor:
    if math.isinf(eps):
        return x
    delta = x - x0
    if norm == "linf":
        return x0 + delta.clamp(-eps, eps)
    length = _flat_norm(delta)
    return x0 + delta * torch.clamp(eps / length.clamp_min(1e-12), max=1.0)


def project_onto_ball(x: Tensor, origin: Tensor, *, norm: str, eps: float,
                      clamp: tuple[float, float] | None = (0.0, 1.0)) -> Tensor:
    """The projection :func:`pgd` applies after every step: onto the ``norm`` ball of radius ``eps`` around
    ``origin`` (L2: radial shrink; Linf: coordinate clip), then onto the ``clamp`` box. With ``origin`` inside
    the box the result lies in both (clamping moves each coordinate towards ``origin``'s)."""
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    if x.shape != origin.shape:
        raise ValueError(f"x {tuple(x.shape)} and origin {tuple(origin.shape)} must have the same shape")
    return _apply_box_and_mask(_project(x, origin, norm, eps), origin, clamp, None)


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
        raise ValueError(f"mask of shape {tuple(mask.shape)} does not broadcast to x of shape "
                         f"{tuple(x.shape)}") from err


#: Step rules of :func:`pgd`: the normalised (sign / unit-L2) step of E Eq. 8, or an Adam update (T Tab. 3.2).
STEP_RULES = ("normalised", "adam")
_KEEP = ("last", "best")


class PGDTrace:
    """What a :func:`pgd` run hands back beside its result when passed as ``trace=``.

    ``record``: the step counts whose iterates to keep (0 = the start). After a ``keep="last"`` run with a
    non-empty ``record``, ``path`` holds them, shape ``(len(record), *x.shape)`` (with restarts, per sample those of
    the run that was kept). After a ``keep="best"`` run, ``values`` holds the kept iterates' values: ``select`` at
    them when given, else the score. A function built on :func:`pgd` that passes ``trace=`` on gets its
    ``*_trajectory`` twin from :func:`trajectory_twin`.
    """

    def __init__(self, record: Sequence[int] = ()) -> None:
        self.record = [int(step) for step in record]
        self.path: Tensor | None = None
        self.values: Tensor | None = None


class _BestIterate:
    """Per sample the iterate with the highest criterion value met so far (ties keep the earlier one)."""

    def __init__(self) -> None:
        self.x: Tensor | None = None
        self.value: Tensor | None = None

    def offer(self, x: Tensor, value: Tensor) -> None:
        value = value.detach().float()
        if self.x is None or self.value is None:
            self.x, self.value = x, value
            return
        better = value > self.value
        if bool(better.all()):      # the usual ascent step: keep a reference, copy nothing (iterates are fresh)
            self.x, self.value = x, value
            return
        self.x = torch.where(better.view(-1, *([1] * (x.dim() - 1))), x, self.x)
        self.value = torch.where(better, value, self.value)


@torch.no_grad()
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
    origin: Tensor | None = None,
    precision: str | None = None,
    rule: str = "normalised",
    keep: str = "last",
    select: ScoreFn | None = None,
    trace: PGDTrace | None = None,
) -> Tensor:
    """Projected gradient ascent on ``score`` (E Eq. 6-8; descent with ``descent=True``).

    ``score`` is any callable mapping a batch to one score per sample (higher = more in-distribution); an
    ``nn.Module`` is run in eval mode and its train/eval mode is restored afterwards; no parameter ``.grad`` is
    written. Each step moves ``x`` by ``step_size`` along the per-sample unit-L2 gradient (``norm="l2"``) or by
    ``step_size · sign(grad)`` (``norm="linf"``), then projects onto the ``eps``-ball around ``origin`` (default:
    the start ``x``) and onto the ``clamp`` box (:func:`project_onto_ball`). Pixels where ``mask`` is 0 never
    change (the gradient is masked before normalisation, so the step length is measured over the moving pixels).
    A zero gradient gives a zero step. Each step moves a sample by at most ``step_size`` (L2; projections never
    lengthen it), so ``||x_K - x_0||_2 <= step_size · K`` from the (projected) start ``x_0``.

    ``rule="adam"`` replaces the normalised step by an element-wise Adam update of the perturbation with learning
    rate ``step_size`` (the "Adam-step PGD" of T Sec. 3.2.3, Tab. 3.1-3.2: ``δ_{i+1} = Proj(δ_i ± Adam(∇f))``; its
    first step moves every coordinate by ``step_size`` whatever the norm).

    ``origin`` lets a run continue from a point ``x`` inside the ball of another centre (e.g. the worst case found
    at a smaller radius, projected around the clean input); ``x`` is first projected onto that ball and box. It
    cannot be combined with ``mask``. ``random_start`` starts uniformly inside the eps-ball (around ``origin``
    when given; finite ``eps`` required).

    ``keep="last"`` returns the final iterate (with ``restarts > 1``, per sample the run whose final score is
    best: highest for ascent, lowest for descent). ``keep="best"`` returns per sample the best iterate met at any
    step of any restart, judged by ``select`` (a per-sample criterion, e.g. an attack's success margin, maximised;
    default: the ascended ``score`` itself, whose values the gradient passes already give, so tracking costs one
    extra forward pass per run).

    Bad inputs (non-tensor, integer dtype, not batched, NaN/inf, outside the ``clamp`` box, channels or size
    other than a loaded model's) are refused by :func:`check_inputs`.

    ``precision`` (``"bf16"``/``"fp16"``, see :func:`autocast`) runs the score's passes under autocast on ``x``'s
    device; the iterate, its gradient and the projections stay float32. A caller already inside ``torch.autocast``
    (the trainer) needs no ``precision``: its context holds here too.

    Returns the chosen iterate, detached. A :class:`PGDTrace` given as ``trace`` also receives the iterates after
    the steps in its ``record`` (the path, :func:`pgd_trajectory`) or the kept iterates' values (:func:`pgd_best`).
    """
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    if rule not in STEP_RULES:
        raise ValueError(f"rule must be one of {STEP_RULES}, got {rule!r}")
    if keep not in _KEEP:
        raise ValueError(f"keep must be one of {_KEEP}, got {keep!r}")
    if select is not None and keep != "best":
        raise ValueError("select= judges iterates for keep='best'; with keep='last' it would be ignored")
    if trace is not None and trace.record and keep != "last":
        raise ValueError("a trace records the path of the run it keeps; recording steps takes keep='last' only")
    check_inputs(x, box=clamp, score=score)
    wanted = _check_common(x, steps, step_size, trace.record if trace is not None and trace.record else None)
    if origin is not None:
        check_inputs(origin, what="origin", box=clamp)
        if origin.shape != x.shape:
            raise ValueError(f"origin must have the shape of x {tuple(x.shape)}, got {tuple(origin.shape)}")
        if mask is not None:
            raise ValueError("origin= cannot be combined with mask= (frozen pixels would leave the ball)")
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    if random_start and math.isinf(eps):
        raise ValueError("random_start needs a finite eps (it starts uniformly inside the eps-ball)")
    if restarts > 1 and not random_start:
        raise ValueError("restarts > 1 repeat the same deterministic path unless random_start=True")
    x0 = x.detach() if origin is None else origin.detach().to(x)
    start = x.detach()
    moving = _prepare_mask(mask, x0)
    sign = -1.0 if descent else 1.0

    def judged(values: Tensor) -> Tensor:      # higher is better for the keep-the-best bookkeeping
        return -values if descent else values

    best = _BestIterate()
    best_traj: list[Tensor] = []
    best_final: Tensor | None = None
    with eval_mode(score), _input_gradient_only(score), autocast(precision, x.device):
        for _ in range(restarts):
            xi = _random_start(x0, norm, eps, generator) if random_start else start.clone()
            xi = _apply_box_and_mask(_project(xi, x0, norm, eps), x0, clamp, moving)
            traj = [xi] if wanted is not None and 0 in wanted else []
            adam = AdamStep(xi, step_size) if rule == "adam" else None
            for i in range(1, steps + 1):
                value, grad = input_gradient(score, xi)
                if keep == "best":
                    best.offer(xi, _criterion(select, xi) if select is not None else judged(value))
                if moving is not None:
                    grad = grad * moving
                step = adam.update(grad) if adam is not None else step_size * _direction(grad, norm)
                xi = xi + sign * step
                xi = _apply_box_and_mask(_project(xi, x0, norm, eps), x0, clamp, moving)
                if wanted is not None and i in wanted:
                    traj.append(xi)
            if keep == "best":
                best.offer(xi, _criterion(select, xi) if select is not None else judged(_criterion(score, xi)))
                continue
            if restarts == 1:
                best.x, best_traj = xi, traj
                break
            with torch.enable_grad():
                final = judged(per_sample_scores(score, xi).detach())
            if best.x is None or best_final is None:
                best.x, best_traj, best_final = xi, traj, final
                continue
            better = final > best_final
            keep_new = better.view(-1, *([1] * (x0.dim() - 1)))
            best.x = torch.where(keep_new, xi, best.x)
            best_traj = [torch.where(keep_new, new, old) for new, old in zip(traj, best_traj)]
            best_final = torch.where(better, final, best_final)

    assert best.x is not None       # restarts >= 1
    if trace is not None and keep == "best":
        assert best.value is not None
        trace.values = best.value if select is not None or not descent else -best.value
    if trace is not None and wanted is not None:
        by_step = dict(zip(sorted(set(wanted)), best_traj))
        trace.path = torch.stack([by_step[i] for i in wanted])
    return best.x


def pgd_best(score: ScoreFn, x: Tensor, **pgd_options: Any) -> tuple[Tensor, Tensor]:
    """:func:`pgd` with ``keep="best"`` that also returns the kept iterates' values: ``select`` at them when given,
    else the score (so a caller that judges by the same criterion needs no further pass)."""
    trace = PGDTrace()
    best = pgd(score, x, keep="best", trace=trace, **pgd_options)
    assert trace.values is not None      # filled by every keep="best" run
    return best, trace.values


def trajectory_twin(sampler: Callable[..., Tensor]) -> Callable[..., tuple[Tensor, Tensor]]:
    """The ``<name>_trajectory`` twin of ``sampler``, a function that samples by :func:`pgd` and passes its
    ``trace=`` argument on (:func:`pgd` itself and every application of :mod:`atebm.apps`).

    The twin takes ``sampler``'s arguments (less ``trace``) plus ``record``, the step counts whose iterates to keep
    (0 = the start), and returns ``(result, path)``: ``path[r]`` is the iterate after ``record[r]`` steps, shaped
    like the result behind a leading axis of ``len(record)``. Its signature and docstring say so to ``help()``.
    """
    name = f"{sampler.__name__}_trajectory"

    def twin(*args: Any, record: Sequence[int], **options: Any) -> tuple[Tensor, Tensor]:
        if "trace" in options:
            raise TypeError(f"{name}() records its own trace; pass trace= to {sampler.__name__}() instead")
        trace = PGDTrace(record)
        if not trace.record:
            raise ValueError(f"{name}() needs record= with at least one step count (0 = the start)")
        result = sampler(*args, trace=trace, **options)
        if trace.path is None:
            raise RuntimeError(f"{sampler.__name__}() did not pass its trace= on to pgd, so no path was recorded")
        return result, trace.path

    signature = inspect.signature(sampler)
    positional = [p for p in signature.parameters.values()
                  if p.name != "trace" and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)]
    keyword = [p for p in signature.parameters.values() if p.name != "trace" and p not in positional]
    record = inspect.Parameter("record", inspect.Parameter.KEYWORD_ONLY, annotation="Sequence[int]")
    twin.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[*positional, record, *keyword], return_annotation="tuple[Tensor, Tensor]")
    twin.__name__ = twin.__qualname__ = name
    twin.__module__ = sampler.__module__
    twin.__doc__ = (f":func:`{sampler.__name__}` that also returns the path: ``(result, path)`` with ``path[r]`` "
                    f"the iterate after ``record[r]`` steps (0 = the start), shaped like the result behind a leading "
                    f"axis of ``len(record)``. Every other argument is :func:`{sampler.__name__}`'s.")
    return twin


#: :func:`pgd` that also keeps iterates: ``pgd_trajectory(score, x, record=steps, **pgd_options)`` returns
#: ``(x_final, path)``, ``path[r]`` the iterate after ``record[r]`` steps, shape ``(len(record), *x.shape)``.
pgd_trajectory = trajectory_twin(pgd)


def _criterion(select: ScoreFn, x: Tensor) -> Tensor:
    """``select(x)`` per sample, without a graph."""
    with torch.no_grad():
        return per_sample_scores(select, x).detach().float()


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
    check_inputs(x, box=None, score=score)
    _check_common(x, steps, step_size, None)
    std = math.sqrt(step_size) if noise_std is None else float(noise_std)
    xi = x.detach().clone()
    if clamp is not None:
        xi = xi.clamp(clamp[0], clamp[1])
    with eval_mode(score), _input_gradient_only(score):
        for _ in range(steps):
            _, grad = input_gradient(score, xi)
            noise = torch.randn(xi.shape, generator=generator, device="cpu").to(xi)
            xi = xi + 0.5 * step_size * grad + std * noise
            if clamp is not None:
                xi = xi.clamp(clamp[0], clamp[1])
    return xi


class AdamStep:
    """Element-wise Adam moments for a perturbation (Kingma & Ba 2015); ``update(grad)`` returns the step
    ``lr · m̂ / (sqrt(v̂) + eps)``. Element-wise, so samples of a batch never influence each other."""

    def __init__(self, like: Tensor, lr: float | Tensor, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        self.m, self.v = torch.zeros_like(like), torch.zeros_like(like)
        self.lr, self.betas, self.eps, self.t = lr, betas, eps, 0

    def update(self, grad: Tensor) -> Tensor:
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(grad, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        m_hat, v_hat = self.m / (1 - b1 ** self.t), self.v / (1 - b2 ** self.t)
        return self.lr * m_hat / (v_hat.sqrt() + self.eps)
