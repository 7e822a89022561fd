"""``atebm ablate``: every ablation on a smoke budget with two seeds (seconds; its numbers mean nothing), checking
the structure of result.json (seeds, per-seed values, mean, sd) and how its arms are wired; the seed statistics
against numbers computed by hand; and every verdict function on hand-built per-seed inputs (one table per function:
holds, partly, does not hold, not decided because an interval straddles its threshold, and one seed)."""
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
from atebm.ablate.common import (
    HOLDS,
    MIN_SEEDS,
    OUTCOME_LABELS,
    Finding,
    SeedInterval,
    check_seeds,
    outcome_of,
    over_seeds,
    paired_difference,
    train_arm,
)
from atebm.ablate.images import load_p0
from atebm.ablate.toy import _in_s, _table1
from atebm.cli import build_parser, main
from atebm.monitor import STEP_SIZE_TOO_LARGE
from atebm.training import StopTraining

#: The seeds of the smoke runs: two keep them fast and show the per-seed structure (and decide nothing).
TWO = (0, 1)


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    yield


def _common(result: dict, name: str, out, seeds=TWO) -> None:
    assert result["ablation"] == name
    assert result["command"].startswith(f"atebm ablate {name} --out {out}")
    assert "--smoke" in result["command"] and result["smoke"] is True
    assert f"--seeds {' '.join(map(str, seeds))}" in result["command"]
    assert result["seeds"] == list(seeds) and result["statistics"]["min_seeds"] == MIN_SEEDS
    _consistent(result["outcome"], result["holds"], result["verdict"])
    if len(seeds) < MIN_SEEDS:  # fewer seeds than a verdict needs decide nothing
        assert result["outcome"] is None, result["verdict"]
    assert result["claim"]
    assert (out / "report.html").stat().st_size > 1000
    saved = json.loads((out / "result.json").read_text())
    assert saved["ablation"] == name and saved["seeds"] == list(seeds)
    assert [saved[k] for k in ("outcome", "holds", "verdict")] == [result[k] for k in ("outcome", "holds", "verdict")]
    assert list((out / "report_files").glob("*.png")), "the report needs its plot"


def _per_seed(arm: dict, metric: str, seeds=TWO) -> list:
    """The per-seed values of one metric of an arm, checked against the arm's runs and its mean and sd."""
    stats = arm[metric]
    assert [run["seed"] for run in arm["runs"]] == list(seeds)
    assert stats["per_seed"] == [float(run[metric]) for run in arm["runs"]] and stats["n"] == len(seeds)
    assert stats["mean"] == pytest.approx(np.mean(stats["per_seed"]))
    assert stats["sd"] == pytest.approx(np.std(stats["per_seed"], ddof=1))
    return stats["per_seed"]


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
                          extra_arms={"dsgan": f"npz:{tmp_path}/boundary.npz"}, seeds=TWO)
    _common(result, "p0-diversity", out)
    assert list(result["arms"]) == ["uniform", "mixture", "dsgan"]
    assert [run["p0_size"] for run in result["arms"]["dsgan"]["runs"]] == [40, 40]
    assert f"--arm dsgan=npz:{tmp_path}" in result["command"]
    for arm in result["arms"].values():
        fds = _per_seed(arm, "fd")
        assert fds[0] != fds[1], "each seed trains its own model"
        per_suite = arm["ood"]["per_suite"]
        assert set(per_suite) == set(SMOKE.ood_suites) == {"uniform"}
        assert list(arm["auroc_noise_suites"]) == [f"{e:g}" for e in SMOKE.ood_eps]
        # the smoke suites are noise only: the noise group is the uniform suite, the real-image group is empty
        assert arm["auroc_noise_suites"] == per_suite["uniform"]
        assert all(math.isnan(v["mean"]) for v in arm["auroc_real_suites"].values())
    assert result["outcome"] is None and "no real-image OOD suite" in result["verdict"]
    # the OOD inputs are drawn once for every seed; the attacks follow the training seed
    protocols = [json.loads((out / "ood" / f"seed-{s}" / "ood.json").read_text())["protocol"] for s in TWO]
    assert [p["seed"] for p in protocols] == list(TWO)
    assert protocols[0]["n_ood"] == protocols[1]["n_ood"] and "for every training seed" in protocols[0]["inputs"]


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
    result = final_k(out, smoke=True, ks=(0, 2), seeds=TWO)
    _common(result, "final-k", out)
    assert list(result["arms"]) == ["K=0", "K=2"]
    assert [a["k_max"] for a in result["arms"].values()] == [0, 2]
    for arm in result["arms"].values():
        assert [run["config"] for run in arm["runs"]] == [{"k_max": arm["k_max"]}] * 2
        assert list(arm["ood"]["mean_by_eps"]) == ["0", "1"]
        assert arm["ood"]["mean_by_eps"]["1"]["per_seed"] == [run["ood"]["mean_by_eps"]["1"] for run in arm["runs"]]
    assert _per_seed(result["arms"]["K=0"], "final_k") == [0.0, 0.0]


