"""Worst-case OOD: the ART classifier view, APGD and Square raise the score inside the ball (both norms), NaN rows
are counted and never win, the worst case is never weaker than the clean input or any attacker, analytic optima
are reached; evaluate() numbers, files and report; one config for every default; bad inputs refused in one line;
the suites; the CLI."""
from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from atebm import build_score_model
from atebm.metrics import auroc
from atebm.ood import (
    EMBEDDED_SUITES,
    AttackConfig,
    OODEvalConfig,
    compare_models,
    embedded_suite,
    embedded_suites,
    evaluate,
    file_suite,
    letters,
    run_eval_ood,
    worst_case,
)
from atebm.ood.attacks import batched_scores
from atebm.ood.evaluate import auroc_rows, format_table

pytestmark = pytest.mark.usefixtures("one_thread")


def _tiny_convnet(seed: int = 0, channels: int = 1) -> nn.Module:
    torch.manual_seed(seed)
    return build_score_model({"arch": "convnet", "kwargs": {"in_channels": channels, "width": 4},
                              "mean": 0.5, "std": 0.5})


class Linear(nn.Module):
    """f(x) = w·x + b: the L2 worst case inside the ball (box inactive) is x + eps w/||w||, gaining eps ||w||_2;
    the Linf worst case gains eps ||w||_1."""

    def __init__(self, w: torch.Tensor, b: float = 0.0):
        super().__init__()
        self.w = nn.Parameter(w.clone(), requires_grad=False)
        self.b = b

    def forward(self, x):
        return (x.flatten(1) * self.w.flatten()).sum(1) + self.b


class Distance(nn.Module):
    """f(x) = -||x - p||²: higher near the pattern p. Its L2 worst case is -(||x - p|| - eps)² for eps <= ||x - p||."""

    def __init__(self, pattern: torch.Tensor):
        super().__init__()
        self.register_buffer("p", pattern)

    def forward(self, x):
        return -((x - self.p) ** 2).flatten(1).sum(1)


