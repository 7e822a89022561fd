"""The command line agrees with its library (issue 22 item 5): defaults read from the functions and configs the
commands call, ``--device`` with the same choices everywhere, ``key=value`` on every training command with its keys
listed in ``--help``, an unknown or misplaced key refused in one line naming the fix, contradictory options refused
before any work, and errors one line each."""
from __future__ import annotations

import dataclasses
import functools
import inspect
from pathlib import Path
from typing import Any

import pytest

import atebm.cli.apps
import atebm.cli.gat
import atebm.dsgan
import atebm.gat
from atebm import TrainConfig, build_score_model
from atebm.cli import build_parser, main
from atebm.cli.gat import RESERVED_DETECTOR_KEYS
from atebm.cli.options import DEVICES, pipeline_defaults
from atebm.dsgan import DSGANConfig, RobustSettings, SSLConfig
from atebm.training.run import SOURCE_KEYS


def _parsers(parser: Any = None, path: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    """Every (sub)command's parser by its path, e.g. ``("gat", "train")``."""
    parser = parser or build_parser()
    found = {path: parser}
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                found.update(_parsers(sub, path + (name,)))
    return found


def _action(path: tuple[str, ...], dest: str) -> Any:
    return next(a for a in _parsers()[path]._actions if a.dest == dest)


def _one_line_error(capsys: Any, command: str) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"atebm {command}: error: "), err
    return err


def _recorder(monkeypatch: Any, module: Any, name: str, result: Any = None) -> list[dict[str, Any]]:
    """Replaces ``module.name`` by a recorder with the same signature (so parsers read the real defaults); each call
    appends its keyword arguments."""
    real = getattr(module, name)
    calls: list[dict[str, Any]] = []

    @functools.wraps(real)
    def fake(*args: Any, **kwargs: Any) -> Any:
        calls.append({"args": args, **kwargs})
        return result

    monkeypatch.setattr(module, name, fake)
    return calls


# ------------------------------------------------------------------------------------------------ key=value
#: Every training command: its config class, the keys options set instead, the extra keys.
TRAINING_COMMANDS = {
    ("train",): (TrainConfig, (), SOURCE_KEYS),
    ("gat", "train"): (TrainConfig, tuple(RESERVED_DETECTOR_KEYS), ()),
    ("dsgan", "train"): (DSGANConfig, (), ()),
    ("dsgan", "ssl"): (SSLConfig, ("mode", "seed", "device"), ()),
    ("dsgan", "robust"): (RobustSettings, (), ()),
}
#: The smallest valid command line of each, before its key=value overrides.
MINIMAL = {("train",): ["train", "--preset", "mnist", "--dry-run"], ("gat", "train"): ["gat", "train", "--out"],
           ("dsgan", "train"): ["dsgan", "train", "--case", "mnist-difference", "--out"],
           ("dsgan", "ssl"): ["dsgan", "ssl", "--out"], ("dsgan", "robust"): ["dsgan", "robust", "--out"]}


def _minimal(path: tuple[str, ...], out: Path) -> list[str]:
    argv = list(MINIMAL[path])
    return argv + [str(out)] if argv[-1] == "--out" else argv


def test_every_command_with_key_value_is_a_training_command_in_the_table():
    with_overrides = {path for path, parser in _parsers().items()
                      if any(a.dest == "overrides" for a in parser._actions)}
    assert with_overrides == set(TRAINING_COMMANDS)


@pytest.mark.parametrize("path", sorted(TRAINING_COMMANDS), ids=" ".join)
def test_key_value_help_lists_the_config_fields_it_accepts(path, capsys):
    config, reserved, extra = TRAINING_COMMANDS[path]
    listed = _action(path, "overrides").help.rpartition("keys: ")[2].split(", ")
    assert listed == [f.name for f in dataclasses.fields(config) if f.name not in reserved] + list(extra)
    for key in reserved:  # the help says which option sets a reserved key
        assert f"{key}= is set by --" in _action(path, "overrides").help
    with pytest.raises(SystemExit):
        main([*path, "--help"])
    assert "keys: " in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("path", sorted(TRAINING_COMMANDS), ids=" ".join)
