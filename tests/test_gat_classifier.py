"""The generative robust classifier (atebm.gat, T Sec. 3.4) on tiny models: calibration, Madry training's attack,
integrated gradients, the pipelines end to end, and robust accuracy (T Eq. 3.46-3.48) on hand-built linear models
whose breakable inputs are known in closed form: each attacker, the cascade, the targeted and per-class attacks."""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

import atebm.gat as gat
import atebm.gat.robust_training as robust
from atebm.attacks import AttackSpec, ThreatModel
from atebm.data import ImageSet
from atebm.gat.calibration import calibrate_committee, fit_offsets, run_gat_calibrate
from atebm.gat.classifier_robustness import (
    ATTACKERS,
    CLASSIFY_PROTOCOLS,
    ClassifyEvalConfig,
    attacker_set,
    robust_accuracy,
)
from atebm.gat.data import LabelledSplits
from atebm.gat.explain import ClassScore, captum_available, class_gaussian_seeds, integrated_gradients
from atebm.gat.softmax_classifier import SoftmaxClassifier, save_classifier
from atebm.models import build_score_model
from linear_model import Linear

SIZE = 8


def tiny_spec(out_dim: int = 1, size: int = SIZE) -> dict:
    return gat.detector_model_spec(size, 1, widths=(2, 3), hidden=8, out_dim=out_dim)


def tiny_committee(k: int = 3, seed: int = 0, size: int = SIZE) -> gat.Committee:
    torch.manual_seed(seed)
    return gat.Committee([build_score_model(tiny_spec(size=size)) for _ in range(k)],
                         meta={"size": size, "channels": 1}).eval()


def tiny_classifier(k: int = 3, seed: int = 1) -> SoftmaxClassifier:
    torch.manual_seed(seed)
    return SoftmaxClassifier(tiny_spec(out_dim=k)).eval()


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed)) * 0.8 + 0.1


def committee_run(folder: Path, data: str = "digits", size: int = SIZE) -> Path:
    """A committee run folder on ``data``: ten tiny detectors (Linf 0.3) and a tiny ``robust_softmax.pt``."""
    committee = tiny_committee(k=10, size=size)
    committee.meta.update(data=data, norm="linf", eps=0.3)
    gat.save_committee(folder, committee)
    torch.manual_seed(2)
    save_classifier(folder / "robust_softmax.pt", SoftmaxClassifier(tiny_spec(out_dim=10, size=size)).eval())
    return folder


# ------------------------------------------------------------------------------------------------ calibration
def test_calibration_recovers_known_offsets_on_synthetic_scores():
    g = torch.Generator().manual_seed(0)
    true = torch.tensor([1.0, -2.0, 0.5, 3.0, -2.5])
    true -= true.mean()
    logits = torch.randn(6000, 5, generator=g) * 1.5          # labels drawn from softmax(logits): calibrated
    y = torch.multinomial(torch.softmax(logits, 1), 1, generator=g)[:, 0]
    found = fit_offsets(logits - true, y)                      # scores shifted by -true: offsets must undo it
    assert torch.allclose(found, true, atol=0.1), (found, true)
    assert abs(float(found.mean())) < 1e-5
    assert torch.allclose(fit_offsets(logits + 7.0 - true, y), found, atol=1e-3)  # a common shift is invisible


def test_fit_offsets_refuses_bad_input():
    with pytest.raises(ValueError, match="one row per label"):
        fit_offsets(torch.zeros(4, 3), torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="labels must lie"):
        fit_offsets(torch.zeros(4, 3), torch.tensor([0, 1, 2, 3]))


def test_calibrate_committee_sets_offsets_that_survive_save_and_load(tmp_path):
    committee = tiny_committee()
    x = images(60, 1)
    y = torch.arange(60) % 3
    record = calibrate_committee(committee, x, y, x_eval=x, y_eval=y)
    assert record["fit"]["after"]["cross_entropy"] <= record["fit"]["before"]["cross_entropy"] + 1e-6
    assert torch.allclose(committee.offsets, torch.tensor(record["offsets"]))
    gat.save_committee(tmp_path, committee)
    loaded = gat.load(tmp_path)
    assert torch.allclose(loaded.offsets, committee.offsets)
    assert torch.allclose(loaded(x), committee(x), atol=1e-6)


