"""The sampler (atebm.pgd / pgd_trajectory / sgld): step rule, projections, masks, restarts, random starts,
origin=, corner cases and refused inputs."""
from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from torch import nn

from atebm import build_score_model, pgd, pgd_trajectory, sgld
from atebm.sampling import PGDTrace, check_inputs, pgd_best, project_onto_ball, trajectory_twin

pytestmark = pytest.mark.usefixtures("one_thread")


class Quadratic(nn.Module):
    """score(x) = -||x - c||^2: the ascent direction is known in closed form."""

    def __init__(self, centre: torch.Tensor):
        super().__init__()
        self.centre = nn.Parameter(centre.clone())

    def forward(self, x):
        return -(x - self.centre).flatten(1).pow(2).sum(1)


class Linear(nn.Module):
    """score(x) = w·x: constant gradient w, so the L2 optimum in a ball around o is o + eps w/||w||."""

    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w.clone(), requires_grad=False)

    def forward(self, x):
        return (x.flatten(1) * self.w.flatten()).sum(1)


def small_convnet():
    return build_score_model({"arch": "convnet", "kwargs": {"in_channels": 1, "width": 8}, "mean": 0.5, "std": 0.5})


def _ks_uniform(samples: np.ndarray) -> float:
    """Kolmogorov-Smirnov distance of samples from U[0, 1]."""
    u = np.sort(samples)
    n = len(u)
    return float(max((np.arange(1, n + 1) / n - u).max(), (u - np.arange(n) / n).max()))


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
    _, traj = pgd_trajectory(model, x, steps=10, step_size=0.3 if norm == "l2" else 0.02, norm=norm, eps=eps,
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
    _, traj = pgd_trajectory(model, x, steps=8, step_size=1.0, mask=mask, record=list(range(9)))
    for xi in traj:
        assert torch.equal(xi[..., mask[0, 0] == 0], x[..., mask[0, 0] == 0])
    assert not torch.equal(traj[-1], x)


def test_linf_with_a_mask_moves_only_the_open_pixels_by_the_sign_step():
    torch.manual_seed(3)
    w = torch.randn(1, 1, 6, 6)
    model = Linear(w)
    x = torch.full((4, 1, 6, 6), 0.5)
    mask = torch.zeros(1, 1, 6, 6)
    mask[..., 1:4, 2:5] = 1
    open_ = mask.bool().expand_as(x)
    _, traj = pgd_trajectory(model, x, steps=4, step_size=0.05, norm="linf", eps=0.12, mask=mask,
                             record=[0, 1, 2, 3, 4])
    for k, xi in enumerate(traj):
        assert torch.equal(xi[~open_], x[~open_])                     # closed pixels never move
        expected = 0.5 + torch.clamp(torch.full_like(x, 0.05 * k), max=0.12) * w.sign()
        assert torch.allclose(xi[open_], expected[open_], atol=1e-6)  # sign steps, clipped to the Linf ball


def test_score_rises_along_the_path_on_a_toy_score():
    model = Quadratic(torch.full((1, 6, 6), 0.5))
    x = torch.rand(10, 1, 6, 6)
    _, traj = pgd_trajectory(model, x, steps=6, step_size=0.1, record=list(range(7)))
    with torch.no_grad():
        scores = torch.stack([model(t) for t in traj])
    assert (scores[1:] >= scores[:-1] - 1e-6).all()
    assert (scores[-1] > scores[0]).all()


@pytest.mark.parametrize("descent", [False, True])
def test_restarts_keep_the_best_run_per_sample(descent):
    model = small_convnet()
    x = torch.rand(10, 1, 28, 28)
    kwargs = dict(steps=3, step_size=0.1, eps=0.5, random_start=True, descent=descent)
    best = pgd(model, x, restarts=4, generator=torch.Generator().manual_seed(0), **kwargs)
    g = torch.Generator().manual_seed(0)
    runs = [pgd(model, x, generator=g, **kwargs) for _ in range(4)]   # the same four random starts
    with torch.no_grad():
        run_scores = torch.stack([model(r) for r in runs])
        target = run_scores.min(dim=0).values if descent else run_scores.max(dim=0).values
        assert torch.allclose(model(best), target, atol=1e-5)
        # the restarts differ, so keeping the best is not the same as keeping the first run
        assert not torch.allclose(run_scores[0], target)


def test_uniform_random_start_fills_the_l2_ball():
    eps, n = 0.8, 4000
    for dim in (3, 784):
        x = torch.full((n, dim), 0.5, dtype=torch.float64)
        start = pgd(lambda t: t.sum(1), x, steps=0, step_size=0.0, eps=eps, random_start=True, clamp=None,
                    generator=torch.Generator().manual_seed(dim))
        radius = (start - x).norm(dim=1)
        assert float(radius.max()) <= eps * (1 + 1e-9)
        # radius = eps * U^(1/d)  <=>  (radius / eps)^d ~ U[0, 1]
        assert _ks_uniform(((radius / eps) ** dim).numpy()) < 1.63 / math.sqrt(n)   # KS test at p = 0.01
        direction = (start - x) / radius[:, None]
        assert float(direction.mean(0).norm()) < 4 / math.sqrt(n)                      # no preferred direction


def test_uniform_random_start_fills_the_linf_cube():
    eps, n = 0.1, 500
    x = torch.full((n, 16), 0.5, dtype=torch.float64)
    start = pgd(lambda t: t.sum(1), x, steps=0, step_size=0.0, norm="linf", eps=eps, random_start=True,
                clamp=None, generator=torch.Generator().manual_seed(1))
    delta = (start - x).numpy()
    assert np.abs(delta).max() <= eps
    assert _ks_uniform(((delta + eps) / (2 * eps)).ravel()) < 1.63 / math.sqrt(delta.size)


@pytest.mark.parametrize("eps", [float("inf"), 1.5])
def test_distance_travelled_is_at_most_step_size_times_steps(eps):
    torch.manual_seed(2)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.Tanh(), nn.Linear(32, 1))   # curved, cheap
    x = torch.rand(16, 1, 8, 8)
    steps, step_size = 60, 0.05
    _, path = pgd_trajectory(model, x, steps=steps, step_size=step_size, eps=eps, record=list(range(steps + 1)))
    travelled = (path - x).flatten(2).norm(dim=2)                        # (steps + 1, N)
    bound = step_size * torch.arange(steps + 1, dtype=travelled.dtype)[:, None]
    assert (travelled <= bound + 1e-5).all()
    assert float(travelled[-1].min()) > step_size                            # every sample did move