def test_progressive_vs_fixed_records_a_validation_trace(tmp_path):
    out = tmp_path / "pvf"
    result = progressive_vs_fixed(out, smoke=True, fixed=(2,), progressive_k=2, checkpoints=2, seeds=TWO)
    _common(result, "progressive-vs-fixed", out)
    assert set(result["arms"]) == {"fixed K=2", "progressive 0..2"}
    for run in result["arms"]["fixed K=2"]["runs"]:
        trace = run["trace"]
        assert trace and all(t["k"] == 2 for t in trace)
        assert [t["train_cpu_s"] for t in trace] == sorted(t["train_cpu_s"] for t in trace)
    assert result["evidence"]["log_ratio_val_fd_fixed_over_progressive"]["n"] == 2


def test_step_size_runs_the_monitor_and_shows_k012(tmp_path):
    out = tmp_path / "step"
    result = step_size(out, smoke=True, step_sizes=(0.5, 1.0, 4.0), seeds=TWO)
    _common(result, "step-size", out)
    assert list(result["arms"]) == ["step 0.5", "step 1", "step 4"]
    for lam, arm in zip((0.5, 1.0, 4.0), result["arms"].values()):
        assert arm["step_size"] == lam
        for run in arm["runs"]:
            assert run["config"] == {"step_size": lam} and run["history"] and run["final"] == run["history"][-1]
        assert arm["final_values"]["loss"]["per_seed"] == [run["final"]["loss"] for run in arm["runs"]]
    from PIL import Image

    width, height = Image.open(out / "samples_k012.png").size
    assert 14 < height / width < 18  # 3 columns (K = 0, 1, 2) x 16 seeds for each of the 3 step sizes, first seed


def test_r1(tmp_path):
    out = tmp_path / "r1"
    result = r1_from_scratch(out, smoke=True, r1s=(0.0, 1.0), seeds=TWO)
    _common(result, "r1", out)
    for name, weight in (("r1=0", 0.0), ("r1=1", 1.0)):
        arm = result["arms"][name]
        assert arm["r1"] == weight and all(run["config"]["r1"] == weight for run in arm["runs"])
        assert all((run["final"]["r1"] > 0) is (weight > 0) for run in arm["runs"])
        _per_seed(arm, "fd")
    assert "2 seeds, a verdict needs 3" in result["verdict"]


def test_perturbation_2d_geometry(tmp_path):
    out = tmp_path / "2d"
    result = perturbation_2d(out, smoke=True, seeds=TWO)
    _common(result, "perturbation-2d", out)
    arms = result["arms"]
    # what the corner p_0 can reach is geometry, independent of training (and of the seed's samples)
    assert min(_per_seed(arms["support inside S"], "mass_of_p_data_in_S")) > 0.99
    assert _per_seed(arms["support and S disjoint"], "mass_of_p_data_in_S") == [0.0, 0.0]
    assert all(0.0 < m < 1.0 for m in _per_seed(arms["support partly in S"], "mass_of_p_data_in_S"))
    points = torch.tensor([[0.0, 0.0], [3.0, 0.0]])
    assert _in_s(points, torch.tensor([[0.0, 1.0]]), 1.0).tolist() == [True, False]
    ideal = {"mass_of_p_data_in_S": 0.0, "d_support_outside_S": 0.98, "d_S_off_support_mean": 0.02,
             "d_support_in_S": math.nan, "alpha_predicted": 0.0}
    assert _table1(ideal) == {"row": "support and S disjoint", "holds": True,
                              "margins": {"D = 1 on the support": pytest.approx(0.13),
                                          "D = 0 on S": pytest.approx(0.13)}}
    assert not _table1({**ideal, "d_support_outside_S": 0.5})["holds"]


def test_composition(tmp_path):
    out = tmp_path / "compose"
    result = composition(out, smoke=True, steps=(2,), seeds=TWO)
    _common(result, "composition", out)
    samples = result["samples"]
    assert len(samples) == 2 * 4  # two designs x (A, B, sum of logits, sum of log D)
    for row in samples.values():
        assert [run["seed"] for run in row["runs"]] == list(TWO) and row["fraction_in_both"]["n"] == 2
    assert set(result["arms"]) == {"p0 = photos", "p0 = photos + other's classes"}
    with pytest.raises(ValueError, match="overlap"):
        composition(out, smoke=True, classes_a=(0, 1), classes_b=(2, 3))


def test_stability(tmp_path):
    out = tmp_path / "stab"
    result = stability(out, smoke=True, lrs=(1e-4,), seeds=TWO)
    _common(result, "stability", out)
    assert set(result["arms"]) == {"bce lr 0.0001", "ebm lr 0.0001"}
    for name, arm in result["arms"].items():
        assert arm["loss"] == name.split()[0] and arm["lr"] == 1e-4
        for run in arm["runs"]:
            assert run["trace"] and all("gap" in t for t in run["trace"])
            assert run["config"]["loss"] == arm["loss"] and run["config"]["lr"] == 1e-4
        assert arm["diverged"]["per_seed"] == [float(run["diverged"]) for run in arm["runs"]]


