"""In- and out-distribution AT (T Eq. 3.45) machinery: the trainer's curriculum of the in-distribution radius
(``indist_at_eps_start`` -> ``indist_at_eps`` over ``indist_at_warmup`` iterations) and the plateau restart of GAT
detector training (a detector stuck at the 2 ln 2 loss is trained again from a new seed, then stops the run)."""
from __future__ import annotations

import copy
import json

import pytest
import torch

import atebm.gat as gat
import atebm.gat.training as gat_training
from atebm import TrainConfig, Trainer
from atebm.monitor import FailureMonitor

pytestmark = pytest.mark.usefixtures("one_thread")

SIZE = 8


# ------------------------------------------------------------------------------------------ the curriculum
def _ramp(config_2d, **changes) -> TrainConfig:
    return config_2d(k_max=0, indist_at_steps=3, indist_at_eps=0.2, indist_at_step_size=0.1, pgd_norm="linf",
                     indist_at_eps_start=0.0, indist_at_warmup=20, max_iters=30, log_every=5, **changes)


def test_the_radius_follows_the_line_to_its_final_value_at_the_end_of_warm_up(toy2d, config_2d, box_2d):
    config = _ramp(config_2d)
    assert config.indist_radius(0) == (0.0, 0.0)
    assert config.indist_radius(10) == pytest.approx((0.1, 0.05))          # the step size keeps step / eps = 0.5
    assert config.indist_radius(20) == (0.2, 0.1) and config.indist_radius(1000) == (0.2, 0.1)
    data, p0 = toy2d(256)
    trainer = Trainer(config, data, p0, extra=box_2d)
    history = trainer.fit()
    logged = [(r["step"], r["indist_eps"]) for r in history]
    # each log line holds the radius of its last iteration, the one after step - 1 completed iterations
    assert logged == [(step, pytest.approx(min(0.2, 0.2 * (step - 1) / 20))) for step in (5, 10, 15, 20, 25, 30)]
    assert logged[-1][1] == 0.2

    def moved_by(t: Trainer) -> torch.Tensor:
        clean = data[copy.deepcopy(t.data_stream).next(t.local_batch)]
        return (t.train_step()["_x_data"] - clean).abs().amax(dim=1)

    start = Trainer(config, data, p0, extra=box_2d)
    assert torch.equal(moved_by(start), torch.zeros(config.batch_size)), "radius 0: the batch is used as drawn"
    trainer.step = 10                                                   # mid-ramp: radius 0.1
    size = moved_by(trainer)
    assert float(size.max()) <= 0.1 + 1e-6 and float(size.max()) > 0.09, "the attack reaches the current ball"
    trainer.step = 20                                                   # the end of warm-up: the final radius
    size = moved_by(trainer)
    assert float(size.max()) <= 0.2 + 1e-6 and float(size.max()) > 0.19


def test_without_a_curriculum_the_weights_are_those_of_a_fixed_radius(tiny_images, image_config, assert_same_state):
    data, p0 = tiny_images()
    fixed = dict(indist_at_steps=2, indist_at_eps=0.1, indist_at_step_size=0.05, max_iters=8)
    default = Trainer(image_config(**fixed), data, p0)
    default.fit()
    for explicit in (dict(indist_at_eps_start=0.1), dict(indist_at_eps_start=0.1, indist_at_warmup=50)):
        same = Trainer(image_config(**fixed, **explicit), data, p0)
        same.fit()
        assert_same_state(default.model.state_dict(), same.model.state_dict(), f"default vs {explicit}")
    ramped = Trainer(image_config(**fixed, indist_at_eps_start=0.0, indist_at_warmup=8), data, p0)
    ramped.fit()
    assert any(not torch.equal(a, b) for a, b in zip(default.model.state_dict().values(),
                                                       ramped.model.state_dict().values(), strict=True))


def test_a_resumed_run_continues_the_curriculum_exactly(tmp_path, tiny_images, image_config, assert_same_state):
    data, p0 = tiny_images()
    config = image_config(indist_at_steps=2, indist_at_eps=0.2, indist_at_step_size=0.1, indist_at_eps_start=0.0,
                          indist_at_warmup=18)
    full = Trainer(config, data, p0, out_dir=tmp_path / "full")
    full.fit()
    part = Trainer(config.replace(max_iters=12), data, p0, out_dir=tmp_path / "part")
    part.fit()
    del part
    resumed = Trainer.resume(tmp_path / "part" / "checkpoint.pt", data, p0, overrides={"max_iters": 24})
    resumed.fit()
    assert_same_state(full.model.state_dict(), resumed.model.state_dict(), "resumed vs uninterrupted model")
    assert [r["indist_eps"] for r in resumed.history] == [r["indist_eps"] for r in full.history]
    with pytest.raises(ValueError, match="indist_at_warmup"):
        Trainer.resume(tmp_path / "part" / "checkpoint.pt", data, p0, overrides={"indist_at_warmup": 4})


def test_a_curriculum_is_validated_when_configured():
    with pytest.raises(ValueError, match="indist_at_eps_start <= indist_at_eps"):
        TrainConfig(max_iters=1, indist_at_eps=0.1, indist_at_eps_start=0.2, indist_at_warmup=5)
    with pytest.raises(ValueError, match="set indist_at_warmup"):
        TrainConfig(max_iters=1, indist_at_eps=0.1, indist_at_eps_start=0.0)
    with pytest.raises(ValueError, match="indist_at_warmup"):
        TrainConfig(max_iters=1, indist_at_warmup=-1)