def test_origin_projects_around_the_given_centre_not_the_start():
    torch.manual_seed(0)
    w = torch.randn(1, 1, 8, 8)
    model = Linear(w)
    origin = torch.full((3, 1, 8, 8), 0.5)
    start = origin + 0.2 * torch.randn(3, 1, 8, 8) / 8                   # inside B(origin, 0.3), off centre
    eps = 0.3
    _, path = pgd_trajectory(model, start, origin=origin, steps=60, step_size=0.1, eps=eps, record=list(range(61)))
    assert torch.allclose(path[0], start)                                 # a start inside the ball is kept
    assert ((path - origin).flatten(2).norm(dim=2) <= eps + 1e-5).all()
    optimum = origin + eps * w / w.norm()                                 # box inactive: 0.5 ± 0.3 |w_i|/||w||
    assert torch.allclose(path[-1], optimum.expand_as(origin), atol=1e-4)
    # around the start instead, the optimum would be start + eps w/||w||, another point
    plain = pgd(model, start, steps=60, step_size=0.1, eps=eps)
    assert not torch.allclose(plain, path[-1], atol=1e-3)
    # a start outside the ball is projected onto it first; origin = start is the plain call
    far = origin + 2.0 * torch.ones_like(origin) / 8
    moved = pgd(model, far.clamp(0, 1), origin=origin, steps=0, step_size=0.1, eps=eps)
    assert torch.allclose((moved - origin).flatten(1).norm(dim=1), torch.full((3,), eps), atol=1e-5)
    assert torch.equal(pgd(model, start, origin=start, steps=3, step_size=0.1, eps=eps),
                       pgd(model, start, steps=3, step_size=0.1, eps=eps))
    assert torch.allclose(project_onto_ball(far.clamp(0, 1), origin, norm="l2", eps=eps), moved)