def test_an_unknown_key_is_one_line_naming_the_valid_keys(path, tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*_minimal(path, out), "bogus_key=1"]) == 1
    err = _one_line_error(capsys, path[0])
    config, reserved, _ = TRAINING_COMMANDS[path]
    first = next(f.name for f in dataclasses.fields(config) if f.name not in reserved)
    assert "unknown key(s) bogus_key; valid keys: " + first in err
    assert not out.exists()


@pytest.mark.parametrize("path, key, option", [
    (("gat", "train"), "seed=3", "--seed"), (("gat", "train"), "pgd_eps=0.5", "--preset"),
    (("dsgan", "ssl"), "mode=dsgan", "--modes"), (("dsgan", "ssl"), "seed=1", "--seeds"),
    (("dsgan", "ssl"), "device=cpu", "--device")])
def test_a_key_that_an_option_sets_is_refused_with_the_option(path, key, option, tmp_path, capsys):
    assert main([*_minimal(path, tmp_path / "run"), key]) == 1
    err = _one_line_error(capsys, path[0])
    assert f"{key.partition('=')[0]}= is set by {option}" in err and f"use {option} instead" in err


@pytest.mark.parametrize("path, option, key", [
    (("train",), ["--device", "cpu"], "device=cpu"), (("gat", "train"), ["--device", "cpu"], "device=cpu"),
    (("dsgan", "train"), ["--seed", "1"], "seed=2"), (("dsgan", "train"), ["--device", "cpu"], "device=cpu"),
    (("dsgan", "robust"), ["--n-test", "5"], "n_test=6")])
def test_an_option_and_its_key_together_are_refused(path, option, key, tmp_path, capsys):
    assert main([*_minimal(path, tmp_path / "run"), *option, key]) == 1
    err = _one_line_error(capsys, path[0])
    assert f"{option[0]} and {key.partition('=')[0]}= both set" in err and "give one of them" in err


def test_gat_train_key_value_reaches_the_detectors_config(monkeypatch, tmp_path):
    calls = _recorder(monkeypatch, atebm.cli.gat, "run_gat_train")
    assert main(["gat", "train", "--out", str(tmp_path), "--device", "cpu", "--workers", "1", "max_iters=3",
                 "lr=5e-4"]) == 0
    call, = calls
    assert call["overrides"] == {"max_iters": 3, "lr": 5e-4, "device": "cpu"}
    # every key the help lists builds the detectors' TrainConfig: the keys are the preset's config fields
    preset = atebm.gat.get_gat_preset(call["preset"])
    listed = _action(("gat", "train"), "overrides").help.rpartition("keys: ")[2].split(", ")
    config = preset.detector_config(**call["overrides"])
    assert config.max_iters == 3 and set(listed) <= set(config.to_dict())


def test_dsgan_robust_takes_its_budgets_as_key_value(monkeypatch, tmp_path):
    calls = _recorder(monkeypatch, atebm.dsgan, "run_low_density_at", result={"results": {}})
    assert main(["dsgan", "robust", "--out", str(tmp_path), "--n-test", "10", "epochs=2", "dsgan_iters=5",
                 "attack_steps=3", "square_queries=20"]) == 0
    settings = calls[0]["args"][1]
    assert isinstance(settings, RobustSettings)
    assert (settings.epochs, settings.dsgan_iters, settings.attack_steps, settings.square_queries, settings.n_test) \
        == (2, 5, 3, 20, 10)
    assert settings.finetune_epochs == RobustSettings().finetune_epochs  # not given: the library's default


# ------------------------------------------------------------------------------------------------ defaults
def test_every_device_option_has_the_same_choices_and_defaults_to_auto():
    """``--device auto|cpu|cuda`` everywhere, ``auto`` (CUDA when available) by default."""
    seen = 0
    for path, parser in _parsers().items():
        action = next((a for a in parser._actions if a.dest == "device"), None)
        if action is None:
            continue
        seen += 1
        assert tuple(action.choices) == DEVICES, path
        if action.default is None:  # the command's key=value config sets it otherwise: its field's default
            assert "(default: auto" in action.help and "device=..., not both" in action.help, path
        else:
            assert action.default == "auto", path
    assert seen >= 15


#: Commands that load their models in the library function they call (the module the parser reads it from, its
#: name); these defaulted to the CPU until the functions moved every input to the model's device (issue 22 item 5).
MODEL_LOADING_COMMANDS = {("gat", "calibrate"): (atebm.cli.gat, "run_gat_calibrate"),
                          ("gat", "classify-eval"): (atebm.cli.gat, "run_gat_classify_eval"),
                          ("gat", "explain"): (atebm.cli.gat, "run_gat_explain"),
                          ("dsgan", "sample"): (atebm.dsgan, "sample_generator")}


