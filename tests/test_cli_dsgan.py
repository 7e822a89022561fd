"""``atebm dsgan``'s parser agrees with its library: defaults read from the functions it calls, contradictory
options refused in one line, ``key=value`` keys listed in ``--help``, bad values refused while parsing; and a
DSGAN run folder given to ``atebm train --resume`` names the command that continues it."""
from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any

import pytest
import torch

import atebm.dsgan
from atebm.cli import build_parser, main
from atebm.dsgan import DSGANConfig, DSGANTrainer, SSLConfig
from atebm.training import load_checkpoint
from atebm.training.trainer import Objective, Trainer

TINY_POINTS = {"model": {"arch": "mlp2d", "kwargs": {"hidden": 8, "depth": 1}},
               "generator": {"arch": "mlp", "kwargs": {"latent_dim": 2, "out_dim": 2, "hidden": 8, "depth": 1}}}


def _subparser(*path: str) -> Any:
    """The argparse parser of ``atebm PATH...`` (e.g. ``_subparser("dsgan", "train")``)."""
    parser: Any = build_parser()
    for name in path:
        action = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = action.choices[name]
    return parser


def _action(parser: Any, dest: str) -> Any:
    return next(a for a in parser._actions if a.dest == dest)


@pytest.fixture
def calls(monkeypatch) -> list[tuple[str, dict[str, Any]]]:
    """Replaces the two training pipelines ``atebm dsgan train`` calls by recorders (signatures kept, so the CLI
    reads the real defaults); each call appends ``(name, keyword arguments)``."""
    recorded: list[tuple[str, dict[str, Any]]] = []

    def recorder(real, result):
        @functools.wraps(real)
        def fake(*args: Any, **kwargs: Any) -> dict[str, Any]:
            recorded.append((real.__name__, kwargs))
            return result
        return fake

    case_result = {"evaluation": {"fraction_target": 1.0, "n": 1, "target_classes": [7]}}
    monkeypatch.setattr(atebm.dsgan, "train_case", recorder(atebm.dsgan.train_case, case_result))
    monkeypatch.setattr(atebm.dsgan, "train_on_data", recorder(atebm.dsgan.train_on_data, {}))
    return recorded


def _default(function: Any, name: str) -> Any:
    return inspect.signature(function).parameters[name].default


# ------------------------------------------------------------------------------------------------ --n-eval
@pytest.mark.parametrize("where", [["--case", "mnist-difference"], ["--data", "mnist?split=train", "--pbar",
                                                                     "gaussian:0.3"]])
def test_n_eval_defaults_to_the_library_function_that_runs(tmp_path, calls, where):
    assert main(["dsgan", "train", *where, "--out", str(tmp_path)]) == 0
    (name, kwargs), = calls
    assert "n_eval" not in kwargs  # left to the function that runs: train_case's or train_on_data's own default
    # an explicit --n-eval still wins
    assert main(["dsgan", "train", *where, "--out", str(tmp_path), "--n-eval", "5"]) == 0
    assert calls[-1][1]["n_eval"] == 5


def test_n_eval_help_shows_both_library_defaults():
    help_text = _action(_subparser("dsgan", "train"), "n_eval").help
    case, data = _default(atebm.dsgan.cases.train_case, "n_eval"), _default(atebm.dsgan.cases.train_on_data, "n_eval")
    assert case != data  # the two pipelines differ, which is why the CLI must not fix one number
    assert f"{case} with --case" in help_text and f"{data} with --data" in help_text


# ------------------------------------------------------------------------------------------------ --case vs --data
@pytest.mark.parametrize("extra, named", [(["--pbar", "gaussian:0.3"], ["--pbar"]), (["--classes", "1"], ["--classes"]),
                                          (["--pbar", "classes:1,7", "--classes", "1"], ["--pbar", "--classes"])])