def test_random_start_with_origin_draws_around_the_origin():
    origin = torch.full((200, 5), 0.5)
    somewhere = torch.zeros(200, 5)
    start = pgd(lambda t: t.sum(1), somewhere, origin=origin, steps=0, step_size=0.0, eps=0.2, random_start=True,
                generator=torch.Generator().manual_seed(0))
    assert ((start - origin).norm(dim=1) <= 0.2 + 1e-6).all()


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


class RecordsRequiresGrad(Quadratic):
    """The quadratic score that notes its parameters' ``requires_grad`` on every call and fails on call ``fail_at``."""

    def __init__(self, centre: torch.Tensor, fail_at: int | None = None):
        super().__init__(centre)
        self.offset = nn.Parameter(torch.zeros(()), requires_grad=False)
        self.fail_at, self.seen = fail_at, []

    def forward(self, x):
        self.seen.append((self.centre.requires_grad, self.offset.requires_grad))
        if len(self.seen) == self.fail_at:
            raise RuntimeError("score failed")
        return super().forward(x) + self.offset


@pytest.mark.parametrize("sampler", [pgd, sgld])
def test_the_ascent_freezes_parameters_and_restores_each_flag_also_after_an_error(sampler):
    """The ascent needs the input gradient only: parameters stop requiring grad while it runs, and each gets its
    own flag back afterwards, also when the score raises."""
    x = torch.rand(4, 1, 2, 2)
    model = RecordsRequiresGrad(torch.full((1, 2, 2), 0.5))
    y = sampler(model, x, steps=3, step_size=0.1)
    assert model.seen == [(False, False)] * 3
    assert (model.centre.requires_grad, model.offset.requires_grad) == (True, False)
    assert not torch.equal(y, x) and model.centre.grad is None

    failing = RecordsRequiresGrad(torch.full((1, 2, 2), 0.5), fail_at=2)
    with pytest.raises(RuntimeError, match="score failed"):
        sampler(failing, x, steps=3, step_size=0.1)
    assert (failing.centre.requires_grad, failing.offset.requires_grad) == (True, False)


def test_trajectory_returns_requested_steps_and_final():
    model = Quadratic(torch.full((1, 4, 4), 0.5))
    x = torch.rand(3, 1, 4, 4)
    y, traj = pgd_trajectory(model, x, steps=5, step_size=0.1, record=[0, 2, 5])
    assert traj.shape == (3, 3, 1, 4, 4)
    assert torch.equal(traj[0], x) and torch.equal(traj[2], y)
    assert torch.equal(traj[1], pgd(model, x, steps=2, step_size=0.1))
    assert torch.equal(y, pgd(model, x, steps=5, step_size=0.1))


def test_a_trace_receives_the_path_and_restarts_keep_each_samples_own_path():
    model = Quadratic(torch.full((1, 4, 4), 0.5))
    x = torch.rand(3, 1, 4, 4)
    options = dict(steps=4, step_size=0.1, eps=0.3, random_start=True, restarts=3)
    trace = PGDTrace(record=[4, 0, 2])
    final = pgd(model, x, trace=trace, generator=torch.Generator().manual_seed(7), **options)
    assert trace.path is not None and trace.path.shape == (3, *x.shape) and trace.values is None
    assert torch.equal(trace.path[0], final)     # record order is kept, step 4 first
    again, path = pgd_trajectory(model, x, record=[4, 0, 2], generator=torch.Generator().manual_seed(7), **options)
    assert torch.equal(again, final) and torch.equal(path, trace.path)
    assert torch.equal(pgd(model, x, steps=3, step_size=0.1, trace=PGDTrace()), pgd(model, x, steps=3, step_size=0.1))


@pytest.mark.parametrize("descent", [False, True])
def test_a_keep_best_trace_receives_the_kept_values_pgd_best_returns(descent):
    model = Quadratic(torch.full((1, 4, 4), 0.5))
    x = torch.rand(3, 1, 4, 4)
    trace = PGDTrace()
    best = pgd(model, x, steps=5, step_size=0.2, descent=descent, keep="best", trace=trace)
    assert trace.path is None and trace.values is not None
    torch.testing.assert_close(trace.values, model(best))   # the score at the kept iterate, not its negation
    same, values = pgd_best(model, x, steps=5, step_size=0.2, descent=descent)
    assert torch.equal(same, best) and torch.equal(values, trace.values)


