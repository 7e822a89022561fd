"""The command line: help for every command, typed overrides, clear errors, and train -> resume -> sample."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

import atebm
from atebm.cli import build_parser, main
from atebm.cli.options import parse_overrides
from atebm.presets import PRESETS


def subcommands():
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    return sorted(action.choices)


def test_every_command_has_help(capsys):
    names = subcommands()
    for expected in ("train", "sample", "demo", "presets"):
        assert expected in names
    for name in names:
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        assert "usage: atebm" in capsys.readouterr().out


def test_presets_lists_every_preset(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("mnist", "cifar10", "celebahq256", "afhqcat256", "church256"):
        assert name in out


def test_overrides_are_typed():
    values = parse_overrides(["lr=5e-4", "k_max=8", "pgd_eps=inf", "augment_flip=true", "data=mnist?split=test"])
    assert values["lr"] == 5e-4 and values["k_max"] == 8 and math.isinf(values["pgd_eps"])
    assert values["augment_flip"] is True and values["data"] == "mnist?split=test"
    with pytest.raises(ValueError, match="key=value"):
        parse_overrides(["lr"])


def test_dry_run_prints_the_resolved_config(capsys):
    assert main(["train", "--preset", "cifar10", "--dry-run", "lr=1e-4"]) == 0
    resolved = json.loads(capsys.readouterr().out)
    assert resolved["train"]["lr"] == 1e-4 and resolved["train"]["k_max"] == 25


def test_unknown_config_key_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "--preset", "mnist", "--out", str(tmp_path), "--dry-run", "lr_typo=1"]) == 1
    err = capsys.readouterr().err
    assert "unknown key(s) lr_typo; valid keys: model, batch_size, lr," in err and err.count("\n") == 1


@pytest.mark.parametrize("preset", ["cifar10", "celebahq256", "afhqcat256", "church256"])
def test_big_presets_fail_clearly_without_their_files(tmp_path, capsys, monkeypatch, preset):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--preset", preset, "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    # the data source is opened first, so its error is the one reported, with the preset's list of files
    assert "data source" in err and "data=" in err and PRESETS[preset].needs_files in err
    assert not (tmp_path / "run" / "checkpoint.pt").exists()


def test_tiny_train_then_sample_end_to_end(tmp_path, capsys, tiny_mnist_overrides):
    run = tmp_path / "run"
    assert main(["train", "--preset", "mnist", "--out", str(run), "--device", "cpu", *tiny_mnist_overrides]) == 0
    for name in ("model.pt", "checkpoint.pt", "config.json", "log.jsonl"):
        assert (run / name).exists(), name
    model = atebm.load_model(run)
    assert not model.training and model.meta["size"] == 28 and model.meta["channels"] == 1
    # a second train into the same folder refuses, --resume continues
    assert main(["train", "--preset", "mnist", "--out", str(run), *tiny_mnist_overrides]) == 1
    assert "--resume" in capsys.readouterr().err
    assert main(["train", "--preset", "mnist", "--out", str(run), "--resume", "max_iters=6"]) == 0
    assert atebm.training.load_checkpoint(run)["trainer"]["step"] == 6

    out = tmp_path / "samples"
    assert main(["sample", "--checkpoint", str(run), "--out", str(out), "--n", "8",
                 "--steps", "3", "--step-size", "0.5", "--blur", "1.0"]) == 0
    with np.load(out / "samples.npz") as archive:
        x = archive["x"]
    assert x.shape == (8, 1, 28, 28) and x.dtype == np.float32 and 0 <= x.min() and x.max() <= 1
    assert len({row.tobytes() for row in x}) == 8 and float(x.std()) > 0.01  # eight different, non-flat samples
    assert (out / "samples.png").exists() and (out / "trajectory.png").exists()


def test_resume_trains_on_the_data_of_the_run(tmp_path, tiny_mnist_overrides):
    """`--resume` without data=/p0= continues on the sources the run was started with (64 digits: 8 iterations per
    epoch at batch 8), not on the preset's defaults (3,500 digits)."""
    run = tmp_path / "run"
    assert main(["train", "--preset", "mnist", "--out", str(run), "--device", "cpu", *tiny_mnist_overrides]) == 0
    assert main(["train", "--preset", "mnist", "--out", str(run), "--resume", "max_iters=6"]) == 0
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert log[-1]["step"] == 6 and log[-1]["epoch"] == pytest.approx(6 / 8)
    assert json.loads((run / "config.json").read_text())["data"] == "mnist?split=train&n=64"


def test_sample_rejects_a_missing_checkpoint(tmp_path, capsys):
    assert main(["sample", "--checkpoint", str(tmp_path / "nope.pt"), "--out", str(tmp_path)]) == 1
    assert "not found" in capsys.readouterr().err
