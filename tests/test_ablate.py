"""``atebm ablate``: every ablation on a smoke budget (seconds; its numbers mean nothing), checking the structure
of result.json and how its arms are wired, and every verdict function on hand-built inputs (one table per function,
a row per outcome, its boundaries included)."""
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
    images,
    negative_results,
    p0_diversity,
    perturbation_2d,
    progressive_vs_fixed,
    r1_from_scratch,
    run_ablation,
    stability,
    step_size,
    toy,
)
from atebm.ablate.common import HOLDS, OUTCOME_LABELS, Finding, outcome_of, train_arm
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
    _consistent(result["outcome"], result["holds"], result["verdict"])
    assert result["claim"]
    assert (out / "report.html").stat().st_size > 1000
    saved = json.loads((out / "result.json").read_text())
    assert saved["ablation"] == name
    assert [saved[k] for k in ("outcome", "holds", "verdict")] == [result[k] for k in ("outcome", "holds", "verdict")]
    assert list((out / "report_files").glob("*.png")), "the report needs its plot"


def _consistent(outcome: str | None, holds: bool | None, sentence: str) -> None:
    """The three faces of one verdict agree: ``holds`` and the sentence's opening word follow the outcome."""
    assert outcome in OUTCOME_LABELS
    assert holds is HOLDS[outcome]
    assert sentence.startswith(OUTCOME_LABELS[outcome] + ": ") and len(sentence) > len(OUTCOME_LABELS[outcome]) + 2


def _check(finding: Finding, outcome: str | None) -> None:
    assert finding.outcome == outcome, finding.sentence
    _consistent(finding.outcome, finding.holds, finding.sentence)


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
        per_suite = arm["ood"]["per_suite"]
        assert set(per_suite) == set(SMOKE.ood_suites) == {"uniform"}
        assert list(arm["auroc_noise_suites"]) == [f"{e:g}" for e in SMOKE.ood_eps]
        # the smoke suites are noise only: the noise group is the uniform suite, the real-image group is empty
        assert arm["auroc_noise_suites"] == per_suite["uniform"]
        assert all(math.isnan(v) for v in arm["auroc_real_suites"].values())
    assert result["outcome"] is None and "no real-image OOD suite" in result["verdict"]


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
    assert result["arms"]["K=0"]["final_k"] == 0
    assert [a["config"] for a in result["arms"].values()] == [{"k_max": 0}, {"k_max": 2}]
    for arm in result["arms"].values():
        assert list(arm["ood"]["mean_by_eps"]) == ["0", "1"]


def test_progressive_vs_fixed_records_a_validation_trace(tmp_path):
    out = tmp_path / "pvf"
    result = progressive_vs_fixed(out, smoke=True, fixed=(2,), progressive_k=2, checkpoints=2)
    _common(result, "progressive-vs-fixed", out)
    assert set(result["arms"]) == {"fixed K=2", "progressive 0..2"}
    trace = result["arms"]["fixed K=2"]["trace"]
    assert trace and all(t["k"] == 2 for t in trace)
    assert [t["train_cpu_s"] for t in trace] == sorted(t["train_cpu_s"] for t in trace)


def test_step_size_runs_the_monitor_and_shows_k012(tmp_path):
    out = tmp_path / "step"
    result = step_size(out, smoke=True, step_sizes=(0.5, 1.0, 4.0))
    _common(result, "step-size", out)
    assert list(result["arms"]) == ["step 0.5", "step 1", "step 4"]
    for lam, arm in zip((0.5, 1.0, 4.0), result["arms"].values()):
        assert arm["config"] == {"step_size": lam} and arm["history"] and arm["final"] == arm["history"][-1]
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
    with pytest.raises(ValueError, match="overlap"):
        composition(out, smoke=True, classes_a=(0, 1), classes_b=(2, 3))


def test_stability(tmp_path):
    out = tmp_path / "stab"
    result = stability(out, smoke=True, lrs=(1e-4,))
    _common(result, "stability", out)
    assert set(result["arms"]) == {"bce lr 0.0001", "ebm lr 0.0001"}
    for name, run in result["arms"].items():
        assert run["trace"] and all("gap" in t for t in run["trace"])
        assert run["config"]["loss"] == run["loss"] == name.split()[0] and run["config"]["lr"] == 1e-4


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