# ------------------------------------------------------------------------------------------------ Madry training
def _tiny_splits(n: int = 30, k: int = 3) -> LabelledSplits:
    def part(seed: int) -> ImageSet:
        return ImageSet(images(n, seed), torch.arange(n) % k, "tiny", {})
    return LabelledSplits(part(10), part(11), part(12), "tiny", "val split")


@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 0.5)])
def test_madry_training_attack_stays_in_its_ball(monkeypatch, norm, eps):
    seen: list[float] = []
    original = robust.pgd

    def recording_pgd(score, x, **options):
        out = original(score, x, **options)
        delta = (out - x).flatten(1)
        seen.append(float((delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)).max()))
        assert float(out.min()) >= 0 and float(out.max()) <= 1
        return out

    monkeypatch.setattr(robust, "pgd", recording_pgd)
    model = robust.train_madry_classifier(_tiny_splits(), norm=norm, eps=eps, steps=3, step_size=eps / 2,
                                          iterations=4, batch_size=8, widths=(2, 3), hidden=8, validate_every=2,
                                          warmup=2)
    assert len(seen) >= 4
    assert max(seen) <= eps + 1e-5 and min(seen) > 0
    assert seen[0] <= eps / 2 + 1e-5                      # iteration 1 of a 2-iteration warm-up: half the radius
    assert max(seen) > eps / 2 + 1e-4                     # after it, the full ball
    assert model.meta["parameters"] == robust.count_parameters(model)
    assert model.meta["selected_iteration"] in (2, 4)


def test_madry_training_with_no_attack_steps_is_plain_training(monkeypatch):
    # the plain softmax baseline of benchmarks/ood_table4.py: steps=0 trains on clean inputs and validates clean
    calls: list[int] = []
    monkeypatch.setattr(robust, "pgd", lambda *a, **k: calls.append(1))
    model = robust.train_madry_classifier(_tiny_splits(), norm="l2", eps=0.0, steps=0, step_size=0.1,
                                          iterations=4, batch_size=8, widths=(2, 3), hidden=8, validate_every=2,
                                          warmup=0)
    assert not calls
    history = model.meta["validations"]
    assert len(history) == 2 and all(h["val_robust"] == h["val_clean"] for h in history)


def test_inout_finetune_starts_from_the_committee_and_lowers_class_k_inputs_in_training(monkeypatch):
    import dataclasses

    from atebm.gat.presets import GAT_PRESETS

    base = robust.CLASSIFY_PRESETS["mnist-inout"]
    preset = dataclasses.replace(base, size=SIZE, train={**base.train, "model": tiny_spec(), "batch_size": 4})
    inout, detection = preset.detector_config(), GAT_PRESETS["mnist"].detector_config()
    assert inout.indist_at_steps > 0 and inout.indist_at_eps > detection.indist_at_eps  # eps_1 0.2 vs 0.1
    committee = tiny_committee()
    tuned = robust.finetune_inout(committee, _tiny_splits(), preset=preset, iterations=0)
    x = images(4, 9)
    assert torch.allclose(tuned(x), committee(x), atol=1e-6)            # 0 iterations: the committee's weights
    tuned = robust.finetune_inout(committee, _tiny_splits(), preset=preset, iterations=2)
    assert not torch.allclose(tuned(x), committee(x))
    assert [s["iterations"] for s in tuned.meta["finetune"]] == [2, 2, 2]
    ramped = robust.finetune_inout(committee, _tiny_splits(), preset=preset, iterations=3, eps_in_schedule=(0.05, 0.1))
    assert [s["iterations"] for s in ramped.meta["finetune"]] == [3, 3, 3]
    assert ramped.meta["finetune"][0]["eps_in_schedule"] == [0.05, 0.1]


# ------------------------------------------------------------------------------------------------ attributions
@pytest.mark.parametrize("which", ["committee", "softmax"])
def test_integrated_gradients_shape_and_completeness(which):
    model = tiny_committee() if which == "committee" else tiny_classifier()
    x, y = images(4, 6), torch.tensor([0, 1, 2, 0])
    attributions, gap, method = integrated_gradients(model, x, y, steps=64, use_captum=False)
    assert attributions.shape == x.shape and "trapezoid" in method
    score = ClassScore(model, y)
    with torch.no_grad():
        total = score(x) - score(torch.zeros_like(x))
    assert torch.allclose(attributions.flatten(1).sum(1), total, atol=2e-3 + 2e-3 * float(total.abs().max()))
    assert float(gap.abs().max()) < 2e-3 + 2e-3 * float(total.abs().max())


