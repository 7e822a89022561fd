"""Robust accuracy of the generative classifier and of softmax classifiers (T Sec. 3.4.3, Eq. 3.46-3.48,
Tab. 3.14, Fig. 3.7): per sample the worst case over a cascade of attackers, every one of them run by the one
attack layer, :func:`atebm.attacks.search`.

Every model is read as K logits ``z(x)``: the committee gives ``d_k(x) + c_k`` (its argmax is the calibrated
generative classifier g, T Eq. 3.43), a softmax classifier gives ``z_f(x)``. An input ``(x, y)`` classified
correctly is *broken* inside the threat ball B (``norm`` ball of radius ``eps`` around x, inside [0, 1]) when some
attacker finds ``x'`` in B with

    m(x') = max_{i != y} z_i(x') - z_y(x') > 0

(:class:`~atebm.attacks.AcceptanceMargin` at T = -inf, the misclassification margin of Carlini & Wagner, T Eq.
3.30 negated). The margin judges every iterate of every run of every attacker, whatever objective the attacker
ascends, so a flip met mid-run counts. The robust accuracy at eps is the fraction of inputs that are correct
when clean and broken by no attacker. Attackers (:data:`ATTACKERS`; each is an :class:`~atebm.attacks.AttackSpec`):

=============  ================================================================================================
``per_class``  committee only, T Eq. 3.47-3.48 (Tramer et al.): for every k != y ascend d_k alone
               (:func:`~atebm.gat.attacks.per_class_candidates`); the input is broken when ANY of its K - 1
               candidates flips it (Eq. 3.48 keeps only the one with the largest d_k + c_k, which can discard a
               flipping one); the thesis's own evaluation of the generative classifier
``ce``         T Eq. 3.46 (Madry et al.): ascend the cross-entropy of softmax(z); the margin still judges
``margin``     ascend m itself (PGD, random starts, ``restarts`` of them)
``targeted``   ascend ``z_t - z_y`` (:class:`~atebm.attacks.TargetedMargin`) for each of the ``targets`` wrong
               classes t with the highest clean logits, one set of runs per target
``apgd-ce``    ART's APGD (Croce & Hein 2020) through the one adapter (:mod:`atebm.attacks.art`): ART's success
               test equals m > 0, initial step 2·eps, best iterate kept; cross-entropy of the adapter's margin
               view, ``softplus(-m)``
``apgd-dlr``   the same with ART's difference-of-logits-ratio loss on the margin view
``square``     the Square attack (:mod:`atebm.attacks.square`; gradient-free, ascends m; the masking check:
               >= 5,000 queries)
=============  ================================================================================================

The attackers run as a cascade: each attacks only the inputs that are correct when clean and that every earlier
attacker failed on, so the robust accuracy is the per-sample worst case over all of them. Per attacker the
result records how many inputs it attacked and how many of those it broke; the first attacker saw every correct
input, so its number is also its own robust accuracy (``own_robust_accuracy``: for the committee, what Eq.
3.47-3.48 alone measures). Every result carries its protocol (threat, n, each attacker's steps, restarts,
queries, step size) beside the numbers.
"""
from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator, Mapping, MutableMapping, Sequence
from typing import Any, NoReturn

import torch
from torch import Tensor, nn

from ..apps._images import model_device
from ..attacks import AcceptanceMargin, AttackSpec, CrossEntropy, TargetedMargin, ThreatModel, rows_of, search
from ..config import Config, at_least, each, in_range, setting
from ..sampling import eval_mode
from .attacks import per_class_candidates
from .committee import Committee
from .softmax_classifier import batched_logits

__all__ = ["ClassifyEvalConfig", "CLASSIFY_PROTOCOLS", "ATTACKERS", "attacker_set", "robust_accuracy",
           "accuracy_grid", "describe_protocol"]

#: Every attacker kind, in the default cascade order, with the :data:`~atebm.attacks.METHODS` it may use.
_METHODS_OF: dict[str, tuple[str, ...]] = {
    "per_class": ("pgd", "adam"), "ce": ("pgd", "adam"), "margin": ("pgd", "adam"), "targeted": ("pgd", "adam"),
    "apgd-ce": ("apgd",), "apgd-dlr": ("apgd",), "square": ("square",)}