def test_trajectory_twin_adds_record_and_refuses_what_it_cannot_record():
    model = Quadratic(torch.zeros(1, 2, 2))
    x = torch.rand(2, 1, 2, 2)
    signature = inspect.signature(pgd_trajectory)
    assert pgd_trajectory.__name__ == "pgd_trajectory" and "trace" not in signature.parameters
    assert list(signature.parameters)[:4] == ["score", "x", "record", "steps"]
    assert signature.parameters["record"].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(ValueError, match="at least one step"):
        pgd_trajectory(model, x, steps=2, step_size=0.1, record=[])
    with pytest.raises(TypeError, match="records its own trace"):
        pgd_trajectory(model, x, steps=2, step_size=0.1, record=[1], trace=PGDTrace())
    with pytest.raises(ValueError, match="keep='last'"):
        pgd_trajectory(model, x, steps=2, step_size=0.1, record=[1], keep="best")

    def forgets_the_trace(score, x, *, steps, trace=None):
        return pgd(score, x, steps=steps, step_size=0.1)

    with pytest.raises(RuntimeError, match="did not pass its trace"):
        trajectory_twin(forgets_the_trace)(model, x, steps=1, record=[1])


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
        pgd_trajectory(model, x, steps=2, step_size=0.1, record=[3])
    with pytest.raises(ValueError, match="mask"):
        pgd(model, x, origin=x, mask=torch.ones(1, 1, 2, 2), steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="origin must have the shape"):
        pgd(model, x, origin=x[:1], steps=1, step_size=0.1)


@pytest.mark.parametrize("bad,error,match", [
    (torch.tensor([[[[0.1, float("nan")], [0.2, 0.3]]]]), ValueError, "NaN"),
    (torch.tensor([[[[0.1, float("inf")], [0.2, 0.3]]]]), ValueError, "inf"),
    (torch.full((2, 1, 2, 2), 1.5), ValueError, r"\[0, 1\]"),
    (torch.full((2, 1, 2, 2), -0.2), ValueError, r"\[0, 1\]"),
    (torch.ones(2, 1, 2, 2, dtype=torch.uint8), TypeError, "floating-point"),
    (torch.ones(2, 1, 2, 2, dtype=torch.int64), TypeError, "floating-point"),
    (torch.rand(4), ValueError, "batched"),
    (np.random.rand(2, 1, 2, 2), TypeError, "torch.Tensor"),
])
def test_pgd_refuses_bad_inputs_in_one_line(bad, error, match):
    model = Quadratic(torch.zeros(1, 2, 2))
    with pytest.raises(error, match=match) as info:
        pgd(model, bad, steps=1, step_size=0.1)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="origin holds NaN"):
        pgd(model, torch.rand(1, 1, 2, 2), origin=torch.full((1, 1, 2, 2), float("nan")), steps=1, step_size=0.1)


def test_the_box_check_follows_clamp_and_tolerates_rounding():
    model = Quadratic(torch.zeros(1, 2, 2))
    wide = torch.full((2, 1, 2, 2), 3.0)
    assert pgd(model, wide, steps=1, step_size=0.1, clamp=None).shape == wide.shape   # no box, no check
    assert pgd(model, wide, steps=1, step_size=0.1, clamp=(-4.0, 4.0)).shape == wide.shape
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        pgd(model, wide, steps=1, step_size=0.1, clamp=(-1.0, 1.0))
    pgd(model, torch.full((1, 1, 2, 2), 1.0 + 1e-7), steps=1, step_size=0.1)          # float rounding passes


def test_inputs_that_do_not_match_a_loaded_model_are_refused():
    model = small_convnet()
    model.meta = {"size": 28, "channels": 1}
    with pytest.raises(ValueError, match="channel"):
        pgd(model, torch.rand(2, 3, 28, 28), steps=1, step_size=0.1)
    with pytest.raises(ValueError, match="32x32 px; the model takes 28x28"):
        pgd(model, torch.rand(2, 1, 32, 32), steps=1, step_size=0.1)
    model.meta = {}                    # the spec's in_channels still applies
    with pytest.raises(ValueError, match="the model takes 1"):
        check_inputs(torch.rand(2, 3, 28, 28), score=model)


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
    with pytest.raises(ValueError, match="NaN"):
        sgld(model, torch.full((2, 1, 4, 4), float("nan")), steps=1, step_size=0.1)