@pytest.mark.skipif(not captum_available(), reason="captum is not installed")
def test_captum_integrated_gradients_shape_and_completeness():
    model = tiny_classifier()
    x, y = images(3, 7), torch.tensor([0, 1, 2])
    attributions, gap, method = integrated_gradients(model, x, y, steps=64, use_captum=True)
    assert attributions.shape == x.shape and "captum" in method
    assert float(gap.abs().max()) < 1e-2


def test_class_gaussian_seeds_match_each_class():
    x = torch.cat([torch.full((40, 1, 4, 4), 0.2), torch.full((40, 1, 4, 4), 0.8)]) + torch.rand(80, 1, 4, 4) * 0.1
    y = torch.cat([torch.zeros(40), torch.ones(40)]).long()
    seeds, labels = class_gaussian_seeds(x, y, 50, generator=torch.Generator().manual_seed(0))
    assert seeds.shape == (100, 1, 4, 4) and float(seeds.min()) >= 0 and float(seeds.max()) <= 1
    assert abs(float(seeds[labels == 0].mean()) - 0.25) < 0.05 and abs(float(seeds[labels == 1].mean()) - 0.85) < 0.05


# ------------------------------------------------------------------------------------------------ robust accuracy
def constant_images(values: list[float]) -> torch.Tensor:
    return torch.tensor(values).view(-1, 1, 1, 1).expand(-1, 1, SIZE, SIZE).clone()


def mean_classifier() -> Linear:
    """z = [0, 10 mean(x) - 6, -10 mean(x) - 4]: for true class 0, the smallest perturbation that flips an image
    raises every pixel equally until mean(x) > 0.6, so a constant image v is broken exactly when
    eps > 0.6 - v (Linf) or eps > 8 (0.6 - v) (L2: ||1||_2 = 8 on 64 pixels)."""
    w = torch.zeros(3, SIZE * SIZE)
    w[1], w[2] = 10 / SIZE ** 2, -10 / SIZE ** 2
    return Linear(w, torch.tensor([0.0, -6.0, -4.0])).eval()


#: Constant images v of true class 0 under mean_classifier(): Linf radii 0.4, 0.3, 0.15, 0.05 and, for 0.7,
#: misclassified when clean. At Linf 0.28 the first two survive, at L2 2.8 (radii 3.2, 2.4, 1.2, 0.4) only the first.
MEAN_VALUES = [0.2, 0.3, 0.45, 0.55, 0.7]
EXPECTED_ROBUST = {("linf", 0.28): [1, 1, 0, 0, 0], ("l2", 2.8): [1, 0, 0, 0, 0]}


@pytest.mark.parametrize("kind,norm,eps", [(kind, norm, eps) for kind in ATTACKERS if kind != "per_class"
                                           for norm, eps in EXPECTED_ROBUST
                                           if not (kind == "square" and norm == "l2")])
def test_each_attacker_breaks_exactly_the_inputs_within_reach(one_thread, kind, norm, eps):
    # Square's L2 proposals are zero-mean per tile, so no query can move mean(x): it is checked in Linf only
    spec = attacker_set(steps=10, apgd_steps=10, square_queries=300)[kind]
    config = ClassifyEvalConfig({kind: spec}, targets=2, linf_eps=(0.28,), l2_eps=(2.8,))
    r = robust_accuracy(mean_classifier(), constant_images(MEAN_VALUES), torch.zeros(5, dtype=torch.long),
                        norm=norm, eps=eps, config=config)
    assert r["clean_accuracy"] == 0.8
    assert r["robust"] == EXPECTED_ROBUST[(norm, eps)]
    assert r["robust_accuracy"] == pytest.approx(sum(EXPECTED_ROBUST[(norm, eps)]) / 5)
    assert r["attackers"][kind]["attacked"] == 4                        # the misclassified input is not attacked
    assert r["protocol"]["threat"] == {"norm": norm, "eps": eps} and r["protocol"]["n"] == 5
    assert [a["kind"] for a in r["protocol"]["attackers"]] == [kind]


