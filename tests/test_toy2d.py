"""The 2D theory lab: Proposition-1 claims at small scale (fixed seeds), metrics on analytic scores, checkpoints, CLI.

Support (see atebm.toy2d.datasets): points within 3 sigma of the noiseless skeleton; for the papers' Gaussian
N(0, 0.5^2 I) that is the disc of radius 1.5 around the origin.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

import atebm
from atebm.cli import main as atebm_main
from atebm.toy2d import (
    DATASETS,
    AscentProtocol,
    MaximinSettings,
    MinimaxSettings,
    energy_distance,
    find_maxima,
    get_dataset,
    parse_mixture,
    prop1_metrics,
    run_panel,
    run_toy2d,
    sample_p0,
    toy2d_panels,
    write_panel,
)
from atebm.toy2d.plots import gradient_field

SMALL_METRICS = {"n_data": 1000, "grid": 81, "n_ascent": 500, "maxima_grid": 25}
# small-scale maximin: progressive K 0..25, unit PGD steps of 0.3 (path 7.5 > the corner-to-centre distance)
MAXIMIN = dict(iters=500, k=25, step_size=0.3, batch_size=64, seed=0)


#: One pytest-xdist worker runs this module, so that its module-scoped fixtures train once.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module", autouse=True)
def _one_thread_per_module():
    """The module-scoped panels below train before any function-scoped fixture (conftest's ``one_thread``) runs;
    tiny 2D MLPs run several times faster on one thread on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def maximin_uniform():
    return run_panel("maximin", "uniform", seed=0, maximin=MaximinSettings(**MAXIMIN), metric_kwargs=SMALL_METRICS)


@pytest.fixture(scope="module")
def maximin_corner():
    return run_panel("maximin", "corner", seed=0, maximin=MaximinSettings(**MAXIMIN), metric_kwargs=SMALL_METRICS)


@pytest.fixture(scope="module")
def minimax_uniform():
    return run_panel("minimax", "uniform", seed=0, minimax=MinimaxSettings(particles=256, step_size=0.08, seed=0),
                     metric_kwargs=SMALL_METRICS)


# ------------------------------------------------------------------------------------------- Proposition 1 claims
def test_maximin_uniform_matches_proposition_1(maximin_uniform):
    m = maximin_uniform.metrics
    assert m["initial_maxima"]["n_off_support"] >= 3  # D started with spurious maxima (bumpy_init) ...
    assert abs(m["d_on_support_data"]["mean"] - 0.5) < 0.1
    assert m["d_off_support_grid"]["max"] < 0.5 + 0.05
    assert m["ascent"]["frac_end_on_support"] >= 0.95
    assert m["maxima"]["n_off_support_maxima"] == 0  # ... and uniform p_0 suppressed every one of them


def test_maximin_is_the_trainer_with_progressive_k(maximin_uniform):
    history = maximin_uniform.result.history
    assert {"k", "auc_adv", "score_data", "score_adv", "perturbation_l2"} <= set(history[0])
    assert history[0]["k"] == 0 and history[-1]["k"] == MAXIMIN["k"]
    # unconstrained PGD: the perturbation may exceed any eps-ball, but never the path length K * lambda
    assert max(h["perturbation_l2"] for h in history) <= MAXIMIN["k"] * MAXIMIN["step_size"] + 1e-4


def test_maximin_corner_leaves_an_off_support_maximum_the_uniform_run_lacks(maximin_uniform, maximin_corner):
    corner = maximin_corner.metrics["maxima"]["off_support_maxima"]
    uniform = maximin_uniform.metrics["maxima"]["off_support_maxima"]
    assert len(corner) >= 1
    unmatched = [c for c in corner
                 if all(math.hypot(c["x"] - u["x"], c["y"] - u["y"]) > 0.5 for u in uniform)]
    assert unmatched, (corner, uniform)


def test_minimax_brings_particles_to_p_data(minimax_uniform):
    p = minimax_uniform.metrics["particles"]
    assert p["energy_distance_to_data"] < 0.025
    assert p["energy_distance_to_data"] < 0.02 * p["energy_distance_initial"]
    assert p["frac_on_support"] > 0.95
    first = minimax_uniform.result.history[0]
    assert first["step_length"] == pytest.approx(0.08, rel=1e-3)  # one unit-normalised step per round


def test_checkpoints_load_as_2d_score_models(tmp_path, maximin_uniform, maximin_corner, minimax_uniform):
    x = torch.randn(17, 2)
    for panel in (maximin_uniform, maximin_corner, minimax_uniform):
        files = write_panel(panel, tmp_path, plots=False)
        assert files["checkpoint"].endswith(f"{panel.name}.pt")
        model = atebm.load(files["checkpoint"])
        assert isinstance(model, atebm.ScoreModel)
        with torch.no_grad():
            out = model(x)
            assert out.shape == (17,)
            assert torch.allclose(out, panel.result.model.eval()(x), atol=1e-6)
        assert model.meta["config"]["toy2d"]["method"] == panel.method


# ------------------------------------------------------------------------------------------- metrics on known D
class _Bumps(torch.nn.Module):
    """f = log of a sum of Gaussian bumps: one local maximum per bump (far-apart bumps)."""

    def __init__(self, centres, heights, width=0.6):
        super().__init__()
        self.c = torch.tensor(centres, dtype=torch.float32)
        self.h = torch.tensor(heights, dtype=torch.float32)
        self.w = width

    def forward(self, x):
        d2 = ((x[:, None, :] - self.c[None]) ** 2).sum(-1)
        return torch.logsumexp(torch.log(self.h) - d2 / (2 * self.w ** 2), dim=1)


def test_find_maxima_counts_off_support_bumps():
    ds = get_dataset("gaussian")
    score = _Bumps([[0.0, 0.0], [3.0, 3.0], [-3.0, 2.5]], [1.0, 0.5, 0.3])
    found = find_maxima(score, ds, (-4.0, 4.0), grid=21)
    assert found["n_off_support_maxima"] == 2
    locations = sorted((round(c["x"]), round(c["y"])) for c in found["off_support_maxima"])
    assert locations == [(-3, 2), (3, 3)] or locations == [(-3, 3), (3, 3)]
    one = find_maxima(_Bumps([[0.0, 0.0]], [1.0]), ds, (-4.0, 4.0), grid=21)
    assert one["n_off_support_maxima"] == 0 and one["ended_on_support"] == 1.0


def test_prop1_metrics_of_the_ideal_discriminator():
    ds = get_dataset("gaussian")

    def ideal(x):  # f = 0 (D = 1/2) on the support, decreasing away from it
        return -torch.relu(x.norm(dim=1) - ds.support_radius)

    m = prop1_metrics(ideal, ds, n_data=500, grid=41, n_ascent=200, maxima_grid=11)
    assert m["d_on_support_data"]["mean"] == pytest.approx(0.5, abs=0.01)
    assert m["d_off_support_grid"]["max"] <= 0.5
    assert m["ascent"]["frac_end_on_support"] == 1.0
    assert m["maxima"]["n_off_support_maxima"] == 0


def test_energy_distance_separates_distributions():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(400, 2, generator=g), torch.randn(400, 2, generator=g)
    assert abs(energy_distance(a, b)) < 0.03
    assert energy_distance(a, b + 1.0) > 0.5
    assert energy_distance(a, b + 1.0) == pytest.approx(energy_distance(b + 1.0, a))


def test_ascent_protocol_path_covers_the_box():
    p = AscentProtocol()
    assert p.coarse_steps * p.coarse_step > 8 * math.sqrt(2)


# ------------------------------------------------------------------------------------------- data
@pytest.mark.parametrize("name", sorted(DATASETS))
def test_datasets_lie_in_the_box_and_mostly_on_their_support(name):
    ds = get_dataset(name)
    x = ds.sample(3000, torch.Generator().manual_seed(1))
    assert x.shape == (3000, 2) and x.dtype == torch.float32
    assert x.abs().max() <= 4.0
    frac = float(ds.on_support(x).float().mean())
    assert frac >= (0.999 if name == "checkerboard" else 0.97)
    # and the support is not the whole box
    grid = torch.rand(3000, 2, generator=torch.Generator().manual_seed(2)) * 8 - 4
    assert float(ds.on_support(grid).float().mean()) < 0.6


def test_gaussian_support_is_the_three_sigma_disc():
    ds = get_dataset("gaussian")
    pts = torch.tensor([[1.49, 0.0], [0.0, -1.51], [1.0, 1.0], [1.1, 1.1]])
    assert ds.on_support(pts).tolist() == [True, False, True, False]
    assert ds.distance_to_support(torch.tensor([[3.5, 0.0]])).item() == pytest.approx(2.0)


def test_p0_kinds():
    g = torch.Generator().manual_seed(0)
    u = sample_p0("uniform", 2000, generator=g)
    c = sample_p0("corner", 2000, generator=g)
    assert u.min() >= -4 and u.max() <= 4 and u.std(0).min() > 2.0
    assert c.min() >= -4 and c.max() <= -3
    mix = sample_p0("mixture", 2000, generator=g, mixture=parse_mixture("-3,3,0.1; 3,-3,0.1,3"))
    assert float((mix[:, 0] > 0).float().mean()) == pytest.approx(0.75, abs=0.05)
    with pytest.raises(ValueError, match="mixture"):
        sample_p0("mixture", 10)
    with pytest.raises(ValueError, match="x,y,std"):
        parse_mixture("1,2")
    with pytest.raises(ValueError, match="unknown p0"):
        sample_p0("ring", 10)
    with pytest.raises(ValueError, match="unknown 2D data set"):
        get_dataset("blobs")


# ------------------------------------------------------------------------------------------- CLI
def test_cli_writes_json_plots_gif_and_checkpoints(tmp_path, capsys):
    out = tmp_path / "run"
    rc = atebm_main(["toy2d", "--method", "both", "--p0", "corner", "--data", "moons", "--out", str(out),
                     "--iters", "20", "--k", "2", "--rounds", "4", "--particles", "64", "--d-steps", "20",
                     "--hidden", "16"])
    assert rc == 0
    summary = json.loads((out / "toy2d.json").read_text())
    assert set(summary["panels"]) == {"maximin-corner-moons", "minimax-corner-moons"}
    for name, panel in summary["panels"].items():
        m = panel["metrics"]
        assert {"d_on_support_data", "d_off_support_grid", "ascent", "maxima", "value_U"} <= set(m)
        model = atebm.load(out / f"{name}.pt")
        assert model(torch.zeros(3, 2)).shape == (3,)
        for suffix in ("-initial.png", "-final.png", "-strip.png", ".gif"):
            assert (out / f"{name}{suffix}").stat().st_size > 1000
    assert "energy_distance_to_data" in summary["panels"]["minimax-corner-moons"]["metrics"]["particles"]
    assert (out / "panels.png").exists()
    html = (out / "report.html").read_text()
    assert "Proposition 1 check" in html and html.count("data:image/png;base64") >= 3
    assert "maximin-corner-moons" in html and "minimax-corner-moons" in html


def test_cli_rejects_bad_settings(tmp_path, capsys):
    assert atebm_main(["toy2d", "--out", str(tmp_path), "--k", "3", "--k-start", "5"]) == 1
    assert "k_start" in capsys.readouterr().err
    assert atebm_main(["toy2d", "--out", str(tmp_path), "--activation", "swish"]) == 1
    assert "unknown activation 'swish'" in capsys.readouterr().err
    assert atebm_main(["toy2d", "--out", str(tmp_path), "--box", "2", "-2"]) == 1
    assert "LO < HI" in capsys.readouterr().err
    assert atebm_main(["toy2d", "--out", str(tmp_path), "--p0", "mixture"]) == 1
    assert "needs mixture components" in capsys.readouterr().err
    assert atebm_main(["toy2d", "--out", str(tmp_path), "--dry-run", "--all"]) == 0
    assert "maximin" in capsys.readouterr().out


def test_toy2d_pipeline_runs_from_python_and_resolves_its_panels(tmp_path):
    assert toy2d_panels(all_panels=True) == [("maximin", "uniform"), ("maximin", "corner"), ("minimax", "uniform"),
                                             ("minimax", "corner")]
    assert toy2d_panels(method="both", p0="corner") == [("maximin", "corner"), ("minimax", "corner")]
    with pytest.raises(ValueError, match="mixture"):
        run_toy2d(tmp_path, p0="mixture")
    before = torch.get_num_threads()
    summary = run_toy2d(tmp_path, method="minimax", p0="mixture", mixture="-3,3,0.3; 3,-3,0.3", plots=False,
                        minimax=MinimaxSettings(particles=32, max_rounds=3, d_steps=20, d_steps_first=20, hidden=8),
                        log=lambda message: None)
    assert torch.get_num_threads() == before  # the run's one thread is undone afterwards
    assert set(summary["panels"]) == {"minimax-mixture"} and (tmp_path / "minimax-mixture.pt").is_file()
    assert not (tmp_path / "report.html").exists()  # plots=False: JSON and checkpoints only
    assert json.loads((tmp_path / "toy2d.json").read_text())["panels"]["minimax-mixture"]["p0"] == "mixture"


# ------------------------------------------------------------------------------------------- plots
def test_gradient_field_is_the_unit_ascent_direction_in_eval_mode():
    class Tilted(torch.nn.Module):  # f(x) = a . x, with dropout that would scramble the gradient in train mode
        def __init__(self):
            super().__init__()
            self.drop = torch.nn.Dropout(0.9)

        def forward(self, x):
            return self.drop(x @ torch.tensor([3.0, 4.0]))

    score = Tilted().train()
    pts, u, v = gradient_field(score, (-4.0, 4.0), n=5)
    assert pts.shape == (25, 2)
    assert u == pytest.approx([0.6] * 25) and v == pytest.approx([0.8] * 25)
    assert score.training  # the mode the caller had is restored


def test_importing_the_plots_leaves_the_users_matplotlib_backend_alone(tmp_path):
    code = ("import matplotlib; matplotlib.use('pdf'); import torch; import atebm.toy2d.plots as plots; "
            "assert matplotlib.get_backend() == 'pdf', matplotlib.get_backend(); "
            f"plots.plot_state({str(tmp_path / 'd.png')!r}, torch.rand(8, 8), (-4.0, 4.0)); "
            "assert matplotlib.get_backend() == 'pdf', matplotlib.get_backend()")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "d.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
