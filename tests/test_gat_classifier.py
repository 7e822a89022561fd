"""The generative robust classifier (atebm.gat, T Sec. 3.4) on tiny models: calibration, the per-class and margin
attacks, Madry training's attack, integrated gradients, the worst-case cascade and the pipelines end to end."""
from __future__ import annotations

import json

import pytest
import torch
from torch import nn

import atebm.gat as gat
import atebm.gat.robust as robust
from atebm.data import ImageSet
from atebm.gat.calibration import calibrate_committee, fit_offsets, run_gat_calibrate
from atebm.gat.classifier import SoftmaxClassifier, save_classifier
from atebm.gat.classify import ClassifyEvalConfig, robust_accuracy
from atebm.gat.data import LabelledSplits
from atebm.gat.explain import ClassScore, captum_available, class_gaussian_seeds, integrated_gradients
from atebm.models import build_score_model

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


# ------------------------------------------------------------------------------------------------ attacks
def test_per_class_attack_raises_the_targeted_class_score_inside_the_ball():
    committee = tiny_committee(seed=3)
    committee.set_offsets(torch.tensor([0.2, -0.1, -0.1]))
    x, y = images(9, 4), torch.arange(9) % 3
    eps = 0.1
    adv = gat.per_class_attack(committee, x, y, norm="linf", eps=eps, steps=5, step_size=0.03)
    assert float((adv - x).abs().max()) <= eps + 1e-6
    with torch.no_grad():
        before, after = committee(x), committee(adv)
    chosen = after.masked_fill(nn.functional.one_hot(y, 3).bool(), -float("inf")).argmax(1)
    rows = torch.arange(9)
    assert bool((after[rows, chosen] > before[rows, chosen]).all())      # Eq. 3.47 raised the chosen d_k
    best_before = before.masked_fill(nn.functional.one_hot(y, 3).bool(), -float("inf")).max(1).values
    assert bool((after[rows, chosen] > best_before).all())


def test_targeted_margin_rises_and_refuses_the_true_class():
    model = tiny_classifier()
    x, y = images(6, 5), torch.tensor([0, 1, 2, 0, 1, 2])
    t = (y + 1) % 3
    objective = gat.TargetedMargin(model, y, t)
    adv = gat.run_attack(lambda yt: gat.TargetedMargin(model, yt[:, 0], yt[:, 1]), x, torch.stack([y, t], 1),
                         norm="l2", eps=0.5, steps=5, step_size=0.2)
    with torch.no_grad():
        assert bool((objective(adv) > objective(x)).all())
    with pytest.raises(ValueError, match="differ from the true class"):
        gat.TargetedMargin(model, y, y)


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


# ------------------------------------------------------------------------------------------------ evaluation
def test_worst_case_cascade_is_no_better_than_its_first_attacker():
    committee = tiny_committee(seed=5)
    x, y = images(12, 8), committee(images(12, 8)).argmax(1).detach()     # all correct when clean
    config = ClassifyEvalConfig(n=None, steps=4, restarts=2, targets=1, attackers=("per_class", "margin", "targeted"))
    r = robust_accuracy(committee, x, y, norm="linf", eps=0.2, config=config)
    assert r["clean_accuracy"] == 1.0
    first = r["attackers"]["per_class"]["own_robust_accuracy"]
    assert r["robust_accuracy"] <= first <= r["clean_accuracy"]
    assert sum(r["robust"]) == round(r["robust_accuracy"] * len(y))
    assert robust_accuracy(committee, x, y, norm="linf", eps=0.0, config=config)["robust_accuracy"] == 1.0
    with pytest.raises(ValueError, match="unknown attackers"):
        ClassifyEvalConfig(attackers=("nope",))


def test_pipelines_end_to_end(tmp_path):
    committee = tiny_committee(k=10)
    committee.meta.update(data="digits", norm="linf", eps=0.3)
    gat.save_committee(tmp_path, committee)
    torch.manual_seed(2)
    save_classifier(tmp_path / "robust_softmax.pt", SoftmaxClassifier(tiny_spec(out_dim=10)).eval())
    record = run_gat_calibrate(tmp_path, report=False)
    assert (tmp_path / "calibration.json").exists() and (tmp_path / "calibration_histograms.png").exists()
    assert torch.allclose(gat.load(tmp_path).offsets, torch.tensor(record["offsets"]))
    config = ClassifyEvalConfig(n=5, linf_eps=(0.0, 0.3), l2_eps=(), steps=2, restarts=1, targets=1,
                                art_steps=2, attackers=("per_class", "ce", "margin", "apgd-ce"),
                                art_only_at=(("linf", 0.3),))
    state = gat.run_gat_classify_eval(tmp_path, tmp_path, softmax=[tmp_path / "robust_softmax.pt"], protocol=config,
                                      norms=("linf",), log=False)
    saved = json.loads((tmp_path / "classify.json").read_text())
    assert set(saved["models"]) == {"generative", "robust_softmax"}
    assert "apgd-ce" in saved["models"]["generative"]["linf"][1]["attackers"]
    assert "per_class" not in saved["models"]["robust_softmax"]["linf"][1]["attackers"]
    assert state["capacity"]["generative"]["parameters"] == robust.count_parameters(committee)
    assert (tmp_path / "accuracy_vs_eps.png").exists() and (tmp_path / "report.html").exists()


def test_explain_pipeline_on_mnist(tmp_path):
    committee = tiny_committee(k=10, size=28)
    committee.meta.update(data="mnist")
    gat.save_committee(tmp_path, committee)
    torch.manual_seed(2)
    save_classifier(tmp_path / "robust_softmax.pt", SoftmaxClassifier(tiny_spec(out_dim=10, size=28)).eval())
    result = gat.run_gat_explain(tmp_path, tmp_path / "explain", softmax=[tmp_path / "robust_softmax.pt"],
                                 per_class=1, gen_steps=2, cf_n=5, cf_steps=2, ig_n=2, ig_steps=4, log=False)
    assert set(result["models"]) == {"generative", "robust_softmax"}
    assert all(m["samples_fd"] > 0 and 0 <= m["counterfactual_success"] <= 1 for m in result["models"].values())
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