def two_group_classifier() -> Linear:
    """z = [0, 10 mean_A(x) - 6, 20 mean_B(x) - 12] with A the top half of the pixels and B the bottom half: at Linf
    eps 0.2 class 1 gains at most 2 and class 2 at most 4."""
    w = torch.zeros(3, SIZE * SIZE)
    half = SIZE * SIZE // 2
    w[1, :half], w[2, half:] = 10 / half, 20 / half
    return Linear(w, torch.tensor([0.0, -6.0, -12.0])).eval()


def two_group_images(pairs: list[tuple[float, float]]) -> torch.Tensor:
    x = torch.empty(len(pairs), 1, SIZE, SIZE)
    for i, (a, b) in enumerate(pairs):
        x[i, :, :SIZE // 2], x[i, :, SIZE // 2:] = a, b
    return x


#: (mean_A, mean_B), true class 0, Linf eps 0.2: clean logits [0, -1, -6] (class 1 reachable), [0, -3, -3.2] (the
#: top wrong class 1 is out of reach, class 2 is within it), [0, -3, -5] (nothing reachable), [0, 1, -6] (wrong).
TWO_GROUP = [(0.5, 0.3), (0.3, 0.44), (0.3, 0.35), (0.7, 0.3)]


def test_the_cascade_attacks_only_the_survivors_and_counts_what_each_attacker_broke(one_thread):
    # margin PGD from the clean input follows the gradient of its top wrong class: it breaks input 0, and on
    # input 1 it climbs class 1 (out of reach) and never class 2; the targeted attacker then breaks input 1
    margin = AttackSpec("pgd", steps=10, random_start=False)
    config = ClassifyEvalConfig({"margin": margin, "targeted": AttackSpec("pgd", steps=10, random_start=False)},
                                targets=2, linf_eps=(0.2,), l2_eps=())
    r = robust_accuracy(two_group_classifier(), two_group_images(TWO_GROUP), torch.zeros(4, dtype=torch.long),
                        norm="linf", eps=0.2, config=config)
    assert r["robust"] == [0, 0, 1, 0] and r["robust_accuracy"] == 0.25 and r["clean_accuracy"] == 0.75
    assert r["attackers"]["margin"] == {"attacked": 3, "broke": 1, "own_robust_accuracy": 0.5,
                                        "seconds": r["attackers"]["margin"]["seconds"]}
    assert (r["attackers"]["targeted"]["attacked"], r["attackers"]["targeted"]["broke"]) == (2, 1)
    assert "own_robust_accuracy" not in r["attackers"]["targeted"]
    budgets = {a["kind"]: a["gradient_passes"] for a in r["protocol"]["attackers"]}
    assert budgets == {"margin": 10, "targeted": 20}                    # 2 targets x 10 steps
    assert robust_accuracy(two_group_classifier(), two_group_images(TWO_GROUP), torch.zeros(4, dtype=torch.long),
                           norm="linf", eps=0.0, config=config)["robust"] == [1, 1, 1, 0]


def test_the_targeted_attacker_tries_the_wrong_classes_in_order_of_their_clean_logits(one_thread):
    x, y = two_group_images(TWO_GROUP[1:3]), torch.zeros(2, dtype=torch.long)
    spec = AttackSpec("pgd", steps=10, random_start=False)
    for targets, expected in ((1, [1, 1]), (2, [0, 1])):   # target 1 (the top wrong class) first, then class 2
        config = ClassifyEvalConfig({"targeted": spec}, targets=targets, linf_eps=(0.2,), l2_eps=())
        assert robust_accuracy(two_group_classifier(), x, y, norm="linf", eps=0.2, config=config)["robust"] == expected


def per_class_committee() -> gat.Committee:
    """Linear detectors on the top half A and bottom half B of the pixels, with offsets c = (0, 0, 2):
    d_0 = 3.125 sum_A - 50, d_1 = 1.5625 sum_A - 26, d_2 = 0.9375 sum_B - 19. At Linf eps 0.1 (sum_A, sum_B rise by
    at most 3.2) ascending d_1 alone raises d_1 by 5 but d_0 by 10, so it never flips; ascending d_2 alone raises
    d_2 + c_2 by 3 and leaves d_0 alone."""
    half = SIZE * SIZE // 2

    def detector(group: slice, slope: float, bias: float) -> Linear:
        w = torch.zeros(1, SIZE * SIZE)
        w[0, group] = slope
        return Linear(w, torch.tensor([bias]))

    a, b = slice(0, half), slice(half, None)
    detectors = [detector(a, 3.125, -50.0), detector(a, 1.5625, -26.0), detector(b, 0.9375, -19.0)]
    return gat.Committee(detectors, offsets=[0.0, 0.0, 2.0], meta={"size": SIZE, "channels": 1}).eval()


def test_the_per_class_attack_breaks_an_input_through_a_candidate_eq_3_48_would_discard(one_thread):
    committee = per_class_committee()
    # (mean_A, mean_B) = (0.5, 0.5): d + c = [0, -1, -2]; the d_1 candidate peaks at d_1 = 4 (d_0 = 10), the d_2
    # candidate at d_2 + c_2 = 1 > d_0 = 0. Eq. 3.48 keeps the larger, d_1's, which does not flip; the d_2 one does.
    # (0.5, 0.3): d + c = [0, -1, -8]: no candidate reaches d_0.
    x, y = two_group_images([(0.5, 0.5), (0.5, 0.3)]), torch.zeros(2, dtype=torch.long)
    spec = AttackSpec("pgd", steps=5, random_start=False)
    threat = ThreatModel("linf", 0.1)
    candidates = gat.per_class_candidates(committee, x, y, threat=threat, spec=spec)
    assert [c.protocol["rows"] for c in candidates] == [[0, 1], [0, 1]]    # classes 1 and 2 (class 0 is y)
    by_d1, by_d2 = candidates
    assert by_d1.margin.tolist() == pytest.approx([-1.0, -1.0], abs=1e-4)  # the clean input stays the best
    assert by_d2.margin.tolist() == pytest.approx([1.0, -1.0], abs=1e-4)   # the known optimum at the boundary
    config = ClassifyEvalConfig({"per_class": spec}, linf_eps=(0.1,), l2_eps=())
    r = robust_accuracy(committee, x, y, norm="linf", eps=0.1, config=config)
    assert r["robust"] == [0, 1]
    assert r["attackers"]["per_class"]["own_robust_accuracy"] == 0.5
    assert r["protocol"]["attackers"][0]["runs_per_input"] == 2 and r["protocol"]["attackers"][0][
        "gradient_passes"] == 10
    softmax_config = ClassifyEvalConfig({"per_class": spec, "margin": spec}, linf_eps=(0.1,), l2_eps=())
    assert list(robust_accuracy(mean_classifier(), constant_images([0.5]), torch.zeros(1, dtype=torch.long),
                                norm="linf", eps=0.1, config=softmax_config)["attackers"]) == ["margin"]


def test_classify_protocols_are_validated_and_run_art_at_every_eps():
    for protocol in CLASSIFY_PROTOCOLS.values():
        assert tuple(protocol.attackers) == ATTACKERS          # APGD-CE, APGD-DLR and Square at every grid point
        assert ClassifyEvalConfig.from_dict(json.loads(json.dumps(protocol.to_dict()))) == protocol
    assert all(p.attackers["square"].steps >= 5000 for name, p in CLASSIFY_PROTOCOLS.items()   # AutoAttack's budget
               if name != "smoke")
    assert CLASSIFY_PROTOCOLS["full"].n is None and CLASSIFY_PROTOCOLS["mnist"].n == 200
    spec = AttackSpec("pgd", steps=4)
    for bad, message in (({"attackers": {"nope": spec}}, "unknown attackers"),
                         ({"attackers": {"apgd-ce": spec}}, "runs method apgd"),
                         ({"attackers": {"apgd-dlr": AttackSpec("apgd", loss="ce")}}, "loss='dlr'"),
                         ({"attackers": {"margin": {"method": "pgd", "restart": 5}}}, r"unknown AttackSpec key"),
                         ({"attackers": {"targeted": spec}, "targets": 0}, "targets must be an integer >= 1"),
                         ({"attackers": {"margin": AttackSpec("pgd", steps=10, step_size=0.01)}},
                          "reach at most 0.1 in linf, less than eps 0.2"),
                         ({"linf_eps": (0.1, math.nan)}, "items are each a finite number >= 0"),
                         ({"n": 0}, "n must be >= 1")):
        with pytest.raises(ValueError, match=message) as info:
            ClassifyEvalConfig(**bad)
        assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match=r"unknown ClassifyEvalConfig key\(s\) \['art_only_at'\]"):
        ClassifyEvalConfig.from_dict({"art_only_at": None})
    with pytest.raises(TypeError, match="frozen"):
        CLASSIFY_PROTOCOLS["mnist"].attackers["margin"] = spec  # type: ignore[index]


