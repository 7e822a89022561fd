"""The failure-mode monitor (G App. I): unit checks on log records, and a healthy and a failing training run at
small scale (MNIST digits 0-4 against digits 5-9 at 12x12: a huge PGD step size provokes the failure)."""
from __future__ import annotations

import math
import warnings

import pytest
import torch

from atebm.monitor import (
    ATTACK_BEATEN_AT_K_MAX,
    EXPLODING_SCORES,
    NON_FINITE,
    PLATEAU,
    PLATEAU_LOSS,
    STEP_SIZE_TOO_LARGE,
    FailureMonitor,
)
from atebm.training import StopTraining

pytestmark = pytest.mark.usefixtures("one_thread")


class _Config:
    step_size = 2.0
    loss = "bce"


class _FakeTrainer:
    config = _Config()
    model = None
    out_dir = None
    history: list = []


def _record(step, k, loss, auc_adv, auc_clean, s_data=3.0, s_adv=-3.0):
    return {"step": step, "k": k, "loss": loss, "auc_adv": auc_adv, "auc_clean": auc_clean, "score_data": s_data,
            "score_adv": s_adv}


def _feed(monitor, records):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for record in records:
            monitor(_FakeTrainer(), record)


def test_healthy_records_raise_nothing():
    monitor = FailureMonitor()
    # G App. I, healthy: the loss rises toward log 4 and AUC(data vs perturbed p0) drifts to 0.5
    _feed(monitor, [_record(10 * i, i, 0.5 + 0.09 * i, 1 - 0.05 * i, 0.97) for i in range(10)])
    assert monitor.status == "healthy" and monitor.events == []
    assert "healthy (10 log lines" in monitor.summary()["status_text"]


def test_outlier_exposure_at_k0_is_not_a_failure():
    monitor = FailureMonitor()
    _feed(monitor, [_record(10, 0, 0.5, 0.95, 0.99), _record(20, 0, 0.01, 1.0, 0.6), _record(30, 0, 0.0, 1.0, 0.6)])
    assert monitor.status == "healthy"


def test_step_size_signature_warns_then_stops_after_patience():
    monitor = FailureMonitor(patience=3)
    good = [_record(10, 0, 1.0, 0.9, 0.95), _record(20, 1, 0.9, 0.95, 0.96)]
    _feed(monitor, good)
    bad = [_record(30 + 10 * i, 2, 0.01, 1.0, 0.55) for i in range(3)]
    with pytest.warns(RuntimeWarning, match="step size is too large"):
        monitor(_FakeTrainer(), bad[0])
    monitor(_FakeTrainer(), bad[1])                       # no stop yet, and no repeated warning
    with pytest.raises(StopTraining, match="halve the PGD step size .now 2: try 1."):
        monitor(_FakeTrainer(), bad[2])
    assert monitor.status == "stopped" and monitor.last_good_step == 20
    assert [e["kind"] for e in monitor.events] == [STEP_SIZE_TOO_LARGE] * 3
    summary = monitor.summary()
    assert summary["stopped"]["streak"] == 3 and len(summary["events"]) == 2   # first of the streak + the stop


def test_a_broken_streak_restarts_the_count():
    monitor = FailureMonitor(patience=2)
    _feed(monitor, [_record(10, 1, 0.8, 0.9, 0.95), _record(20, 2, 0.01, 1.0, 0.5), _record(30, 2, 0.6, 0.9, 0.93),
                    _record(40, 2, 0.01, 1.0, 0.5)])
    assert monitor.status == "warned" and len(monitor.events) == 2


class _CappedConfig(_Config):
    k_max = 16


class _CappedTrainer(_FakeTrainer):
    config = _CappedConfig()