def test_case_refuses_the_options_of_data_in_one_line(tmp_path, capsys, calls, extra, named):
    assert main(["dsgan", "train", "--case", "mnist-difference", "--out", str(tmp_path), *extra]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("atebm dsgan: error: ")
    assert f"--case takes no {' or '.join(named)}" in err and f"drop {' and '.join(named)}" in err
    assert "--data SOURCE --pbar SPEC" in err
    assert calls == []  # nothing trained


# ------------------------------------------------------------------------------------------------ key=value help
@pytest.mark.parametrize("command, config, reserved", [("train", DSGANConfig, ()),
                                                       ("ssl", SSLConfig, ("mode", "seed", "device"))])
def test_key_value_help_lists_every_config_field(capsys, command, config, reserved):
    """Every field, but those an option sets for each run (ssl: --modes, --seeds, --device)."""
    action = _action(_subparser("dsgan", command), "overrides")
    fields = [f.name for f in dataclasses.fields(config) if f.name not in reserved]
    listed = action.help.rpartition("keys: ")[2].split(", ")
    assert listed == fields
    with pytest.raises(SystemExit) as exit_info:
        main(["dsgan", command, "--help"])
    assert exit_info.value.code == 0
    assert "keys: " in " ".join(capsys.readouterr().out.split())


def test_every_listed_key_is_accepted_by_its_config():
    """The keys the help lists are exactly the ones from_dict takes (a typo'd key is refused)."""
    keys = _action(_subparser("dsgan", "train"), "overrides").help.rpartition("keys: ")[2].split(", ")
    defaults = DSGANConfig().to_dict()
    assert DSGANConfig.from_dict({k: defaults[k] for k in keys}) == DSGANConfig()
    with pytest.raises(ValueError):
        DSGANConfig.from_dict({"alpah": 0.5})


# ------------------------------------------------------------------------------------------------ --weights
def test_negative_weights_are_refused_while_parsing(capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["dsgan", "robust", "--out", "x", "--weights", "1", "-1"])
    assert exit_info.value.code == 2
    assert "argument --weights: expected a number >= 0, got -1" in capsys.readouterr().err
    args = parser.parse_args(["dsgan", "robust", "--out", "x", "--weights", "0", "2.5"])
    assert args.weights == [0.0, 2.5]
    assert "(default: 1 3 10)" in _action(_subparser("dsgan", "robust"), "weights").help


# ------------------------------------------------------------------------------------------------ resume elsewhere
@pytest.fixture
def dsgan_run(tmp_path, one_thread):
    """A DSGAN run folder (2D points, 2 steps) with its checkpoint.pt."""
    g = torch.Generator().manual_seed(0)
    p_d = torch.randn(64, 2, generator=g) * 0.3
    p_dbar = p_d + torch.randn(64, 2, generator=g) * 0.5
    config = DSGANConfig(**TINY_POINTS, batch_size=16, max_iters=2, log_every=1, ckpt_every=2, progress=False,
                         device="cpu")
    run = tmp_path / "dsgan-run"
    DSGANTrainer(config, p_dbar, p_d, out_dir=run).fit()
    assert load_checkpoint(run / "checkpoint.pt")["objective"]["kind"] == "dsgan"
    return run


def test_atebm_train_resume_on_a_dsgan_run_names_the_dsgan_command(dsgan_run, capsys):
    assert main(["train", "--preset", "mnist", "--resume", "--out", str(dsgan_run), "max_iters=4",
                 "data=mnist?split=train&n=16", "p0=photos?split=train&n=16"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert f"{dsgan_run} was trained by `atebm dsgan train`" in err
    assert f"`atebm dsgan train --resume --out {dsgan_run}`" in err and "DSGANTrainer.resume" in err
    assert load_checkpoint(dsgan_run / "checkpoint.pt")["trainer"]["step"] == 2  # the run was left alone


def test_a_dsgan_checkpoint_names_its_command_when_atebm_dsgan_is_not_imported(dsgan_run, monkeypatch):
    """Without atebm.dsgan imported the objective is unknown; the error still says which command continues it."""
    monkeypatch.delitem(Objective.registry, "dsgan")
    payload = load_checkpoint(dsgan_run / "checkpoint.pt")
    with pytest.raises(ValueError, match=r"trained by `atebm dsgan train` .*`atebm dsgan train --resume") as info:
        Objective.from_dict(payload["objective"], None)
    assert "import the module" not in str(info.value)
    with pytest.raises(ValueError, match="atebm dsgan train --resume"):
        Trainer.resume(dsgan_run / "checkpoint.pt", torch.zeros(4, 2), torch.zeros(4, 2))


def test_the_dsgan_trainer_still_resumes_its_own_runs(dsgan_run):
    g = torch.Generator().manual_seed(1)
    p_d = torch.randn(64, 2, generator=g) * 0.3
    resumed = DSGANTrainer.resume(dsgan_run / "checkpoint.pt", p_d + 0.5, p_d, overrides={"max_iters": 3})
    resumed.fit()
    assert resumed.step == 3
