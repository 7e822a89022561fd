"""The detector committee (atebm.gat, T Sec. 3.2) on tiny models: training attack, committee, detection rates,
attacks, the minimum-distortion search and a tiny end-to-end run."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import atebm.gat as gat
from atebm.attacks import AcceptanceMargin, AttackSpec, ThreatModel
from atebm.gat.detection import detect, detection_curve, operating_point
from atebm.gat.evaluate import GatEvalConfig, evaluate_committee, rule_committee, sign_test, stratified_subset
from atebm.gat.softmax_classifier import SoftmaxClassifier, load_classifier, save_classifier
from atebm.models import build_score_model
from atebm.sampling import pgd
from atebm.training import CheckpointError, TrainConfig

SIZE = 8


def tiny_spec(out_dim: int = 1) -> dict:
    return gat.detector_model_spec(SIZE, 1, widths=(2, 3), hidden=8, out_dim=out_dim)


def tiny_committee(k: int = 3, seed: int = 0) -> gat.Committee:
    torch.manual_seed(seed)
    return gat.Committee([build_score_model(tiny_spec()) for _ in range(k)], meta={"size": SIZE, "channels": 1})


def tiny_classifier(k: int = 3, seed: int = 1) -> SoftmaxClassifier:
    torch.manual_seed(seed)
    return SoftmaxClassifier(tiny_spec(out_dim=k)).eval()


def images(n: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(seed))


# ------------------------------------------------------------------------------------------ training attack
@pytest.mark.parametrize("norm,eps,rule", [("linf", 0.1, "pgd"), ("l2", 0.5, "pgd"), ("linf", 0.1, "adam"),
                                           ("l2", 0.5, "adam")])
def test_detector_training_attack_stays_in_its_ball(norm, eps, rule):
    config = TrainConfig(model=tiny_spec(), batch_size=4, k_start=3, k_max=3, step_size=0.2, pgd_norm=norm,
                         pgd_eps=eps, pgd_random_start=True, max_iters=1, progress=False)
    trainer = gat.DetectorTrainer(config, images(8, 1), images(8, 2), extra={"attack_rule": rule})
    x0 = images(16, 3) * 0.8 + 0.1
    first, second = trainer.sample_p0(x0, 3), trainer.sample_p0(x0, 3)
    delta = (first - x0).flatten(1)
    size = delta.abs().max(1).values if norm == "linf" else delta.norm(dim=1)
    assert float(size.max()) <= eps + 1e-5
    assert float(size.min()) > 0  # it moved
    assert float(first.min()) >= 0 and float(first.max()) <= 1
    assert not torch.allclose(first, second)  # random start: a new point of the ball each time


def test_random_start_needs_a_finite_ball_and_every_preset_sets_it():
    with pytest.raises(ValueError, match="pgd_random_start needs a finite pgd_eps"):
        TrainConfig(pgd_random_start=True, max_iters=1)
    assert all(gat.get_gat_preset(name).detector_config().pgd_random_start for name in gat.GAT_PRESETS)


def test_a_preset_is_validated_when_built_down_to_its_detector_training():
    mnist = gat.get_gat_preset("mnist")
    again = gat.GatPreset.from_dict(json.loads(json.dumps(mnist.to_dict())))   # its train dict comes back as JSON
    assert again.detector_config() == mnist.detector_config() and again.validation == mnist.validation
    assert isinstance(mnist.replace(validation={"steps": 2, "step_size": 0.1, "every": 5}).validation,
                      gat.ValidationRecipe)
    for change, message in (({"validation": {"steps": 2, "step_size": 0.1, "every": 5, "restart": 1}}, "restart"),
                            ({"validation": {"steps": 2, "step_size": 0.1, "every": 5, "rule": "fgsm"}}, "rule"),
                            ({"classifier": {"epochs": 0}}, "epochs"),
                            ({"train": {**mnist.train, "lr_typo": 1e-3}}, "lr_typo"),
                            ({"train_attack": "sign"}, "train_attack"), ({"norm": "l1"}, "norm")):
        with pytest.raises((ValueError, TypeError), match=message):
            mnist.replace(**change)
    smoke = mnist.smoke()
    assert smoke.train["max_iters"] == 2 and smoke.classifier.epochs == 1
    assert smoke.validation.steps * smoke.validation.step_size >= smoke.eps    # one step reaches the boundary
    assert smoke.detector_config().max_iters == 2


def test_detector_training_augments_the_other_class_images_like_the_positives():
    x0 = images(16, 3)
    plain = TrainConfig(model=tiny_spec(), batch_size=4, k_start=0, k_max=0, step_size=0.0, pgd_norm="linf",
                        pgd_eps=0.01, max_iters=1, progress=False)
    assert torch.allclose(gat.DetectorTrainer(plain, images(8, 1), images(8, 2)).sample_p0(x0, 0), x0)
    zoomed = plain.replace(augment_crop_scale=(0.25, 0.25))  # every image cropped to half its side, resampled
    out = gat.DetectorTrainer(zoomed, images(8, 1), images(8, 2)).sample_p0(x0, 0)
    assert out.shape == x0.shape and float((out - x0).abs().max()) > 0.1


def test_jitter_is_the_identity_when_off_and_a_stroke_change_when_asked():
    from torch.nn import functional as F

    x, g = images(8, 4), torch.Generator().manual_seed(0)
    assert torch.equal(gat.training.jitter(x, generator=g), x)
    out = gat.training.jitter(x, thickness=1.0, generator=g)  # every image dilated or eroded, nothing else
    thick, thin = F.max_pool2d(x, 3, 1, 1), -F.max_pool2d(-x, 3, 1, 1)
    per_image = [torch.allclose(o, a, atol=1e-6) or torch.allclose(o, b, atol=1e-6)
                 for o, a, b in zip(out, thick, thin)]
    assert all(per_image)
    moved = gat.training.jitter(x, rotate=10, scale=0.1, shift=2, generator=g)
    assert moved.shape == x.shape and float(moved.min()) >= 0 and float(moved.max()) <= 1
    assert not torch.allclose(moved, x)


def test_detector_trainer_jitters_both_image_sources():
    config = TrainConfig(model=tiny_spec(), batch_size=4, k_start=0, k_max=0, step_size=0.0, max_iters=1,
                         progress=False)
    data, p0 = images(8, 1), images(8, 2)
    trainer = gat.DetectorTrainer(config, data, p0, extra={"jitter": {"shift": 3.0}})
    batch = trainer.data.get_batch(torch.arange(4))
    assert batch.shape == data[:4].shape and not torch.allclose(batch, data[:4])
    assert trainer.p0.images is p0 and trainer.p0.generator is trainer.aug_generator
    with pytest.raises(ValueError, match="unknown jitter options"):
        gat.DetectorTrainer(config, data, p0, extra={"jitter": {"shear": 1.0}})


def test_detector_trains_and_selects_best_validation_weights(tmp_path):
    splits = gat.labelled_splits("digits", size=SIZE)
    preset = gat.GatPreset(
        name="tiny", description="test", data="digits", norm="linf", eps=0.1,
        train=dict(model=tiny_spec(), batch_size=8, lr=1e-3, k_start=2, k_max=2, step_size=0.05, max_iters=6,
                   log_every=2, ckpt_every=4, progress=False),
        train_attack="pgd", validation=dict(rule="pgd", steps=2, step_size=0.05, negatives=20, every=2),
        classifier=dict(epochs=1, batch_size=32, lr=1e-3), hardware="test", wall_clock="test", size=SIZE)
    summary = gat.train_detector(preset, 0, splits, tmp_path, log=False)
    assert summary["iterations"] == 6
    assert [v["step"] for v in summary["validations"]] == [2, 4, 6]
    best = None
    for v in summary["validations"]:  # ties go to the later weights
        if best is None or (v["auc"], -v["loss"]) >= (best["auc"], -best["loss"]):
            best = v
    assert summary["selection"]["step"] == best["step"]
    model = gat.detector_dir(tmp_path, 0) / "model.pt"
    assert model.exists() and (gat.detector_dir(tmp_path, 0) / "done.json").exists()
    again = gat.train_detector(preset, 0, splits, tmp_path, resume=True, log=False)  # finished: read back
    assert again["selection"] == json.loads(json.dumps(summary["selection"]))
    with pytest.raises(ValueError, match="exists"):
        gat.train_detector(preset, 0, splits, tmp_path, log=False)


def test_selection_with_a_weight_average_scores_and_keeps_the_average(tmp_path):
    from atebm.training import load_model

    splits = gat.labelled_splits("digits", size=SIZE)
    preset = gat.GatPreset(
        name="tiny", description="test", data="digits", norm="linf", eps=0.1,
        train=dict(model=tiny_spec(), batch_size=8, lr=1e-2, k_start=1, k_max=1, step_size=0.05, max_iters=4,
                   log_every=2, ckpt_every=4, progress=False, ema_decay=0.9),
        train_attack="pgd", validation=dict(rule="pgd", steps=1, step_size=0.1, negatives=20, every=4),
        classifier=dict(epochs=1, batch_size=32, lr=1e-3), hardware="test", wall_clock="test", size=SIZE)
    summary = gat.train_detector(preset, 0, splits, tmp_path, log=False)
    assert summary["selection"]["weights"] == "ema" and summary["selection"]["step"] == 4  # the one validation
    checkpoint = torch.load(gat.detector_dir(tmp_path, 0) / "checkpoint.pt", weights_only=False)
    model = load_model(gat.detector_dir(tmp_path, 0) / "model.pt")
    for name, value in model.state_dict().items():  # the model is the average, not the raw weights
        assert torch.equal(value, checkpoint["trainer"]["ema"][name].to(value.dtype))
    assert any(not torch.equal(v, checkpoint["model"][k]) for k, v in model.state_dict().items())
    assert summary["validations"][0]["auc"] == pytest.approx(summary["selection"]["value"])


# ------------------------------------------------------------------------------------------ committee
def test_committee_output_shape_offsets_and_detectors(tmp_path):
    committee = tiny_committee(3).eval()
    x = images(5)
    z = committee(x)
    assert z.shape == (5, 3)
    for k in range(3):
        assert torch.allclose(committee.detector(k)(x), z[:, k])
    committee.set_offsets([0.5, -1.0, 2.0])
    shifted = committee(x)
    assert torch.allclose(shifted - z, torch.tensor([0.5, -1.0, 2.0]).expand(5, 3), atol=1e-6)
    assert torch.allclose(committee.detector(1)(x), z[:, 1])  # d_k has no offset
    gat.save_committee(tmp_path, committee)
    loaded = gat.load(tmp_path)
    assert torch.allclose(loaded(x), shifted, atol=1e-6)
    assert loaded.meta["size"] == SIZE and not loaded.training
    with pytest.raises(ValueError, match="class index"):
        committee.detector(3)
    with pytest.raises(ValueError, match="one value per detector"):
        gat.Committee(list(committee.detectors), offsets=[0.0, 1.0])


def test_load_reports_a_missing_committee_clearly(tmp_path):
    with pytest.raises(CheckpointError, match="no committee"):
        gat.load(tmp_path)


def test_classifier_round_trip(tmp_path):
    f = tiny_classifier()
    save_classifier(tmp_path / "classifier.pt", f)
    x = images(4)
    assert torch.allclose(load_classifier(tmp_path / "classifier.pt")(x), f(x))


# ------------------------------------------------------------------------------------------ detection
def test_tpr_fpr_on_hand_built_scores():
    clean = np.arange(1, 21, dtype=float)  # 20 clean inputs, scores 1..20
    adv = np.array([0.5, 5.0, 10.0, 15.0, 25.0])
    wrong = np.array([True, True, False, True, True])  # the third is still classified correctly
    point = operating_point(clean, adv, wrong, tpr=0.95)
    assert point["threshold"] == 2.0 and point["tpr"] == 0.95
    assert point["fpr"] == pytest.approx(3 / 5)  # 5, 15, 25: accepted and misclassified; 10 is not counted
    curve = detection_curve(clean, adv, wrong)
    assert curve["tpr"][0] == 0 and curve["fpr"][0] == 0
    assert curve["tpr"][-1] == 1 and curve["fpr"][-1] == pytest.approx(4 / 5)
    assert all(np.diff(curve["tpr"]) >= 0) and all(np.diff(curve["fpr"]) >= 0)
    at_15 = curve["threshold"].index(15.0)
    assert curve["tpr"][at_15] == pytest.approx(6 / 20) and curve["fpr"][at_15] == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="one flag per"):
        operating_point(clean, adv, wrong[:3])


def test_integrated_and_generative_rules_pick_their_detector():
    committee, f = tiny_committee(3).eval(), tiny_classifier(3)
    x = images(7)
    z_h, pred_f = committee(x), f(x).argmax(1)
    generative = detect("generative", committee, x)
    assert torch.equal(generative.predictions, z_h.argmax(1))
    assert torch.allclose(generative.scores, z_h.max(1).values)
    integrated = detect("integrated", committee, x, f)
    assert torch.equal(integrated.predictions, pred_f)
    assert torch.allclose(integrated.scores, z_h[torch.arange(7), pred_f])
    with pytest.raises(ValueError, match="classifier"):
        detect("integrated", committee, x)


def test_stratified_subset_balances_classes():
    y = torch.tensor([0] * 10 + [1] * 10 + [2] * 3)
    pick = stratified_subset(y, 9, seed=0)
    assert len(pick) == 9 and torch.bincount(y[pick]).tolist() == [3, 3, 3]


# ------------------------------------------------------------------------------------------ attacks
ATTACKS = ["classifier", "detector", "combined", "switching", "single", "acceptance-generative",
           "acceptance-integrated"]


def _objective(name: str, committee, f, y):
    if name == "single":
        return gat.SingleDetectorAttack(committee.detector(1))
    if name == "acceptance-generative":
        return AcceptanceMargin(committee, y, threshold=0.0)
    if name == "acceptance-integrated":
        return AcceptanceMargin(gat.IntegratedView(f, committee, threshold=0.0), y, threshold=0.0)
    if name == "detector":
        return gat.DetectorAttack(committee, y)
    if name == "classifier":
        return gat.ClassifierAttack(f, y)
    return gat.OBJECTIVES[name](f, committee, y)


@pytest.mark.parametrize("rule", ["pgd", "adam"])
@pytest.mark.parametrize("name", ATTACKS)
def test_each_attack_raises_the_objective_it_targets(name, rule):
    committee, f = tiny_committee(3).eval(), tiny_classifier(3)
    x = images(12, 5) * 0.6 + 0.2
    y = torch.arange(12) % 3
    objective = _objective(name, committee, f, y)
    adv = pgd(objective, x, rule="adam" if rule == "adam" else "normalised", norm="linf", eps=0.2, steps=6,
              step_size=0.03)
    with torch.no_grad():
        before, after = objective(x), objective(adv)
    assert float((adv - x).abs().max()) <= 0.2 + 1e-6
    assert float(after.mean()) > float(before.mean())
    assert float((after >= before - 1e-6).float().mean()) >= 0.9


def test_switching_objective_switches_on_misclassification():
    committee, f = tiny_committee(3).eval(), tiny_classifier(3)
    x = images(6)
    with torch.no_grad():
        z_f = f(x)
        y_right = z_f.argmax(1)
        value = gat.SwitchingAttack(f, committee, y_right)(x)
        assert torch.allclose(value, gat.ClassifierAttack(f, y_right)(x))  # still correct: the classifier margin
        y_wrong = (z_f.argmin(1))
        value = gat.SwitchingAttack(f, committee, y_wrong)(x)
        assert torch.allclose(value, gat.DetectorAttack(committee, y_wrong)(x))  # fooled: evade the detectors


class _Fixed(nn.Module):
    """A "model" returning the same hand-built logits for any input."""

    def __init__(self, z: torch.Tensor) -> None:
        super().__init__()
        self.z = z

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.z


def test_integrated_view_accepts_exactly_what_integrated_detection_accepts():
    z_f = torch.tensor([[2.0, 1.0, 0.0],   # f predicts 0
                        [0.0, 3.0, 1.0],   # f predicts 1
                        [0.0, 1.0, 4.0],   # f predicts 2
                        [1.0, 1.5, 1.2]])  # f predicts 1 by a small margin
    z_d = torch.tensor([[5.0, 9.0, 9.0],   # d_0 = 5 >= T = 1: accepted as 0
                        [9.0, 0.5, 9.0],   # d_1 = 0.5 < 1: rejected
                        [0.0, 0.0, 1.0],   # d_2 = 1 >= 1: accepted as 2
                        [0.0, 3.0, 0.0]])  # d_1 = 3: accepted as 1
    view = gat.IntegratedView(_Fixed(z_f), _Fixed(z_d), threshold=1.0)(torch.zeros(4, 1))
    predictions = z_f.argmax(1)  # integrated detection (T Fig. 3.1): f's class, then its detector at T
    accepted = z_d.gather(1, predictions.view(-1, 1))[:, 0] >= 1.0
    assert accepted.tolist() == [True, False, True, True]
    for i in range(4):
        k = int(predictions[i])
        assert bool(view[i, k] >= 0) == bool(accepted[i])  # the predicted class: v_k >= 0 iff d_k accepts
        others = [j for j in range(3) if j != k]
        assert bool((view[i, others] < 0).all())  # any other class: f does not predict it
    assert view[3].tolist() == pytest.approx([min(1.0 - 1.5, -1.0), min(1.5 - 1.2, 2.0), min(1.2 - 1.5, -1.0)])


# ------------------------------------------------------------------------------------------ evaluation
def _tiny_eval_config(**changes) -> GatEvalConfig:
    values = dict(auc_detectors=(0,), auc_negatives=6, auc_attacks=(AttackSpec("pgd", steps=2),),
                  auc_restarts=(AttackSpec("adam", steps=2, restarts=2),), detection_n=12,
                  detection_attack=AttackSpec("pgd", steps=2, restarts=2),
                  detection_art=(AttackSpec("apgd", steps=2, label="apgd-ce"),
                                 AttackSpec("square", steps=5, label="square")), cw_n=3, cw_steps=3, cw_search_steps=2)
    values.update(changes)
    return GatEvalConfig(**values)


def test_evaluation_blocks_on_a_tiny_committee():
    committee, f = tiny_committee(3).eval(), tiny_classifier(3)
    x = images(18, 7)
    y = torch.arange(18) % 3
    result = evaluate_committee(committee, f, x, y, config=_tiny_eval_config(), norm="linf", eps=0.1)
    assert len(result["auc"]) == 2 and result["auc"][1]["protocol"]["restarts"] == 2
    det = result["detection"]
    runs = det["runs"]
    attacks = ["classifier", "detector", "combined", "switching", "acceptance", "apgd-ce", "square"]
    assert set(runs) == {f"{rule}/{a}" for rule in ("integrated", "generative") for a in [*attacks, "worst"]}
    for rule in ("integrated", "generative"):
        worst = runs[f"{rule}/worst"]
        assert worst["of"] == attacks                      # both rules face the same attackers, same budget
        fooled = np.array([runs[f"{rule}/{a}"]["fooled_at_tpr"] for a in attacks], dtype=bool)
        assert not (fooled & ~np.array(worst["fooled_at_tpr"], dtype=bool)).any()  # the worst case covers each
        budgets = {a["label"]: a.get("gradient_passes", a.get("queries")) for a in
                   det["protocol"]["search"][rule]["attackers"]}
        assert budgets == {**{a: 4 for a in attacks[:5]}, "apgd-ce": 2, "square": 5}
    assert det["protocol"]["rule_offsets"] == "thesis"
    fooled = {rule: [bool(v) for v in runs[f"{rule}/worst"]["fooled_at_tpr"]] for rule in ("generative", "integrated")}
    assert det["sign_test"] == {"a": "generative", "b": "integrated",
                                **sign_test(fooled["generative"], fooled["integrated"])}
    assert sign_test([True, True, True, False], [False] * 4) == {"a_only": 3, "b_only": 0, "p_value": 0.25}
    assert sign_test([True, False], [False, True])["p_value"] == 1.0
    assert len(result["distortion"]["distances"]) == 3


def test_detection_rules_read_the_detectors_without_offsets_by_default():
    """T Sec. 3.2's rules threshold z_{d_k}; the offsets c_k of Sec. 3.4 change both rules' decisions."""
    committee = tiny_committee(3).eval()
    x = images(10, 3)
    plain = committee(x).detach()
    committee.set_offsets(torch.tensor([5.0, -5.0, 0.0]))
    thesis = rule_committee(committee, "thesis")
    assert torch.allclose(thesis(x), plain) and torch.allclose(committee(x), plain + committee.offsets)
    assert rule_committee(committee, "calibrated") is committee
    assert torch.equal(detect("generative", thesis, x).predictions, plain.argmax(1))
    assert bool((detect("generative", committee, x).predictions == 0).all())     # +5 on class 0 wins everywhere
    with pytest.raises(ValueError, match="rule_offsets"):
        GatEvalConfig(rule_offsets="offsets")


def test_eval_protocols_scale_to_any_committee_and_refuse_unknown_keys():
    from atebm.gat.evaluate import EVAL_PROTOCOLS

    for config in EVAL_PROTOCOLS.values():
        for threat in (ThreatModel("linf", 0.5), ThreatModel("l2", 5.0)):
            for spec in (*config.auc_attacks, *config.auc_restarts, config.detection_attack):
                assert spec.steps * spec.step_at(threat) >= threat.eps  # every row reaches the ball's boundary
    with pytest.raises(ValueError, match="unknown AttackSpec key"):
        GatEvalConfig.from_dict({"detection_attack": {"method": "pgd", "restart": 50}})
    with pytest.raises(ValueError, match="unknown GatEvalConfig key"):
        GatEvalConfig.from_dict({"art_n": 3})


def test_splits_without_val_get_a_carved_stratified_one():
    splits = gat.labelled_splits("digits", size=SIZE)
    assert "carved" in splits.val_from
    assert set(torch.unique(splits.val.y).tolist()) == set(range(10))
    assert len(splits.train) + len(splits.val) == 1347  # sklearn digits: 75 % of 1,797 in train
    with pytest.raises(ValueError, match="split"):
        gat.labelled_splits("mnist?split=test")
    with pytest.raises(ValueError, match="labels"):
        gat.labelled_splits("uniform?n=10")


def test_cross_norm_rows_cover_every_other_threat_and_skip_the_committees_own():
    """T Tab. 3.4 has a column per committee: each is attacked in all four balls; its own ball is already the
    Tab. 3.2-3.3 rows, so the cross-norm group skips exactly that one (a Linf 0.5 committee still gets Linf 0.3)."""
    from atebm.gat.evaluate import EVAL_PROTOCOLS, auc_tables

    threats = [threat for threat, _ in EVAL_PROTOCOLS["mnist"].auc_cross_norm]
    assert {(t.norm, t.eps) for t in threats} == {("linf", 0.3), ("linf", 0.5), ("l2", 2.5), ("l2", 5.0)}
    config = EVAL_PROTOCOLS["mnist"].replace(auc_detectors=(0,), auc_negatives=4, auc_attacks=(), auc_restarts=(),
                                             auc_cross_norm=tuple((t, AttackSpec("pgd", steps=1, step_factor=1.0))
                                                                  for t in threats))
    x, y = images(12), torch.arange(12) % 3
    for norm, eps in (("linf", 0.5), ("l2", 2.5)):
        rows = auc_tables(tiny_committee(), x, y, config, norm, eps)
        attacked = [(r["protocol"]["norm"], r["protocol"]["eps"]) for r in rows]
        assert sorted(attacked) == sorted((t.norm, t.eps) for t in threats if (t.norm, t.eps) != (norm, eps))


# ------------------------------------------------------------------------------------------ command line
def test_cli_reports_a_missing_committee_in_one_line(tmp_path, capsys):
    from atebm.cli import main

    assert main(["gat", "eval", "--checkpoint", str(tmp_path), "--out", str(tmp_path / "eval")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no committee" in err[0]
    with pytest.raises(SystemExit):
        main(["gat", "train", "--preset", "no-such-preset", "--out", str(tmp_path)])


def test_train_refuses_to_overwrite_a_run_without_resume(tmp_path):
    from atebm.gat.pipeline import run_gat_train

    (tmp_path / "detector_0").mkdir()
    with pytest.raises(ValueError, match="--resume"):
        run_gat_train(tmp_path, log=False)


def test_train_and_eval_pipelines_end_to_end(tmp_path):
    from atebm.gat.pipeline import run_gat_eval, run_gat_train

    preset = gat.GatPreset(
        name="tiny", description="test", data="digits", norm="linf", eps=0.1,
        train=dict(model=tiny_spec(), batch_size=8, lr=1e-3, k_start=1, k_max=1, step_size=0.1, max_iters=2,
                   log_every=2, ckpt_every=2, progress=False),
        train_attack="adam", validation=dict(rule="pgd", steps=1, step_size=0.1, negatives=10, every=2),
        classifier=dict(epochs=1, batch_size=128, lr=1e-3, widths=(2, 3), hidden=8), hardware="t", wall_clock="t",
        size=SIZE)
    assert run_gat_train(tmp_path, preset=preset, classes=[0], log=False) is None  # 9 detectors still missing
    committee = run_gat_train(tmp_path, preset=preset, resume=True, log=False)
    assert committee is not None and committee.num_classes == 10
    assert gat.load(tmp_path)(images(2)).shape == (2, 10)
    config = GatEvalConfig(auc_detectors=(1,), auc_negatives=5, auc_attacks=(AttackSpec("pgd", steps=1),),
                           detection_n=20, detection_attacks=("classifier", "switching"),
                           detection_attack=AttackSpec("pgd", steps=1), detection_art=(), cw_n=0)
    out = tmp_path / "eval"
    state = run_gat_eval(tmp_path, out, protocol=config, sections=["clean", "detection"], log=False)
    assert set(state["detection"]["runs"]) == {f"{rule}/{a}" for rule in ("integrated", "generative")
                                               for a in ("classifier", "switching", "worst")}
    assert (out / state["detection"]["examples"]["grid"]).exists() and (out / "report.html").exists()
    with pytest.raises(ValueError, match="--resume"):
        run_gat_eval(tmp_path, out, protocol=config, sections=["auc"], log=False)
    state = run_gat_eval(tmp_path, out, protocol=config, sections=["auc"], resume=True, log=False)
    assert {"clean", "detection", "auc"} <= set(state) and len(state["auc"]) == 1
