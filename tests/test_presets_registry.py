"""One preset registry (:data:`atebm.presets.REGISTRY`): every command that takes ``--preset``/``--case`` offers
exactly the registry's entries for it, the library finds every preset the command line accepts (the GAT
classification recipes included), ``atebm presets`` lists them all grouped by command, and an unknown name is one
line listing the valid ones."""
from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

import atebm.presets as presets_module
from atebm.cli import build_parser, main
from atebm.dsgan import CASES, Case, get_case
from atebm.gat import CLASSIFY_PRESETS, GAT_PRESETS, GatPreset, get_gat_preset
from atebm.presets import PRESETS, GenerationSettings, Preset, get_preset

#: Each command with presets: its argparse path, option destination, library lookup and preset type.
COMMANDS: dict[str, tuple[tuple[str, ...], str, Any, type]] = {
    "train": (("train",), "preset", get_preset, Preset),
    "gat train": (("gat", "train"), "preset", get_gat_preset, GatPreset),
    "dsgan train": (("dsgan", "train"), "case", get_case, Case),
}


def _defined(command: str) -> list[str]:
    """The presets defined beside their kind (where a new one is added)."""
    tables: dict[str, Any] = {"train": PRESETS, "gat train": {**GAT_PRESETS, **CLASSIFY_PRESETS}, "dsgan train": CASES}
    return list(tables[command])


def _option(path: tuple[str, ...], dest: str) -> Any:
    """The argparse action of ``dest`` in the parser of ``atebm PATH...``."""
    parser: Any = build_parser()
    for name in path:
        sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
        parser = sub.choices[name]
    return next(a for a in parser._actions if a.dest == dest)


def test_get_gat_preset_finds_the_classification_recipes_the_cli_accepts():
    recipe = get_gat_preset("mnist-inout")
    assert recipe is CLASSIFY_PRESETS["mnist-inout"]
    assert recipe.train["indist_at_eps"] == 0.3 and recipe.train["indist_at_eps_start"] == 0.0  # the T Sec. 3.4
    assert recipe.train["indist_at_warmup"] == 400 and recipe.train["max_iters"] == 800        # recipe, ramped
    for name in _option(("gat", "train"), "preset").choices:
        assert get_gat_preset(name).name == name


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_registry_holds_every_preset_once_with_its_object_and_facts(command):
    registry = presets_module.REGISTRY
    _, _, lookup, kind = COMMANDS[command]
    entries = registry.entries(command)
    assert [e.name for e in entries] == registry.names(command)
    assert sorted(registry.names(command)) == sorted(_defined(command))
    for entry in entries:
        assert entry.command == command and isinstance(entry.preset, kind) and entry.preset.name == entry.name
        assert entry.preset is lookup(entry.name)
        assert registry.get(command, entry.name) is entry and entry in registry.find(entry.name)
        assert entry.usage == f"atebm {command} {entry.option} {entry.name}"
        for text in (entry.summary, entry.data, entry.hardware, entry.wall_clock):
            assert text.strip() and "\n" not in text, entry.usage
        assert len(entry.summary) <= 160, f"{entry.usage}: give it a one-line summary (atebm.presets)"


def test_the_registry_groups_by_the_commands_that_take_a_preset():
    registry = presets_module.REGISTRY
    assert list(registry.commands) == list(presets_module.COMMANDS) == list(COMMANDS)
    assert len(registry) == sum(len(registry.names(c)) for c in registry.commands)
    assert [e.command for e in registry] == sorted((e.command for e in registry), key=list(COMMANDS).index)
    assert {e.command for e in registry.find("mnist")} == {"train", "gat train"}  # one name, two commands
    assert registry.find("no-such-preset") == ()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_cli_choice_list_is_the_registrys(command):
    path, dest, _, _ = COMMANDS[command]
    action = _option(path, dest)
    assert list(action.choices) == presets_module.REGISTRY.names(command)
    assert action.option_strings == [presets_module.COMMANDS[command]]


def test_atebm_presets_lists_every_preset_grouped_by_command(capsys):
    assert main(["presets"]) == 0
    out = capsys.readouterr().out
    blocks = {block.splitlines()[0]: block for block in out.split("\n\n")}
    for command, (_, dest, _, _) in COMMANDS.items():
        heading = next(h for h in blocks if h.startswith(f"atebm {command} --{dest} NAME"))
        listed = {line.split()[0] for line in blocks[heading].splitlines()[1:] if line[2:3] != " "}
        assert listed == set(_defined(command)), command
    # every entry shows its data needs, hardware and time
    assert out.count("data: ") == out.count("hardware: ") == out.count("time: ") == len(presets_module.REGISTRY)


