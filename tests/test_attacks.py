"""The attack layer (atebm.attacks): specs, the one ART adapter, the search, the CW distortion search.

Hand-built models with known answers: each test fails on an implementation that has the defect it names."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from atebm.attacks import (
    AcceptanceMargin,
    AttackSpec,
    MarginLogits,
    ScoreAbove,
    TargetedMargin,
    ThreatModel,
    lower_score,
    min_distortion_l2,
    raise_score,
    rows_of,
    search,
)
from atebm.sampling import pgd
from linear_model import Linear


def _rejected_misclassified() -> tuple[Linear, torch.Tensor, torch.Tensor, float]:
    """The review's case: logits [0.4, 1.2, 0] at the input (true class 0): misclassified, but its top logit 1.2 is
    below the threshold T = 2, so the detector rejects it; raising class 1 by 0.8 makes it a false positive."""
    torch.manual_seed(0)
    w = torch.zeros(3, 64)
    w[1, :32] = 0.1                  # class 1 rises along the first half of the pixels
    x = torch.full((4, 1, 8, 8), 0.5)
    bias = torch.tensor([0.4, 1.2, 0.0]) - (x[:1].flatten(1) @ w.t())[0]
    return Linear(w, bias), x, torch.zeros(4, dtype=torch.long), 2.0


# ------------------------------------------------------------------------------------------------ specs
def test_specs_refuse_unknown_keys_and_bad_values_in_one_line():
    with pytest.raises(ValueError, match=r"unknown AttackSpec key\(s\) \['restart'\]"):
        AttackSpec.from_dict({"method": "pgd", "restart": 50})
    for bad in ({"method": "fgsm"}, {"method": "pgd", "steps": 0}, {"method": "apgd", "loss": "hinge"},
                {"method": "square", "p_init": 1.5}, {"method": "pgd", "restarts": True}):
        with pytest.raises(ValueError) as info:
            AttackSpec.from_dict(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="norm"):
        ThreatModel("l1", 1.0)
    with pytest.raises(ValueError, match="eps"):
        ThreatModel("l2", math.inf)


def test_steps_are_relative_to_eps_and_an_unreachable_protocol_is_refused():
    spec = AttackSpec("pgd", steps=40, step_factor=2.5)
    assert spec.step_at(ThreatModel("l2", 2.0)) == pytest.approx(0.125)
    assert spec.step_at(ThreatModel("linf", 0.3)) == pytest.approx(0.01875)
    fixed = AttackSpec("pgd", steps=50, step_size=0.02)          # the old Linf-0.3 detection protocol
    assert fixed.step_at(ThreatModel("linf", 0.3)) == 0.02
    with pytest.raises(ValueError, match="reach at most 1 in l2, less than eps 2.5"):
        fixed.step_at(ThreatModel("l2", 2.5))
    model, x, y, threshold = _rejected_misclassified()
    with pytest.raises(ValueError, match="less than eps 2.5"):
        search(rows_of(lambda yb: AcceptanceMargin(model, yb, threshold), y), x, threat=ThreatModel("l2", 2.5),
               attackers=[fixed], model=model)


# ------------------------------------------------------------------------------------------------ ART adapter
def test_margin_view_wins_exactly_on_success_and_maps_attacked_rows():
    model, x, y, threshold = _rejected_misclassified()
    x = x.clone()
    x[2] += 0.3                                          # this one is already a false positive
    margin_for = rows_of(lambda yb: AcceptanceMargin(model, yb, threshold), y)
    view = MarginLogits()
    view.bind(margin_for, torch.arange(4))
    logits = view(x).detach()
    m = margin_for(torch.arange(4))(x).detach()
    assert torch.equal(logits[:, 1], m) and bool((logits[:, 0] == 0).all()) and bool((logits[:, 2] == -1e4).all())
    assert (logits.argmax(1) == 1).tolist() == (m > 0).tolist() == [False, False, True, False]
    assert view.attacked is not None and view.attacked.tolist() == [True, True, False, True]
    sub = view(x[view.attacked]).detach()                # ART's later calls carry the attacked rows only
    assert torch.equal(sub[:, 1], m[view.attacked])
    with pytest.raises(RuntimeError, match="rows"):
        view(x[:2])
    assert list(view.parameters()) == []                 # ART's zero_grad()/to() never reach the model


@pytest.mark.parametrize("spec", [AttackSpec("apgd", steps=10, loss="ce"), AttackSpec("apgd", steps=10, loss="dlr"),
                                  AttackSpec("square", steps=300, p_init=0.5)])
def test_art_attacks_a_misclassified_but_rejected_input(spec):
    """ART's own success test (argmax) skipped such inputs; through the adapter they are attacked and broken."""
    model, x, y, threshold = _rejected_misclassified()
    margin_for = rows_of(lambda yb: AcceptanceMargin(model, yb, threshold), y)
    before = margin_for(torch.arange(4))(x).detach()
    assert bool((before < 0).all()) and bool((model(x).argmax(1) != y).all())   # misclassified, rejected
    result = search(margin_for, x, threat=ThreatModel("linf", 0.3), attackers=[spec], model=model, seed=3)
    assert bool(result.success.all()), result.margin
    assert float((result.x - x).abs().max()) <= 0.3 + 1e-6
    assert result.protocol["attackers"][0]["broke"] == 4
    assert all(p.grad is None for p in model.parameters())