def test_mnist_inout_ramps_eps_1_from_0_to_0_3():
    config = gat.get_gat_preset("mnist-inout").detector_config()
    assert config.pgd_eps == 0.3 and config.indist_at_eps == 0.3 and config.indist_radius(0)[0] == 0.0
    assert config.indist_radius(config.indist_at_warmup) == (0.3, config.indist_at_step_size)
    assert config.indist_at_steps * config.indist_at_step_size >= config.indist_at_eps   # reaches its ball
    detection = gat.get_gat_preset("mnist").detector_config()
    assert detection.indist_radius(0) == (0.1, 0.03), "the detection preset keeps its fixed radius"


# ------------------------------------------------------------------------------------------ plateau restarts
def _tiny_preset(**train) -> gat.GatPreset:
    return gat.GatPreset(
        name="tiny", description="test", data="digits", norm="linf", eps=0.1,
        train=dict(model=gat.detector_model_spec(SIZE, 1, widths=(2, 3), hidden=8), batch_size=8, lr=1e-9,
                   k_start=1, k_max=1, step_size=0.1, max_iters=6, log_every=2, ckpt_every=2, progress=False,
                   **train),
        train_attack="pgd", validation=dict(rule="pgd", steps=1, step_size=0.1, negatives=10, every=2),
        classifier=dict(epochs=1, batch_size=32, lr=1e-3), hardware="test", wall_clock="test", size=SIZE)


def _plateau_monitor() -> FailureMonitor:
    """The detectors' monitor checking from the first log line, with a band that holds the initial loss of a
    tiny detector (1.39-1.44); at lr 1e-9 it cannot leave it: a detector held on the plateau."""
    return FailureMonitor(snapshot=False, plateau_after=0, plateau_window=2, plateau_loss_band=0.1)


@pytest.mark.filterwarnings("ignore:training failure signature:RuntimeWarning")
def test_a_plateau_detector_is_restarted_once_from_a_new_seed_then_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(gat_training, "detector_monitor", _plateau_monitor)
    splits = gat.labelled_splits("digits", size=SIZE)
    with pytest.raises(RuntimeError, match=r"class-3 detector d_3 stayed at the 2 ln 2 loss plateau in 2 runs.*"
                                           r"indist_at_eps_start=0"):
        gat.train_detector(_tiny_preset(), 3, splits, tmp_path, log=False)
    run = gat.detector_dir(tmp_path, 3)
    attempts = [json.loads((run / f"plateau_attempt_{n}" / "monitor.json").read_text()) for n in (0, 1)]
    assert [a["seed"] for a in attempts] == [3, 3 + 100_000], "the restart draws a new seed"
    assert all(a["iterations"] == 4 for a in attempts), "flagged after two log lines at the plateau"
    assert all((run / a["folder"] / "log.jsonl").exists() for a in attempts)
    assert not (run / "done.json").exists(), "a plateau detector is never shipped"
    with pytest.raises(RuntimeError, match="d_3 stayed at the 2 ln 2 loss plateau"):  # a resume does not retry
        gat.train_detector(_tiny_preset(), 3, splits, tmp_path, resume=True, log=False)
    with pytest.raises(ValueError, match="earlier run's attempts"):
        gat.train_detector(_tiny_preset(), 3, splits, tmp_path, log=False)


@pytest.mark.filterwarnings("ignore:training failure signature:RuntimeWarning")
def test_a_restart_that_trains_is_recorded_in_done_json(tmp_path, monkeypatch):
    built: list[FailureMonitor] = []
    healthy = gat_training.detector_monitor

    def first_on_the_plateau() -> FailureMonitor:
        built.append(_plateau_monitor() if not built else healthy())
        return built[-1]

    monkeypatch.setattr(gat_training, "detector_monitor", first_on_the_plateau)
    splits = gat.labelled_splits("digits", size=SIZE)
    summary = gat.train_detector(_tiny_preset(), 1, splits, tmp_path, log=False)
    assert len(built) == 2 and built[0].stopped is not None and built[1].stopped is None
    assert summary["iterations"] == 6 and summary["monitor"].startswith("healthy")
    [restart] = summary["plateau_restarts"]
    assert restart["attempt"] == 0 and restart["seed"] == 1 and "2 ln 2" in restart["message"]
    run = gat.detector_dir(tmp_path, 1)
    assert json.loads((run / "done.json").read_text())["plateau_restarts"] == [restart]
    saved = torch.load(run / "checkpoint.pt", weights_only=False)
    assert saved["config"]["seed"] == 1 + 100_000 and saved["extra"]["gat"]["attempt"] == 1
    gat_training.check_detector_resume(run, _tiny_preset(), 1, splits.source)   # the restart's seed is the expected one
    assert gat.train_detector(_tiny_preset(), 1, splits, tmp_path, resume=True, log=False) == \
        json.loads(json.dumps(summary))


def test_healthy_detectors_are_not_checked_before_iteration_100():
    monitor = gat_training.detector_monitor()
    assert monitor.plateau_after == 100 and monitor.plateau_window == 3 and monitor.snapshot is False