def _size(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.norm(dim=1) if norm == "l2" else flat.abs().max(dim=1).values


# ------------------------------------------------------------------------------------ ART through the attack layer
@pytest.mark.parametrize("norm,eps", [("l2", 1.0), ("linf", 0.05)])
@pytest.mark.parametrize("loss", ["dlr", "ce"])
def test_art_apgd_raises_the_score_inside_the_ball(norm, eps, loss):
    model = _tiny_convnet()
    x = torch.rand(12, 1, 28, 28)
    result = worst_case(model, x, norm=norm, eps=eps, attackers=("apgd",),
                        config=AttackConfig(apgd_loss=loss, apgd_steps=5))
    gain = result.by_attacker["apgd"] - result.clean_scores
    assert (gain > 1e-5).float().mean() > 0.9, gain
    assert (_size(result.x_by_attacker["apgd"] - x, norm) <= eps + 1e-5).all()
    assert torch.allclose(result.by_attacker["apgd"], batched_scores(model, result.x_by_attacker["apgd"]), atol=1e-5)
    assert result.protocol["apgd"]["implementation"].startswith("ART AutoProjectedGradientDescent")


@pytest.mark.parametrize("norm,eps", [("l2", 1.0), ("linf", 0.05)])
def test_art_square_raises_the_score_without_gradients(norm, eps):
    model = _tiny_convnet()
    x = torch.rand(12, 1, 28, 28)
    result = worst_case(model, x, norm=norm, eps=eps, attackers=("square",), config=AttackConfig(square_steps=20))
    gain = result.by_attacker["square"] - result.clean_scores
    assert (gain > 1e-6).float().mean() > 0.75, gain
    assert (gain >= 0).all()
    candidate = result.x_by_attacker["square"]
    assert (_size(candidate - x, norm) <= eps + 1e-5).all() and candidate.min() >= 0 and candidate.max() <= 1
    assert result.protocol["square"]["gradient_free"] is True


def test_apgd_splits_batches_larger_than_arts_prediction_batch():
    torch.manual_seed(0)
    model = Linear(torch.randn(1, 1, 8, 8))
    x = torch.full((300, 1, 8, 8), 0.5)            # ART predicts in rows of 128; the attack batch is 256
    result = worst_case(model, x, norm="linf", eps=0.05, attackers=("apgd",), config=AttackConfig(apgd_steps=2))
    expected = 0.05 * float(model.w.abs().sum())
    assert torch.allclose(result.scores - result.clean_scores, torch.full((300,), expected), rtol=1e-3)


def test_dlr_keeps_climbing_where_the_score_is_very_negative():
    base = _tiny_convnet()

    class VeryNegative(nn.Module):          # scores around -200
        def __init__(self):
            super().__init__()
            self.base = base

        def forward(self, x):
            return 30 * self.base(x) - 200.0

    model, x = VeryNegative(), torch.rand(12, 1, 28, 28)
    dlr = worst_case(model, x, eps=1.0, attackers=("apgd",), config=AttackConfig(apgd_steps=5))
    assert ((dlr.by_attacker["apgd"] - dlr.clean_scores) > 1e-3).all()


class NaNOffTheGrid(nn.Module):
    """A score that is NaN wherever a pixel lies strictly between 0.05 and 0.95: finite on binary images, NaN for
    most proposals an attack makes around them (a diverging model, as seen from the attack)."""

    def __init__(self, base: nn.Module) -> None:
        super().__init__()
        self.base = base

    def forward(self, x):
        off_grid = ((x > 0.05) & (x < 0.95)).flatten(1).any(dim=1)
        return torch.where(off_grid, torch.full_like(off_grid, float("nan"), dtype=x.dtype), self.base(x))


def test_nan_proposals_are_counted_and_never_win(monkeypatch):
    from art.attacks.evasion import AutoProjectedGradientDescent

    model = NaNOffTheGrid(_tiny_convnet())
    x = torch.rand(8, 1, 28, 28).round()
    square = worst_case(model, x, eps=1.0, attackers=("square",), config=AttackConfig(square_steps=30))
    assert square.nan_proposals["square"] > 0 and square.failed_rows["square"] == 0      # refused, not returned
    assert torch.isfinite(square.x).all() and (square.scores >= square.clean_scores).all()

    def broken(self, x_np, y=None, **kwargs):         # an attack that returns NaN for every other row
        out = np.clip(x_np + 0.01, 0, 1).astype(np.float32)
        out[::2] = np.nan
        return out

    monkeypatch.setattr(AutoProjectedGradientDescent, "generate", broken)
    result = worst_case(_tiny_convnet(), x, eps=1.0, attackers=("apgd",), config=AttackConfig(apgd_steps=2))
    assert result.failed_rows["apgd"] == 4
    assert torch.isfinite(result.x).all() and torch.isfinite(result.scores).all()
    assert torch.equal(result.x[::2], x[::2])               # failed rows keep the clean input
    assert (result.scores >= result.clean_scores).all()


@pytest.mark.parametrize("norm,eps", [("l2", 1.5), ("linf", 0.05)])
def test_worst_case_respects_the_ball_and_box_and_beats_each_attacker(norm, eps):
    model = _tiny_convnet(1)
    x = torch.rand(16, 1, 28, 28)
    x[:4] = 0.0                                              # the box is active for these
    config = AttackConfig(attackers=("pgd", "apgd", "square"), pgd_steps=(3,), apgd_steps=3, square_steps=5,
                          pgd_random_restarts=1)
    np_state, py_state, torch_state = np.random.get_state(), random.getstate(), torch.get_rng_state()
    result = worst_case(model, x, norm=norm, eps=eps, config=config, seed=5)
    assert np.array_equal(np.random.get_state()[1], np_state[1]) and random.getstate() == py_state
    assert torch.equal(torch.get_rng_state(), torch_state)
    for candidate in [result.x, *result.x_by_attacker.values()]:
        assert (_size(candidate - x, norm) <= eps + 1e-5).all()
        assert candidate.min() >= 0 and candidate.max() <= 1
    stacked = torch.stack(list(result.by_attacker.values()))
    assert torch.equal(result.scores, stacked.max(0).values)
    for name, scores in result.by_attacker.items():
        assert (result.scores >= scores).all() and (scores >= result.clean_scores).all(), name
    assert (result.scores >= result.clean_scores).all()
    assert torch.allclose(result.scores, batched_scores(model, result.x), atol=1e-5)
    again = worst_case(model, x, norm=norm, eps=eps, config=config, seed=5)
    assert torch.equal(again.scores, result.scores), "same seed, same result"
    assert result.protocol["pgd"]["grid_steps_x_step_size"][0][0] == 3


def test_a_pgd_grid_whose_relative_step_equals_an_explicit_one_runs_it_once():
    """At eps 2 and 20 steps the relative step 2.5 eps / steps is 0.25: the grid (None, 0.25) is one attack (this
    raised "attacker labels must be distinct" in benchmarks/ood_attack_strength.py's strong protocol)."""
    config = AttackConfig(attackers=("pgd",), pgd_steps=(20, 50), pgd_step_sizes=(None, 0.25, 1.0))
    assert config.grid(2.0) == [(20, 0.25), (20, 1.0), (50, 0.1), (50, 0.25), (50, 1.0)]
    assert len(config.grid(3.0)) == 6
    result = worst_case(_tiny_convnet(), torch.rand(4, 1, 28, 28), eps=2.0, config=config)
    assert result.protocol["pgd"]["grid_steps_x_step_size"] == [list(pair) for pair in config.grid(2.0)]


def test_attacks_leave_parameter_grads_and_modes_alone():
    model = _tiny_convnet()
    model.train()
    worst_case(model, torch.rand(6, 1, 28, 28), eps=1.0, config=AttackConfig(attackers=("pgd", "apgd", "square"),
                                                                              apgd_steps=2, square_steps=2))
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert model.training


def test_linear_score_reaches_the_analytic_optimum():
    torch.manual_seed(0)
    w = torch.randn(1, 1, 8, 8)
    model = Linear(w)
    x = torch.full((5, 1, 8, 8), 0.5)
    eps = 0.3                                  # 0.5 ± 0.3 * |w_i| / ||w|| stays inside [0, 1]
    l2 = worst_case(model, x, norm="l2", eps=eps, attackers=("pgd",))
    assert torch.allclose(l2.scores - l2.clean_scores, torch.full((5,), eps * float(w.norm())), rtol=1e-4)
    linf = worst_case(model, x, norm="linf", eps=0.1, attackers=("pgd", "apgd"))
    expected = 0.1 * float(w.abs().sum())
    assert torch.allclose(linf.scores - linf.clean_scores, torch.full((5,), expected), rtol=1e-4)
    assert torch.allclose(linf.by_attacker["apgd"] - linf.clean_scores, torch.full((5,), expected), rtol=1e-3)


def test_start_points_and_early_stop():
    torch.manual_seed(0)
    model = Linear(torch.randn(1, 1, 6, 6))
    x = torch.full((6, 1, 6, 6), 0.5)
    clean = batched_scores(model, x)
    # early stop: nothing is attacked when every clean score is already above the threshold
    stopped = worst_case(model, x, eps=0.2, stop_above=float(clean.min()) - 1.0)
    assert torch.equal(stopped.x, x) and torch.equal(stopped.scores, clean)
    # a start point outside the ball is projected back into it and counts as a candidate
    far = x + 0.5 * model.w.detach() / model.w.detach().norm()     # inside the box, outside the ball
    started = worst_case(model, x, eps=0.2, attackers=("apgd",), start=far, config=AttackConfig(apgd_steps=1))
    assert ((started.x - x).flatten(1).norm(dim=1) <= 0.2 + 1e-5).all()
    assert (started.scores >= clean + 0.199 * model.w.norm()).all()   # projected along w: gain 0.2 ||w||
    # PGD continues from a start inside the ball while projecting around the clean input
    half = x + 0.1 * model.w.detach() / model.w.detach().norm()
    continued = worst_case(model, x, eps=0.2, attackers=("pgd",), start=half, config=AttackConfig(pgd_steps=(1,),
                                                                                                   pgd_step_sizes=(0.3,)))
    assert torch.allclose(continued.scores - clean, torch.full((6,), 0.2 * float(model.w.norm())), rtol=1e-4)


# ------------------------------------------------------------------------------------------------ bad inputs
@pytest.mark.parametrize("bad,error,match", [
    (torch.full((2, 1, 28, 28), float("nan")), ValueError, "NaN"),
    (torch.full((2, 1, 28, 28), float("inf")), ValueError, "inf"),
    (torch.rand(2, 1, 28, 28) * 3, ValueError, r"\[0, 1\]"),
    (torch.ones(2, 1, 28, 28, dtype=torch.uint8), TypeError, "floating-point"),
    (torch.rand(28), ValueError, "batched"),
    (torch.rand(2, 3, 28, 28), ValueError, "channel"),
    (np.random.rand(2, 1, 28, 28), TypeError, "torch.Tensor"),
])
def test_bad_inputs_are_refused_in_one_line(bad, error, match):
    model = _tiny_convnet()
    with pytest.raises(error, match=match) as info:
        worst_case(model, bad, eps=1.0)
    assert "\n" not in str(info.value)
    good = torch.rand(4, 1, 28, 28)
    with pytest.raises(error, match="shape" if match == "channel" else match) as info:   # checked against in_dist
        evaluate({"m": model}, good, {"bad": bad}, eps=(0, 1), verbose=False)
    assert "\n" not in str(info.value)
    with pytest.raises(error, match=match):
        evaluate({"m": model}, bad, {"ok": good}, eps=(0, 1), verbose=False)


def test_bad_arguments_are_refused():
    model = _tiny_convnet()
    with pytest.raises(ValueError, match="eps"):
        worst_case(model, torch.rand(2, 1, 28, 28), eps=float("inf"))
    with pytest.raises(ValueError, match="attackers"):
        AttackConfig(attackers=("fgsm",))
    with pytest.raises(ValueError, match="norm"):
        worst_case(model, torch.rand(2, 1, 28, 28), eps=1.0, norm="l1")
    with pytest.raises(ValueError, match="square attacker needs NCHW images"):
        worst_case(lambda t: t.sum(1), torch.rand(4, 2), eps=0.1, attackers=("square",))
    with pytest.raises(ValueError, match="cannot score"):            # a model that cannot take the input
        worst_case(build_score_model({"arch": "mlp2d", "kwargs": {"hidden": 4, "depth": 1}}), torch.rand(3, 5),
                   eps=0.1)
    with pytest.raises(ValueError, match="32x32 px; the model takes 28x28"):
        model.meta = {"size": 28, "channels": 1}
        worst_case(model, torch.rand(2, 1, 32, 32), eps=1.0)


# ------------------------------------------------------------------------------------------------ config
def test_one_config_holds_every_default():
    config = OODEvalConfig()
    assert config.attack == AttackConfig() and config.attack.attackers == ("pgd", "apgd")
    changed = config.replace(n=7, eps=(2, 0, 1), pgd_steps=(4,), attackers=("square",))
    assert changed.n == 7 and changed.eps == (0.0, 1.0, 2.0)
    assert changed.attack.pgd_steps == (4,) and changed.attack.attackers == ("square",)
    assert config.n == 128 and config.attack.pgd_steps == (10,), "replace() copies"
    with pytest.raises(ValueError, match="unknown OODEvalConfig key"):
        config.replace(size=32)
    with pytest.raises(ValueError, match="threshold"):
        OODEvalConfig(threshold=1.0)
    # the command's option defaults are read from the config, not repeated
    from atebm.cli import build_parser

    # (an option not given stays out of the namespace, so the pipeline applies the config's default; the help
    # prints that default)
    parser = build_parser()
    args = parser.parse_args(["eval-ood", "--checkpoint", "x", "--out", "y"])
    unset = ("eps", "n", "n_in", "norm", "threshold", "seed", "attackers", "batch_size", "pgd_steps", "apgd_steps")
    assert not any(hasattr(args, name) for name in unset) and not hasattr(args, "size")
    assert args.device == "auto"
    given = parser.parse_args(["eval-ood", "--checkpoint", "x", "--out", "y", "--n", "9", "--eps", "0", "2"])
    assert given.n == 9 and tuple(given.eps) == (0.0, 2.0)
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    text = " ".join(subparsers.choices["eval-ood"].format_help().split()).split("options:", 1)[1]
    for flag, value in (("--n N", config.n), ("--n-in N_IN", config.n_in), ("--apgd-steps APGD_STEPS",
                                                                             config.attack.apgd_steps)):
        assert f"(default: {value})" in text.split(flag, 1)[1].split(" --", 1)[0], flag
    assert "(default: " + " ".join(f"{e:g}" for e in config.eps) + ")" in text


def test_importing_the_ood_package_pulls_no_command_line_code():
    code = ("import sys, atebm.ood; print(sorted(m for m in sys.modules if m.startswith('atebm.cli')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    import importlib

    for module in ("attacks", "evaluate", "pipeline", "suites"):
        source = open(importlib.import_module(f"atebm.ood.{module}").__file__).read()
        assert "import argparse" not in source and "atebm.cli" not in source and "from ..cli" not in source, module


# ------------------------------------------------------------------------------------------------ evaluate
def _distance_setup():
    torch.manual_seed(0)
    pattern = torch.zeros(1, 1, 8, 8)
    pattern[..., 2:6, 3:5] = 0.9
    in_dist = (pattern + 0.05 * torch.randn(40, 1, 8, 8)).clamp(0, 1)
    noise = torch.rand(30, 1, 8, 8)
    blobs = (pattern + 0.6 * torch.rand(30, 1, 8, 8)).clamp(0, 1)
    return pattern, in_dist, {"noise": noise, "blobs": blobs}


def test_evaluate_matches_the_analytic_worst_case_and_writes_everything(tmp_path, capsys):
    pattern, in_dist, suites = _distance_setup()
    model = Distance(pattern)
    eps_list = (0, 0.5, 1.0, 2.0)
    config = OODEvalConfig(eps=eps_list, attack=AttackConfig(pgd_steps=(5,), apgd_steps=3, early_stop=False))
    result = evaluate({"distance": model}, in_dist, suites, config, out_dir=tmp_path, report=tmp_path)
    in_scores = model(in_dist)
    for name, x in suites.items():
        entry = result["models"]["distance"]["sets"][name]
        dist = (x - pattern).flatten(1).norm(dim=1)
        assert entry["clean"]["auroc"] == pytest.approx(auroc(in_scores, -dist ** 2))
        for eps in eps_list[1:]:
            optimum = -(dist - eps).clamp_min(0) ** 2       # the best score inside the ball
            got = entry["worst_case"][f"{eps:g}"]
            assert got["auroc"] == pytest.approx(auroc(in_scores, optimum), abs=0.02)
            assert got["failed_rows"] == {"pgd": 0, "apgd": 0}
        values = [entry["auroc_by_eps"][f"{e:g}"] for e in eps_list]
        assert all(b <= a + 1e-12 for a, b in zip(values, values[1:])), "warm starts make AUROC monotone in eps"
        below = entry["eps_below_threshold"]
        assert below is None or values[list(eps_list).index(below)] < 0.9
    saved = json.loads((tmp_path / "ood.json").read_text())
    assert saved["models"]["distance"]["sets"]["noise"]["clean"]["auroc"] == \
        result["models"]["distance"]["sets"]["noise"]["clean"]["auroc"]
    assert saved["protocol"]["attack_by_eps"]["2"]["apgd"]["steps"] == 3
    assert saved["protocol"]["failed_rows"] == {"pgd": 0, "apgd": 0}
    scores = np.load(tmp_path / "ood_scores.npz")
    assert scores["distance/noise/eps=2"].shape == (30,) and "distance/noise/eps=2/apgd" in scores.files
    page = (tmp_path / "report.html").read_text()
    assert "Worst-case OOD detection AUROC" in page and "ROC curves and score histograms" in page
    assert page.count("data:image/png;base64,") >= 2
    printed = capsys.readouterr().out
    assert "eps=0.5" in printed and "Protocol:" in printed and "distance" in printed
    # the text table and the report show the same rows
    stored = json.loads((tmp_path / "report.json").read_text())
    table = next(s for s in stored["sections"] if s.get("key") == "ood/auroc")
    assert table["rows"] == json.loads(json.dumps(auroc_rows(result)))
    for row in auroc_rows(result):
        assert f"{row[2]:.4f}" in format_table(result)


def test_square_nan_count_reaches_ood_json(tmp_path):
    model = NaNOffTheGrid(_tiny_convnet())
    torch.manual_seed(1)
    in_dist = torch.rand(6, 1, 28, 28).round()
    bounds = torch.rand(8, 1, 28, 28).round()
    result = evaluate({"m": model}, in_dist, {"bounds": bounds}, eps=(0, 1), attackers=("square",), square_steps=30,
                      early_stop=False, out_dir=tmp_path, verbose=False)
    saved = json.loads((tmp_path / "ood.json").read_text())
    entry = saved["models"]["m"]["sets"]["bounds"]["worst_case"]["1"]
    assert entry["failed_rows"] == {"square": 0} and entry["nan_proposals"]["square"] > 0
    assert saved["protocol"]["nan_proposals"]["square"] == entry["nan_proposals"]["square"]
    assert "NaN proposals refused: square" in format_table(result)


def test_early_stop_does_not_change_ranking_metrics():
    pattern, in_dist, suites = _distance_setup()
    model = Distance(pattern)
    base = OODEvalConfig(eps=(0, 1.0, 3.0), attack=AttackConfig(pgd_steps=(4,), apgd_steps=2))
    full = evaluate({"m": model}, in_dist, suites, base, early_stop=False, verbose=False)
    quick = evaluate({"m": model}, in_dist, suites, base, early_stop=True, verbose=False)
    for name in suites:
        for eps in ("1", "3"):
            a = full["models"]["m"]["sets"][name]["worst_case"][eps]
            b = quick["models"]["m"]["sets"][name]["worst_case"][eps]
            for key in ("auroc", "aupr_in", "aupr_out", "fpr95"):
                assert a[key] == pytest.approx(b[key], abs=1e-9), (name, eps, key)


def test_compare_models_and_input_checks():
    result = {"protocol": {"eps": [0.0, 1.0, 3.0, 5.0]}, "models": {
        "AT": {"sets": {"a": {"auroc_by_eps": {"0": 0.9, "1": 0.9, "3": 0.8, "5": 0.7}},
                        "b": {"auroc_by_eps": {"0": 0.9, "1": 0.9, "3": 0.8, "5": 0.1}}}},
        "OE": {"sets": {"a": {"auroc_by_eps": {"0": 1.0, "1": 0.5, "3": 0.2, "5": 0.1}},
                        "b": {"auroc_by_eps": {"0": 1.0, "1": 0.5, "3": 0.2, "5": 0.2}}}}}}
    verdict = compare_models(result, "AT", "OE", min_eps=3)
    assert verdict["per_set"] == {"a": True, "b": False} and verdict["all"] is False
    with pytest.raises(ValueError, match="no model"):
        compare_models(result, "AT", "JEM")
    pattern, in_dist, suites = _distance_setup()
    with pytest.raises(ValueError, match="shape"):
        evaluate({"m": Distance(pattern)}, in_dist, {"wrong": torch.rand(5, 1, 9, 9)}, eps=(0,), verbose=False)
    with pytest.raises(ValueError, match="eps"):
        evaluate({"m": Distance(pattern)}, in_dist, suites, eps=(-1,), verbose=False)


# ------------------------------------------------------------------------------------------------ pipeline
def _save_model(path, model, extra=None):
    from atebm.training import save_checkpoint

    save_checkpoint(path, {"model_spec": model.spec, "model": model.state_dict(), "config": {}, "trainer": None,
                           **({"extra": extra} if extra else {})})


def test_run_eval_ood_takes_size_and_channels_from_the_checkpoint(tmp_path):
    from atebm import load_model

    _save_model(tmp_path / "m32.pt", _tiny_convnet(channels=3), extra={"size": 32, "channels": 3})
    model = load_model(tmp_path / "m32.pt")
    result = run_eval_ood({"m": model}, tmp_path / "run32", n=4, n_in=4, eps=(0, 0.5), suites=("uniform",),
                          attackers=("pgd",), pgd_steps=(1,), report=False, verbose=False)
    geometry = result["protocol"]["input_geometry"]
    assert result["protocol"]["input_shape"] == [3, 32, 32]
    assert geometry["size_from"] == "checkpoint meta" and geometry["channels_from"] == "checkpoint meta"
    # without a recorded size: channels from the spec, size from the in-distribution data, said in the protocol
    _save_model(tmp_path / "bare.pt", _tiny_convnet())
    bare = run_eval_ood({"m": load_model(tmp_path / "bare.pt")}, tmp_path / "bare", n=4, n_in=4, eps=(0,),
                        suites=("uniform",), report=False, verbose=False)["protocol"]["input_geometry"]
    assert bare["size"] == 28 and bare["size_from"].startswith("the in-distribution data (mnist)")
    assert bare["channels"] == 1 and bare["channels_from"] in ("checkpoint meta", "model spec in_channels")
    with pytest.raises(ValueError, match="different image sizes"):
        run_eval_ood({"a": model, "b": _with_meta(_tiny_convnet(channels=3), size=28, channels=3)}, tmp_path / "x",
                     n=4, n_in=4, eps=(0,), suites=("uniform",), report=False, verbose=False)


def _with_meta(model, **meta):
    model.meta = dict(meta)
    return model


# ------------------------------------------------------------------------------------------------ suites
def test_embedded_suites_shapes_ranges_and_determinism():
    sets = embedded_suites(24, seed=3)
    assert list(sets) == list(EMBEDDED_SUITES)
    for name, x in sets.items():
        assert x.shape == (24, 1, 28, 28) and x.dtype == torch.float32, name
        assert float(x.min()) >= 0 and float(x.max()) <= 1 and float(x.std()) > 0.05, name
    assert torch.equal(embedded_suite("letters", 24, seed=3), sets["letters"])
    assert not torch.equal(embedded_suite("letters", 24, seed=4), sets["letters"])
    # letters are white on black, centred like MNIST digits (dark border, bright centre)
    border = torch.cat([sets["letters"][..., :3, :].flatten(1), sets["letters"][..., -3:, :].flatten(1)], 1)
    assert float(border.mean()) < 0.05 and float(sets["letters"][..., 10:18, 10:18].mean()) > 0.2
    from atebm.data import load_dataset

    mnist = load_dataset("mnist", split="test", seed=4).x[:24]
    assert torch.allclose(sets["inverted"], 1 - mnist)
    assert embedded_suite("lfw", 500).shape[0] == 200          # 100 faces and their mirror images
    colour = embedded_suite("letters", 4, size=32, channels=3)
    assert colour.shape == (4, 3, 32, 32) and torch.equal(colour[:, 0], colour[:, 2])
    with pytest.raises(ValueError, match="unknown OOD suite"):
        embedded_suite("svhn", 4)


def test_letters_use_several_fonts_and_refuse_bad_input():
    from atebm.ood import available_fonts

    fonts = available_fonts()
    assert fonts[0] == "PIL-default" and len(fonts) >= 2   # matplotlib ships DejaVu fonts
    one_font = letters(6, fonts=["PIL-default"], seed=1)
    assert one_font.shape == (6, 1, 28, 28)
    with pytest.raises(ValueError):
        letters(0)


def test_file_suite_reads_resizes_and_subsamples(tmp_path):
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "svhn.npz", x=rng.integers(0, 256, size=(10, 32, 32, 3), dtype=np.uint8))
    x = file_suite(tmp_path / "svhn.npz", n=4, size=28, channels=1)
    assert x.shape == (4, 1, 28, 28) and float(x.min()) >= 0 and float(x.max()) <= 1
    with pytest.raises(FileNotFoundError):
        file_suite(tmp_path / "missing.npz")
    # data-source strings go through atebm.data.open_source: another key, a folder of PNGs, an embedded split
    np.savez(tmp_path / "other.npz", images=rng.random((5, 16, 16)).astype(np.float32))
    assert file_suite(f"npz:{tmp_path / 'other.npz'}?key=images", size=8).shape == (5, 1, 8, 8)
    (tmp_path / "pics").mkdir()
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(tmp_path / "pics" / f"{i}.png")
    assert file_suite(tmp_path / "pics", size=12, channels=3).shape == (3, 3, 12, 12)
    assert file_suite("mnist?split=val", n=7).shape == (7, 1, 28, 28)
    with pytest.raises(FileNotFoundError):
        file_suite(f"cifar100:{tmp_path / 'nothing'}")


# ------------------------------------------------------------------------------------------------ CLI
def test_eval_ood_command(tmp_path, capsys):
    from atebm.cli import main

    for name, seed in (("at", 0), ("oe", 1)):
        _save_model(tmp_path / f"{name}.pt", _tiny_convnet(seed))
    np.save(tmp_path / "extra.npy", np.random.default_rng(0).random((6, 28, 28)).astype(np.float32))
    out = tmp_path / "run"
    code = main(["eval-ood", "--checkpoint", str(tmp_path / "at.pt"), "--checkpoint-oe", str(tmp_path / "oe.pt"),
                 "--out", str(out), "--n", "6", "--n-in", "10", "--eps", "0", "1", "--suites", "uniform", "letters",
                 "--suite-file", f"extra={tmp_path / 'extra.npy'}", "--steps", "2", "--apgd-steps", "2",
                 "--device", "cpu", "--threads", "1"])
    assert code == 0
    result = json.loads((out / "ood.json").read_text())
    assert set(result["models"]) == {"AT", "OE (K=0)"}
    assert set(result["models"]["AT"]["sets"]) == {"uniform", "letters", "extra"}
    assert result["protocol"]["n_in"] == 10 and result["protocol"]["attack"]["pgd_steps"] == [2]
    assert "fonts" in result["protocol"] and (out / "report.html").exists()
    assert "Worst-case OOD detection AUROC" in capsys.readouterr().out
    assert main(["eval-ood", "--checkpoint", str(tmp_path / "nothing.pt"), "--out", str(out)]) == 1


@pytest.mark.parametrize("array", [
    np.full((4, 28, 28), np.nan, dtype=np.float32),
    np.full((4, 28, 28), 3.0, dtype=np.float32),
    np.zeros((4, 5), dtype=np.float32),
])
def test_eval_ood_refuses_a_bad_suite_file_in_one_line(tmp_path, capsys, array):
    from atebm.cli import main

    _save_model(tmp_path / "at.pt", _tiny_convnet())
    np.save(tmp_path / "bad.npy", array)
    code = main(["eval-ood", "--checkpoint", str(tmp_path / "at.pt"), "--out", str(tmp_path / "run"), "--n", "4",
                 "--n-in", "4", "--eps", "0", "--suites", "uniform", "--suite-file", f"bad={tmp_path / 'bad.npy'}",
                 "--no-report", "--device", "cpu"])
    assert code != 0
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("atebm eval-ood: error:"), lines
    assert "bad" in lines[0]
    assert not (tmp_path / "run" / "ood.json").exists()


def test_max_softmax_score_is_the_log_of_the_top_probability_and_keeps_the_classifier_meta():
    from atebm.ood import MaxSoftmaxScore

    classifier = nn.Sequential(nn.Flatten(), nn.Linear(16, 3))
    classifier.meta = {"size": 4, "channels": 1}  # type: ignore[assignment]
    score = MaxSoftmaxScore(classifier)
    x = torch.rand(5, 1, 4, 4)
    expected = torch.softmax(classifier(x), dim=1).max(dim=1).values.log()
    assert torch.allclose(score(x), expected, atol=1e-6)
    assert score.meta == {"size": 4, "channels": 1}
