"""Detector weight selection and resume checks of the GAT committee (atebm.gat.training, T Sec. 3.2.3): the final
weights are a selection candidate however the run ends, and a resume refuses another preset, data source or a
setting that would not continue the run exactly."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import atebm.gat as gat
from atebm.gat.pipeline import run_gat_train
from atebm.gat.training import DetectorValidation, detector_selection
from atebm.training import load_model

SIZE = 8


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Tiny models on a shared 2-core machine: one torch thread (conftest's ``one_thread``)."""


def tiny_spec() -> dict:
    return gat.detector_model_spec(SIZE, 1, widths=(2, 3), hidden=8)


def tiny_preset(max_iters: int, every: int, **train) -> gat.GatPreset:
    """A preset whose detectors train ``max_iters`` iterations, validated every ``every`` of them."""
    return gat.GatPreset(
        name="tiny", description="test", data="digits", norm="linf", eps=0.1,
        train=dict(model=tiny_spec(), batch_size=8, lr=1e-2, k_start=1, k_max=1, step_size=0.05,
                   max_iters=max_iters, log_every=1, ckpt_every=2, progress=False, **train),
        train_attack="pgd", validation=dict(rule="pgd", steps=1, step_size=0.1, negatives=20, every=every),
        classifier=dict(epochs=1, batch_size=128, lr=1e-3, widths=(2, 3), hidden=8), hardware="test",
        wall_clock="test", size=SIZE)


#: One pytest-xdist worker runs this module, so that its module-scoped fixtures train once.
pytestmark = pytest.mark.xdist_group(__name__)


@pytest.fixture(scope="module")
def splits() -> gat.LabelledSplits:
    return gat.labelled_splits("digits", size=SIZE)


def rising_auc(monkeypatch) -> None:
    """Makes each validation score better than the one before (AUC 0.5, 0.51, ...): the last candidate wins."""
    calls: list[int] = []

    def evaluate(self: DetectorValidation, model: torch.nn.Module) -> dict[str, float]:
        calls.append(1)
        return {"val_auc_adv": 0.49 + 0.01 * len(calls), "val_loss": 1.0}

    monkeypatch.setattr(DetectorValidation, "__call__", evaluate)


# ------------------------------------------------------------------------------------------ final candidate
def test_a_run_ending_off_the_validation_period_scores_its_final_weights(tmp_path, splits):
    summary = gat.train_detector(tiny_preset(max_iters=5, every=2), 0, splits, tmp_path, log=False)
    history = summary["validations"]
    assert summary["iterations"] == 5 and [v["step"] for v in history] == [2, 4, 5]
    best = max(reversed(history), key=lambda v: (v["auc"], -v["loss"]))  # ties go to the later weights
    assert summary["selection"]["step"] == best["step"]
    assert summary["selection"]["value"] == pytest.approx(best["auc"])


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_the_final_weights_are_selected_when_they_score_best(tmp_path, splits, monkeypatch, ema_decay):
    rising_auc(monkeypatch)
    summary = gat.train_detector(tiny_preset(max_iters=5, every=2, ema_decay=ema_decay), 0, splits, tmp_path,
                                 log=False)
    assert [v["step"] for v in summary["validations"]] == [2, 4, 5]
    selection = summary["selection"]
    assert selection["step"] == 5 and selection["by"] == "val_auc_adv"
    assert selection["weights"] == ("ema" if ema_decay else "raw")
    run = gat.detector_dir(tmp_path, 0)
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=False)
    final = checkpoint["trainer"]["ema"] if ema_decay else checkpoint["model"]
    assert checkpoint["trainer"]["step"] == 5 and checkpoint["selection"]["step"] == 5
    model = load_model(run / "model.pt")
    for name, value in model.state_dict().items():  # model.pt is the final (averaged) weights
        assert torch.equal(value, final[name].to(value.dtype))


def test_a_run_shorter_than_the_validation_period_still_selects_scored_weights(tmp_path, splits):
    summary = gat.train_detector(tiny_preset(max_iters=3, every=4), 0, splits, tmp_path, log=False)
    assert [v["step"] for v in summary["validations"]] == [3]
    assert summary["selection"]["by"] == "val_auc_adv" and summary["selection"]["step"] == 3
    assert summary["selection"]["value"] == pytest.approx(summary["validations"][0]["auc"])