@pytest.mark.parametrize("path", sorted(MODEL_LOADING_COMMANDS), ids=" ".join)
def test_the_device_default_is_the_library_functions_auto(path, monkeypatch, capsys):
    """``--help`` shows ``auto``, read from the library function's signature: another default there shows instead."""
    module, name = MODEL_LOADING_COMMANDS[path]
    assert pipeline_defaults(getattr(module, name))["device"] == "auto"
    with pytest.raises(SystemExit):
        main([*path, "--help"])
    assert "or cuda (default: auto)" in " ".join(capsys.readouterr().out.split())
    monkeypatch.setattr(module, name, _with_defaults(getattr(module, name), device="cuda"))
    assert _action(path, "device").default == "cuda"


def _with_defaults(function: Any, **defaults: Any) -> Any:
    """``function`` with other keyword defaults (its signature changed, its body the same)."""
    @functools.wraps(function)
    def changed(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    signature = inspect.signature(function)
    changed.__signature__ = signature.replace(parameters=[  # type: ignore[attr-defined]
        p.replace(default=defaults.get(name, p.default)) for name, p in signature.parameters.items()])
    return changed


def test_the_help_shows_the_library_defaults_not_literals(monkeypatch, capsys):
    """Changing a library function's defaults changes what ``--help`` prints: the parsers read them."""
    pipeline, *texts = atebm.cli.apps.COMMANDS["translate"]
    monkeypatch.setitem(atebm.cli.apps.COMMANDS, "translate",
                        (_with_defaults(pipeline, norm="linf", scale=5, seed=11, trajectory_samples=3), *texts))
    monkeypatch.setattr(atebm.cli.gat, "run_gat_robust_softmax",
                        _with_defaults(atebm.cli.gat.run_gat_robust_softmax, eps=0.7, iterations=33, warmup=4))
    for argv, shown in ((["translate", "--help"], ("--norm {l2,linf}  step geometry (default: linf)",
                                                     "enlargement of PNG grids (default: 5)",
                                                     "drawn data (default: 11)", "(default: 3)")),
                        (["gat", "robust-softmax", "--help"], ("training radius (default: 0.7)",
                                                               "training iterations (default: 33)",
                                                               "--eps (default: 4)"))):
        with pytest.raises(SystemExit):
            main(argv)
        text = " ".join(capsys.readouterr().out.split())
        for expected in shown:
            assert " ".join(expected.split()) in text, (argv, expected)


def test_options_not_given_are_left_to_the_library(monkeypatch, tmp_path):
    """The apps commands pass on only what the command line gave; the pipeline's own defaults do the rest."""
    pipeline, *texts = atebm.cli.apps.COMMANDS["inpaint"]
    calls: list[dict[str, Any]] = []

    @functools.wraps(pipeline)
    def recorder(*args: Any, **kwargs: Any) -> Any:
        calls.append(kwargs)
        raise ValueError("recorded")

    monkeypatch.setitem(atebm.cli.apps.COMMANDS, "inpaint", (recorder, *texts))
    assert main(["restore", "inpaint", "--checkpoint", "m.pt", "--data", "mnist", "--out", str(tmp_path),
                 "--mask", "boxes", "--boxes", "2", "--steps", "3"]) == 1
    assert calls == [{"device": "auto", "mask": "boxes", "boxes": 2, "steps": 3}]


# ------------------------------------------------------------------------------------------------ contradictions
CONTRADICTIONS = [
    (["train", "--preset", "mnist", "--resume", "--dry-run"], "--dry-run prints a new run's settings"),
    (["eval-ood", "--checkpoint", "m.pt", "--out", "OUT", "--name-oe", "B"],
     "--name-oe names the model of --checkpoint-oe, which is not given: drop --name-oe"),
    (["eval-ood", "--checkpoint", "m.pt", "--out", "OUT", "--square-steps", "5"],
     "--square-steps sets the square attacker, which --attackers pgd apgd does not run: drop --square-steps"),
    (["eval-ood", "--checkpoint", "m.pt", "--out", "OUT", "--attackers", "pgd", "--apgd-loss", "ce"],
     "--apgd-loss sets the apgd attacker"),
    (["toy2d", "--all", "--method", "minimax", "--out", "OUT"], "--method chooses one panel, and --all runs the four"),
    (["toy2d", "--method", "minimax", "--iters", "5", "--out", "OUT"],
     "--iters sets the maximin solver, which no panel of this run uses: drop --iters"),
    (["toy2d", "--particles", "5", "--out", "OUT"], "--particles sets the minimax solver"),
    (["toy2d", "--mixture", "0,0,1", "--out", "OUT"], "--mixture gives the components of --p0 mixture"),
    (["restore", "denoise", "--checkpoint", "m.pt", "--data", "mnist", "--out", "OUT", "--sigma", "0.3"],
     "--sigma applies to --noise gaussian only, not --noise none: drop --sigma"),
    (["restore", "denoise", "--checkpoint", "m.pt", "--data", "mnist", "--out", "OUT", "--noise", "gaussian",
      "--amount", "0.3"], "--amount applies to --noise salt-pepper only, not --noise gaussian"),
    (["restore", "inpaint", "--checkpoint", "m.pt", "--data", "mnist", "--out", "OUT", "--boxes", "2"],
     "--boxes applies to --mask boxes only, not --mask center"),
    (["restore", "inpaint", "--checkpoint", "m.pt", "--data", "mnist", "--out", "OUT", "--mask", "boxes",
      "--fraction", "0.2"], "--fraction applies to --mask pixels only"),
    (["restore", "inpaint", "--checkpoint", "m.pt", "--data", "mnist", "--out", "OUT", "--occluded", "--fill",
      "0.5"], "--fill fills the hole of a clean input"),
    (["translate", "--checkpoint", "m.pt", "--data", "mnist", "--out", "OUT", "--trajectory-samples", "4"],
     "--trajectory-samples sizes the strip of --trajectory, which is not given"),
    (["interpolate", "--checkpoint", "m.pt", "--data", "mnist", "--input-b", "b.npz", "--out", "OUT"],
     "--input-b pairs with --input"),
    (["dsgan", "train", "--case", "mnist-difference", "--classes", "1", "--out", "OUT"],
     "--case takes no --classes"),
]


@pytest.mark.parametrize("argv, message", CONTRADICTIONS, ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_contradictory_options_are_refused_in_one_line_before_any_work(argv, message, tmp_path, capsys,
                                                                       monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    assert message in _one_line_error(capsys, argv[0])
    assert not (tmp_path / "OUT").exists()


# ------------------------------------------------------------------------------------------------ committee errors
@pytest.mark.parametrize("device", ["auto", "cpu"])
def test_gat_calibrate_runs_on_every_cpu_device_choice(device, tmp_path, capsys):
    """``--device auto`` is resolved before the committee is loaded (it was read as a storage location)."""
    spec = atebm.gat.detector_model_spec(8, 1, widths=(2, 3), hidden=8)
    atebm.gat.save_committee(tmp_path, atebm.gat.Committee([build_score_model(spec) for _ in range(10)],
                                                           meta={"data": "digits", "size": 8, "channels": 1}))
    assert main(["gat", "calibrate", "--checkpoint", str(tmp_path), "--device", device, "--no-report"]) == 0
    assert "offsets c_k:" in capsys.readouterr().out and (tmp_path / "calibration.json").is_file()


@pytest.mark.parametrize("argv", [["gat", "eval", "--sections", "clean", "--out"], ["gat", "calibrate"],
                                  ["gat", "classify-eval", "--out"], ["gat", "explain", "--out"]])
def test_a_committee_without_meta_is_one_line_naming_the_fix(argv, tmp_path, capsys):
    """A committee saved without meta (no data source, no threat model) is refused in one line, no traceback."""
    spec = atebm.gat.detector_model_spec(8, 1, widths=(2, 3), hidden=8)
    run = tmp_path / "committee"
    run.mkdir()
    atebm.gat.save_committee(run, atebm.gat.Committee([build_score_model(spec) for _ in range(3)]))
    full = [*argv[:2], "--checkpoint", str(run), *argv[2:]] + ([str(tmp_path / "out")] if argv[-1] == "--out" else [])
    assert main(full) == 1
    err = _one_line_error(capsys, "gat")
    assert "names no data source" in err and "--data" in err

