"""atebm's own Square Attack (atebm.attacks.square) and its wiring into the search (method "square", ART's Square
as "square-art").

Margins with known maximisers: each test fails on an implementation that has the defect it names."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from atebm.attacks import AcceptanceMargin, AttackSpec, ThreatModel, rows_of, search
from atebm.attacks.square import _l2_proposal, _l2_start, p_at, square_attack
from linear_model import Linear

CPU = torch.device("cpu")


class LinearMargin(nn.Module):
    """``w · (x - 0.5) + offset`` per row: the Linf maximiser inside the box is ``0.5 + eps sign(w)`` (value
    ``eps ||w||_1``), the L2 one ``0.5 + eps w / ||w||`` (value ``eps ||w||_2``) while those stay in [0, 1]."""

    def __init__(self, w: torch.Tensor, offset: torch.Tensor | float = 0.0) -> None:
        super().__init__()
        self.w, self.offset = w.flatten(), torch.as_tensor(offset, dtype=torch.float32)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x.flatten(1) - 0.5) @ self.w + self.offset


class Counting:
    """A ``rows -> margin`` factory that records how many rows every margin evaluation covered."""

    def __init__(self, make) -> None:
        self.make, self.calls = make, []

    def __call__(self, rows: torch.Tensor) -> nn.Module:
        margin, calls = self.make(rows), self.calls

        class Counted(nn.Module):
            def forward(self, x: torch.Tensor) -> torch.Tensor:
                calls.append(len(x))
                return margin(x)

        return Counted()


def _weights(seed: int = 0) -> torch.Tensor:
    return torch.randn(1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _size(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().max(dim=1).values if norm == "linf" else flat.norm(dim=1)


# ------------------------------------------------------------------------------------------------ the algorithm
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(norm=st.sampled_from(["linf", "l2"]), eps=st.floats(0.01, 3.0), seed=st.integers(0, 2 ** 20),
       queries=st.integers(1, 12), channels=st.sampled_from([1, 3]), side=st.integers(8, 11))
def test_every_point_lies_in_the_ball_and_the_box(norm, eps, seed, queries, channels, side):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(3, channels, side, side, generator=g)
    x[0] = x[0].round()                                   # at the bounds: the box clips most moves
    margin = LinearMargin(torch.randn(channels * side * side, generator=g))
    run = square_attack(lambda rows: margin, x, torch.arange(3), norm=norm, eps=eps, queries=queries, p_init=0.3,
                        seed=seed, device=CPU)
    assert (_size(run.x - x, norm) <= eps + 1e-6).all()
    assert run.x.min() >= 0 and run.x.max() <= 1
    assert torch.allclose(run.margin, margin(run.x), atol=1e-5)      # the margin returned is the point's


def test_a_linear_margin_is_driven_to_its_known_maximum():
    w = _weights()
    x = torch.full((4, 1, 8, 8), 0.5)
    linf = square_attack(lambda rows: LinearMargin(w), x, torch.arange(4), norm="linf", eps=0.1, queries=300,
                         p_init=0.3, seed=0, device=CPU)
    assert (linf.margin >= 0.95 * 0.1 * float(w.abs().sum())).all(), linf.margin
    assert torch.allclose((linf.x - x).abs(), torch.full_like(x, 0.1), atol=1e-6)   # every pixel at a corner
    x = torch.full((8, 1, 8, 8), 0.5)
    l2 = square_attack(lambda rows: LinearMargin(w), x, torch.arange(8), norm="l2", eps=0.3, queries=500,
                       p_init=0.3, seed=0, device=CPU)
    # a random direction (the start) reaches about 0.12 of the optimum; windows that forget their old content, 0.6
    fraction = l2.margin / (0.3 * float(w.norm()))
    assert fraction.mean() >= 0.66 and fraction.min() >= 0.55, fraction
    assert torch.allclose(_size(l2.x - x, "l2"), torch.full((8,), 0.3), atol=1e-5)


def test_an_l2_step_moves_mass_from_one_window_into_another_and_leaves_the_rest():
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((32, 1, 16, 16), 0.5)
    current = _l2_start(x0, 1.0, g)                         # the box is not active: the start has norm eps
    assert torch.allclose(_size(current - x0, "l2"), torch.ones(32), atol=1e-5)
    proposal = _l2_proposal(x0, current, 1.0, 0.05, g)      # windows of side 5
    assert torch.allclose(_size(proposal - x0, "l2"), torch.ones(32), atol=1e-5)
    changed = ((proposal - current).abs() > 1e-6).flatten(1).sum(dim=1)
    assert (changed > 0).all() and (changed <= 2 * 5 * 5).all(), changed     # no rescaling outside the windows
    emptied = (((proposal - x0).abs() < 1e-7) & ((current - x0).abs() > 1e-4)).flatten(1).sum(dim=1)
    assert (emptied > 0).float().mean() > 0.5, emptied     # window 2 emptied (unless it lies inside window 1)


def test_one_margin_query_per_active_row_and_iteration():
    w = _weights()
    counting = Counting(lambda rows: LinearMargin(w, -100.0))         # never succeeds
    run = square_attack(counting, torch.full((5, 1, 8, 8), 0.5), torch.arange(5), norm="l2", eps=0.5, queries=40,
                        p_init=0.3, seed=0, device=CPU, stop_at=torch.zeros(5))
    assert counting.calls == [5] * 40                     # the start point is query 1, then one pass per iteration
    assert run.queries.tolist() == [40] * 5


def test_rows_that_succeed_leave_the_search():
    w = _weights()
    offsets = torch.tensor([5.0, -100.0, -0.2, -100.0])   # row 0 succeeds at once, row 2 after a few improvements
    counting = Counting(lambda rows: LinearMargin(w, offsets[rows]))
    run = square_attack(counting, torch.full((4, 1, 8, 8), 0.5), torch.arange(4), norm="linf", eps=0.05, queries=60,
                        p_init=0.3, seed=1, device=CPU, stop_at=torch.zeros(4))
    assert run.queries[0] == 1 and run.queries[1] == run.queries[3] == 60
    assert 1 < run.queries[2] < 60 and run.margin[2] > 0
    assert counting.calls[:2] == [4, 3] and counting.calls[-1] == 2
    assert sum(counting.calls) == int(run.queries.sum())
    everyone = square_attack(Counting(lambda rows: LinearMargin(w, offsets[rows])), torch.full((4, 1, 8, 8), 0.5),
                             torch.arange(4), norm="linf", eps=0.05, queries=60, p_init=0.3, seed=1, device=CPU)
    assert everyone.queries.tolist() == [60] * 4           # stop_at=None: nobody leaves


def test_the_same_seed_gives_the_same_run_and_the_global_generators_are_untouched():
    w = _weights()
    x = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    torch.manual_seed(11)
    expected = torch.rand(1)
    torch.manual_seed(11)
    for norm in ("linf", "l2"):
        runs = [square_attack(lambda rows: LinearMargin(w), x, torch.arange(6), norm=norm, eps=0.2, queries=30,
                              p_init=0.3, seed=seed, device=CPU) for seed in (4, 4, 5)]
        assert torch.equal(runs[0].x, runs[1].x) and torch.equal(runs[0].margin, runs[1].margin)
        assert not torch.equal(runs[0].x, runs[2].x)
    assert torch.equal(torch.rand(1), expected)


class Diverging(nn.Module):
    """The linear margin, but NaN wherever the top-left pixel was raised above 0.5 and +inf wherever the
    bottom-right one was (a model that diverges there)."""

    def __init__(self, w: torch.Tensor) -> None:
        super().__init__()
        self.linear, self.evaluated_nan = LinearMargin(w), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nan, inf = x[:, 0, 0, 0] > 0.5, x[:, 0, -1, -1] > 0.5
        self.evaluated_nan += int((nan | inf).sum())
        return torch.where(nan, math.nan, torch.where(inf, math.inf, self.linear(x)))


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_nan_margins_are_refused_and_counted(norm):
    margin = Diverging(_weights())
    x = torch.full((6, 1, 8, 8), 0.5)
    result = search(lambda rows: margin, x, threat=ThreatModel(norm, 0.2),
                    attackers=[AttackSpec("square", steps=40, label="square")], stop_at=None, seed=2)
    record = result.by_attacker["square"]
    assert margin.evaluated_nan > 0 and record.refused_proposals == margin.evaluated_nan
    assert record.failed_rows == 0 and torch.isfinite(result.margin).all()
    improved = result.margin > result.clean_margin
    kept = result.x[improved]
    assert improved.any() and (kept[:, 0, 0, 0] <= 0.5).all() and (kept[:, 0, -1, -1] <= 0.5).all()   # none refused


# ------------------------------------------------------------------------------------------------ p schedule
def test_p_is_halved_on_the_official_schedule_rescaled_to_the_budget():
    at_10k = [0, 10, 11, 50, 51, 200, 201, 500, 501, 1000, 1001, 2000, 2001, 4000, 4001, 6000, 6001, 8000, 8001,
              9999]
    halvings = [0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7, 8, 8, 9, 9]
    assert [p_at(0.8, i, 10000) for i in at_10k] == [0.8 / 2 ** k for k in halvings]
    assert [p_at(0.8, i, 1000) for i in range(1000)] == [p_at(0.8, 10 * i, 10000) for i in range(1000)]
    assert p_at(0.3, 4, 1000) == 0.3 / 2 and p_at(0.3, 1, 1000) == 0.3


# ------------------------------------------------------------------------------------------------ the wiring
def test_square_is_atebms_own_and_square_art_is_arts():
    threat = ThreatModel("linf", 0.1)
    mine, art = AttackSpec("square", steps=50), AttackSpec("square-art", steps=50)
    assert mine.describe(threat)["implementation"] == "atebm (vectorised, per-sample windows)"
    assert art.describe(threat)["implementation"] == "ART SquareAttack"
    assert mine.budget()["queries"] == art.budget()["queries"] == 50 and art.name == "square-art-50"
    for spec in (mine, art):
        with pytest.raises(ValueError, match="needs NCHW images of at least 8x8"):
            search(lambda rows: LinearMargin(torch.ones(36)), torch.rand(2, 1, 6, 6), threat=threat, attackers=[spec])


def test_atebm_square_breaks_at_least_as_many_inputs_as_arts_at_the_same_queries():
    g = torch.Generator().manual_seed(0)
    model = Linear(torch.randn(3, 64, generator=g) * 0.3, torch.zeros(3))
    x = torch.rand(24, 1, 8, 8, generator=g) * 0.6 + 0.2
    y = model(x).argmax(1).detach()
    margin_for = rows_of(lambda yb: AcceptanceMargin(model, yb), y)
    broken = {}
    for method in ("square", "square-art"):
        result = search(margin_for, x, threat=ThreatModel("linf", 0.03), attackers=[AttackSpec(method, steps=200)],
                        model=model, seed=1)
        broken[method] = int(result.success.sum())
    # the exact Linf worst case of a linear model (box inactive): breakable iff
    # max_{i != y} z_i - z_y + eps ||w_i - w_y||_1 > 0
    z, w = model(x).detach(), model.weight.detach()
    exact = torch.tensor([max(float(z[n, i] - z[n, y[n]] + 0.03 * (w[i] - w[y[n]]).abs().sum())
                             for i in range(3) if i != y[n]) for n in range(24)])
    assert 0 < broken["square-art"] <= broken["square"] <= int((exact > 0).sum()), broken
    assert broken["square"] >= 0.9 * int((exact > 0).sum()), (broken, int((exact > 0).sum()))


def test_arts_square_stays_reachable_and_seeded():
    w = _weights()
    x = torch.full((3, 1, 8, 8), 0.5)
    np.random.seed(7)
    expected = np.random.rand()
    np.random.seed(7)
    result = search(lambda rows: LinearMargin(w, -100.0), x, threat=ThreatModel("l2", 0.5),
                    attackers=[AttackSpec("square-art", steps=20)], seed=3)
    assert np.random.rand() == expected
    assert (result.margin > result.clean_margin).all()
    assert result.protocol["attackers"][0]["implementation"] == "ART SquareAttack"


def test_a_candidate_outside_the_ball_stops_the_search(monkeypatch):
    """The search trusts Square's margins but not its geometry: an input outside the ball would count as a success
    that is not one."""
    import sys

    from atebm.attacks.square import SquareRun

    def escaping(margin_for, x0, rows, **kwargs):
        return SquareRun(x=(x0 + 0.5).clamp(0, 1), margin=torch.ones(len(x0)), queries=torch.ones(len(x0)),
                         refused=0)

    monkeypatch.setattr(sys.modules["atebm.attacks.search"], "square_attack", escaping)
    x = torch.full((3, 1, 8, 8), 0.25)
    with pytest.raises(RuntimeError, match="outside the LINF eps 0.1 ball"):
        search(lambda rows: LinearMargin(torch.ones(64), offset=-1e3), x, threat=ThreatModel("linf", 0.1),
               attackers=[AttackSpec("square", steps=5)])