def test_diverged_weights_are_no_candidate(splits):
    positives, negatives, _ = gat.class_view(splits.train, 0)
    trainer = gat.DetectorTrainer(tiny_preset(max_iters=1, every=1).detector_config(), positives, negatives)
    selector = detector_selection(DetectorValidation(positives[:8], negatives[:8], norm="linf", eps=0.1, rule="pgd",
                                                     steps=1, step_size=0.1), every=1)
    with torch.no_grad():
        next(trainer.model.parameters()).fill_(float("nan"))
    assert selector.judge(trainer) is None
    selector.on_fit_end(trainer)
    assert selector.history == [] and trainer.selection is None


# ------------------------------------------------------------------------------------------ resume
@pytest.fixture(scope="module")
def committee_run(tmp_path_factory) -> tuple:
    """A committee run folder with the classifier and detector 0 trained (2 iterations), as ``(folder, preset)``."""
    out = tmp_path_factory.mktemp("committee")
    preset = tiny_preset(max_iters=2, every=2)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert run_gat_train(out, preset=preset, classes=[0], device="cpu", log=False, report=False) is None
    finally:
        torch.set_num_threads(threads)
    return out, preset


def test_resume_with_the_same_settings_and_a_new_budget_is_accepted(committee_run):
    out, preset = committee_run
    assert run_gat_train(out, preset=preset, classes=[0], resume=True, device="cpu", log=False, report=False,
                         overrides={"max_iters": 4, "progress": False}) is None


#: A changed resume request (keywords of run_gat_train, from the run's preset) and the refusal it must get.
REFUSALS = {
    "preset": (lambda p: dict(preset=dataclasses.replace(p, name="other")),
               "was trained with preset 'tiny', not 'other'; use a new --out or the same preset"),
    "data": (lambda p: dict(preset=p, data="mnist"),
             "was trained on data 'digits', not 'mnist'; use a new --out or the same data"),
    "override": (lambda p: dict(preset=p, overrides={"lr": 0.5}),
                 r"cannot resume with lr=0\.5: .*\(saved: lr=0\.01\).*use a new --out"),
    "preset setting": (lambda p: dict(preset=dataclasses.replace(p, train={**p.train, "batch_size": 16})),
                       r"cannot resume with batch_size=16: .*\(saved: batch_size=8\)"),
    "seed": (lambda p: dict(preset=p, seed=1), r"cannot resume with seed=100: .*\(saved: seed=0\)"),
}


@pytest.mark.parametrize("changed", list(REFUSALS))
def test_resume_refuses_another_preset_data_or_setting_naming_it(committee_run, changed):
    """Refused before anything is trained, also for a detector that has not started (d_1): the committee would
    mix detectors of two set-ups."""
    out, preset = committee_run
    request, refusal = REFUSALS[changed]
    before = {str(p): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ValueError, match=refusal) as refused:
        run_gat_train(out, classes=[1], resume=True, device="cpu", log=False, report=False, **request(preset))
    assert "\n" not in str(refused.value)
    assert {str(p): p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing touched


def test_train_detector_refuses_a_non_resumable_override_instead_of_dropping_it(tmp_path, splits):
    preset = tiny_preset(max_iters=2, every=2)
    gat.train_detector(preset, 0, splits, tmp_path, log=False)
    (gat.detector_dir(tmp_path, 0) / "done.json").unlink()  # as if it had stopped after its last checkpoint
    with pytest.raises(ValueError, match=r"cannot resume with k_max=2: .*a resume may change only"):
        gat.train_detector(preset, 0, splits, tmp_path, resume=True, overrides={"k_max": 2}, log=False)
    with pytest.raises(ValueError, match="was trained with preset 'tiny', not 'other'"):
        gat.train_detector(dataclasses.replace(preset, name="other"), 0, splits, tmp_path, resume=True, log=False)
    summary = gat.train_detector(preset, 0, splits, tmp_path, resume=True, overrides={"max_iters": 3}, log=False)
    assert summary["iterations"] == 3 and [v["step"] for v in summary["validations"]] == [3]
    done = json.loads((gat.detector_dir(tmp_path, 0) / "done.json").read_text())
    assert done["iterations"] == 3
