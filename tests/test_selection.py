"""Model selection on a validation metric (atebm.training.SelectBest): the final weights are a candidate however
training ends, the kept weights are those of the best value under the declared goal and tie rule, the weight average
is judged when the run keeps one, and a resumed run starts from its saved selection."""
from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from torch import nn

from atebm.training import SelectBest, StopTraining, Trainer, load_model


class Scripted:
    """A validation metric that returns hand-chosen values in call order and records the weights it was given."""

    def __init__(self, values: list[Any]) -> None:
        self.values = list(values)
        self.judged: list[dict[str, torch.Tensor]] = []

    def __call__(self, model: nn.Module) -> Any:
        self.judged.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return self.values[len(self.judged) - 1]


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture
def tiny_run(toy2d, config_2d):
    """``tiny_run(callbacks, out_dir=None, **config) -> Trainer``: a few iterations of a small 2D MLP at K = 0, a
    log line every iteration."""
    data, p0 = toy2d(64)

    def make(callbacks, out_dir=None, **changes) -> Trainer:
        config = config_2d(**{"max_iters": 5, "log_every": 1, "k_max": 0, "batch_size": 16, "ckpt_every": 100,
                              **changes})
        return Trainer(config, data, p0, out_dir=out_dir, callbacks=callbacks)

    return make


def stop_at(step: int):
    def callback(trainer: Trainer, record: dict[str, Any]) -> None:
        if trainer.step == step:
            raise StopTraining(f"test stop at {step}")
    return callback


# ------------------------------------------------------------------------------------------ final candidate
@pytest.mark.parametrize("ending", ["budget", "stopped"])
def test_the_final_weights_are_a_candidate_when_training_stops_between_validations(tmp_path, tiny_run, ending):
    """Validation every 2 iterations; training ends at 5 (budget; the last periodic save also falls on 5) or is
    stopped at 3: the final weights are judged, selected as the best, and written to model.pt."""
    metric = Scripted([1.0, 2.0, 3.0])                       # each candidate better than the one before
    selector = SelectBest(metric, by="val", goal="max", every=2)
    callbacks = [selector] if ending == "budget" else [selector, stop_at(3)]
    trainer = tiny_run(callbacks, out_dir=tmp_path, ckpt_every=5)
    trainer.fit()
    final = 5 if ending == "budget" else 3
    assert [e["step"] for e in selector.history] == ([2, 4, 5] if ending == "budget" else [2, 3])
    assert selector.best is not None and selector.best.step == final
    assert trainer.selection is not None and trainer.selection["step"] == final
    saved = load_model(tmp_path)
    assert saved.meta["selection"]["step"] == final and saved.meta["selection"]["by"] == "val"
    assert same(saved.state_dict(), trainer.model.state_dict())


def test_final_weights_already_judged_are_not_judged_twice(tiny_run):
    metric = Scripted([1.0, 2.0])
    selector = SelectBest(metric, by="val", goal="max", every=2)
    tiny_run([selector], max_iters=4).fit()
    assert [e["step"] for e in selector.history] == [2, 4] and len(metric.judged) == 2


# ------------------------------------------------------------------------------------------ the rule
@pytest.mark.parametrize("goal,ties,values,chosen", [
    ("min", "later", [3.0, 1.0, 2.0, 1.0], 3),               # the lowest, the later of two equal ones
    ("min", "earlier", [3.0, 1.0, 2.0, 1.0], 1),             # the lowest, the earlier of two equal ones
    ("max", "later", [0.2, 0.9, math.nan, 0.5], 1),          # the highest; NaN is never chosen
    ("max", "later", [math.nan, 0.1, 0.3, 0.2], 2),          # not even as the first candidate
])
def test_the_kept_weights_are_those_with_the_best_value(tiny_run, goal, ties, values, chosen):
    metric = Scripted(values)
    selector = SelectBest(metric, by="val", goal=goal, every=1, ties=ties)
    trainer = tiny_run([selector], max_iters=4)
    trainer.fit()
    weights, selection = trainer.model_weights()
    assert selection["step"] == chosen + 1 and selection["value"] == values[chosen]
    assert selector.best is not None and selector.best.step == chosen + 1
    assert same(weights, metric.judged[chosen])
    assert same(weights, trainer.model.state_dict()) == (chosen == 3)  # the last weights are step 4's
    assert [e["val"] for e in selector.history] == pytest.approx(values, nan_ok=True)
    assert [r["val"] for r in trainer.history] == pytest.approx(values, nan_ok=True)  # in the log records too


def test_a_tie_on_the_criterion_is_broken_by_the_second_value(tiny_run):
    values = [{"auc": 0.8, "loss": 0.5}, {"auc": 0.9, "loss": 0.7}, {"auc": 0.9, "loss": 0.6},
              {"auc": 0.9, "loss": 0.65}]
    selector = SelectBest(Scripted(values), by="auc", goal="max", then=("loss", "min"), every=1)
    trainer = tiny_run([selector], max_iters=4)
    trainer.fit()
    assert trainer.selection is not None and trainer.selection["step"] == 3 and trainer.selection["by"] == "auc"


