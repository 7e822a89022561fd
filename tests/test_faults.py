"""Faults lose nothing: ``kill -9`` then ``--resume`` ends where an uninterrupted run ends; a crash leaves a log that
resumes cleanly; a pickle that would run code is refused and runs nothing; a read-only or full run folder gives a
clear error and keeps the previous checkpoint; a resume refuses overrides that would not continue the run exactly;
a run folder's ``model.pt`` is the run's one model."""
from __future__ import annotations

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import torch

import atebm
from atebm import Trainer
from atebm.cli import main
from atebm.training import CheckpointError, load_checkpoint

pytestmark = pytest.mark.usefixtures("one_thread")

#: Allowed in a resume: budgets and logging (what leaves an exact continuation exact).
RESUME_ALLOWED = ("max_iters", "final_iters", "final_epochs", "time_budget_s", "log_every", "ckpt_every", "progress")


def _state_of(path: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(path)["model"]


# ------------------------------------------------------------------------------------------------ kill -9, resume
#: The mnist preset's model on 256 digits against uniform noise, 60 iterations of batch 8: about 3 s of training.
KILL_RUN = ["max_iters=60", "ckpt_every=10", "log_every=5", "k_max=2", "epochs_per_k=0.05", "batch_size=8",
            "progress=false"]
KILL_SOURCES = ["data=mnist?split=train&n=256", "p0=uniform?n=512"]


@pytest.mark.slow
def test_kill_9_mid_run_then_resume_ends_with_the_uninterrupted_weights(tmp_path, assert_same_state):
    reference, run = tmp_path / "reference", tmp_path / "run"
    train = ["train", "--preset", "mnist", "--device", "cpu", "--threads", "1"]
    assert main([*train, "--out", str(reference), *KILL_RUN, *KILL_SOURCES]) == 0

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([sys.executable, "-m", "atebm", *train, "--out", str(run), *KILL_RUN, *KILL_SOURCES],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.monotonic() + 300
        while not (run / "checkpoint.pt").exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        process.kill()  # SIGKILL: no handler, no cleanup, no final save
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -9, f"the run ended before it was killed (rc {process.returncode}): {stderr[-2000:]}"
    killed_at = load_checkpoint(run / "checkpoint.pt")["trainer"]["step"]
    assert 10 <= killed_at < 60

    assert main([*train, "--out", str(run), "--resume", *KILL_SOURCES]) == 0
    final, expected = load_checkpoint(run / "checkpoint.pt"), load_checkpoint(reference / "checkpoint.pt")
    assert final["trainer"]["step"] == expected["trainer"]["step"] == 60
    assert final["trainer"]["k"] == expected["trainer"]["k"]
    assert_same_state(final["model"], expected["model"], f"resumed after kill -9 at step {killed_at}")
    assert_same_state(atebm.load_model(run).state_dict(), atebm.load_model(reference).state_dict(), "model.pt")


class _CrashAt:
    """A callback that fails like a crash (not StopTraining) on the log line of ``step``."""

    def __init__(self, step: int) -> None:
        self.step = step

    def __call__(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if record["step"] == self.step:
            raise RuntimeError("simulated crash")


def test_a_crash_after_logging_resumes_to_the_log_of_an_uninterrupted_run(tmp_path, toy2d, config_2d, box_2d):
    """Log lines written after the last checkpoint are redone by the resumed run: the log must not hold them
    twice (it equals the uninterrupted run's log, step by step and loss by loss)."""
    data, p0 = toy2d(256)
    config = config_2d(max_iters=30, log_every=5, ckpt_every=10)
    Trainer(config, data, p0, out_dir=tmp_path / "full", extra=box_2d).fit()
    crashing = Trainer(config, data, p0, out_dir=tmp_path / "run", extra=box_2d, callbacks=[_CrashAt(15)])
    with pytest.raises(RuntimeError, match="simulated crash"):
        crashing.fit()
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["trainer"]["step"] == 10
    Trainer.resume(tmp_path / "run" / "checkpoint.pt", data, p0).fit()

    def log(folder: str) -> list[tuple[int, float]]:
        lines = (tmp_path / folder / "log.jsonl").read_text().splitlines()
        return [(record["step"], record["loss"]) for record in map(json.loads, lines)]

    assert log("run") == log("full")


# ------------------------------------------------------------------------------------------------ code in pickles
class _RunsCode:
    """Unpickling this calls ``function(*args)``: the classic pickle payload."""

    def __init__(self, function: Any, *args: Any) -> None:
        self.function, self.args = function, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.function, self.args


def _payloads(marker: Path) -> dict[str, _RunsCode]:
    return {"open": _RunsCode(open, str(marker), "w"), "os.system": _RunsCode(os.system, f"touch '{marker}'")}


@pytest.mark.parametrize("kind", ["open", "os.system"])
@pytest.mark.parametrize("placement", ["whole file", "inside a checkpoint"])
def test_a_checkpoint_whose_pickle_runs_code_is_refused_and_runs_nothing(tmp_path, toy2d, kind, placement):
    live = tmp_path / "payload-is-live"
    pickle.loads(pickle.dumps(_payloads(live)[kind]))
    assert live.exists(), "the payload does run code when unpickled without restrictions"

    marker = tmp_path / "payload-ran"
    payload = _payloads(marker)[kind]
    model = atebm.build_score_model({"arch": "mlp2d", "kwargs": {"hidden": 4, "depth": 1}})
    content: Any = payload
    if placement == "inside a checkpoint":
        content = {"format": "atebm-checkpoint", "version": 1, "model_spec": model.spec, "model": model.state_dict(),
                   "config": {}, "trainer": None, "extra": {"note": payload}}
    run = tmp_path / "run"
    run.mkdir()
    for name in ("checkpoint.pt", "model.pt"):
        torch.save(content, run / name)

    data, p0 = toy2d(64)
    attempts = {
        "atebm.load_model(run folder)": lambda: atebm.load_model(run),
        "atebm.load_model(model.pt)": lambda: atebm.load_model(run / "model.pt"),
        "atebm.load_model(checkpoint.pt)": lambda: atebm.load_model(run / "checkpoint.pt"),
        "load_checkpoint(checkpoint.pt)": lambda: load_checkpoint(run / "checkpoint.pt"),
        "Trainer.resume(checkpoint.pt)": lambda: Trainer.resume(run / "checkpoint.pt", data, p0),
    }
    for what, attempt in attempts.items():
        with pytest.raises(CheckpointError) as refused:
            attempt()
        message = str(refused.value)
        assert str(run) in message and "refused" in message, f"{what}: {message}"
        assert "weights_only=False" not in message, f"{what} must not advise loading without restrictions"
        assert "\n" not in message, f"{what}: a one-line error"
        assert not marker.exists(), f"{what} ran the payload"


# ------------------------------------------------------------------------------------------------ unwritable folders
@contextmanager
def _read_only(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Makes ``folder`` read-only for real where possible (chmod 0o555; for root, who ignores the mode, the
    immutable attribute); else makes file creation there fail as it would. Yields the cause's text."""
    probe = folder / "probe"

    def refuses_writes() -> str | None:
        try:
            probe.write_bytes(b"x")
        except OSError as err:
            return err.strerror
        probe.unlink()
        return None

    os.chmod(folder, 0o555)
    try:
        if (cause := refuses_writes()) is not None:
            yield cause
            return
        immutable = shutil.which("chattr") is not None and subprocess.run(
            ["chattr", "+i", str(folder)], capture_output=True).returncode == 0
        try:
            if immutable and (cause := refuses_writes()) is not None:
                yield cause
                return
        finally:
            if immutable:
                subprocess.run(["chattr", "-i", str(folder)], check=True)
        import tempfile

        def no_write_permission(*args: Any, **kwargs: Any):
            raise PermissionError(errno.EACCES, "Permission denied", str(folder / ".checkpoint.tmp"))

        with monkeypatch.context() as patch:
            patch.setattr(tempfile, "mkstemp", no_write_permission)
            yield "Permission denied"
    finally:
        os.chmod(folder, 0o755)


@contextmanager
def _disk_full(folder: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """torch.save writes part of the file, then the disk is full."""

    def partial_write_then_full(obj: Any, handle: Any, *args: Any, **kwargs: Any) -> None:
        handle.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(torch, "save", partial_write_then_full)
        yield os.strerror(errno.ENOSPC)


@pytest.mark.parametrize("fault", [_read_only, _disk_full], ids=["read-only folder", "full disk"])
def test_an_unwritable_run_folder_gives_a_clear_error_and_keeps_the_previous_checkpoint(
        tmp_path, monkeypatch, toy2d, config_2d, box_2d, assert_same_state, fault):
    data, p0 = toy2d(256)
    out = tmp_path / "run"
    trainer = Trainer(config_2d(max_iters=8, ckpt_every=4), data, p0, out_dir=out, extra=box_2d)
    trainer.fit()
    before = {name: (out / name).read_bytes() for name in ("checkpoint.pt", "model.pt")}
    saved_weights = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    files_before = sorted(p.name for p in out.iterdir())
    with torch.no_grad():
        for parameter in trainer.model.parameters():
            parameter.add_(1.0)                     # weights the failed save would have written

    with fault(out, monkeypatch) as cause:
        with pytest.raises((CheckpointError, OSError)) as failure:
            trainer.save()
    message = str(failure.value)
    assert str(out) in message and cause in message, f"names the path and the cause: {message}"
    assert sorted(p.name for p in out.iterdir()) == files_before, "no temporary file is left behind"
    for name, content in before.items():
        assert (out / name).read_bytes() == content, f"{name} is untouched"
    assert_same_state(_state_of(out / "checkpoint.pt"), saved_weights, "previous checkpoint.pt")
    assert_same_state(atebm.load_model(out).state_dict(), saved_weights, "previous model.pt")

    trainer.save()                                  # the folder is writable again: saving works
    assert_same_state(atebm.load_model(out).state_dict(), trainer.model.state_dict(), "model.pt after recovery")


# ------------------------------------------------------------------------------------------------ resume overrides
@pytest.fixture
def half_run(tmp_path, toy2d, config_2d, box_2d):
    """An uninterrupted 24-iteration run, and the checkpoint of the same run after 12 iterations."""
    data, p0 = toy2d(256)
    config = config_2d(max_iters=24, ckpt_every=12, r1=0.1)
    full = Trainer(config, data, p0, out_dir=tmp_path / "full", extra=box_2d)
    full.fit()
    Trainer(config.replace(max_iters=12), data, p0, out_dir=tmp_path / "part", extra=box_2d).fit()
    return tmp_path / "part" / "checkpoint.pt", data, p0, full


REFUSED = {
    "batch_size": 32, "seed": 1, "step_size": 0.5, "lr": 1e-2, "k_max": 6, "k_start": 1, "r1": 0.5, "loss": "ebm",
    "optimizer": "sgd", "pgd_norm": "linf", "pgd_eps": 1.0, "auc_threshold": 0.9, "epochs_per_k": 3.0,
    "augment_flip": True, "indist_at_steps": 2, "freeze_bn": True,
    "model": {"arch": "mlp2d", "kwargs": {"hidden": 16, "depth": 2}},
}


@pytest.mark.parametrize("key", sorted(REFUSED))
def test_resume_refuses_an_override_that_breaks_the_continuation(half_run, key):
    path, data, p0, _ = half_run
    with pytest.raises(ValueError) as refused:
        Trainer.resume(path, data, p0, overrides={key: REFUSED[key]})
    message = str(refused.value)
    assert key in message, f"names the offending key: {message}"
    missing = [allowed for allowed in RESUME_ALLOWED if allowed not in message]
    assert not missing, f"lists what may be overridden (missing {missing}): {message}"


def test_resume_names_every_offending_key(half_run):
    path, data, p0, _ = half_run
    with pytest.raises(ValueError) as refused:
        Trainer.resume(path, data, p0, overrides={"batch_size": 32, "seed": 3, "max_iters": 30})
    assert "batch_size" in str(refused.value) and "seed" in str(refused.value)


def test_resume_accepts_budgets_and_logging_and_stays_exact(half_run, assert_same_state):
    path, data, p0, full = half_run
    overrides = {"max_iters": 24, "final_iters": 10_000, "final_epochs": 1000.0, "time_budget_s": 3600.0,
                 "log_every": 4, "ckpt_every": 8, "progress": False}
    resumed = Trainer.resume(path, data, p0, overrides=overrides)
    assert resumed.config.log_every == 4 and resumed.config.ckpt_every == 8
    resumed.fit()
    assert resumed.step == 24 and resumed.stop_reason == "max_iters reached"
    assert_same_state(resumed.model.state_dict(), full.model.state_dict(), "resumed with new budgets and logging")


def test_resume_accepts_an_override_equal_to_the_saved_value(half_run):
    path, data, p0, full = half_run
    saved = full.config
    resumed = Trainer.resume(path, data, p0, overrides={"batch_size": saved.batch_size, "seed": saved.seed,
                                                        "model": dict(saved.model), "max_iters": 24})
    assert resumed.step == 12


def test_resume_rejects_an_unknown_key(half_run):
    path, data, p0, _ = half_run
    with pytest.raises(ValueError, match="max_itres"):
        Trainer.resume(path, data, p0, overrides={"max_itres": 30})


# ------------------------------------------------------------------------------------------------ one model per run
class _SelectAt:
    """A model-selection callback: makes the weights at ``step`` the run's model."""

    def __init__(self, step: int) -> None:
        self.step, self.chosen = step, None

    def __call__(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if record["step"] == self.step:
            self.chosen = {k: v.detach().clone() for k, v in trainer.model.state_dict().items()}
            trainer.select_weights(self.chosen, by="val_fd", value=12.5)


def test_the_run_folder_model_is_the_selected_weights(tmp_path, toy2d, config_2d, box_2d, assert_same_state):
    data, p0 = toy2d(256)
    select = _SelectAt(4)
    trainer = Trainer(config_2d(max_iters=8, log_every=2, ckpt_every=4), data, p0, out_dir=tmp_path,
                      callbacks=[select], extra=box_2d)
    trainer.fit()
    assert select.chosen is not None
    last = trainer.model.state_dict()
    assert any(not torch.equal(last[k], v) for k, v in select.chosen.items()), "training went on after step 4"

    model = atebm.load_model(tmp_path)
    assert_same_state(model.state_dict(), select.chosen, "model.pt vs the selected weights")
    assert model.meta["selection"]["by"] == "val_fd" and model.meta["selection"]["value"] == 12.5
    assert model.meta["selection"]["step"] == 4
    assert_same_state(atebm.load(tmp_path).state_dict(), select.chosen, "atebm.load (alias)")
    assert_same_state(_state_of(tmp_path / "checkpoint.pt"), last, "checkpoint.pt keeps the last weights")

    resumed = Trainer.resume(tmp_path / "checkpoint.pt", data, p0, overrides={"max_iters": 12})
    resumed.fit()
    assert_same_state(atebm.load_model(tmp_path).state_dict(), select.chosen, "the selection survives a resume")


def test_the_run_folder_model_without_a_selection_is_the_last_weights(tmp_path, toy2d, config_2d, box_2d,
                                                                       assert_same_state):
    data, p0 = toy2d(256)
    trainer = Trainer(config_2d(max_iters=10, log_every=2, ckpt_every=4), data, p0, out_dir=tmp_path, extra=box_2d)
    trainer.fit()
    model = atebm.load_model(tmp_path)
    assert_same_state(model.state_dict(), trainer.model.state_dict(), "model.pt vs the last weights")
    assert model.meta["selection"]["by"] == "last"
    assert_same_state(_state_of(tmp_path / "checkpoint.pt"), trainer.model.state_dict(), "checkpoint.pt")