def test_cli_runs_an_ablation_and_rejects_bad_input(tmp_path, capsys):
    out = tmp_path / "cli"
    assert main(["ablate", "perturbation-2d", "--out", str(out), "--smoke", "--seed", "5"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["ablation"] == "perturbation-2d" and printed["seeds"] == [5] and printed["outcome"] is None
    result = json.loads((out / "result.json").read_text())
    assert "--seeds 5" in result["command"] and "one seed: no interval" in result["verdict"]
    parser = build_parser()
    assert parser.parse_args(["ablate", "r1", "--out", "o"]).seeds == [0, 1, 2]
    assert parser.parse_args(["ablate", "r1", "--out", "o", "--seeds", "3", "4", "5"]).seeds == [3, 4, 5]
    with pytest.raises(SystemExit):
        parser.parse_args(["ablate", "r1", "--out", "o", "--seeds", "1", "2", "--seed", "3"])
    with pytest.raises(SystemExit):
        main(["ablate", "p0-diversity", "--out", str(out), "--arm", "no-equals-sign"])
    assert main(["ablate", "r1", "--out", str(out), "--arm", "x=uniform"]) == 1
    assert "p0-diversity only" in capsys.readouterr().err
    assert main(["ablate", "r1", "--out", str(out), "--seeds", "1", "1"]) == 1
    assert "seeds must be distinct integers >= 0" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown ablation"):
        run_ablation("nope", tmp_path)
    assert set(ABLATIONS) == {"p0-diversity", "final-k", "progressive-vs-fixed", "step-size", "r1",
                              "perturbation-2d", "composition", "stability"}


# ------------------------------------------------------------------------------------------ statistics
def test_paired_difference_against_numbers_computed_by_hand():
    d = paired_difference([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])  # differences 1, 2, 3
    assert d.values == (1.0, 2.0, 3.0) and d.n == 3 and d.mean == 2.0 and d.sd == pytest.approx(1.0)
    # t(0.975, 2) = 4.303: half width 4.303 * 1 / sqrt(3) = 2.484
    assert d.half_width == pytest.approx(4.3027 / math.sqrt(3), abs=1e-4) == pytest.approx(2.484, abs=1e-3)
    assert d.interval == pytest.approx((2 - 2.4841, 2 + 2.4841), abs=1e-4)
    assert d.decide() is None  # the interval contains 0
    # 4 seeds: t(0.975, 3) = 3.182, 3.182 * 1 / 2 = 1.59 < 2 (3 seeds: 2.48 > 2)
    assert d.seeds_to_resolve() == 4
    assert "sd 1, about 4 seeds would decide it" in d.describe("difference")
    tight = SeedInterval((1.0, 1.1, 1.2))  # 1.1 +- 4.303 * 0.1 / sqrt(3) = [0.85, 1.35]
    assert tight.interval == pytest.approx((0.8516, 1.3484), abs=1e-4)
    assert (tight.decide(0.0), tight.decide(2.0), tight.decide(1.0)) == (True, False, None)
    assert tight.describe("x", 0.0) == "x 1.1 [0.852, 1.35]"
    assert SeedInterval((1.0, 1.0, 1.0)).decide(0.5) is True  # no spread: every seed agrees


def test_one_or_two_seeds_decide_nothing():
    one = SeedInterval((3.0,))
    assert (one.n, one.interval, one.half_width, one.decide(), one.seeds_to_resolve()) == (1, None, None, None, None)
    assert math.isnan(one.sd) and "one seed: no interval" in one.describe("x")
    assert one.to_dict() == {"per_seed": [3.0], "mean": 3.0, "sd": one.sd, "n": 1, "interval": None}
    two = SeedInterval((10.0, 10.1))  # the interval [9.41, 10.69] excludes 0, but two seeds are too few
    assert two.interval[0] > 0 and two.decide() is None and two.seeds_to_resolve() == MIN_SEEDS
    assert "2 seeds, a verdict needs 3" in two.describe("x")
    assert SeedInterval((1.0, math.nan, 2.0)).decide() is None
    assert SeedInterval((0.0, 1.0, -1.0)).seeds_to_resolve() is None  # a zero mean difference is never decided
    with pytest.raises(ValueError, match="one per seed"):
        paired_difference([1.0, 2.0], [1.0])


def test_over_seeds_and_check_seeds():
    pooled = over_seeds([{"fd": 1.0, "ood": {"0": 0.5}}, {"fd": 3.0, "ood": {"0": 0.7}}])
    assert pooled["fd"]["per_seed"] == [1.0, 3.0] and pooled["fd"]["mean"] == 2.0
    assert pooled["fd"]["sd"] == pytest.approx(math.sqrt(2)) and pooled["ood"]["0"]["mean"] == pytest.approx(0.6)
    assert SeedInterval((1.0, 2.0, 3.0)).to_dict(0.0)["seeds_to_resolve"] == 4
    assert check_seeds([2, 0]) == (2, 0)
    for bad in ([], [0, 0], [-1], [1.5], [True]):
        with pytest.raises(ValueError, match="distinct integers >= 0"):
            check_seeds(bad)


# ------------------------------------------------------------------------------------------ verdicts
def test_a_finding_derives_holds_and_its_opening_word_from_the_outcome():
    for outcome, holds, opening in [("holds", True, "Holds: "), ("partly", None, "Partly holds: "),
                                    ("does not hold", False, "Does not hold: "), (None, None, "Not decided: ")]:
        finding = Finding("claim", outcome, "numbers")  # type: ignore[arg-type]
        assert finding.holds is holds and finding.sentence == opening + "numbers"
    with pytest.raises(ValueError, match="outcome must be one of"):
        Finding("claim", "Holds", "numbers")  # type: ignore[arg-type]


@pytest.mark.parametrize("parts, outcome", [
    ([True, True], "holds"), ([True, False], "partly"), ([False, False], "does not hold"), ([], None),
    ([True, None], None),  # holds or partly: open
    ([False, None], None),  # partly or does not hold: open
    ([True, False, None], "partly"),  # partly whatever the open part turns out to be
    ([None, None], None),
])
def test_outcome_of_parts_some_of_them_open(parts, outcome):
    assert outcome_of(parts) == outcome


# p0-diversity ------------------------------------------------------------------------------------------------------
_REAL = ("photos", "lfw", "digits", "inverted")


def _p0_runs(clean: dict[str, list[float]], fd: list[float]) -> list[dict]:
    """One p0-diversity arm, a run per seed: clean AUROC ``clean[suite][seed]`` on each real suite (half of it at
    eps 1), the uniform noise suite rejected, FD ``fd[seed]``."""
    runs = []
    for i, value in enumerate(fd):
        per_suite = {"uniform": {"0": 1.0, "1": 0.9}, **{s: {"0": v[i], "1": v[i] / 2} for s, v in clean.items()}}
        real = [v[i] for v in clean.values()]
        runs.append({"seed": i, "fd": value, "ood": {"per_suite": per_suite},
                     "auroc_real_suites": {"0": float(np.mean(real)) if real else math.nan,
                                           "1": float(np.mean(real)) / 2 if real else math.nan}})
    return runs


_FAIL = [0.5, 0.55, 0.45]
_PASS = [0.97, 0.99, 0.98]
_STRADDLE = [0.6, 0.95, 1.0]  # mean 0.85, interval [0.33, 1.37] contains 0.9


def _p0_case(uniform: dict[str, list[float]], mixture_fd: list[float], photos_fd=(200.0, 210.0, 190.0)) -> dict:
    n = len(photos_fd)
    good = {s: [0.99] * n for s in uniform}
    return {"uniform": _p0_runs(uniform, [400.0, 420.0, 380.0][:n]), "photos": _p0_runs(good, list(photos_fd)),
            "mixture": _p0_runs(good, mixture_fd)}


_MIXTURE_BEST = [100.0, 110.0, 105.0]
_MIXTURE_WORSE = [300.0, 330.0, 310.0]
_MIXTURE_SPREAD = [100.0, 400.0, 200.0]  # FD(mixture)/FD(photos) 0.5, 1.9, 1.05: the interval contains 1


@pytest.mark.parametrize("uniform, mixture_fd, outcome, failed, words", [
    ({"photos": _FAIL, "lfw": _FAIL, "digits": _FAIL, "inverted": _PASS}, _MIXTURE_BEST, "holds",
     ["digits", "lfw", "photos"], "failed on 3 of 4"),
    ({"photos": _FAIL, "lfw": _PASS, "digits": _PASS, "inverted": _PASS}, _MIXTURE_BEST, "partly", ["photos"],
     "the mixture generates best: yes"),  # fails on one real suite only
    ({"photos": _FAIL, "lfw": _FAIL, "digits": _PASS, "inverted": _PASS}, _MIXTURE_BEST, "partly",
     ["lfw", "photos"], "failed on 2 of 4"),  # half: not more than half
    ({s: _PASS for s in _REAL}, _MIXTURE_WORSE, "does not hold", [], "the mixture generates best: no"),
    # no suite fails, but whether the mixture generates best is open: partly or does not hold, not decided
    ({s: _PASS for s in _REAL}, _MIXTURE_SPREAD, None, [], "not decided: the interval contains 1.00"),
    # one open suite cannot make a majority (1 of 4): fails on some is open, on most refuted; the mixture is best
    ({"photos": _STRADDLE, "lfw": _PASS, "digits": _PASS, "inverted": _PASS}, _MIXTURE_BEST, "partly", [],
     "not decided on 1"),
])
def test_p0_finding(uniform, mixture_fd, outcome, failed, words):
    finding = images._p0_finding(_p0_case(uniform, mixture_fd), ["0", "1"])
    _check(finding, outcome)
    assert finding.evidence["failed_suites"] == failed
    assert words in finding.sentence and "(3 seeds, 95% Student-t intervals" in finding.sentence
    assert finding.evidence["uniform_clean_auroc_real_suites"]["photos"]["n"] == 3


def test_p0_finding_one_seed_and_missing_arms():
    one = _p0_case({"photos": [0.5], "lfw": [0.5]}, [100.0], photos_fd=(200.0,))
    finding = images._p0_finding(one, ["0", "1"])
    _check(finding, None)
    assert "one seed: no interval" in finding.sentence and finding.evidence["failed_suites"] == []
    runs = _p0_case({"photos": _FAIL, "lfw": _PASS}, _MIXTURE_BEST)
    _check(images._p0_finding({"photos": runs["photos"]}, ["0", "1"]), None)
    _check(images._p0_finding(_p0_case({}, _MIXTURE_BEST), ["0", "1"]), None)  # noise suites only
    no_mixture = images._p0_finding({k: runs[k] for k in ("uniform", "photos")}, ["0", "1"])
    _check(no_mixture, "partly")  # fails on one real suite, E Fig. 3 not judged
    assert "E Fig. 3 not judged" in no_mixture.sentence


# final-k ----------------------------------------------------------------------------------------------------------
def _k_runs(fd: dict[int, list[float]], oe_mid: list[float], gap: list[float]) -> dict:
    """final-k arms, a run per seed: FD per K; K = 0's mean AUROC ``oe_mid`` at eps 3 and 0.1 at eps 8; every
    K > 0 at 0.1 + ``gap`` at eps 8 (minus 0.001 K, so the largest-AUROC arm is the smallest K)."""
    runs = {}
    for k, values in fd.items():
        runs[f"K={k}"] = [{"seed": i, "fd": v, "ood": {"mean_by_eps": {
            "0": 0.99, "3": oe_mid[i] if k == 0 else 0.9, "8": 0.1 if k == 0 else 0.1 + gap[i] - 0.001 * k}}}
            for i, v in enumerate(values)]
    return runs


_FALLING = {0: [500.0] * 3, 1: [300.0, 320.0, 310.0], 2: [200.0, 190.0, 210.0], 4: [100.0, 90.0, 95.0]}
_RISING = {0: [500.0] * 3, 1: [100.0, 90.0, 95.0], 2: [200.0, 190.0, 210.0], 4: [300.0, 320.0, 310.0]}
_MIXED = {0: [500.0] * 3, 1: [100.0, 300.0, 200.0], 2: [200.0, 200.0, 200.0], 4: [300.0, 100.0, 210.0]}
_COLLAPSED = [0.3, 0.32, 0.28]
_STANDING = [0.8, 0.82, 0.78]
_A_GAP = [0.6, 0.62, 0.58]
_NO_GAP = [0.02, 0.03, 0.01]


@pytest.mark.parametrize("fd, oe_mid, gap, outcome, words", [
    (_FALLING, _COLLAPSED, _A_GAP, "holds", "FD falls with K_max: yes"),
    (_RISING, _COLLAPSED, _A_GAP, "partly", "FD falls with K_max: no"),
    (_FALLING, _STANDING, _NO_GAP, "partly", "collapses below 0.5: no, unlike G Tab. 2"),
    (_RISING, _STANDING, _NO_GAP, "does not hold", "a robustness gap of more than 0.1: no"),
    # the trend is open (Spearman -1, 1, 0 over the seeds) and the other two parts hold: holds or partly, open
    (_MIXED, _COLLAPSED, _A_GAP, None, "FD falls with K_max: not decided"),
    # K = 0 collapses on two seeds and not on the third: open, but the refuted trend makes it partly anyway
    (_RISING, [0.2, 0.3, 0.8], _A_GAP, "partly", "the interval contains 0.50"),
    ({k: v for k, v in _FALLING.items() if k < 4}, _COLLAPSED, _NO_GAP, "partly", "too few arms with K > 0"),
])
def test_k_finding(fd, oe_mid, gap, outcome, words):
    finding = images._k_finding(_k_runs(fd, oe_mid, gap), sorted(fd), ["0", "3", "8"])
    _check(finding, outcome)
    assert words in finding.sentence
    assert finding.evidence["best_at_arm"] == "K=1"
    assert finding.evidence["auroc_eps8_K=1_minus_K=0"]["threshold"] == images.ROBUSTNESS_GAP


def test_k_finding_one_seed_and_missing_arms():
    one = {k: v[:1] for k, v in _FALLING.items()}
    finding = images._k_finding(_k_runs(one, _COLLAPSED, _A_GAP), sorted(one), ["0", "3", "8"])
    _check(finding, None)
    assert "one seed: no interval" in finding.sentence
    _check(images._k_finding(_k_runs({1: [1.0], 2: [2.0]}, _STANDING, _A_GAP), [1, 2], ["0", "3", "8"]), None)


# progressive-vs-fixed ---------------------------------------------------------------------------------------------
def _traces(progressive: list[list[float]], fixed: list[list[float]]) -> dict:
    """A run per seed: the validation FD trace of each arm (final FD: the trace's last point)."""
    def arm(traces: list[list[float]]) -> list[dict]:
        return [{"seed": i, "fd": t[-1] if t else math.nan, "trace": [{"val_fd": v} for v in t]}
                for i, t in enumerate(traces)]

    return {"progressive 0..16": arm(progressive), "fixed K=16": arm(fixed)}


@pytest.mark.parametrize("progressive, fixed, outcome", [
    # geometric means 100 vs 250 on every seed (arithmetic: 505 vs 250)
    ([[10.0, 1000.0], [12.0, 900.0], [9.0, 1100.0]], [[250.0, 250.0], [240.0, 260.0], [255.0, 245.0]], "holds"),
    ([[300.0, 300.0], [320.0, 310.0], [290.0, 280.0]], [[100.0, 100.0], [110.0, 90.0], [95.0, 100.0]],
     "does not hold"),
    # fixed / progressive 2, 0.5, 1.5 on the three seeds: the interval contains 1
    ([[100.0], [200.0], [100.0]], [[200.0], [100.0], [150.0]], None),
    ([[100.0]], [[300.0]], None),  # one seed
    ([[100.0], [100.0], [100.0]], [[], [], []], None),  # no fixed-K trace
])
def test_progressive_finding(progressive, fixed, outcome):
    finding = images._progressive_finding(_traces(progressive, fixed), 16, 16)
    _check(finding, outcome)
    if outcome is None and len(progressive) == 3 and fixed[0]:
        assert "the interval contains 1.00" in finding.sentence and "seeds would decide it" in finding.sentence
    if len(progressive) == 1:
        assert "one seed: no interval" in finding.sentence


def test_progressive_finding_needs_a_fixed_arm():
    runs = _traces([[1.0]] * 3, [[2.0]] * 3)
    _check(images._progressive_finding(runs, 16, None), None)
    _check(images._progressive_finding(runs, 16, 8), None)


# step-size --------------------------------------------------------------------------------------------------------
def _step_run(status: str, *kinds: str) -> dict:
    return {"monitor": {"status": status, "events": [{"kind": k} for k in kinds]},
            "final": {"loss": 0.0, "auc_adv": 1.0, "auc_clean": 0.4}}


_FLAGGED = _step_run("warned", STEP_SIZE_TOO_LARGE)
_NOT_FLAGGED = _step_run("warned", "exploding_scores")
_HEALTHY = _step_run("healthy")


@pytest.mark.parametrize("preset, large, outcome", [
    ([_HEALTHY] * 3, [_FLAGGED] * 3, "holds"),
    ([_FLAGGED] * 3, [_FLAGGED] * 3, "partly"),  # the preset's step is flagged as well
    ([_HEALTHY] * 3, [_NOT_FLAGGED] * 3, "does not hold"),  # another failure, not the step-size signature
    ([_step_run("stopped", "non_finite")] * 3, [_HEALTHY] * 3, "does not hold"),
    ([_HEALTHY] * 3, [_FLAGGED, _FLAGGED, _HEALTHY], None),  # flagged on 2 of 3 seeds: open
    ([_HEALTHY, _HEALTHY, _FLAGGED], [_FLAGGED] * 3, None),  # step 1 healthy on 2 of 3 seeds: holds or partly
    (None, [_FLAGGED] * 3, "holds"),  # no step-1 arm: only the large step is judged
    (None, [_NOT_FLAGGED] * 3, "does not hold"),
    ([_HEALTHY], [_FLAGGED], None),  # one seed
])
def test_step_finding(preset, large, outcome):
    n = len(large)
    runs = {"step 0.25": [_HEALTHY] * n, "step 8": large} | ({"step 1": preset} if preset else {})
    finding = images._step_finding(runs, [0.25, 8.0] + ([1.0] if preset else []))
    _check(finding, outcome)
    assert ("no preset step-1 arm" in finding.sentence) is (preset is None)
    if large == [_FLAGGED, _FLAGGED, _HEALTHY]:
        assert finding.evidence["large_flagged_share"]["mean"] == pytest.approx(2 / 3)
        assert "about 49 seeds would decide it" in finding.sentence  # t * 0.577 / sqrt(n) < 1/6 from n = 49
    if n == 1:
        assert "one seed: no interval" in finding.sentence


# r1 ---------------------------------------------------------------------------------------------------------------
_R0 = [100.0, 200.0, 150.0]


def _r1_runs(fd: dict[str, list[float]]) -> dict:
    return {name: [{"seed": i, "fd": v} for i, v in enumerate(values)] for name, values in fd.items()}


def _times(values: list[float], factors: list[float]) -> list[float]:
    return [v * f for v, f in zip(values, factors)]


@pytest.mark.parametrize("fd, outcome, needed, harmful, words", [
    # every weight within a few % of r1 = 0 on every seed: not needed and harmless
    ({"r1=0": _R0, "r1=0.1": _times(_R0, [1.01, 1.02, 1.0]), "r1=1": _times(_R0, [0.99, 0.98, 1.01])}, "holds",
     [], [], "R1 needed: no"),
    ({"r1=0": _R0, "r1=0.1": _times(_R0, [1.01, 1.02, 1.0]), "r1=1": _times(_R0, [2.0, 2.1, 1.9])}, "partly",
     [], ["r1=1"], "harmful at weights <= 1: yes"),
    ({"r1=0": _R0, "r1=0.1": _times(_R0, [2.0, 2.1, 1.9]), "r1=1": _times(_R0, [0.5, 0.45, 0.55])},
     "does not hold", ["r1=1"], ["r1=0.1"], "R1 needed: yes"),
    # FD(r1=1)/FD(r1=0) 0.5, 1, 2 on the three seeds: not decided, either way
    ({"r1=0": _R0, "r1=1": _times(_R0, [0.5, 1.0, 2.0])}, None, [], [], "seeds would decide it"),
    # a weight above 1 may hurt: not part of the claim
    ({"r1=0": _R0, "r1=10": _times(_R0, [2.0, 2.1, 1.9])}, "holds", [], [], "no weight <= 1 was run"),
    ({"r1=0": [100.0], "r1=1": [100.0]}, None, [], [], "one seed: no interval"),
])
def test_r1_finding(fd, outcome, needed, harmful, words):
    finding = images._r1_finding(_r1_runs(fd))
    _check(finding, outcome)
    assert finding.evidence["needed"] == needed and finding.evidence["harmful"] == harmful
    assert words in finding.sentence
    assert finding.evidence["fd"]["r1=0"]["per_seed"] == fd["r1=0"]


def test_r1_finding_needs_r1_0_and_another_weight():
    _check(images._r1_finding(_r1_runs({"r1=1": _R0})), None)
    _check(images._r1_finding(_r1_runs({"r1=0": _R0})), None)


# composition ------------------------------------------------------------------------------------------------------
def _rows(fractions: dict[tuple[str, str, int], list[float]]) -> dict:
    return {f"{d} | {s} | {n} steps": [{"seed": i, "design": d, "sampler": s, "steps": n, "fraction_in_both": v}
                                       for i, v in enumerate(values)]
            for (d, s, n), values in fractions.items()}


@pytest.mark.parametrize("composed, alone, outcome", [
    ([0.7, 0.72, 0.68], [0.3, 0.3, 0.3], "holds"),
    ([0.8, 0.82, 0.78], [0.5, 0.52, 0.48], "holds"),  # 1.6x the single models on every seed
    ([0.7, 0.72, 0.68], [0.6, 0.6, 0.6], "partly"),  # a conjunction the single model nearly gives by itself
    ([0.5, 0.52, 0.48], [0.2, 0.2, 0.2], "does not hold"),  # 2.5x the single models, but no conjunction (< 0.6)
    ([0.3, 0.32, 0.28], [0.25, 0.25, 0.25], "does not hold"),
    ([0.4, 0.7, 0.9], [0.2, 0.2, 0.2], None),  # the conjunction straddles 0.6
    ([0.7, 0.72, 0.68], [0.3, 0.3, 0.6], None),  # a conjunction; whether the sum beats 1.5x the single: open
    ([0.7], [0.3], None),  # one seed
])
def test_composition_finding(composed, alone, outcome):
    n = len(composed)
    rows = _rows({("mixed", "A alone", 32): alone, ("mixed", "B alone", 32): [a / 2 for a in alone],
                  ("mixed", "sum of logits", 32): composed, ("mixed", "sum of log D", 32): [c / 2 for c in composed],
                  ("mixed", "A alone", 96): [0.99] * n,  # another number of steps: not the comparison
                  ("photos", "A alone", 32): [0.99] * n, ("photos", "sum of logits", 32): [0.0] * n})
    finding = negative_results._composition_finding(rows, [4, 5])
    _check(finding, outcome)
    assert finding.evidence["best"] == "mixed | sum of logits | 32 steps"
    assert finding.evidence["best_single_model"]["per_seed"] == alone
    if outcome is None:
        assert ("one seed: no interval" if n == 1 else "seeds would decide it") in finding.sentence


def test_composition_finding_needs_a_composed_sampler():
    _check(negative_results._composition_finding(_rows({("photos", "A alone", 32): [0.9] * 3}), [4, 5]), None)


# stability --------------------------------------------------------------------------------------------------------
def _stability_run(diverged_at: int | None, slope: float = -1.0) -> dict:
    projected = 1000 * (1e4 - 5.0) / slope if diverged_at is None and slope > 0 else None
    return {"diverged": diverged_at is not None, "diverged_at": diverged_at, "iterations": diverged_at or 200,
            "growth": {"last": 5.0, "slope_second_half_per_1k": slope},
            "iterations_to_overflow_at_this_slope": projected}


def _three(*runs: dict) -> list[dict]:
    return list(runs) if len(runs) > 1 else [runs[0]] * 3


_CLIMBING = [_stability_run(None, 8000.0), _stability_run(None, 8200.0), _stability_run(None, 7800.0)]
_LEVEL = [_stability_run(None, -1.0), _stability_run(None, -1.1), _stability_run(None, -0.9)]


@pytest.mark.parametrize("ebm, bce, outcome, words", [
    (_three(_stability_run(120)), _LEVEL, "holds", "EBM diverges: yes; BCE diverges: no"),
    (_three(_stability_run(120)), _three(_stability_run(150)), "partly", "BCE diverges: yes"),
    (_LEVEL, _LEVEL, "does not hold", "still climbing: no"),
    (_LEVEL, _three(_stability_run(150)), "does not hold", "EBM diverges: no; BCE diverges: yes"),
    # still climbing on every seed: an overflow beyond this budget, not decided here
    (_CLIMBING, _LEVEL, None, "overflow in about 1.25e+03 more iterations"),
    # the EBM loss diverged on two of three seeds: open
    ([_stability_run(120), _stability_run(130), _stability_run(None, -1.0)], _LEVEL, None,
     "about 49 seeds would decide it"),
    ([_stability_run(120)], [_stability_run(None)], None, "one seed: no interval"),
])
def test_stability_finding(ebm, bce, outcome, words):
    runs = {"bce lr 1e-06": bce, "ebm lr 1e-06": ebm,
            "bce lr 0.0001": _LEVEL, "ebm lr 0.0001": _three(_stability_run(10))}  # another lr: not judged
    finding = negative_results._stability_finding(runs, 1e-6)
    _check(finding, outcome)
    assert words in finding.sentence
    assert ("gap ends at" in finding.sentence) is (finding.evidence["ebm_diverges"] is not True)


# perturbation-2d --------------------------------------------------------------------------------------------------
def _scenario_runs(d_support: list[float], mass: float = 0.0) -> list[dict]:
    """A run per seed of the disjoint scenario (or, with ``mass`` in (0.01, 0.99), the partly covered one): D on
    the support outside S ``d_support[seed]``, 0.02 on S."""
    return [{"seed": i, "table1": _table1({"mass_of_p_data_in_S": mass, "alpha_predicted": mass / (1 + mass),
                                           "d_support_outside_S": d, "d_support_in_S": mass / (1 + mass),
                                           "d_S_off_support_mean": 0.02})} for i, d in enumerate(d_support)]


_AS_PREDICTED = [0.99, 0.98, 1.0]
_NOT_PREDICTED = [0.5, 0.55, 0.45]
_OPEN = [0.99, 0.7, 0.98]  # margins 0.14, -0.15, 0.13: the interval contains 0


@pytest.mark.parametrize("scenarios, outcome", [
    ([_AS_PREDICTED, _AS_PREDICTED, _AS_PREDICTED], "holds"),
    ([_AS_PREDICTED, _NOT_PREDICTED, _AS_PREDICTED], "partly"),
    ([_NOT_PREDICTED, _NOT_PREDICTED, _NOT_PREDICTED], "does not hold"),
    ([_AS_PREDICTED, _OPEN, _AS_PREDICTED], None),  # holds or partly, by the open scenario
    ([_AS_PREDICTED, _OPEN, _NOT_PREDICTED], "partly"),  # partly whatever the open one turns out to be
    ([[0.99], [0.99], [0.99]], None),  # one seed
    ([], None),
])
def test_perturbation_2d_finding(scenarios, outcome):
    names = list(toy.SCENARIOS)[:len(scenarios)]
    finding = toy._finding({n: _scenario_runs(d) for n, d in zip(names, scenarios)})
    _check(finding, outcome)
    if scenarios:
        expected = [None if len(d) < 3 or d is _OPEN else d is _AS_PREDICTED for d in scenarios]
        assert list(finding.evidence["per_scenario"].values()) == expected
    if outcome == "partly" and _OPEN not in scenarios:
        assert "in 2 of 3 scenarios; not in: support and S disjoint" in finding.sentence
    if _OPEN in scenarios:
        assert "not decided: support and S disjoint" in finding.sentence and "seeds would decide it" in finding.sentence


def test_perturbation_2d_scenario_with_rows_that_disagree_is_open():
    runs = _scenario_runs(_AS_PREDICTED[:2]) + _scenario_runs([0.99], mass=0.06)
    verdict, info = toy._scenario(runs)
    assert verdict is None and info == {"rows": ["support and S disjoint", "support partly in S"]}