# ------------------------------------------------------------------------------------------ verdicts
def test_a_finding_derives_holds_and_its_opening_word_from_the_outcome():
    for outcome, holds, opening in [("holds", True, "Holds: "), ("partly", None, "Partly holds: "),
                                    ("does not hold", False, "Does not hold: "), (None, None, "Not decided: ")]:
        finding = Finding("claim", outcome, "numbers")  # type: ignore[arg-type]
        assert finding.holds is holds and finding.sentence == opening + "numbers"
    with pytest.raises(ValueError, match="outcome must be one of"):
        Finding("claim", "Holds", "numbers")  # type: ignore[arg-type]
    assert [outcome_of(p) for p in ([True, True], [True, False], [False, False], [])] == [
        "holds", "partly", "does not hold", None]


def _p0_arm(fd: float, clean: dict[str, float]) -> dict:
    """An arm of p0-diversity: AUROC ``clean[suite]`` at eps 0 and half of it at eps 1 on each real suite."""
    per_suite = {"uniform": {"0": 1.0, "1": 0.9}, **{s: {"0": v, "1": v / 2} for s, v in clean.items()}}
    real = list(clean.values())
    return {"fd": fd, "ood": {"per_suite": per_suite},
            "auroc_real_suites": {"0": float(np.mean(real)) if real else math.nan,
                                  "1": float(np.mean(real)) / 2 if real else math.nan}}


_GOOD = {"photos": 0.99, "lfw": 0.99, "digits": 0.99, "inverted": 0.99}


@pytest.mark.parametrize("uniform, outcome, failed", [
    ({"photos": 0.5, "lfw": 0.6, "digits": 0.7, "inverted": 0.95}, "holds", ["digits", "lfw", "photos"]),
    ({"photos": 0.5, "lfw": 0.6, "digits": 0.95, "inverted": 0.95}, "partly", ["lfw", "photos"]),  # half: not more
    ({"photos": 0.5, "lfw": 0.95, "digits": 0.95, "inverted": 0.95}, "partly", ["photos"]),
    ({"photos": 0.9, "lfw": 0.95, "digits": 0.95, "inverted": 0.95}, "does not hold", []),  # 0.9 is not a failure
    ({}, None, None),  # noise suites only
])
def test_p0_finding(uniform, outcome, failed):
    results = {"uniform": _p0_arm(300.0, uniform), "photos": _p0_arm(100.0, {s: _GOOD[s] for s in uniform})}
    finding = images._p0_finding(results, ["0", "1"])
    _check(finding, outcome)
    assert finding.evidence["best_fd_arm"] == "photos"
    if failed is not None:
        assert finding.evidence["failed_suites"] == failed
        assert f"rejects {4 - len(failed)} of 4 real-image suites" in finding.sentence
    no_uniform = images._p0_finding({"photos": results["photos"]}, ["0", "1"])
    _check(no_uniform, None)


def _k_arms(fd: dict[int, float], oe: dict[str, float], at_top: float) -> dict:
    """final-k arms: FD per K, K = 0's mean AUROC per eps, every K > 0 at ``at_top`` on the largest eps (8)."""
    arms = {f"K={k}": {"fd": v, "ood": {"mean_by_eps": {"0": 0.99, "3": 0.9, "8": at_top - 0.01 * k}}}
            for k, v in fd.items()}
    if 0 in fd:
        arms["K=0"]["ood"]["mean_by_eps"] = oe
    return arms


_FALLING = {0: 500.0, 1: 300.0, 2: 200.0, 4: 100.0}
_RISING = {0: 500.0, 1: 100.0, 2: 200.0, 4: 300.0}
_COLLAPSED = {"0": 0.99, "3": 0.3, "8": 0.1}
_STANDING = {"0": 0.99, "3": 0.8, "8": 0.75}


