"""S Sec. 3 on exact 2D densities (atebm.dsgan.theory): Prop. 1's optimal discriminator, Eq. 3's identity, Thm. 1's
minimum, the minimiser of C(G) when Thm. 1's assumption fails, and Alg. 1 in function space (Prop. 3) converging
to it. Grids of 41 x 41 cells keep every test well under a second of arithmetic."""
from __future__ import annotations

import math

import pytest
import torch

from atebm.dsgan.theory import (
    GridDensities,
    check_theory,
    criterion_minimiser,
    discriminator_value,
    energy_distances,
    eq1_target,
    function_space_alg1,
    jensen_shannon,
    optimal_discriminator,
    total_variation,
    virtual_criterion,
)
from atebm.dsgan.toy import BlurredMixture, evaluate_2d, minimiser_scale
from atebm.dsgan.training import DSGAN

ONE = BlurredMixture(torch.tensor([[-1.5, 0.0]]), torch.ones(1), 0.4, "one blob")
TWO = BlurredMixture(torch.tensor([[-1.5, 0.0], [1.5, 0.0]]), torch.tensor([0.5, 0.5]), 0.4, "two blobs")
OTHER = BlurredMixture(torch.tensor([[1.5, 0.0]]), torch.ones(1), 0.4, "the other blob")


def _difference_set() -> GridDensities:
    """The 2D analogue of S Fig. 5-6: p_d = one blob, p_dbar = p_d and another blob, half each."""
    return GridDensities.of(ONE, TWO, cells=41)


def test_the_optimal_discriminator_is_prop1_and_beats_every_perturbed_one():
    p_dbar, p_d, p_g = torch.tensor([2.0, 1.0, 0.0]), torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 3.0, 0.0])
    expected = [2 / (2 + 0.8), 1 / (1 + 0.2 * 3), 0.5]     # alpha 0.8; 1/2 where all three vanish
    assert optimal_discriminator(p_dbar, p_d, p_g, 0.8).tolist() == pytest.approx(expected)
    grid = GridDensities.of(ONE, tau=1.0, cells=41)
    d_star = optimal_discriminator(grid.p_dbar, grid.p_d, grid.p_dbar, 0.8)
    best = discriminator_value(d_star, grid, grid.p_dbar, 0.8)
    g = torch.Generator().manual_seed(0)
    for scale in (0.01, 0.3):
        noise = scale * torch.randn(d_star.shape, generator=g, dtype=d_star.dtype)
        assert discriminator_value(torch.sigmoid(torch.logit(d_star) + noise), grid, grid.p_dbar, 0.8) < best
    # S Eq. 3 and Thm. 1's proof: C(G) = V(G, D*) = -log 4 + 2 JSD(p_dbar || (1 - alpha) p_g + alpha p_d)
    mixture = 0.2 * grid.p_dbar + 0.8 * grid.p_d
    assert best == pytest.approx(-math.log(4) + 2 * jensen_shannon(grid.p_dbar, mixture, grid.cell_area), abs=1e-12)
    assert virtual_criterion(grid, grid.p_dbar, 0.8) == best


def test_thm1_when_alpha_pd_stays_below_pdbar_the_minimiser_is_the_difference_and_c_is_minus_log_4():
    grid = _difference_set()
    assert bool((0.5 * grid.p_d <= grid.p_dbar).all())
    minimiser, k = criterion_minimiser(grid, 0.5)
    other = OTHER.density(grid.points).double()
    other = other / (other.sum() * grid.cell_area)
    assert k == 1.0
    assert total_variation(minimiser, other, grid.cell_area) < 1e-6                  # the blob p_d lacks
    assert total_variation(eq1_target(grid, 0.5), other, grid.cell_area) < 1e-6
    assert virtual_criterion(grid, minimiser, 0.5) == pytest.approx(-math.log(4), abs=1e-9)
    assert virtual_criterion(grid, grid.p_dbar, 0.5) > -math.log(4) + 0.05           # an ordinary GAN's p_g


def test_when_thm1s_assumption_fails_the_minimiser_is_eq1s_target_at_a_larger_alpha_and_alg1_reaches_it():
    """p_dbar = p_d * N(0, I) with alpha 0.8 (alpha p_d > p_dbar near the blob, as in both 2D case studies): the
    minimum of C(G) is above -log 4, at (k p_dbar - alpha p_d)+ with k < 1, which S Eq. 1's target (k = 1) is
    not; Alg. 1 with the optimal discriminator at every step descends C monotonically to that minimiser."""
    grid = GridDensities.of(ONE, tau=1.0, cells=41)
    minimiser, k = criterion_minimiser(grid, 0.8)
    assert 0.2 < k < 0.6
    assert grid.integral(minimiser) == pytest.approx(1.0)
    outside = (0.8 / k) * grid.p_d >= grid.p_dbar
    assert float(minimiser[outside].abs().max()) == 0.0 and float(minimiser[~outside].min()) > 0
    at_minimiser = virtual_criterion(grid, minimiser, 0.8)
    at_target = virtual_criterion(grid, eq1_target(grid, 0.8), 0.8)
    assert -math.log(4) + 0.1 < at_minimiser < at_target - 1e-3
    final, trace = function_space_alg1(grid, 0.8, steps=600, record_every=50)
    assert all(b <= a + 1e-12 for a, b in zip(trace, trace[1:])) and trace[0] > trace[-1] + 0.05
    assert total_variation(final, minimiser, grid.cell_area) < 1e-3
    assert trace[-1] == pytest.approx(at_minimiser, abs=1e-6)