def test_the_attack_beaten_at_k_max_is_warned_and_never_stops_training():
    """The fashion preset's failure (benchmarks/results/fashion/README.md): at K = k_max the attacked p_0 becomes
    separable (AUC 0.999) with the loss near 0.57, not 0; warned once per streak, recorded, never a stop. The same
    numbers below k_max are what progressive K answers (not flagged), and a loss at 0 is G App. I's signature."""
    monitor = FailureMonitor(patience=2)
    healthy = [_record(4000, 16, 1.2, 0.76, 1.0), _record(4400, 16, 1.2, 0.78, 1.0)]
    beaten = [_record(5600 + 400 * i, 16, 0.57, 0.999, 1.0) for i in range(6)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for record in healthy:
            monitor(_CappedTrainer(), record)
    with pytest.warns(RuntimeWarning, match="attack no longer fools the network"):
        monitor(_CappedTrainer(), beaten[0])
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)  # one warning per streak
        for record in beaten[1:]:
            monitor(_CappedTrainer(), record)  # six lines, patience 2: no StopTraining
    assert monitor.status == "warned" and monitor.stopped is None and monitor.last_good_step == 4400
    assert {e["kind"] for e in monitor.events} == {ATTACK_BEATEN_AT_K_MAX} and len(monitor.events) == 6
    assert "enlarge p_0" in monitor.summary()["status_text"]

    below_cap = FailureMonitor()
    for i in range(4):
        below_cap(_CappedTrainer(), _record(100 * i, 8, 0.57, 0.999, 1.0))
    assert below_cap.status == "healthy"
    bounded = FailureMonitor()
    bounded_trainer = _CappedTrainer()
    bounded_trainer.config = type("_Bounded", (_CappedConfig,), {"pgd_eps": 0.3})()
    for i in range(4):
        bounded(bounded_trainer, _record(100 * i, 16, 0.57, 0.999, 1.0))
    assert bounded.status == "healthy"  # a GAT detector beating its bounded attack
    collapsed = FailureMonitor(patience=5)
    _feed(collapsed, [_record(10, 16, 1.0, 0.8, 0.95)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        collapsed(_CappedTrainer(), _record(20, 16, 0.01, 1.0, 0.5))
    assert [e["kind"] for e in collapsed.events] == [STEP_SIZE_TOO_LARGE]


def test_non_finite_stops_at_once_and_exploding_scores_are_flagged():
    monitor = FailureMonitor()
    with pytest.raises(StopTraining), pytest.warns(RuntimeWarning, match="non-finite loss"):
        monitor(_FakeTrainer(), _record(10, 1, math.nan, 0.9, 0.9))
    assert monitor.events[0]["kind"] == NON_FINITE
    monitor = FailureMonitor(score_limit=100, patience=2)
    _FakeTrainer.config.loss = "ebm"
    try:
        _feed(monitor, [_record(10, 1, -500.0, 0.9, 0.9, s_data=400.0, s_adv=-300.0)])
        assert monitor.events[0]["kind"] == EXPLODING_SCORES and "loss='bce'" in monitor.events[0]["suggestion"]
        with pytest.raises(StopTraining):
            _feed(monitor, [_record(20, 1, -900.0, 0.9, 0.9, s_data=800.0, s_adv=-700.0)])
    finally:
        _FakeTrainer.config.loss = "bce"


def test_report_section(tmp_path):
    from atebm.report import Report

    monitor = FailureMonitor(stop=False)
    _feed(monitor, [_record(10, 1, 0.9, 0.9, 0.95), _record(20, 2, 0.01, 1.0, 0.5)])
    report = Report.open(tmp_path)
    monitor.add_to_report(report)
    report.save()
    page = (tmp_path / "report.html").read_text()
    assert "Training monitor: warned" in page and "halve the PGD step size" in page


# ------------------------------------------------------------------------------------------------ real training
def _digit_halves():
    from atebm.data import load_dataset, resize

    mnist = load_dataset("mnist", split="train")
    return resize(mnist.x[mnist.y < 5], 12), resize(mnist.x[mnist.y >= 5], 12)


def _train(step_size, out_dir):
    from atebm import TrainConfig, Trainer

    data, p0 = _digit_halves()
    config = TrainConfig(model={"arch": "convnet", "kwargs": {"in_channels": 1, "width": 8}, "mean": 0.5, "std": 0.5},
                         batch_size=32, lr=2e-3, k_max=4, epochs_per_k=0.1, auc_threshold=0.8, auc_window=5,
                         step_size=step_size, final_iters=60, log_every=5, ckpt_every=25, progress=False, seed=0)
    monitor = FailureMonitor()
    trainer = Trainer(config, data, p0, callbacks=[monitor], out_dir=out_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        trainer.fit()
    return trainer, monitor


def test_healthy_and_failing_training_runs(tmp_path):
    from atebm import load

    healthy, healthy_monitor = _train(0.3, tmp_path / "healthy")
    assert healthy_monitor.status == "healthy", healthy_monitor.events
    assert healthy.stop_reason == "final-stage budget reached" and healthy.k == 4
    last = healthy.history[-1]
    assert last["loss"] > 1.2 and last["auc_clean"] > 0.8       # G App. I: loss rises, clean p0 still separated

    failing, monitor = _train(30.0, tmp_path / "failing")
    assert monitor.status == "stopped" and failing.stop_reason.startswith("stopped")
    assert monitor.stopped["kind"] == STEP_SIZE_TOO_LARGE and "try 15" in monitor.stopped["suggestion"]
    history = failing.history
    assert history[-1]["loss"] < 0.05 and history[-1]["auc_adv"] > 0.99
    assert history[-1]["auc_clean"] < max(r["auc_clean"] for r in history) - 0.15
    assert failing.step < healthy.step, "the failing run ends early"
    good = load(tmp_path / "failing" / "checkpoint_last_good.pt")
    x = torch.rand(4, 1, 12, 12)
    assert torch.allclose(good(x), failing.model.eval()(x)), "trainer.model holds the last healthy weights"
    assert (tmp_path / "failing" / "checkpoint.pt").exists()     # the trainer's periodic checkpoint stays


# ------------------------------------------------------------------------------------------------ per objective
class _Objective:
    def __init__(self, kind):
        self.kind = kind

    def state_dict(self):
        return {}


class _GanTrainer(_FakeTrainer):
    def __init__(self, kind):
        self.objective = _Objective(kind)


def test_a_gan_is_not_checked_for_the_pgd_signature_nor_told_to_lower_a_pgd_step():
    """The numbers of G App. I's step-size signature in a DSGAN or SSL run (where k, auc_adv and auc_clean are not
    even logged) raise nothing, and a divergence is answered with the objective's own knobs."""
    for kind, scores, knob in (("dsgan", ("score_data", "score_fake"), "g_lr"),
                               ("dsgan-ssl", ("score_unl", "score_gen"), "critic_lr")):
        monitor = FailureMonitor(patience=1)
        records = [_record(10, 1, 1.0, 0.9, 0.95), _record(20, 2, 0.01, 1.0, 0.5), _record(30, 2, 0.01, 1.0, 0.5)]
        with warnings.catch_warnings():
            warnings.simplefilter("error", RuntimeWarning)
            for record in records:
                monitor(_GanTrainer(kind), record)
        assert monitor.status == "healthy" and monitor.objective == kind
        with pytest.raises(StopTraining, match=knob), pytest.warns(RuntimeWarning, match="non-finite loss_g"):
            monitor(_GanTrainer(kind), {"step": 40, "loss": 0.7, "loss_g": math.nan})
        assert monitor.events[-1]["kind"] == NON_FINITE and "PGD" not in monitor.events[-1]["suggestion"]
        monitor = FailureMonitor(stop=False, score_limit=100)
        with pytest.warns(RuntimeWarning, match=f"{scores[1]}.* above 100"):
            monitor(_GanTrainer(kind), {"step": 10, "loss": 0.1, scores[0]: 5.0, scores[1]: -500.0})
        assert monitor.events[0]["kind"] == EXPLODING_SCORES and "PGD" not in monitor.events[0]["suggestion"]


def test_the_report_names_the_checks_of_the_objective(tmp_path):
    from atebm.report import Report

    monitor = FailureMonitor()
    monitor(_GanTrainer("dsgan"), {"step": 10, "loss": 0.7, "score_data": 1.0, "score_fake": -1.0})
    report = Report.open(tmp_path)
    monitor.add_to_report(report)
    report.save()
    page = (tmp_path / "report.html").read_text()
    assert "objective dsgan" in page and "step-size signature" not in page


# ------------------------------------------------------------------------------------------ the 2 ln 2 plateau
class _InOutConfig(_Config):
    indist_at_warmup = 200


class _InOutTrainer(_FakeTrainer):
    config = _InOutConfig()


def _plateau_log(steps, auc_adv=0.5):
    """Log lines of a detector held at the loss of a constant classifier (2 ln 2, within +-0.004)."""
    return [_record(step, 20, PLATEAU_LOSS + 0.004 * (-1) ** i, auc_adv, 0.5, s_data=0.01, s_adv=0.0)
            for i, step in enumerate(steps)]


def test_a_log_held_at_2_ln_2_is_flagged_after_the_warm_up_and_its_window():
    assert PLATEAU_LOSS == pytest.approx(1.3863, abs=1e-4)
    monitor = FailureMonitor(plateau_after=100, plateau_window=3)
    lines = _plateau_log(range(50, 450, 50))          # steps 50 ... 400
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        for record in lines[:4]:                      # up to step 200: inside plateau_after and the warm-up
            monitor(_InOutTrainer(), record)
    assert monitor.events == []
    with pytest.warns(RuntimeWarning, match="2 ln 2 plateau"):
        monitor(_InOutTrainer(), lines[4])             # step 250
    monitor(_InOutTrainer(), lines[5])
    with pytest.raises(StopTraining, match="plateau persisted for 3 log line.*indist_at_eps_start=0"):
        monitor(_InOutTrainer(), lines[6])             # step 350: the third line in a row
    assert monitor.stopped["kind"] == PLATEAU and monitor.stopped["step"] == 350
    assert [e["kind"] for e in monitor.events] == [PLATEAU] * 3
    below = FailureMonitor(plateau_after=0, plateau_window=1)   # an AUC below chance (the attacks win) counts too
    with pytest.raises(StopTraining), pytest.warns(RuntimeWarning, match="2 ln 2 plateau"):
        below(_FakeTrainer(), _plateau_log([10], auc_adv=0.02)[0])


def test_a_healthy_detector_and_unbounded_binary_at_are_not_flagged():
    monitor = FailureMonitor(plateau_after=0, plateau_window=2)
    learning = [_record(50 * i, 20, 1.39 - 0.1 * i, 0.5 + 0.06 * i, 0.9) for i in range(1, 8)]
    separating = _plateau_log(range(400, 600, 50), auc_adv=0.9)   # 2 ln 2 loss but the scores separate
    _feed(monitor, learning + separating)
    assert monitor.status == "healthy" and monitor.events == []
    off = FailureMonitor()              # default: no plateau check (E's binary AT approaches it as K grows)
    _feed(off, _plateau_log(range(50, 1000, 50)))
    assert off.status == "healthy"
    ebm = FailureMonitor(plateau_after=0, plateau_window=1)
    _FakeTrainer.config.loss = "ebm"    # the logit-gap loss has no 2 ln 2 plateau
    try:
        _feed(ebm, _plateau_log(range(50, 300, 50)))
    finally:
        _FakeTrainer.config.loss = "bce"
    assert ebm.status == "healthy"


def test_the_report_names_the_plateau_check_when_it_is_on(tmp_path):
    from atebm.report import Report

    monitor = FailureMonitor(plateau_after=100, stop=False)
    _feed(monitor, _plateau_log([150]))
    assert monitor.status == "warned" and monitor.summary()["thresholds"]["plateau_after"] == 100
    report = Report.open(tmp_path)
    monitor.add_to_report(report)
    report.save()
    assert "2 ln 2 plateau" in (tmp_path / "report.html").read_text()