# ------------------------------------------------------------------------------------------ weight average
def test_the_weight_average_is_judged_and_kept_when_the_run_keeps_one(tiny_run):
    snapshots: list[dict[str, dict[str, torch.Tensor]]] = []

    def snapshot(trainer: Trainer, record: dict[str, Any]) -> None:
        assert trainer.ema is not None
        snapshots.append({"ema": {k: v.clone() for k, v in trainer.ema.items()},
                          "raw": {k: v.clone() for k, v in trainer.model.state_dict().items()}})

    metric = Scripted([2.0, 1.0, 3.0, 4.0])
    selector = SelectBest(metric, by="val", goal="min", every=1)
    trainer = tiny_run([snapshot, selector], max_iters=4, ema_decay=0.9)
    trainer.fit()
    assert all(same(judged, snap["ema"]) for judged, snap in zip(metric.judged, snapshots, strict=True))
    assert not any(same(judged, snap["raw"]) for judged, snap in zip(metric.judged[1:], snapshots[1:]))  # ema_1 = θ_1
    weights, selection = trainer.model_weights()
    assert selection["weights"] == "ema" and selection["step"] == 2 and same(weights, snapshots[1]["ema"])
    assert all(e["weights"] == "ema" for e in selector.history)


@pytest.mark.parametrize("ema_decay", [None, 0.9])
def test_trace_both_measures_the_raw_weights_beside_the_average(tiny_run, ema_decay):
    def metric(model: nn.Module) -> float:  # a value that tells the weights apart
        return float(sum(p.detach().sum() for p in model.parameters()))

    selector = SelectBest(metric, by="val", goal="min", every=2, trace_both=True)
    trainer = tiny_run([selector], max_iters=2, ema_decay=ema_decay)
    trainer.fit()
    entry = selector.history[-1]
    raw = metric(trainer.model)
    assert entry["val_raw"] == pytest.approx(raw)
    if ema_decay is None:
        assert set(entry) == {"step", "k", "weights", "val", "val_raw"} and entry["val"] == entry["val_raw"]
    else:
        assert set(entry) == {"step", "k", "weights", "val", "val_raw", "val_ema"}
        assert entry["val"] == entry["val_ema"] == pytest.approx(metric(trainer.ema_model()))
        assert entry["val_ema"] != pytest.approx(raw)


def test_raw_weights_are_judged_on_request_even_with_an_average(tiny_run):
    metric = Scripted([1.0, 2.0])
    selector = SelectBest(metric, by="val", goal="max", every=1, weights="raw")
    trainer = tiny_run([selector], max_iters=2, ema_decay=0.9)
    trainer.fit()
    assert same(metric.judged[-1], trainer.model.state_dict())
    assert trainer.selection is not None and trainer.selection["weights"] == "raw"


# ------------------------------------------------------------------------------------------ resume, misuse
def test_a_resumed_run_keeps_its_saved_selection_until_a_candidate_beats_it(tmp_path, toy2d, tiny_run):
    first = SelectBest(Scripted([5.0, 1.0]), by="val", goal="min", every=1)
    tiny_run([first], out_dir=tmp_path, max_iters=2).fit()
    data, p0 = toy2d(64)
    metric = Scripted([2.0, 3.0, 0.5])
    resumed = Trainer.resume(tmp_path / "checkpoint.pt", data, p0, overrides={"max_iters": 5},
                             callbacks=[stop_at(4), SelectBest(metric, by="val", goal="min", every=1)])
    resumed.fit()
    assert resumed.selection is not None and resumed.selection["step"] == 2  # 2.0 and 3.0 do not beat 1.0
    assert load_model(tmp_path).meta["selection"]["step"] == 2


def test_a_period_off_the_log_lines_is_refused(tiny_run):
    selector = SelectBest(Scripted([1.0]), by="val", goal="max", every=3)
    with pytest.raises(ValueError, match="validation every 3 iterations must be a multiple of log_every 2"):
        tiny_run([selector], log_every=2).fit()


@pytest.mark.parametrize("options,message", [
    ({"goal": "lowest"}, "goal must be one of"),
    ({"every": 0}, "every must be an integer >= 1"),
    ({"then": ("loss", "down")}, "then's goal must be one of"),
])
def test_bad_settings_are_refused_naming_them(options, message):
    with pytest.raises(ValueError, match=message):
        SelectBest(lambda m: 0.0, **{"by": "val", "goal": "max", "every": 1, **options})


def test_offer_keeps_a_copy_of_the_best_weights_and_refuses_non_finite_ones():
    model = nn.Linear(2, 2)
    selector = SelectBest(Scripted([0.5, 0.25]), by="val", goal="max", every=1)
    assert selector.offer(model, 1, {"loss": 0.3}) == {"step": 1, "loss": 0.3, "val": 0.5}
    kept = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    selector.offer(model, 2)
    assert selector.best is not None and selector.best.step == 1 and selector.best.weights is not None
    assert same(selector.best.weights, kept)
    with torch.no_grad():
        model.weight.fill_(float("nan"))
    assert selector.offer(model, 3) is None and len(selector.history) == 2


def test_a_metric_without_the_criterion_is_refused_naming_it():
    selector = SelectBest(lambda m: {"loss": 1.0}, by="auc", goal="max", every=1)
    with pytest.raises(ValueError, match=r"returned \['loss'\], without \['auc'\]"):
        selector.offer(nn.Linear(2, 2), 1)