@pytest.mark.parametrize("alpha, assumption", [(0.5, True), (0.8, False)])
def test_check_theory_reports_every_statement_holding(alpha, assumption):
    result = check_theory(_difference_set(), alpha, steps=1500)
    assert result["thm1_assumption_holds"] is assumption and (result["k"] == 1.0) is assumption
    assert all(result["holds"].values()), result["holds"]
    assert result["criterion"]["minimiser"] <= result["criterion"]["eq1_target"] + 1e-12
    with pytest.raises(ValueError, match="alpha must lie in"):
        check_theory(_difference_set(), 1.0)


def test_energy_distances_put_the_target_next_to_itself_and_p_d_far_from_it(one_thread):
    grid = GridDensities.of(ONE, tau=1.0, cells=41)
    _, k = criterion_minimiser(grid, 0.8)
    exact = ONE.target_sample(400, 1.0, 0.8 / k, torch.Generator().manual_seed(5))
    result = energy_distances(exact, ONE, 1.0, 0.8, k, n_reference=400)
    assert result["generated_to_minimiser"] < 0.05 < result["p_d_to_minimiser"]
    assert result["minimiser_to_minimiser"] < 0.05 and result["eq1_target_to_eq1_target"] < 0.05
    assert result["p_dbar_to_eq1_target"] < result["p_d_to_eq1_target"]


def test_minimiser_scale_solves_the_kkt_mass_equation_exactly():
    """sum_i (k p_dbar_i - alpha p_d_i)_+ = 1 - alpha on hand-built cells: p_dbar = (1/2, 1/2), p_d = (1, 0),
    alpha 0.8 gives 0.5 k = 0.2 (the first cell stays off while k < 1.6), so k = 0.4 and alpha' = 2; where
    alpha p_d <= p_dbar on every cell (S Thm. 1) k is exactly 1."""
    half = torch.tensor([0.5, 0.5])
    assert minimiser_scale(half, torch.tensor([1.0, 0.0]), 0.8) == pytest.approx(0.4, abs=1e-12)
    assert minimiser_scale(half, half, 0.8) == 1.0
    assert minimiser_scale(half, torch.tensor([1.0, 0.0]), 0.0) == 1.0
    with pytest.raises(ValueError, match="same cells"):
        minimiser_scale(half, torch.ones(3), 0.8)


def test_the_2d_evaluation_compares_with_the_minimiser_not_eq1_at_the_nominal_alpha(one_thread):
    """evaluate_2d's target is (p_dbar - alpha' p_d)+ with alpha' = alpha / k (k from samples of p_dbar, checked
    against the exact grid solution): exact samples of it sit in its support and next to its held-out sample,
    while exact samples of S Eq. 1's (p_dbar - alpha p_d)+ leave that support and lie farther from it (on the
    code before this fix, which compared with Eq. 1 at alpha, the order was the reverse)."""
    tau = 0.6
    _, k = criterion_minimiser(GridDensities.of(ONE, tau=tau, cells=81), 0.8)
    g = torch.Generator().manual_seed(0)
    minimiser = ONE.target_sample(2000, tau, 0.8 / k, g)
    eq1 = ONE.target_sample(2000, tau, 0.8, g)
    at_minimiser = evaluate_2d(minimiser, ONE, tau, 0.8, seed=1)
    at_eq1 = evaluate_2d(eq1, ONE, tau, 0.8, seed=1)
    assert at_minimiser["thresholds"]["target_alpha"] == pytest.approx(0.8 / k, rel=0.02) and 0.8 / k > 1.2
    assert at_minimiser["generated"]["in_target_support"] == 1.0 > 0.97 > at_eq1["generated"]["in_target_support"]
    assert (at_minimiser["generated"]["energy_distance_to_target"] + 0.003
            < at_eq1["generated"]["energy_distance_to_target"])
    assert at_minimiser["picture"] == {**at_minimiser["picture"], "reproduced": True, "resolvable": True}
    p_dbar = evaluate_2d(ONE.sample(2000, g, extra_std=tau), ONE, tau, 0.8, seed=1)
    assert p_dbar["picture"]["reproduced"] is False  # an ordinary GAN's solution does not give the picture


@pytest.mark.parametrize("trick, expected", [(True, 205 / 256), (False, 0.8)])
def test_the_mixture_alpha_is_the_share_of_p_d_in_the_fake_batch(trick, expected):
    assert DSGAN(alpha=0.8, batch_size=256, sampling_trick=trick,
                 generator={"arch": "mlp", "kwargs": {"latent_dim": 2, "out_dim": 2, "hidden": 8,
                                                       "depth": 1}}).mixture_alpha == pytest.approx(expected)