def test_art_and_every_random_generator_are_seeded_and_restored():
    model, x, y, threshold = _rejected_misclassified()
    margin_for = rows_of(lambda yb: AcceptanceMargin(model, yb, -math.inf), y)   # any misclassification
    specs = [AttackSpec("square", steps=30), AttackSpec("pgd", steps=3, restarts=2)]
    torch.manual_seed(11)
    np.random.seed(11)
    expected_torch, expected_np = torch.rand(1), np.random.rand()
    torch.manual_seed(11)
    np.random.seed(11)
    first = search(margin_for, x * 0.9, threat=ThreatModel("l2", 1.0), attackers=specs, model=model, seed=5,
                   stop_at=None)
    assert torch.equal(torch.rand(1), expected_torch) and np.random.rand() == expected_np
    second = search(margin_for, x * 0.9, threat=ThreatModel("l2", 1.0), attackers=specs, model=model, seed=5,
                    stop_at=None)
    assert torch.equal(first.x, second.x) and torch.equal(first.margin, second.margin)


# ------------------------------------------------------------------------------------------------ the search
class Band(nn.Module):
    """A margin positive only while the mean pixel lies in (0.55, 0.65): a success the ascent passes through."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return 0.05 - (x.flatten(1).mean(1) - 0.6).abs()


def test_a_success_met_at_an_intermediate_iterate_is_kept():
    x = torch.full((3, 1, 8, 8), 0.5)
    climb = lambda z: z.flatten(1).mean(1)              # noqa: E731  (what the attacker ascends: up, past the band)
    spec = AttackSpec("pgd", steps=8, step_size=0.04, random_start=False)
    last = pgd(climb, x, steps=8, step_size=0.04, norm="linf", eps=0.3)
    assert bool((Band()(last) < 0).all())                # the final iterate overshoots the band
    result = search(lambda rows: Band(), x, objective_for=lambda rows: climb, threat=ThreatModel("linf", 0.3),
                    attackers=[spec])
    assert bool(result.success.all()) and bool((Band()(result.x) > 0).all())


def test_pgd_keep_best_returns_the_best_iterate_of_any_restart():
    x = torch.full((2, 1, 8, 8), 0.5)
    band = Band()
    best = pgd(lambda z: z.flatten(1).mean(1), x, steps=8, step_size=0.04, norm="linf", eps=0.3, keep="best",
               select=band)
    assert bool((band(best) > 0).all())
    adam = pgd(band, x, steps=6, step_size=0.02, norm="linf", eps=0.3, rule="adam", keep="best", random_start=True,
               restarts=3, generator=torch.Generator().manual_seed(0))
    assert bool((band(adam) >= band(x)).all())


def test_the_cascade_attacks_only_survivors_and_keeps_the_per_sample_worst_case():
    torch.manual_seed(1)
    w = torch.randn(3, 64) * 0.2
    model = Linear(w, torch.zeros(3))
    x = torch.rand(12, 1, 8, 8) * 0.5 + 0.25
    y = model(x).argmax(1).detach()                      # every input correct when clean
    margin_for = rows_of(lambda yb: AcceptanceMargin(model, yb), y)
    specs = [AttackSpec("pgd", steps=1, step_factor=1.0, random_start=False, label="weak"),
             AttackSpec("pgd", steps=20, label="to y+1"), AttackSpec("pgd", steps=20, label="to y+2")]
    targeted = {f"to y+{j}": rows_of(lambda yb, t, j=j: TargetedMargin(model, yb, (yb + j) % 3), y, y)
                for j in (1, 2)}
    result = search(margin_for, x, threat=ThreatModel("linf", 0.1), attackers=specs, objective_for=targeted,
                    model=model)
    weak, one, two = result.protocol["attackers"]
    assert weak["attacked"] == 12 and one["attacked"] == 12 - weak["broke"]
    assert two["attacked"] == 12 - weak["broke"] - one["broke"]
    assert weak["broke"] + one["broke"] + two["broke"] == int(result.success.sum())
    assert 0 < weak["broke"] < 12
    # the exact Linf worst case of a linear model (the box is not binding for inputs in [0.25, 0.75] at eps 0.1):
    # max_{i != y} z_i - z_y + eps ||w_i - w_y||_1, so an input is breakable iff that is positive
    z = model(x).detach()
    exact = torch.stack([torch.stack([z[n, i] - z[n, y[n]] + 0.1 * (w[i] - w[y[n]]).abs().sum()
                                      for i in range(3) if i != y[n]]).max() for n in range(12)])
    assert (result.success == (exact > 0)).all(), (exact, result.margin)


def test_raise_score_never_lowers_a_score_and_counts_nan_rows():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    score = lambda z: model(z)[:, 0]                     # noqa: E731
    x = torch.rand(5, 1, 8, 8)
    result, reference = raise_score(score, x, threat=ThreatModel("l2", 0.5),
                                    attackers=[AttackSpec("pgd", steps=5), AttackSpec("apgd", steps=5)])
    clean = score(x).detach()
    assert bool((result.margin + reference >= clean - 1e-5).all())
    assert bool((result.margin + reference > clean + 1e-3).all())        # and raises every one
    assert bool(((result.x - x).flatten(1).norm(dim=1) <= 0.5 + 1e-5).all())


def test_lower_score_reaches_the_exact_minimum_of_a_linear_score():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 1))
    score = lambda z: model(z)[:, 0]                     # noqa: E731
    x = 0.4 + 0.2 * torch.rand(5, 1, 8, 8)               # inside [0, 1] with room for the Linf 0.1 ball
    result, reference = lower_score(score, x, threat=ThreatModel("linf", 0.1),
                                    attackers=[AttackSpec("pgd", steps=5, step_size=0.05)])
    lowest = -(result.margin + reference)
    exact = score(x).detach() - 0.1 * model[1].weight.abs().sum()   # w.x + b at x - 0.1 sign(w)
    assert lowest == pytest.approx(exact.tolist(), abs=1e-4)
    assert torch.allclose(score(result.x).detach(), lowest, atol=1e-4)   # the returned inputs score it


def test_objectives_have_the_sign_of_success():
    z = torch.tensor([[3.0, 1.0, 0.0], [1.0, 2.5, 0.0], [1.0, 1.5, 0.0], [-1.0, -2.0, 0.5]])
    fixed = lambda x: z                                  # noqa: E731
    y = torch.zeros(4, dtype=torch.long)
    accepted = AcceptanceMargin(fixed, y, threshold=2.0)(torch.zeros(4, 1))   # type: ignore[arg-type]
    assert accepted.tolist() == pytest.approx([-2.0, 0.5, -0.5, -1.5])        # only row 1 misclassified and >= T
    plain = AcceptanceMargin(fixed, y)(torch.zeros(4, 1))                     # type: ignore[arg-type]
    assert (plain > 0).tolist() == [False, True, True, True]
    targeted = TargetedMargin(fixed, y, torch.tensor([2, 2, 1, 2]))(torch.zeros(4, 1))  # type: ignore[arg-type]
    assert targeted.tolist() == pytest.approx([-3.0, -1.0, 0.5, 1.5])
    above = ScoreAbove(lambda x: x.flatten(1).sum(1), torch.tensor([1.0, 3.0]))(torch.ones(2, 2))
    assert above.tolist() == [1.0, -1.0]
    with pytest.raises(ValueError, match="bound to 4 labels"):
        AcceptanceMargin(fixed, y)(torch.zeros(3, 1))                         # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------------ CW
def test_min_distortion_finds_the_known_minimum_of_a_linear_model():
    torch.manual_seed(0)
    w = torch.randn(16)
    x = 0.5 + 0.05 * torch.randn(4, 1, 4, 4)

    def margin(z: torch.Tensor) -> torch.Tensor:        # success when w.x' > 1
        return z.flatten(1) @ w - 1.0

    known = (-margin(x)).clamp_min(0) / w.norm()        # distance to the hyperplane (the box not binding)
    _, found, _ = min_distortion_l2(margin, x, steps=200, lr=0.1, search_steps=12)
    assert torch.allclose(found, known, rtol=0.03)
    assert bool((found >= known - 1e-3).all())          # never below the true minimum



def test_min_distortion_raises_c_geometrically_until_success():
    """The old search bisected inside (0, 8) and gave up there; CW raise c until the attack succeeds."""
    x = torch.full((2, 1, 2, 2), 0.5)
    never = lambda z: -torch.ones(len(z)) + 0 * z.sum((1, 2, 3))                 # noqa: E731
    _, found, c = min_distortion_l2(never, x, steps=3, search_steps=4, c_init=1.0, c_growth=10.0)
    assert bool(torch.isinf(found).all())              # never broken: a failure, reported as inf
    assert c.tolist() == [1e4, 1e4]                    # 1 -> 10 -> 100 -> 1000 -> 10000, no ceiling at 8


def test_min_distortion_reports_failure_as_inf():
    x = torch.full((2, 1, 2, 2), 0.5)
    _, found, _ = min_distortion_l2(lambda z: -torch.ones(len(z)) + 0 * z.sum((1, 2, 3)), x, steps=5,
                                    search_steps=2)
    assert bool(torch.isinf(found).all())
