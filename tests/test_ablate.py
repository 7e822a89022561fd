"""``atebm ablate``: every ablation on a smoke budget (seconds; its numbers mean nothing), checking the structure
of result.json and the properties that hold whatever the training did."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from atebm.ablate import (
    ABLATIONS,
    P0_ARMS,
    SMOKE,
    CpuBudget,
    Scale,
    composition,
    final_k,
    p0_diversity,
    perturbation_2d,
    progressive_vs_fixed,
    r1_from_scratch,
    run_ablation,
    stability,
    step_size,
)
from atebm.ablate.common import train_arm
from atebm.ablate.images import load_p0
from atebm.ablate.toy import _in_s, _table1
from atebm.cli import main
from atebm.training import StopTraining


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _common(result: dict, name: str, out) -> None:
    assert result["ablation"] == name
    assert result["command"].startswith(f"atebm ablate {name} --out {out}")
    assert "--smoke" in result["command"] and result["smoke"] is True
    assert result["holds"] in (True, False, None) and result["verdict"] and result["claim"]
    assert (out / "report.html").stat().st_size > 1000
    assert json.loads((out / "result.json").read_text())["ablation"] == name
    assert list((out / "report_files").glob("*.png")), "the report needs its plot"


def test_cpu_budget_stops_training():
    budget = CpuBudget(0.0)
    with pytest.raises(StopTraining, match="CPU budget"):
        budget(type("T", (), {"step": 1, "k": 0})(), {})
    x = torch.rand(64, 1, 28, 28)
    trainer, summary = train_arm({"k_max": 0}, x, torch.rand(64, 1, 28, 28), Scale(budget_s=1e-9, log_every=1))
    assert trainer.step == 1 and "CPU budget" in summary["stop"]


def test_p0_diversity_with_an_extra_npz_arm(tmp_path):
    np.savez(tmp_path / "boundary.npz", x=np.random.default_rng(0).random((40, 1, 28, 28), dtype=np.float32))
    out = tmp_path / "p0"
    result = p0_diversity(out, smoke=True, arms=("uniform", "mixture"),
                          extra_arms={"dsgan": f"npz:{tmp_path}/boundary.npz"})
    _common(result, "p0-diversity", out)
    assert list(result["arms"]) == ["uniform", "mixture", "dsgan"]
    assert result["arms"]["dsgan"]["p0_size"] == 40 and f"--arm dsgan=npz:{tmp_path}" in result["command"]
    for arm in result["arms"].values():
        assert math.isfinite(arm["fd"]) and arm["fd"] >= 0
        per_suite = arm["ood"]["per_suite"]
        assert set(per_suite) == set(SMOKE.ood_suites) and all(0 <= v <= 1 for s in per_suite.values()
                                                               for v in s.values())
        assert list(arm["auroc_noise_suites"]) == [f"{e:g}" for e in SMOKE.ood_eps]


def test_mixture_p0_draws_from_every_source():
    x = load_p0("mixture", 100)
    assert x.shape == (100, 1, 28, 28)
    sources = [load_p0(P0_ARMS[k], 100) for k in ("uniform", "gaussian", "digits", "lfw", "photos")]
    owner = torch.stack([torch.cdist(x.flatten(1), s.flatten(1), compute_mode="donot_use_mm_for_euclid_dist")
                         .min(1).values < 1e-5 for s in sources])
    assert bool(owner.any(0).all()), "every mixture image is an image of one source"
    assert owner.sum(1).tolist() == [20] * 5, "equal shares"
    with pytest.raises(ValueError, match="unknown p0 arm"):
        p0_diversity("unused", smoke=True, arms=("nope",))


def test_final_k(tmp_path):
    out = tmp_path / "k"
    result = final_k(out, smoke=True, ks=(0, 2))
    _common(result, "final-k", out)
    assert list(result["arms"]) == ["K=0", "K=2"]
    assert result["arms"]["K=0"]["final_k"] == 0 and result["arms"]["K=2"]["final_k"] <= 2
    for arm in result["arms"].values():
        assert list(arm["ood"]["mean_by_eps"]) == ["0", "1"]


def test_progressive_vs_fixed_records_a_validation_trace(tmp_path):
    out = tmp_path / "pvf"
    result = progressive_vs_fixed(out, smoke=True, fixed=(2,), progressive_k=2, checkpoints=2)
    _common(result, "progressive-vs-fixed", out)
    assert set(result["arms"]) == {"fixed K=2", "progressive 0..2"}
    trace = result["arms"]["fixed K=2"]["trace"]
    assert trace and all(t["k"] == 2 and t["val_fd"] > 0 for t in trace)
    assert [t["train_cpu_s"] for t in trace] == sorted(t["train_cpu_s"] for t in trace)


def test_step_size_runs_the_monitor_and_shows_k012(tmp_path):
    out = tmp_path / "step"
    result = step_size(out, smoke=True, step_sizes=(0.5, 1.0, 4.0))
    _common(result, "step-size", out)
    for arm in result["arms"].values():
        assert arm["monitor"]["status"] in ("healthy", "warned", "stopped") and arm["history"]
    from PIL import Image

    width, height = Image.open(out / "samples_k012.png").size
    assert 14 < height / width < 18  # 3 columns (K = 0, 1, 2) x 16 seeds for each of the 3 step sizes


def test_r1(tmp_path):
    out = tmp_path / "r1"
    result = r1_from_scratch(out, smoke=True, r1s=(0.0, 1.0))
    _common(result, "r1", out)
    assert result["arms"]["r1=0"]["config"]["r1"] == 0.0 and result["arms"]["r1=0"]["final"]["r1"] == 0.0
    assert result["arms"]["r1=1"]["config"]["r1"] == 1.0 and result["arms"]["r1=1"]["final"]["r1"] > 0


def test_perturbation_2d_geometry(tmp_path):
    out = tmp_path / "2d"
    result = perturbation_2d(out, smoke=True)
    _common(result, "perturbation-2d", out)
    arms = result["arms"]
    # what the corner p_0 can reach is geometry, independent of training
    assert arms["support inside S"]["mass_of_p_data_in_S"] > 0.99
    assert arms["support and S disjoint"]["mass_of_p_data_in_S"] == 0.0
    assert 0.0 < arms["support partly in S"]["mass_of_p_data_in_S"] < 1.0
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert _in_s(points, torch.tensor([[0.0, 1.0]]), 1.0).tolist() == [True, False]
    ideal = {"mass_of_p_data_in_S": 0.0, "d_support_outside_S": 0.98, "d_S_off_support_mean": 0.02,
             "d_support_in_S": math.nan, "alpha_predicted": 0.0}
    assert _table1(ideal)["holds"] and not _table1({**ideal, "d_support_outside_S": 0.5})["holds"]


def test_composition(tmp_path):
    out = tmp_path / "compose"
    result = composition(out, smoke=True, steps=(2,))
    _common(result, "composition", out)
    samples = result["samples"]
    assert len(samples) == 2 * 4  # two designs x (A, B, sum of logits, sum of log D)
    for row in samples.values():
        assert row["fraction_in_both"] <= min(row["fraction_in_A"], row["fraction_in_B"]) + 1e-9
        assert sum(row["class_histogram"]) == SMOKE.n_fd
    with pytest.raises(ValueError, match="overlap"):
        composition(out, smoke=True, classes_a=(0, 1), classes_b=(2, 3))


def test_stability(tmp_path):
    out = tmp_path / "stab"
    result = stability(out, smoke=True, lrs=(1e-4,))
    _common(result, "stability", out)
    assert set(result["arms"]) == {"bce lr 0.0001", "ebm lr 0.0001"}
    for run in result["arms"].values():
        assert run["trace"] and all("gap" in t for t in run["trace"])
        assert run["config"]["loss"] in ("bce", "ebm")


def test_cli_runs_an_ablation_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["ablate", "perturbation-2d", "--out", str(out), "--smoke"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ablation"] == "perturbation-2d" and (out / "result.json").exists()
    with pytest.raises(SystemExit):
        main(["ablate", "p0-diversity", "--out", str(out), "--arm", "no-equals-sign"])
    assert main(["ablate", "r1", "--out", str(out), "--arm", "x=uniform"]) == 1
    assert "p0-diversity only" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown ablation"):
        run_ablation("nope", tmp_path)
    assert set(ABLATIONS) == {"p0-diversity", "final-k", "progressive-vs-fixed", "step-size", "r1",
                              "perturbation-2d", "composition", "stability"}
