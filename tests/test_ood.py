"""Worst-case OOD: the attack adapter raises the score, the worst case is never weaker than either attacker,
constraints hold, analytic optima are reached; evaluate() numbers, files and report; the suites; the CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from atebm import build_score_model
from atebm.metrics import auroc
from atebm.ood import (AttackConfig, EMBEDDED_SUITES, TwoClassAdapter, compare_models, embedded_suite,
                       embedded_suites, evaluate, file_suite, letters, worst_case)
from atebm.ood.attacks import batched_scores


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tiny_convnet(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return build_score_model({"arch": "convnet", "kwargs": {"in_channels": 1, "width": 4}, "mean": 0.5, "std": 0.5})


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


# ------------------------------------------------------------------------------------------------ attacks
@pytest.mark.parametrize("loss", ["dlr", "ce"])
def test_apgd_adapter_raises_the_score(loss):
    model = _tiny_convnet()
    x = torch.rand(12, 1, 28, 28)
    result = worst_case(model, x, eps=1.0, attackers=("apgd",), config=AttackConfig(apgd_loss=loss, apgd_steps=5))
    gain = result.by_attacker["apgd"] - result.clean_scores
    assert (gain > 1e-5).float().mean() > 0.9, gain
    assert torch.allclose(result.by_attacker["apgd"], batched_scores(model, result.x_by_attacker["apgd"]), atol=1e-5)


def test_dlr_adapter_keeps_climbing_where_cross_entropy_saturates():
    base = _tiny_convnet()

    class VeryNegative(nn.Module):          # scores around -200: softplus'(f) = sigmoid(f) underflows
        def __init__(self):
            super().__init__()
            self.base = base

        def forward(self, x):
            return 30 * self.base(x) - 200.0

    model, x = VeryNegative(), torch.rand(12, 1, 28, 28)
    dlr = worst_case(model, x, eps=1.0, attackers=("apgd",), config=AttackConfig(apgd_steps=5))
    assert ((dlr.by_attacker["apgd"] - dlr.clean_scores) > 1e-3).all()
    adapter = TwoClassAdapter(model, x.shape[1:])
    logits = adapter(adapter.to_attack(x))
    assert logits.shape == (12, 3) and torch.all(logits[:, 0] == 0) and torch.all(logits[:, 2] == -1e4)


def test_adapter_refuses_scores_beyond_its_margin():
    adapter = TwoClassAdapter(lambda x: torch.full((len(x),), 2e4), (3,), margin=1e4)
    with pytest.raises(ValueError, match="margin"):
        adapter(torch.zeros(2, 3, 1, 1))


@pytest.mark.parametrize("norm,eps", [("l2", 1.5), ("linf", 0.05)])
def test_worst_case_respects_the_ball_and_box_and_beats_each_attacker(norm, eps):
    model = _tiny_convnet(1)
    x = torch.rand(16, 1, 28, 28)
    x[:4] = 0.0                                              # the box is active for these
    result = worst_case(model, x, norm=norm, eps=eps, config=AttackConfig(pgd_steps=(3,), apgd_steps=3,
                                                                          pgd_random_restarts=1), seed=5)
    for candidate in [result.x, *result.x_by_attacker.values()]:
        delta = (candidate - x).flatten(1)
        size = delta.norm(dim=1) if norm == "l2" else delta.abs().max(dim=1).values
        assert (size <= eps + 1e-5).all()
        assert candidate.min() >= 0 and candidate.max() <= 1
    stacked = torch.stack(list(result.by_attacker.values()))
    assert torch.equal(result.scores, stacked.max(0).values)
    for name, scores in result.by_attacker.items():
        assert (result.scores >= scores).all() and (scores >= result.clean_scores).all(), name
    assert torch.allclose(result.scores, batched_scores(model, result.x), atol=1e-5)
    again = worst_case(model, x, norm=norm, eps=eps, config=AttackConfig(pgd_steps=(3,), apgd_steps=3,
                                                                         pgd_random_restarts=1), seed=5)
    assert torch.equal(again.scores, result.scores), "same seed, same result"
    assert result.protocol["apgd"]["implementation"].startswith("torchattacks.APGD")
    assert result.protocol["pgd"]["grid_steps_x_step_size"][0][0] == 3


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


def test_bad_attack_inputs_are_refused():
    model = _tiny_convnet()
    with pytest.raises(ValueError, match="eps"):
        worst_case(model, torch.rand(2, 1, 28, 28), eps=float("inf"))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        worst_case(model, torch.rand(2, 1, 28, 28) * 3, eps=1.0)
    with pytest.raises(ValueError, match="attackers"):
        AttackConfig(attackers=("fgsm",))
    with pytest.raises(ValueError, match="norm"):
        worst_case(model, torch.rand(2, 1, 28, 28), eps=1.0, norm="l1")


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
    config = AttackConfig(pgd_steps=(5,), apgd_steps=3, early_stop=False)
    result = evaluate({"distance": model}, in_dist, suites, eps_list, config=config, out_dir=tmp_path,
                      report=tmp_path, threshold=0.9)
    in_scores = model(in_dist)
    for name, x in suites.items():
        entry = result["models"]["distance"]["sets"][name]
        dist = (x - pattern).flatten(1).norm(dim=1)
        assert entry["clean"]["auroc"] == pytest.approx(auroc(in_scores, -dist ** 2))
        for eps in eps_list[1:]:
            optimum = -(dist - eps).clamp_min(0) ** 2       # the best score inside the ball
            got = entry["worst_case"][f"{eps:g}"]
            assert got["auroc"] == pytest.approx(auroc(in_scores, optimum), abs=0.02)
        values = [entry["auroc_by_eps"][f"{e:g}"] for e in eps_list]
        assert all(b <= a + 1e-12 for a, b in zip(values, values[1:])), "warm starts make AUROC monotone in eps"
        below = entry["eps_below_threshold"]
        assert below is None or values[list(eps_list).index(below)] < 0.9
    saved = json.loads((tmp_path / "ood.json").read_text())
    assert saved["models"]["distance"]["sets"]["noise"]["clean"]["auroc"] == \
        result["models"]["distance"]["sets"]["noise"]["clean"]["auroc"]
    assert saved["protocol"]["attack_by_eps"]["2"]["apgd"]["steps"] == 3
    scores = np.load(tmp_path / "ood_scores.npz")
    assert scores["distance/noise/eps=2"].shape == (30,) and "distance/noise/eps=2/apgd" in scores.files
    page = (tmp_path / "report.html").read_text()
    assert "Worst-case OOD detection AUROC" in page and "ROC curves and score histograms" in page
    assert page.count("data:image/png;base64,") >= 2
    printed = capsys.readouterr().out
    assert "eps=0.5" in printed and "Protocol:" in printed and "distance" in printed


def test_early_stop_does_not_change_ranking_metrics():
    pattern, in_dist, suites = _distance_setup()
    model = Distance(pattern)
    args = dict(eps_list=(0, 1.0, 3.0), verbose=False)
    full = evaluate({"m": model}, in_dist, suites, config=AttackConfig(pgd_steps=(4,), apgd_steps=2,
                                                                       early_stop=False), **args)
    quick = evaluate({"m": model}, in_dist, suites, config=AttackConfig(pgd_steps=(4,), apgd_steps=2,
                                                                        early_stop=True), **args)
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
        evaluate({"m": Distance(pattern)}, in_dist, {"wrong": torch.rand(5, 1, 9, 9)}, (0,), verbose=False)
    with pytest.raises(ValueError, match="eps_list"):
        evaluate({"m": Distance(pattern)}, in_dist, suites, (-1,), verbose=False)


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
    from atebm.data import load

    mnist = load("mnist", split="test", seed=4).x[:24]
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
    from atebm.training import save_checkpoint

    for name, seed in (("at", 0), ("oe", 1)):
        model = _tiny_convnet(seed)
        save_checkpoint(tmp_path / f"{name}.pt", {"model_spec": model.spec, "model": model.state_dict(),
                                                  "config": {}, "trainer": None})
    np.save(tmp_path / "extra.npy", np.random.default_rng(0).random((6, 28, 28)).astype(np.float32))
    out = tmp_path / "run"
    code = main(["eval-ood", "--checkpoint", str(tmp_path / "at.pt"), "--checkpoint-oe", str(tmp_path / "oe.pt"),
                 "--out", str(out), "--n", "6", "--n-in", "10", "--eps", "0", "1", "--suites", "uniform", "letters",
                 "--suite-file", f"extra={tmp_path / 'extra.npy'}", "--steps", "2", "--apgd-steps", "2"])
    assert code == 0
    result = json.loads((out / "ood.json").read_text())
    assert set(result["models"]) == {"AT", "OE (K=0)"}
    assert set(result["models"]["AT"]["sets"]) == {"uniform", "letters", "extra"}
    assert result["protocol"]["n_in"] == 10 and result["protocol"]["attack"]["pgd_steps"] == [2]
    assert "fonts" in result["protocol"] and (out / "report.html").exists()
    assert "Worst-case OOD detection AUROC" in capsys.readouterr().out
    assert main(["eval-ood", "--checkpoint", str(tmp_path / "nothing.pt"), "--out", str(out)]) == 1