def test_pipelines_end_to_end(tmp_path):
    committee = gat.load(committee_run(tmp_path))
    record = run_gat_calibrate(tmp_path, report=False)
    assert (tmp_path / "calibration.json").exists() and (tmp_path / "calibration_histograms.png").exists()
    assert torch.allclose(gat.load(tmp_path).offsets, torch.tensor(record["offsets"]))
    config = ClassifyEvalConfig({kind: spec for kind, spec in attacker_set(steps=2, restarts=1, apgd_steps=2).items()
                                 if kind in ("per_class", "ce", "margin", "apgd-ce")},
                                n=5, linf_eps=(0.0, 0.3), l2_eps=(), targets=1)
    state = gat.run_gat_classify_eval(tmp_path, tmp_path, softmax=[tmp_path / "robust_softmax.pt"], protocol=config,
                                      norms=("linf",), log=False)
    saved = json.loads((tmp_path / "classify.json").read_text())
    assert set(saved["models"]) == {"generative", "robust_softmax"}
    assert "apgd-ce" in saved["models"]["generative"]["linf"][1]["attackers"]
    assert "per_class" not in saved["models"]["robust_softmax"]["linf"][1]["attackers"]
    assert [a["kind"] for a in saved["models"]["generative"]["linf"][1]["protocol"]["attackers"]] == \
        ["per_class", "ce", "margin", "apgd-ce"]
    assert ClassifyEvalConfig.from_dict(saved["config"]) == config
    assert state["capacity"]["generative"]["parameters"] == robust.count_parameters(committee)
    assert (tmp_path / "accuracy_vs_eps.png").exists() and (tmp_path / "report.html").exists()


