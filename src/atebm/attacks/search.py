"""The one search behind every robustness number of atebm: attackers run against a margin objective, and every
sample keeps the strongest input any of them found.

An attack problem is a batch of clean inputs ``x`` and a *margin* ``m`` per sample, positive exactly when the attack
has succeeded (e.g. ``max_{i != y} z_i - max(z_y, T)`` for "misclassified and accepted at T", or ``f(x') - f(x)``
for "the OOD score went up"). Margins may depend on per-sample data (labels, thresholds, references), so the
problem is given as a factory ``margin_for(rows)`` returning the margin of the rows ``rows`` of ``x``.

The search, for each attacker of a list of :class:`~atebm.attacks.AttackSpec` (PGD or Adam-step PGD through
:func:`atebm.pgd`; Square through atebm's own :mod:`atebm.attacks.square`; APGD and ART's Square, ``square-art``,
through the one ART adapter, :mod:`atebm.attacks.art`):

* runs ``restarts`` runs per input (the first from the input or a given start point unless ``random_start``, the
  rest from uniform random points of the ball), on the inputs not yet past ``stop_at`` (by default: not yet
  successful; with ``cascade`` judged on the best of every attacker so far, otherwise on the attacker's own best);
* tracks the margin at **every iterate** of every run (``atebm.pgd(keep="best")``; Square keeps its best point by
  construction; for ART, its returned point and APGD's best iterate), so a success met mid-run and lost later still
  counts;
* keeps per sample the input with the highest margin (the clean input and the start point included), so the
  result is never weaker than any attacker alone, and records each attacker's budget and what it broke.

Gradient attackers may ascend another objective than the margin (``objective_for``: the thesis's Eq. 3.30-3.35
attacks); the margin still decides which iterate is kept and what counts as success. Deterministic for a seed;
the global RNGs are left as they were.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from ..sampling import ScoreFn, check_inputs, eval_mode, per_sample_scores, pgd_best, project_onto_ball
from .art import ART_PREDICT_BATCH, MarginFactory, art_candidates, art_version, parameters_frozen
from .specs import SQUARE_METHODS, AttackSpec, ThreatModel
from .square import SQUARE_MIN_SIDE, check_square_images, square_attack

__all__ = ["AttackResult", "AttackerRecord", "search", "raise_score", "lower_score", "margins_of", "SQUARE_MIN_SIDE"]


@dataclass
class AttackerRecord:
    """One attacker's share of a search: its own best margin per sample (the clean input and start point
    included), the inputs it attacked and broke (successes no earlier attacker had), seconds, and the rows it
    returned with NaN/inf values (counted as failed attacks for those samples) or proposed and had refused."""

    spec: AttackSpec
    margin: Tensor
    attacked: int = 0
    broke: int = 0
    seconds: float = 0.0
    failed_rows: int = 0
    refused_proposals: int = 0
    x: Tensor | None = None


@dataclass
class AttackResult:
    """Result of :func:`search`. ``x``: per sample the input with the highest margin found; ``margin``: that
    margin; ``clean_margin``: the clean inputs' margins; ``success``: ``margin > 0``; ``by_attacker``: per
    attacker label its :class:`AttackerRecord`; ``protocol``: how (printed next to every number)."""

    x: Tensor
    margin: Tensor
    clean_margin: Tensor
    by_attacker: dict[str, AttackerRecord]
    protocol: dict[str, Any] = field(default_factory=dict)

    @property
    def success(self) -> Tensor:
        return self.margin > 0


def _device_of(model: Any, fallback: torch.device) -> torch.device:
    if isinstance(model, nn.Module):
        for tensor in list(model.parameters()) + list(model.buffers()):
            return tensor.device
    return fallback


@torch.no_grad()
def margins_of(margin_for: MarginFactory, x: Tensor, rows: Tensor, batch_size: int, device: torch.device) -> Tensor:
    """The margins of inputs ``x`` (CPU) that stand for rows ``rows`` of the problem, in batches, as CPU float."""
    out = []
    for i in range(0, len(x), batch_size):
        margin = margin_for(rows[i:i + batch_size])
        with eval_mode(margin):
            out.append(per_sample_scores(margin, x[i:i + batch_size].to(device)).detach().float().cpu())
    return torch.cat(out) if out else torch.zeros(0)


class _Best:
    """Per sample the input with the highest margin offered so far."""

    def __init__(self, x: Tensor, margin: Tensor, keep_inputs: bool) -> None:
        self.x = x.clone() if keep_inputs else None
        self.margin = margin.clone()

    def offer(self, rows: Tensor, x: Tensor, margin: Tensor) -> Tensor:
        better = margin > self.margin[rows]
        if self.x is not None:
            self.x[rows[better]] = x[better]
        self.margin[rows[better]] = margin[better]
        return better


class _Search:
    def __init__(self, margin_for: MarginFactory, objective_for: Mapping[str, MarginFactory | None], x0: Tensor,
                 threat: ThreatModel, stop_at: Tensor | None, cascade: bool, batch_size: int,
                 device: torch.device, seed: int, clean: Tensor | None = None) -> None:
        self.margin_for, self.objective_for = margin_for, objective_for
        self.x0, self.threat, self.stop_at, self.cascade = x0, threat, stop_at, cascade
        self.batch_size, self.device, self.seed = batch_size, device, seed
        self.all_rows = torch.arange(len(x0))
        self.clean = margins_of(margin_for, x0, self.all_rows, batch_size, device) if clean is None else clean
        if not bool(torch.isfinite(self.clean).all()):
            raise ValueError("the attack objective returns non-finite margins on the clean inputs; the model is "
                             "unusable")
        self.overall = _Best(x0, self.clean, keep_inputs=True)

    def offer(self, record: AttackerRecord, own: _Best, rows: Tensor, candidates: Tensor,
              margin: Tensor | None = None) -> None:
        """Keeps each candidate whose margin beats the sample's best; rows with NaN/inf are failed attacks.
        ``margin``: the candidates' margins when the attacker computed them (atebm's own PGD and Square, whose
        iterates lie in the ball); otherwise the candidates are projected onto the ball and box (a no-op for a correct
        attacker) and scored here."""
        candidates = candidates.detach().float().cpu()
        if margin is None:
            finite = torch.isfinite(candidates.flatten(1)).all(dim=1)
            record.failed_rows += int((~finite).sum())
            if not bool(finite.any()):
                return
            rows, candidates = rows[finite], candidates[finite]
            candidates = project_onto_ball(candidates, self.x0[rows], norm=self.threat.norm, eps=self.threat.eps)
            margin = margins_of(self.margin_for, candidates, rows, self.batch_size, self.device)
        else:
            self._refuse_outside(record.spec, candidates, rows)
        margin = margin.detach().float().cpu()
        before = self.overall.margin[rows] > 0
        own.offer(rows, candidates, margin)
        self.overall.offer(rows, candidates, margin)
        record.broke += int((~before & (self.overall.margin[rows] > 0)).sum())

    def _refuse_outside(self, spec: AttackSpec, candidates: Tensor, rows: Tensor) -> None:
        """An attacker that scores its own candidates is trusted with the margin, not with the threat model: a
        candidate outside the ball or the box would count as a success it is not, so it stops the search."""
        delta = (candidates - self.x0[rows]).flatten(1)
        size = delta.abs().amax(dim=1) if self.threat.norm == "linf" else delta.norm(dim=1)
        tolerance = 1e-5 * max(1.0, self.threat.eps)
        outside = (size > self.threat.eps + tolerance) | (candidates.flatten(1).amin(dim=1) < -1e-6) \
            | (candidates.flatten(1).amax(dim=1) > 1 + 1e-6)
        if bool(outside.any()):
            raise RuntimeError(f"attacker {spec.name} returned {int(outside.sum())} input(s) outside the {self.threat} "
                               f"ball or the [0, 1] box (largest distance {float(size.max()):.6g}): a bug in it")

    def active(self, own: _Best) -> Tensor:
        if self.stop_at is None:
            return self.all_rows
        judged = self.overall.margin if self.cascade else own.margin
        return torch.nonzero(judged <= self.stop_at).view(-1)

    def run(self, spec: AttackSpec, index: int, start: Tensor | None, keep_inputs: bool) -> AttackerRecord:
        began = time.perf_counter()
        own = _Best(self.x0, self.clean, keep_inputs)
        record = AttackerRecord(spec=spec, margin=own.margin)
        if start is not None:
            self.offer(record, own, self.all_rows, start)
        attacked = torch.zeros(len(self.x0), dtype=torch.bool)
        if self.threat.eps > 0:
            for restart in range(spec.restarts):
                rows = self.active(own)
                attacked[rows] = True
                chunk = min(self.batch_size, ART_PREDICT_BATCH) if spec.method == "apgd" else self.batch_size
                for i in range(0, len(rows), chunk):
                    part = rows[i:i + chunk]
                    seed = self.seed + 1009 * index + 7919 * restart + i
                    if spec.method in ("pgd", "adam"):
                        from_start = start is not None and restart == 0 and not spec.random_start
                        out, margin = self._gradient_run(spec, part, start[part] if from_start and start is not None
                                                         else None, restart > 0 or spec.random_start, seed)
                        self.offer(record, own, part, out, margin)
                    elif spec.method == "square":
                        run = square_attack(self.margin_for, self.x0[part], part, norm=self.threat.norm,
                                            eps=self.threat.eps, queries=spec.steps, p_init=spec.p_init, seed=seed,
                                            device=self.device,
                                            stop_at=None if self.stop_at is None else self.stop_at[part])
                        record.refused_proposals += run.refused
                        self.offer(record, own, part, run.x, run.margin)
                    else:
                        candidates, refused = art_candidates(spec, self.margin_for, self.x0[part], part, self.threat,
                                                             seed=seed, device=self.device)
                        record.refused_proposals += refused
                        for positions, x in candidates:
                            self.offer(record, own, part[positions], x)
        record.attacked = int(attacked.sum())
        record.margin = own.margin
        record.x = own.x
        record.seconds = round(time.perf_counter() - began, 2)
        return record

    def _gradient_run(self, spec: AttackSpec, rows: Tensor, begin: Tensor | None, random_start: bool,
                      seed: int) -> tuple[Tensor, Tensor]:
        origin = self.x0[rows].to(self.device)
        margin = self.margin_for(rows)
        make_objective = self.objective_for.get(spec.name)
        objective = make_objective(rows) if make_objective is not None else margin
        generator = torch.Generator().manual_seed(seed)
        out, value = pgd_best(objective, origin if begin is None else begin.to(self.device), origin=origin,
                              steps=spec.steps, step_size=spec.step_at(self.threat), norm=self.threat.norm,
                              eps=self.threat.eps, random_start=random_start, generator=generator,
                              rule="adam" if spec.method == "adam" else "normalised",
                              select=None if make_objective is None else margin)
        return out.cpu(), value.cpu()


def _check(x: Any, threat: ThreatModel, attackers: Sequence[AttackSpec], model: Any) -> Tensor:
    check_inputs(x, what="x", score=model)
    if len(x) == 0:
        raise ValueError(f"x is empty (shape {tuple(x.shape)})")
    if not attackers:
        raise ValueError("no attackers given")
    labels = [spec.name for spec in attackers]
    if len(set(labels)) != len(labels):
        raise ValueError(f"attacker labels must be distinct, got {labels}; set AttackSpec.label")
    for spec in attackers:
        if not isinstance(spec, AttackSpec):
            raise TypeError(f"attackers must be AttackSpec, got {type(spec).__name__}")
        if spec.method in ("pgd", "adam"):
            spec.step_at(threat)      # refuses a protocol whose steps cannot reach the ball's boundary
        if spec.method in SQUARE_METHODS:
            check_square_images(x)
    return x.detach().float().cpu()


def search(margin_for: MarginFactory, x: Tensor, *, threat: ThreatModel, attackers: Sequence[AttackSpec],
           objective_for: MarginFactory | Mapping[str, MarginFactory | None] | None = None,
           start: Tensor | Mapping[str, Tensor] | None = None,
           stop_at: float | Tensor | None = 0.0, cascade: bool = True, seed: int = 0, batch_size: int = 256,
           device: str | torch.device | None = None, model: Any = None, keep_inputs: bool = True,
           clean_margin: Tensor | None = None, progress: Callable[[str], None] | None = None) -> AttackResult:
    """Attacks ``x`` (clean inputs in [0, 1], CPU or any device) inside ``threat`` with every attacker of
    ``attackers`` in turn and returns per sample the input with the highest margin (module docstring).

    ``margin_for(rows)``: the margin of rows ``rows`` (a LongTensor of indices into ``x``), positive exactly when
    the attack succeeded. ``objective_for(rows)``: what PGD/Adam attackers ascend instead (default: the margin);
    a mapping from attacker label to factory gives each attacker its own (a label missing or ``None``: the margin).
    ``start``: start points (one tensor, or one per attacker label), projected onto the ball; they are candidates
    and the first run of a PGD attacker without ``random_start`` begins there. ``stop_at``: a sample whose margin
    exceeds it (a number, or one per sample) is not attacked further (``None``: every attacker attacks every
    sample); ``cascade``: judge that on the best of all attackers so far (else on each attacker's own best, so that
    every attacker's own margins stay comparable). ``model``: the network inside the margin (its parameters are
    frozen during the search, its device is used, and ``x`` is checked against its declared input shape).
    ``keep_inputs=False`` keeps no per-attacker copy of the inputs. ``clean_margin``: the clean inputs' margins
    when the caller has them already (saves one pass over ``x``).
    """
    x0 = _check(x, threat, attackers, model)
    run_device = torch.device(device) if device is not None else _device_of(model, torch.device("cpu"))
    stop = None if stop_at is None else (torch.as_tensor(stop_at, dtype=torch.float32).expand(len(x0)).clone())
    starts: dict[str, Tensor | None] = {}
    for spec in attackers:
        given = start.get(spec.name) if isinstance(start, Mapping) else start
        if given is not None:
            check_inputs(given, what=f"start[{spec.name!r}]", box=None)
            if given.shape != x0.shape:
                raise ValueError(f"start points must have the shape of x {tuple(x0.shape)}, got {tuple(given.shape)}")
            given = project_onto_ball(given.detach().float().cpu(), x0, norm=threat.norm, eps=threat.eps)
        starts[spec.name] = given
    records: dict[str, AttackerRecord] = {}
    with parameters_frozen(model), torch.random.fork_rng(devices=[run_device] if run_device.type == "cuda" else []):
        objectives = dict(objective_for) if isinstance(objective_for, Mapping) else \
            {spec.name: objective_for for spec in attackers}
        if clean_margin is not None and clean_margin.shape != (len(x0),):
            raise ValueError(f"clean_margin needs one value per input ({len(x0)}), got {tuple(clean_margin.shape)}")
        state = _Search(margin_for, objectives, x0, threat, stop, cascade, batch_size, run_device, seed,
                        None if clean_margin is None else clean_margin.detach().float().cpu())
        for index, spec in enumerate(attackers):
            records[spec.name] = record = state.run(spec, index, starts[spec.name], keep_inputs)
            if progress is not None:
                progress(f"{threat} {spec.name}: attacked {record.attacked}, broke {record.broke} "
                         f"({record.seconds:.0f} s); successes so far {int((state.overall.margin > 0).sum())}/"
                         f"{len(x0)}")
    protocol = {
        "threat": threat.to_dict(), "n": len(x0), "seed": seed, "cascade": cascade,
        "stop_at": None if stop_at is None else ("per sample" if isinstance(stop_at, Tensor) else float(stop_at)),
        "success": "margin > 0, judged at every iterate of every run; per sample the highest margin of the clean "
                   "input, the start point and all attackers",
        "attackers": [{"label": spec.name, **spec.describe(threat), "attacked": records[spec.name].attacked,
                       "broke": records[spec.name].broke, "seconds": records[spec.name].seconds,
                       "failed_rows": records[spec.name].failed_rows,
                       "refused_proposals": records[spec.name].refused_proposals} for spec in attackers],
        "versions": {"torch": torch.__version__, "art": art_version()}}
    assert state.overall.x is not None
    return AttackResult(x=state.overall.x, margin=state.overall.margin, clean_margin=state.clean,
                        by_attacker=records, protocol=protocol)




def raise_score(score: Any, x: Tensor, *, threat: ThreatModel, attackers: Sequence[AttackSpec], seed: int = 0,
                batch_size: int = 256, device: str | torch.device | None = None,
                start: Tensor | Mapping[str, Tensor] | None = None, stop_above: float | Tensor | None = None,
                cascade: bool = False, progress: Callable[[str], None] | None = None) -> tuple[AttackResult, Tensor]:
    """The worst case of a score: per sample the highest ``score(x')`` over ``x'`` in the threat ball that the
    attackers find (the OOD worst case, E Tab. 4; the AUC tables of a detector under attack, T Tab. 3.2-3.5).

    The margin is ``score(x') - r`` with ``r`` the clean score raised by a hair of float tolerance
    (:class:`~atebm.attacks.ScoreAbove`), so every attacker's success test is "the score went up", and samples
    above ``stop_above`` are not attacked further (``None``: every attacker runs on every sample). Returns the
    search result and the reference ``r`` (``result.margin + r`` is the worst-case score)."""
    from .objectives import ScoreAbove, rows_of

    run_device = torch.device(device) if device is not None else _device_of(score, torch.device("cpu"))
    x0 = x.detach().float().cpu()
    clean = margins_of(lambda rows: score, x0, torch.arange(len(x0)), batch_size, run_device)
    if not bool(torch.isfinite(clean).all()):
        raise ValueError("the model returns non-finite scores on the clean inputs; the checkpoint is unusable")
    reference = clean + 1e-6 * clean.abs().clamp_min(1.0)
    stop = None if stop_above is None else torch.as_tensor(stop_above, dtype=torch.float32) - reference
    result = search(rows_of(lambda r: ScoreAbove(score, r), reference, device=run_device), x0, threat=threat,
                    attackers=attackers, start=start, stop_at=stop, cascade=cascade, seed=seed,
                    batch_size=batch_size, device=run_device, model=score, clean_margin=clean - reference,
                    progress=progress)
    return result, reference


class _Negated(nn.Module):
    """``-f(x)`` per sample, ``f`` kept out of the module tree (``.to()`` must not move the user's model)."""

    score: ScoreFn

    def __init__(self, score: ScoreFn) -> None:
        super().__init__()
        object.__setattr__(self, "score", score)

    def forward(self, x: Tensor) -> Tensor:
        return -per_sample_scores(self.score, x)


def lower_score(score: Any, x: Tensor, *, threat: ThreatModel, attackers: Sequence[AttackSpec], seed: int = 0,
                batch_size: int = 256, device: str | torch.device | None = None,
                progress: Callable[[str], None] | None = None) -> tuple[AttackResult, Tensor]:
    """The worst case of a score for inputs that should score high: per sample the lowest ``score(x')`` over ``x'``
    in the threat ball that the attackers find (the in-distribution half of T Sec. 3.4's adversarial AUC, whose
    class-k inputs are pushed down while the others are pushed up by :func:`raise_score`).

    :func:`raise_score` of ``-score``: returns its search result and reference ``r``; the worst-case score is
    ``-(result.margin + r)``."""
    return raise_score(_Negated(score), x, threat=threat, attackers=attackers, seed=seed, batch_size=batch_size,
                       device=device, progress=progress)