@pytest.mark.parametrize("fd, oe, at_top, outcome", [
    (_FALLING, _COLLAPSED, 0.8, "holds"),
    (_RISING, _COLLAPSED, 0.8, "partly"),  # FD rises with K
    (_FALLING, _STANDING, 0.8, "partly"),  # no collapse and no gap of 0.1 (0.79 vs 0.75)
    (_FALLING, {"0": 0.99, "3": 0.6, "8": 0.1}, 0.8, "partly"),  # a gap, but no collapse at eps 3
    ({0: 500.0, 1: 100.0, 2: 200.0}, _COLLAPSED, 0.8, "partly"),  # two K > 0 arms: no trend measured
    (_RISING, _STANDING, 0.8, "does not hold"),
])
def test_k_finding(fd, oe, at_top, outcome):
    finding = images._k_finding(_k_arms(fd, oe, at_top), sorted(fd), ["0", "3", "8"])
    _check(finding, outcome)
    if len(fd) < 4:
        assert "too few arms with K > 0" in finding.sentence
    else:
        assert ("FD falls with K_max" in finding.sentence) is (fd is _FALLING)


def test_k_finding_needs_k0_and_a_positive_k():
    _check(images._k_finding(_k_arms({1: 1.0, 2: 2.0}, _STANDING, 0.8), [1, 2], ["0", "3", "8"]), None)


def _traces(progressive: list[float], fixed: list[float]) -> dict:
    return {"progressive 0..16": {"fd": progressive[-1], "trace": [{"val_fd": v} for v in progressive]},
            "fixed K=16": {"fd": fixed[-1] if fixed else math.nan, "trace": [{"val_fd": v} for v in fixed]}}


@pytest.mark.parametrize("progressive, fixed, outcome", [
    ([10.0, 1000.0], [250.0, 250.0], "holds"),  # geometric means 100 vs 250 (arithmetic: 505 vs 250)
    ([100.0, 100.0], [300.0, 200.0], "holds"),
    ([300.0, 300.0], [100.0, 100.0], "does not hold"),
    ([100.0, 100.0], [150.0, 150.0], None),  # within the 2x FD noise
    ([100.0, 100.0], [60.0, 60.0], None),
    ([100.0], [], None),  # no fixed-K trace
])
def test_progressive_finding(progressive, fixed, outcome):
    _check(images._progressive_finding(_traces(progressive, fixed), 16, 16), outcome)


def test_progressive_finding_needs_a_fixed_arm():
    _check(images._progressive_finding(_traces([1.0], [2.0]), 16, None), None)
    _check(images._progressive_finding(_traces([1.0], [2.0]), 16, 8), None)


def _step_arm(status: str, *kinds: str) -> dict:
    return {"monitor": {"status": status, "events": [{"kind": k} for k in kinds]},
            "final": {"loss": 0.0, "auc_adv": 1.0, "auc_clean": 0.4}}


_FLAGGED = _step_arm("warned", "step_size_too_large")
_NOT_FLAGGED = _step_arm("warned", "score_explodes")


@pytest.mark.parametrize("preset, large, outcome", [
    (_step_arm("healthy"), _FLAGGED, "holds"),
    (_step_arm("warned", "step_size_too_large"), _FLAGGED, "partly"),  # the preset's step is flagged as well
    (_step_arm("healthy"), _NOT_FLAGGED, "does not hold"),  # another failure, not the step-size signature
    (_step_arm("stopped", "non_finite"), _step_arm("healthy"), "does not hold"),
    (None, _FLAGGED, "holds"),  # no step-1 arm: only the large step is judged
    (None, _NOT_FLAGGED, "does not hold"),
])
def test_step_finding(preset, large, outcome):
    results = {"step 0.25": _step_arm("healthy"), "step 8": large} | ({"step 1": preset} if preset else {})
    finding = images._step_finding(results, [0.25, 8.0] + ([1.0] if preset else []))
    _check(finding, outcome)
    assert ("no preset step-1 arm" in finding.sentence) is (preset is None)


@pytest.mark.parametrize("fds, outcome, harmful", [
    ({"r1=0": 100.0, "r1=0.1": 120.0, "r1=1": 150.0, "r1=10": 90.0}, None, []),  # all within the 2x noise
    ({"r1=0": 100.0, "r1=1": 250.0}, "does not hold", ["r1=1"]),  # a weight <= 1 hurts
    ({"r1=0": 300.0, "r1=0.1": 100.0}, "does not hold", []),  # R1 is needed
    ({"r1=0": 100.0, "r1=10": 250.0}, None, []),  # a weight above 1 may hurt: not part of the claim
])
def test_r1_finding(fds, outcome, harmful):
    finding = images._r1_finding("claim", fds, fds["r1=0"], min(fds.values()), {"fd": fds})
    _check(finding, outcome)
    assert finding.evidence["harmful"] == harmful and finding.evidence["fd"] == fds


