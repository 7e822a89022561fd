import math

import pytest
import torch
from torch import nn

from atebm import build_score_model, pgd, sgld


class Quadratic(nn.Module):
    """score(x) = -||x - c||^2: the ascent direction is known in closed form."""

    def __init__(self, centre: torch.Tensor):
        super().__init__()
        self.centre = nn.Parameter(centre.clone())

    def forward(self, x):
        return -(x - self.centre).flatten(1).pow(2).sum(1)


def small_convnet():
    return build_score_model({"arch": "convnet", "kwargs": {"in_channels": 1, "width": 8}, "mean": 0.5, "std": 0.5})


def test_l2_step_length_equals_step_size_for_every_sample():
    model = Quadratic(torch.full((1, 8, 8), 0.5))
    x = torch.rand(16, 1, 8, 8) * 0.2 + 0.4  # far from the box edges, so no clamping
    y = pgd(model, x, steps=1, step_size=0.05, clamp=None)
    lengths = (y - x).flatten(1).norm(dim=1)
    assert torch.allclose(lengths, torch.full_like(lengths, 0.05), atol=1e-6)


def test_l2_step_follows_normalised_gradient_and_linf_uses_sign():
    centre = torch.zeros(1, 4, 4)
    model = Quadratic(centre)
    x = torch.rand(5, 1, 4, 4) + 1.0
    y = pgd(model, x, steps=1, step_size=0.1, clamp=None)
    expected_dir = -(x - centre) / (x - centre).flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    assert torch.allclose(y - x, 0.1 * expected_dir, atol=1e-6)
    y_inf = pgd(model, x, steps=1, step_size=0.1, norm="linf", clamp=None)
    assert torch.allclose(y_inf - x, torch.full_like(x, -0.1), atol=1e-6)


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_projection_never_leaves_eps_ball_or_box(norm):
    model = small_convnet()
    x = torch.rand(12, 1, 28, 28)
    eps = 0.7 if norm == "l2" else 0.05
    _, traj = pgd(model, x, steps=10, step_size=0.3 if norm == "l2" else 0.02, norm=norm, eps=eps,
                  record=list(range(11)))
    for xi in traj:
        delta = (xi - x).flatten(1)
        dist = delta.norm(dim=1) if norm == "l2" else delta.abs().amax(dim=1)
        assert (dist <= eps + 1e-5).all()
        assert xi.min() >= 0 and xi.max() <= 1


def test_descent_lowers_the_score_within_eps():
    model = small_convnet()
    x = torch.rand(8, 1, 28, 28)
    y = pgd(model, x, steps=10, step_size=0.2, eps=1.0, descent=True)
    with torch.no_grad():
        assert (model(y) < model(x)).all()


def test_masked_pixels_never_change():
    model = small_convnet()
    x = torch.rand(6, 1, 28, 28)
    mask = torch.zeros(1, 1, 28, 28)
    mask[..., 8:20, 8:20] = 1
    _, traj = pgd(model, x, steps=8, step_size=1.0, mask=mask, record=list(range(9)))
    for xi in traj:
        assert torch.equal(xi[..., mask[0, 0] == 0], x[..., mask[0, 0] == 0])
    assert not torch.equal(traj[-1], x)


def test_score_rises_along_the_path_on_a_toy_score():
    model = Quadratic(torch.full((1, 6, 6), 0.5))
    x = torch.rand(10, 1, 6, 6)
    _, traj = pgd(model, x, steps=6, step_size=0.1, record=list(range(7)))
    with torch.no_grad():
        scores = torch.stack([model(t) for t in traj])
    assert (scores[1:] >= scores[:-1] - 1e-6).all()
    assert (scores[-1] > scores[0]).all()