def test_explain_pipeline_on_mnist(tmp_path):
    committee_run(tmp_path, "mnist", 28)
    result = gat.run_gat_explain(tmp_path, tmp_path / "explain", softmax=[tmp_path / "robust_softmax.pt"],
                                 per_class=1, gen_steps=2, cf_n=5, cf_steps=2, ig_n=2, ig_steps=4, log=False)
    assert set(result["models"]) == {"generative", "robust_softmax"}
    # a smoke test of the pipeline: every promised file is written and the JSON on disk is the returned result
    saved = json.loads((tmp_path / "explain" / "explain.json").read_text())
    assert set(saved["models"]) == set(result["models"])
    assert (tmp_path / "explain" / "explain_integrated_gradients.png").exists()
    assert (tmp_path / "explain" / "explain.json").exists() and (tmp_path / "explain" / "report.html").exists()


def test_train_calibrates_the_committee_at_the_end(tmp_path):
    from atebm.gat.pipeline import run_gat_train

    preset = gat.GatPreset(
        name="tiny", description="test", data="digits", norm="linf", eps=0.1,
        train=dict(model=tiny_spec(), batch_size=8, lr=1e-3, k_start=1, k_max=1, step_size=0.1, max_iters=2,
                   log_every=2, ckpt_every=2, progress=False),
        train_attack="pgd", validation=dict(rule="pgd", steps=1, step_size=0.1, negatives=10, every=2),
        classifier=dict(epochs=1, batch_size=128, lr=1e-3, widths=(2, 3), hidden=8), hardware="t", wall_clock="t",
        size=SIZE)
    committee = run_gat_train(tmp_path, preset=preset, log=False)
    assert committee is not None
    loaded = gat.load(tmp_path)
    record = loaded.meta["calibration"]
    assert record["split"] == "val" and len(record["offsets"]) == 10
    assert torch.allclose(loaded.offsets, torch.tensor(record["offsets"]))
    assert abs(float(loaded.offsets.sum())) < 1e-4 and float(loaded.offsets.abs().max()) > 0
    assert record["fit"]["after"]["cross_entropy"] <= record["fit"]["before"]["cross_entropy"] + 1e-6
    assert (tmp_path / "calibration_histograms.png").exists()
    assert "calibration" in json.loads((tmp_path / "gat_train.json").read_text())