ATTACKERS = tuple(_METHODS_OF)
#: What each attacker ascends (printed in the protocol).
_OBJECTIVE_OF = {
    "per_class": "d_k(x') alone for each k != y (T Eq. 3.47); broken if any of the K-1 candidates flips g",
    "ce": "cross-entropy of softmax(z) (T Eq. 3.46, Madry et al.)",
    "margin": "max_{i != y} z_i - z_y (T Eq. 3.30 negated, Carlini & Wagner)",
    "targeted": "z_t - z_y for each of the top-`targets` wrong classes t by clean logit",
    "apgd-ce": "ART APGD, cross-entropy of the margin view [0, m, -M] targeted at class 1",
    "apgd-dlr": "ART APGD, DLR loss of the margin view [0, m, -M] targeted at class 1",
    "square": "Square (atebm.attacks.square, gradient-free), ascends m",
}
_NORMS = ("linf", "l2")


class _Attackers(dict[str, AttackSpec]):
    """The ``{kind: AttackSpec}`` of a frozen :class:`ClassifyEvalConfig`: a dict that refuses changes (so
    ``dataclasses.asdict``, ``copy.deepcopy``, pickling and hashing still work)."""

    def _refuse(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError("a ClassifyEvalConfig is frozen; build another with config.replace(attackers=...)")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = __ior__ = _refuse

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(tuple(self.items()))

    def __reduce__(self) -> tuple[type, tuple[dict[str, AttackSpec]]]:
        return _Attackers, (dict(self),)


def _attackers(values: Any) -> _Attackers:
    """``{kind: AttackSpec}`` (in cascade order) from a mapping or (kind, spec) pairs; specs may be dicts."""
    pairs = list(values.items()) if isinstance(values, Mapping) else list(values)
    out: dict[str, AttackSpec] = {}
    for pair in pairs:
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise TypeError(f"attackers must map attacker kinds to AttackSpecs, got {pair!r}")
        kind, spec = pair
        if kind not in _METHODS_OF:
            raise ValueError(f"unknown attackers [{kind!r}]; choose from {', '.join(ATTACKERS)}")
        if kind in out:
            raise ValueError(f"attacker {kind!r} is listed twice")
        spec = AttackSpec.from_dict(spec) if isinstance(spec, dict) else spec
        if not isinstance(spec, AttackSpec):
            raise TypeError(f"attacker {kind!r} needs an AttackSpec (or its dict), got {type(spec).__name__}")
        if spec.method not in _METHODS_OF[kind]:
            raise ValueError(f"attacker {kind!r} runs method {' or '.join(_METHODS_OF[kind])}, got "
                             f"{spec.method!r}")
        if kind.startswith("apgd-") and spec.loss != kind.removeprefix("apgd-"):
            raise ValueError(f"attacker {kind!r} needs AttackSpec(loss={kind.removeprefix('apgd-')!r}), got "
                             f"loss={spec.loss!r}")
        out[kind] = spec
    if not out:
        raise ValueError(f"no attackers given; choose from {', '.join(ATTACKERS)}")
    return _Attackers(out)


def _pgd(steps: int, restarts: int = 1, random_start: bool = True) -> AttackSpec:
    return AttackSpec("pgd", steps=steps, restarts=restarts, random_start=random_start)


def attacker_set(*, steps: int = 40, restarts: int = 2, apgd_steps: int = 40, apgd_restarts: int = 1,
                 square_queries: int = 1000) -> dict[str, AttackSpec]:
    """Every attacker of :data:`ATTACKERS` with one budget: the PGD family (``per_class`` from the clean input as
    in T Eq. 3.47, the others from random starts) ``steps`` steps of ``2.5 eps / steps``, ``restarts`` for
    ``margin``; ART APGD-CE/DLR ``apgd_steps`` x ``apgd_restarts``; Square ``square_queries`` queries from tiles
    of 0.8 of the image (AutoAttack's ``p_init``)."""
    return {
        "per_class": _pgd(steps, random_start=False),
        "ce": _pgd(steps),
        "margin": _pgd(steps, restarts),
        "targeted": _pgd(steps),
        "apgd-ce": AttackSpec("apgd", steps=apgd_steps, restarts=apgd_restarts, loss="ce"),
        "apgd-dlr": AttackSpec("apgd", steps=apgd_steps, restarts=apgd_restarts, loss="dlr"),
        "square": AttackSpec("square", steps=square_queries, p_init=0.8),
    }


@dataclasses.dataclass(frozen=True)
class ClassifyEvalConfig(Config):
    """The evaluation protocol of :func:`robust_accuracy` and :func:`accuracy_grid`, validated on construction.

    ``attackers``: ``{kind: AttackSpec}`` in cascade order (kinds in :data:`ATTACKERS`; a mapping, or (kind,
    spec) pairs, specs as :class:`~atebm.attacks.AttackSpec` or their dicts; stored read-only). PGD-family specs
    step ``step_factor · eps / steps`` (sign steps for Linf, unit-L2 steps for L2) unless they give an absolute
    ``step_size``, which must reach every eps of the grids. ``targets``: wrong classes the ``targeted`` attacker
    tries per input. ``n``: stratified test inputs (None: all). ``linf_eps`` / ``l2_eps``: the grids. ``seed``:
    every random start and ART's generators derive from it.
    """

    attackers: Mapping[str, AttackSpec] = setting(factory=attacker_set, convert=_attackers)
    n: int | None = setting(200, at_least(1, why="None: all inputs"))
    linf_eps: tuple[float, ...] = setting((0.0, 0.1, 0.2, 0.3, 0.4), each(in_range(0, math.inf, hi_open=True)))
    l2_eps: tuple[float, ...] = setting((0.0, 1.0, 2.0, 3.0), each(in_range(0, math.inf, hi_open=True)))
    targets: int = setting(3, at_least(0))
    batch_size: int = setting(250, at_least(1))
    seed: int = 0

    def check(self) -> Iterator[str]:
        if "targeted" in self.attackers and self.targets < 1:
            yield f"targets must be an integer >= 1 with the targeted attacker, got {self.targets}"
        threats = [ThreatModel("linf", eps) for eps in self.linf_eps] + [ThreatModel("l2", eps) for eps in self.l2_eps]
        for spec in self.attackers.values():
            if spec.method in ("pgd", "adam"):
                try:
                    for threat in threats:
                        spec.step_at(threat)   # refuses a step that cannot reach the boundary
                except ValueError as error:
                    yield str(error)

    def grid(self, norm: str) -> tuple[float, ...]:
        """The eps grid of ``norm``."""
        if norm not in _NORMS:
            raise ValueError(f"unknown norm {norm!r}; choose from {', '.join(_NORMS)}")
        return self.linf_eps if norm == "linf" else self.l2_eps

    def describe(self, threat: ThreatModel, num_classes: int, committee: bool) -> list[dict[str, Any]]:
        """Per attacker that runs at ``threat`` on a ``num_classes``-logit model: its kind, objective and budget
        per input (``gradient_passes`` or Square's ``queries``, all runs: K - 1 candidates for ``per_class``,
        ``targets`` targets for ``targeted``), steps, restarts and step rule."""
        out = []
        for kind, spec in self.attackers.items():
            if kind == "per_class" and not committee:
                continue
            entry: dict[str, Any] = {"kind": kind, "label": spec.name, "objective": _OBJECTIVE_OF[kind],
                                     **spec.describe(threat)}
            runs = num_classes - 1 if kind == "per_class" else (
                min(self.targets, num_classes - 1) if kind == "targeted" else 1)
            if runs != 1:
                unit = "queries" if spec.method == "square" else "gradient_passes"
                entry["runs_per_input"] = runs
                entry[unit] = entry[unit] * runs
            out.append(entry)
        return out


#: ``mnist``: the reduced CPU protocol (200 stratified test inputs, 40-step PGD family with 2 margin restarts and
#: 3 targets, APGD-CE/DLR 40 iterations and Square 5,000 queries (AutoAttack's budget; the gradient-free check
#: against masking) at EVERY grid point); ``full``: the headline
#: protocol (every test input, 100 steps, 5 restarts, all 9 targets, APGD 100 x 5, Square 5,000 queries as in
#: AutoAttack); ``smoke``: seconds, for tests and for trying the command (its numbers mean nothing).
CLASSIFY_PROTOCOLS: dict[str, ClassifyEvalConfig] = {
    "mnist": ClassifyEvalConfig(attacker_set(square_queries=5000)),
    "full": ClassifyEvalConfig(attacker_set(steps=100, restarts=5, apgd_steps=100, apgd_restarts=5,
                                            square_queries=5000), n=None, targets=9),
    "smoke": ClassifyEvalConfig(attacker_set(steps=2, restarts=1, apgd_steps=2, apgd_restarts=1, square_queries=10),
                                n=5, linf_eps=(0.0, 0.3), l2_eps=(0.0, 2.0), targets=1),
}


def _broken(kind: str, spec: AttackSpec, model: nn.Module, x: Tensor, y: Tensor, threat: ThreatModel,
            config: ClassifyEvalConfig, seed: int, device: torch.device) -> Tensor:
    """Which of the (correct) inputs ``x`` the attacker ``kind`` breaks: some input of the ball it reaches has
    ``m > 0`` (module docstring)."""
    broken = torch.zeros(len(x), dtype=torch.bool)
    if len(x) == 0:
        return broken
    common: dict[str, Any] = dict(threat=threat, attackers=[spec], batch_size=config.batch_size, device=device,
                                  model=model, keep_inputs=False)
    margin_for = rows_of(lambda yb: AcceptanceMargin(model, yb), y, device=device)
    if kind == "per_class":
        for result in per_class_candidates(model, x, y, threat=threat, spec=spec, seed=seed,
                                           batch_size=config.batch_size):
            rows = torch.as_tensor(result.protocol["rows"], dtype=torch.long)
            broken[rows] |= result.success
        return broken
    if kind == "ce":
        return search(margin_for, x, objective_for=rows_of(lambda yb: CrossEntropy(model, yb), y, device=device),
                      seed=seed, **common).success
    if kind == "targeted":
        logits = batched_logits(model, x, config.batch_size)
        logits[torch.arange(len(y)), y] = -math.inf
        order = logits.argsort(dim=1, descending=True)[:, :min(config.targets, logits.shape[1] - 1)]
        for j in range(order.shape[1]):
            left = torch.nonzero(~broken)[:, 0]     # each target attacks the inputs earlier targets left
            if len(left) == 0:
                break
            yl, tl = y[left], order[left, j]
            objective_for = rows_of(lambda yb, tb: TargetedMargin(model, yb, tb), yl, tl, device=device)
            hit = search(rows_of(lambda yb: AcceptanceMargin(model, yb), yl, device=device), x[left],
                         objective_for=objective_for, seed=seed + 101 * j, **common).success
            broken[left[hit]] = True
        return broken
    return search(margin_for, x, seed=seed, **common).success     # margin, apgd-ce, apgd-dlr, square


def describe_protocol(config: dict[str, Any]) -> str:
    """``config`` (:meth:`ClassifyEvalConfig.to_dict`) in words, for a table's or a figure's caption: per attacker
    its method, steps or queries, restarts and start."""
    parts = []
    for kind, spec in config["attackers"].items():
        runs = f" x {spec['restarts']} restarts" if spec["restarts"] > 1 else ""
        if spec["method"] in ("square", "square-art"):
            source = "ART's Square" if spec["method"] == "square-art" else "Square (atebm.attacks.square)"
            parts.append(f"{kind}: {source} {spec['steps']:,} queries{runs}")
        elif spec["method"] == "apgd":
            parts.append(f"{kind}: ART APGD {spec['steps']} iterations{runs}")
        else:
            start = "random start" if spec["random_start"] else "from the input"
            extra = f", top-{config['targets']} targets" if kind == "targeted" else (
                ", each wrong d_k" if kind == "per_class" else "")
            parts.append(f"{kind}: {spec['method']} {spec['steps']} steps{runs}, {start}{extra}")
    return "cascade at every grid point of " + ", ".join(parts)


def robust_accuracy(model: nn.Module, x: Tensor, y: Tensor, *, norm: str, eps: float,
                    config: ClassifyEvalConfig = CLASSIFY_PROTOCOLS["mnist"],
                    progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Clean and worst-case robust accuracy of ``model`` (K logits) on ``(x, y)`` inside the ``norm`` ball of
    radius ``eps`` (T Sec. 3.4.3: Tab. 3.14, Fig. 3.7), the attackers of ``config`` run as a cascade (module
    docstring): an input counts as robust when it is correct when clean and no attacker finds a point of the
    ball with ``max_{i != y} z_i - z_y > 0``. ``per_class`` runs on a :class:`~atebm.gat.committee.Committee`
    only.

    Returns ``norm``, ``eps``, ``n``, ``clean_accuracy``, ``robust_accuracy``, ``robust`` (0/1 per input),
    ``attackers`` (per attacker that ran: ``attacked``, ``broke`` (inputs no earlier attacker had broken),
    ``seconds``, and for the first ``own_robust_accuracy``) and ``protocol`` (threat, n, seed and each
    attacker's objective and budget)."""
    threat = ThreatModel(norm, eps)
    if not isinstance(config, ClassifyEvalConfig):
        raise TypeError(f"config must be a ClassifyEvalConfig (or a CLASSIFY_PROTOCOLS entry), got "
                        f"{type(config).__name__}")
    x = x.detach().float().cpu()
    y = torch.as_tensor(y).long().view(-1).cpu()
    if len(x) != len(y) or len(y) == 0:
        raise ValueError(f"need one label per input and at least one input; got {len(x)} inputs, {len(y)} labels")
    device = model_device(model)
    committee = isinstance(model, Committee)
    with eval_mode(model):
        logits = batched_logits(model, x, config.batch_size)
        if logits.dim() != 2 or logits.shape[1] < 2:
            raise ValueError(f"the model must return (N, K) logits with K >= 2, got shape {tuple(logits.shape)}")
        k = logits.shape[1]
        if int(y.min()) < 0 or int(y.max()) >= k:
            raise ValueError(f"labels must lie in [0, {k - 1}] for a {k}-logit model, got [{int(y.min())}, "
                             f"{int(y.max())}]")
        alive = logits.argmax(1) == y
        result: dict[str, Any] = {
            "norm": norm, "eps": threat.eps, "n": len(y), "clean_accuracy": int(alive.sum()) / len(y),
            "attackers": {},
            "protocol": {"threat": threat.to_dict(), "n": len(y), "seed": config.seed,
                         "success": "max_{i != y} z_i - z_y > 0 at any iterate of any run (atebm.attacks.search); "
                                    "robust = correct when clean and broken by no attacker",
                         "cascade": "each attacker attacks only the inputs every earlier one failed on",
                         "attackers": config.describe(threat, k, committee) if threat.eps > 0 else []}}
        if threat.eps > 0:
            first = True
            for index, (kind, spec) in enumerate(config.attackers.items()):
                if kind == "per_class" and not committee:
                    continue
                began = time.perf_counter()
                rows = torch.nonzero(alive)[:, 0]
                broken = _broken(kind, spec, model, x[rows], y[rows], threat, config, config.seed + 7919 * index,
                                 device)
                alive[rows[broken]] = False
                entry: dict[str, Any] = {"attacked": len(rows), "broke": int(broken.sum()),
                                         "seconds": round(time.perf_counter() - began, 1)}
                if first:
                    entry["own_robust_accuracy"] = (len(rows) - int(broken.sum())) / len(y)
                    first = False
                result["attackers"][kind] = entry
                if progress is not None:
                    progress(f"  {threat} {kind} ({spec.name}): broke {entry['broke']} of {entry['attacked']} "
                             f"({entry['seconds']:.0f} s)")
    result["robust_accuracy"] = int(alive.sum()) / len(y)
    result["robust"] = alive.int().tolist()
    return result


def accuracy_grid(models: dict[str, nn.Module], x: Tensor, y: Tensor, *,
                  config: ClassifyEvalConfig = CLASSIFY_PROTOCOLS["mnist"], norms: Sequence[str] = _NORMS,
                  progress: Callable[[str], None] | None = None,
                  cells: MutableMapping[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Accuracy vs test eps (T Fig. 3.7) of every model over the protocol's Linf and L2 grids, on the stratified
    subset of ``config.n`` inputs (the same inputs for every model). Returns ``{"subset": indices, "models":
    {model: {norm: [robust_accuracy(...) per eps]}}}``; every row carries its protocol. ``cells``: grid points
    already measured, keyed ``"model/norm/eps"`` (e.g. a mapping backed by files, so that a long grid resumes
    where it stopped); each new point is stored there as soon as it is measured."""
    from .evaluate import stratified_subset

    bad = sorted(set(norms) - set(_NORMS))
    if bad:
        raise ValueError(f"unknown norms {bad}; choose from {', '.join(_NORMS)}")
    y = torch.as_tensor(y).long()
    subset = stratified_subset(y, config.n, config.seed)
    xs, ys = x[subset], y[subset]
    out: dict[str, Any] = {"subset": subset.tolist(), "models": {}}
    for name, model in models.items():
        rows: dict[str, list[dict[str, Any]]] = {}
        for norm in norms:
            rows[norm] = []
            for eps in config.grid(norm):
                key = f"{name}/{norm}/{eps:g}"
                if cells is not None and key in cells:
                    rows[norm].append(cells[key])
                    continue
                start = time.perf_counter()
                r = robust_accuracy(model, xs, ys, norm=norm, eps=eps, config=config, progress=progress)
                r["seconds"] = round(time.perf_counter() - start, 1)
                rows[norm].append(r)
                if cells is not None:
                    cells[key] = r
                if progress is not None:
                    progress(f"{name} {norm} eps {eps:g}: clean {r['clean_accuracy']:.3f} robust "
                             f"{r['robust_accuracy']:.3f} ({r['seconds']:.0f} s)")
        out["models"][name] = rows
    return out