def _rows(fractions: dict[tuple[str, str, int], float]) -> dict:
    return {f"{d} | {s} | {n} steps": {"design": d, "sampler": s, "steps": n, "fraction_in_both": v}
            for (d, s, n), v in fractions.items()}


@pytest.mark.parametrize("composed, alone, outcome", [
    (0.7, 0.3, "holds"),
    (0.6, 0.3, "holds"),  # exactly the conjunction threshold
    (0.75, 0.5, "holds"),  # exactly 1.5x the single models
    (0.7, 0.6, "partly"),  # a conjunction the single model nearly gives by itself (< 1.5x)
    (0.5, 0.2, "does not hold"),  # 2.5x the single models, but no conjunction (< 0.6)
    (0.3, 0.25, "does not hold"),
])
def test_composition_finding(composed, alone, outcome):
    rows = _rows({("mixed", "A alone", 32): alone, ("mixed", "B alone", 32): alone / 2,
                  ("mixed", "sum of logits", 32): composed, ("mixed", "sum of log D", 32): composed / 2,
                  ("mixed", "A alone", 96): 0.99,  # another number of steps: not the comparison
                  ("photos", "A alone", 32): 0.99, ("photos", "sum of logits", 32): 0.0})
    finding = negative_results._composition_finding(rows, [4, 5])
    _check(finding, outcome)
    assert finding.evidence["best"] == "mixed | sum of logits | 32 steps"
    assert finding.evidence["best_single_model"] == alone


def test_composition_finding_needs_a_composed_sampler():
    _check(negative_results._composition_finding(_rows({("photos", "A alone", 32): 0.9}), [4, 5]), None)


def _stability_run(diverged_at: int | None, projected: float | None = None) -> dict:
    return {"diverged": diverged_at is not None, "diverged_at": diverged_at, "iterations": diverged_at or 200,
            "growth": {"last": 5.0, "slope_second_half_per_1k": 3.0 if projected else -1.0},
            "iterations_to_overflow_at_this_slope": projected}


@pytest.mark.parametrize("ebm, bce, outcome, words", [
    (_stability_run(120), _stability_run(None), "holds", "diverged at step 120 at lr 1e-06, BCE did not"),
    (_stability_run(120), _stability_run(150), "partly", "but so did BCE (at step 150)"),
    (_stability_run(None, projected=1200.0), _stability_run(None), None, "overflow in about 1.2e+03 iterations"),
    (_stability_run(None), _stability_run(None), "does not hold", "did not diverge within 200 iterations"),
    (_stability_run(None, projected=1200.0), _stability_run(150), "does not hold", "while BCE did (at step 150)"),
])
def test_stability_finding(ebm, bce, outcome, words):
    runs = {"bce lr 1e-06": bce, "ebm lr 1e-06": ebm,
            "bce lr 0.0001": _stability_run(None), "ebm lr 0.0001": _stability_run(10)}  # another lr: not judged
    finding = negative_results._stability_finding(runs, 1e-6)
    _check(finding, outcome)
    assert words in finding.sentence
    assert ("gap ends at" in finding.sentence) is (not ebm["diverged"])


@pytest.mark.parametrize("as_predicted, outcome", [
    ([True, True, True], "holds"),
    ([True, False, True], "partly"),
    ([False, False, False], "does not hold"),
    ([], None),
])
def test_perturbation_2d_finding(as_predicted, outcome):
    names = list(toy.SCENARIOS)[:len(as_predicted)]
    finding = toy._finding({n: {"verdict": {"holds": ok}} for n, ok in zip(names, as_predicted)})
    _check(finding, outcome)
    assert finding.evidence["per_scenario"] == dict(zip(names, as_predicted))
    if outcome == "partly":
        assert "as predicted in 2 of 3 scenarios; not in: support and S disjoint" in finding.sentence