# ------------------------------------------------------------------------------------------------ devices
def untimed(value: Any) -> Any:
    """A pipeline's JSON-ready result without its wall-clock ``seconds`` entries (the rest is deterministic)."""
    if isinstance(value, dict):
        return {key: untimed(v) for key, v in value.items() if key != "seconds"}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


#: A classify-eval protocol at a smoke budget that still runs the committee-only attack, PGD and ART (APGD).
DEVICE_CHECK_PROTOCOL = ClassifyEvalConfig(
    {kind: spec for kind, spec in attacker_set(steps=2, restarts=1, apgd_steps=2).items()
     if kind in ("per_class", "margin", "apgd-ce")}, n=5, linf_eps=(0.0, 0.3), l2_eps=(), targets=1)
EXPLAIN_SMOKE = dict(per_class=1, gen_steps=2, cf_n=5, cf_steps=2, ig_n=2, ig_steps=4, log=False, report=False)


def test_calibrate_on_device_auto_without_cuda_is_the_cpu_run(tmp_path, monkeypatch):
    """``device="auto"`` (the default) is resolved before the committee is loaded: without CUDA it is the CPU run."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = committee_run(tmp_path)
    auto = run_gat_calibrate(run, device="auto", save=False)
    assert auto == run_gat_calibrate(run, device="cpu", save=False)
    assert len(auto["offsets"]) == 10 and auto["split"] == "val"  # the default split, fitted on the validation set


def test_classify_eval_on_device_auto_without_cuda_is_the_cpu_run(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = committee_run(tmp_path)
    softmax = [run / "robust_softmax.pt"]
    auto, cpu = (gat.run_gat_classify_eval(run, tmp_path / device, softmax=softmax, protocol=DEVICE_CHECK_PROTOCOL,
                                           norms=("linf",), device=device, log=False, report=False)
                 for device in ("auto", "cpu"))
    assert set(auto["models"]) == {"generative", "robust_softmax"}
    assert "apgd-ce" in auto["models"]["generative"]["linf"][1]["attackers"]
    assert untimed(auto) == untimed(cpu)


def test_explain_on_device_auto_without_cuda_is_the_cpu_run(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    run = committee_run(tmp_path, "mnist", 28)
    softmax = [run / "robust_softmax.pt"]
    auto, cpu = (gat.run_gat_explain(run, tmp_path / device, softmax=softmax, device=device, **EXPLAIN_SMOKE)
                 for device in ("auto", "cpu"))
    assert set(auto["models"]) == {"generative", "robust_softmax"}
    assert untimed(auto) == untimed(cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_classifier_pipelines_run_on_cuda_and_agree_with_the_cpu(tmp_path):
    """On a GPU the models run there and every result comes back to the CPU (the JSON files are written): the
    numbers that do not depend on the models' arithmetic are the CPU run's, the offsets agree within TF32
    convolution tolerance."""
    run = committee_run(tmp_path)
    offsets = {device: run_gat_calibrate(run, device=device, save=False)["offsets"] for device in ("cuda", "cpu")}
    assert torch.allclose(torch.tensor(offsets["cuda"]), torch.tensor(offsets["cpu"]), atol=1e-2)
    grid = {device: gat.run_gat_classify_eval(run, tmp_path / device, softmax=[run / "robust_softmax.pt"],
                                              protocol=DEVICE_CHECK_PROTOCOL, norms=("linf",), device=device,
                                              log=False, report=False) for device in ("cuda", "cpu")}
    assert grid["cuda"]["subset"] == grid["cpu"]["subset"] and grid["cuda"]["capacity"] == grid["cpu"]["capacity"]
    mnist = committee_run(tmp_path / "mnist", "mnist", 28)
    explained = {device: gat.run_gat_explain(mnist, tmp_path / f"explain-{device}", device=device, **EXPLAIN_SMOKE)
                 for device in ("cuda", "cpu")}
    assert explained["cuda"]["seeds_fd"] == explained["cpu"]["seeds_fd"]
    assert all(math.isfinite(m["samples_fd"]) for m in explained["cuda"]["models"].values())