def test_atebm_presets_name_shows_a_preset_in_full(capsys):
    assert main(["presets", "cifar10"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("atebm train --preset cifar10\n")
    assert "preset   px  batch  K" in out and f"cifar10: needs {PRESETS['cifar10'].needs_files}" in out
    assert main(["presets", "mnist", "--command", "gat train"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("atebm gat train --preset mnist\n") and "atebm train" not in out
    assert GAT_PRESETS["mnist"].description[:40] in out and "threat model: LINF eps 0.3" in out
    assert main(["presets", "mnist-difference"]) == 0
    assert "atebm dsgan train --case mnist-difference" in capsys.readouterr().out


@pytest.mark.parametrize("command", list(COMMANDS))
def test_an_unknown_name_is_one_line_listing_the_valid_ones(command, capsys):
    path, _, lookup, _ = COMMANDS[command]
    names = _defined(command)
    for raise_it in (lambda: presets_module.REGISTRY.get(command, "nope"), lambda: lookup("nope")):
        with pytest.raises(ValueError) as error:
            raise_it()
        message = str(error.value)
        assert "\n" not in message and "'nope'" in message and "atebm presets" in message
        assert all(name in message for name in names), message
    with pytest.raises(SystemExit) as exit_info:  # the command line refuses it while parsing, naming the choices
        main([*path, f"--{COMMANDS[command][1]}", "nope", "--out", "unused"])
    assert exit_info.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "invalid choice: 'nope'" in last and all(repr(name) in last for name in names)


def test_atebm_presets_refuses_an_unknown_name_in_one_line(capsys):
    assert main(["presets", "nope"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("atebm presets: error: unknown preset 'nope'")
    assert all(entry.name in err for entry in presets_module.REGISTRY)


def test_entries_and_registries_refuse_malformed_presets():
    entry_type, registry_type = presets_module.PresetEntry, presets_module.PresetRegistry
    good = dict(command="train", name="x", summary="s", data="d", hardware="h", wall_clock="w", preset=None)
    assert entry_type(**good).option == "--preset"
    for bad in ({"command": "sample"}, {"name": "two words"}, {"summary": "two\nlines"}, {"summary": " "}):
        with pytest.raises(ValueError):
            entry_type(**{**good, **bad})
    twice = registry_type({"train": lambda: [entry_type(**good), entry_type(**good)]})
    with pytest.raises(ValueError, match="two presets of `atebm train` are called 'x'"):
        twice.names("train")
    elsewhere = registry_type({"train": lambda: [entry_type(**{**good, "command": "gat train"})]})
    with pytest.raises(ValueError, match="registered under `atebm train`"):
        elsewhere.names("train")
    with pytest.raises(ValueError, match="no presets for command 'sample'"):
        presets_module.REGISTRY.names("sample")
    with pytest.raises(ValueError, match="unknown commands"):
        registry_type({"sample": list})


def test_importing_the_registry_does_not_import_gat_or_dsgan():
    """The GAT and DSGAN tables are read when first asked for: `atebm.presets` stays as cheap to import as the
    trainer (it is imported by `atebm.training.run`)."""
    code = ("import sys, atebm.presets as p; assert 'atebm.gat' not in sys.modules and 'atebm.dsgan' not in "
            "sys.modules; p.REGISTRY.names('train'); assert 'atebm.gat' not in sys.modules; "
            "p.REGISTRY.names('gat train'); assert 'atebm.gat' in sys.modules")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stderr[-2000:]


def test_a_training_preset_is_validated_when_built():
    mnist = PRESETS["mnist"]
    assert mnist.replace(generate={"steps": 8, "step_size": 0.5}).generate == GenerationSettings(steps=8,
                                                                                                 step_size=0.5)
    for change, message in (({"generate": {"steps": 8, "step_size": 0.5, "sigma": 1}}, "sigma"),
                            ({"generate": {"steps": 8, "step_size": 0.0}}, "step_size"),
                            ({"train": {**mnist.train, "k_maxx": 4}}, "k_maxx"), ({"size": 0}, "size")):
        with pytest.raises((TypeError, ValueError), match=message):
            mnist.replace(**change)