def test_restarts_keep_the_best_per_sample():
    torch.manual_seed(1)
    model = small_convnet()
    x = torch.rand(10, 1, 28, 28)
    kwargs = dict(steps=3, step_size=0.1, eps=0.5, random_start=True)
    singles = [pgd(model, x, generator=torch.Generator().manual_seed(s), **kwargs) for s in range(1)]
    best = pgd(model, x, restarts=4, generator=torch.Generator().manual_seed(0), **kwargs)
    g = torch.Generator().manual_seed(0)
    runs = [pgd(model, x, generator=g, **kwargs) for _ in range(4)]
    with torch.no_grad():
        run_scores = torch.stack([model(r) for r in runs])
        assert torch.allclose(model(best), run_scores.max(dim=0).values, atol=1e-5)
        assert (model(best) >= model(singles[0]) - 1e-5).all()


def test_zero_gradient_gives_no_nan():
    class Flat(nn.Module):
        def forward(self, x):
            return x.flatten(1).sum(1) * 0.0

    x = torch.rand(4, 1, 5, 5)
    for norm in ("l2", "linf"):
        y = pgd(Flat(), x, steps=3, step_size=0.5, norm=norm)
        assert torch.isfinite(y).all()
        assert torch.equal(y, x)


def test_model_mode_and_parameter_grads_untouched():
    model = build_score_model({"arch": "resnet32", "kwargs": {"depth": 18, "in_channels": 1, "width": 4}})
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    pgd(model, torch.rand(4, 1, 32, 32), steps=2, step_size=0.5)
    assert model.training and all(m.training for m in model.modules())
    assert all(p.grad is None for p in model.parameters())
    # BatchNorm running statistics unchanged: the sampler runs the model in eval mode
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k]), k
    model.eval()
    pgd(model, torch.rand(4, 1, 32, 32), steps=1, step_size=0.5)
    assert not model.training


def test_record_returns_requested_steps_and_final():
    model = Quadratic(torch.full((1, 4, 4), 0.5))
    x = torch.rand(3, 1, 4, 4)
    y, traj = pgd(model, x, steps=5, step_size=0.1, record=[0, 2, 5])
    assert traj.shape == (3, 3, 1, 4, 4)
    assert torch.equal(traj[0], x) and torch.equal(traj[2], y)
    assert torch.equal(traj[1], pgd(model, x, steps=2, step_size=0.1))


def test_bad_arguments_are_rejected_with_clear_messages():
    model = Quadratic(torch.zeros(1, 2, 2))
    x = torch.rand(2, 1, 2, 2)
    with pytest.raises(ValueError, match="norm"):
        pgd(model, x, steps=1, step_size=0.1, norm="l1")
    with pytest.raises(ValueError, match="finite eps"):
        pgd(model, x, steps=1, step_size=0.1, random_start=True)
    with pytest.raises(ValueError, match="random_start"):
        pgd(model, x, steps=1, step_size=0.1, eps=1.0, restarts=3)
    with pytest.raises(ValueError, match="one value per sample"):
        pgd(lambda t: t.flatten(1), x, steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="record"):
        pgd(model, x, steps=2, step_size=0.1, record=[3])


def test_works_for_2d_points_with_a_custom_box():
    model = build_score_model({"arch": "mlp2d", "kwargs": {"hidden": 16, "depth": 2}})
    x = torch.rand(20, 2) * 8 - 4
    y = pgd(model, x, steps=30, step_size=0.5, clamp=(-4.0, 4.0))
    assert y.shape == x.shape and y.abs().max() <= 4.0


def test_sgld_follows_the_drift_and_respects_the_box():
    model = Quadratic(torch.full((1, 4, 4), 0.5))
    x = torch.rand(64, 1, 4, 4)
    y = sgld(model, x, steps=200, step_size=0.01, noise_std=0.0)
    # without noise each step is x <- x + 0.005 * (-2)(x - c), a contraction by 0.99 towards c
    assert torch.allclose(y, 0.5 + (x - 0.5) * 0.99**200, atol=1e-5)
    z = sgld(model, x, steps=5, step_size=0.5, generator=torch.Generator().manual_seed(0))
    assert z.min() >= 0 and z.max() <= 1 and math.isfinite(float(z.sum()))
