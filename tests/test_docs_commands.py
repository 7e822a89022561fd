"""Every command line of README.md and docs/commands/*.md runs, at a smoke budget, so that a renamed option,
command or module, or a broken pipeline behind a documented command, fails the suite.

Which text is a command line (the rule; ``atebm`` below also stands for ``python -m atebm``):

1. A line of a fenced code block tagged ``bash`` that starts with ``atebm`` (not a line of another program, such
   as the README's install line ``python3 -m venv ... && atebm demo``); and in any fenced block a line
   ``$ atebm ...`` (a transcript), whose expected exit status is the ``exit N`` line after its output.
2. An inline code span that starts with ``atebm``, has at least one option or argument after the command's name,
   no placeholder (a word in capitals such as ``DIR``, ``PATH``, ``N``, or a path that starts with one such as
   ``W/mnist``), no synopsis signs (``[``, ``(``, ``{``, ``|``, ``...``) and that the parser accepts as complete.

Everything else that starts with ``atebm`` is a *reference*: a synopsis (``atebm train --preset NAME [--out
DIR]``, the lines of an untagged block), a bare command name (``atebm demo``) or an incomplete one (``atebm train
--resume``). A reference is not run, but it must name existing commands and only options those commands have.
The README's ``torchrun`` line runs as printed with two processes (its own test below).

Expected outcome: exit status 0, unless
- the line ends with the shell comment ``# exits 1: WHY``, or a transcript shows ``exit 1`` after it, or it names
  a file under ``/data/`` (the docs' stand-in for files the reader brings, absent here): then exit status 1 with a
  one-line error;
- the line ends with ``# not run by the docs test: WHY`` (it needs a GPU, or another test runs the same
  command, as tests/test_demo.py runs ``atebm demo --smoke``): it must parse, is not run, and the test prints WHY.
  No command is skipped silently.

How they run: in-process (``atebm.cli.main``), in one folder per test session that stands for the reader's
machine: relative paths (``runs/...``) land there and ``/tmp/docs/...`` is moved into it. Pages run in
:data:`PAGES` order, each after the pages whose outputs it uses (:data:`NEEDS`: apps.md samples from the model
that train.md trains), a page's commands in the order printed; a line that ran before (apps.md repeats
train.md's training) names that run and is not run twice. Files that a page says the reader writes by hand are
written the way the page describes (:data:`PREPARE`). The smoke budget is one function, :func:`smoke_budget`: per
command, options and ``key=value`` overrides appended after the documented ones (the parser keeps the last value of
an option and of a key), which shrink iterations, samples and networks and change nothing else, plus small data
sources where the documented line names none (not for a command expected to fail: it must fail on its own).
"""
from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from atebm.cli import build_parser, main
from atebm.training import CHECKPOINT_FILE, MODEL_FILE, load_checkpoint
from conftest import TINY_MNIST_OVERRIDES

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
#: The pages whose command lines run, in the order they run.
PAGES = ("README.md", "docs/commands/train.md", "docs/commands/apps.md", "docs/commands/eval-ood.md",
         "docs/commands/report.md", "docs/commands/toy2d.md", "docs/commands/dsgan.md", "docs/commands/gat.md",
         "docs/commands/ablate.md")
#: Pages whose commands use the outputs of other pages' commands.
NEEDS = {"docs/commands/apps.md": ("docs/commands/train.md",), "docs/commands/eval-ood.md": ("docs/commands/train.md",),
         "docs/commands/report.md": ("docs/commands/eval-ood.md",)}
PROGRAMS = {("atebm",): 1, ("python", "-m", "atebm"): 3, ("python", "-m", "atebm.cli"): 3,
            ("python3", "-m", "atebm"): 3}
PLACEHOLDER = re.compile(r"^(?:[\w-]+=)?[A-Z][A-Z0-9_]*(?:[/=:].*)?$")
SYNOPSIS_SIGNS = ("[", "(", "{", "|", "...")


# ------------------------------------------------------------------------------------------------ extraction
@dataclass
class Command:
    """One command line of a page: ``argv`` after the program name, and what is expected of it."""

    page: str
    line: int
    text: str
    argv: list[str]
    runs: bool               # False: a reference (synopsis, mention), checked but not run
    expect: int | None = 0   # exit status; None: parsed but not run (`# not run by the docs test: WHY`)
    why: str = ""

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def _program(words: list[str]) -> int:
    """How many leading words name the atebm program (0: another program)."""
    for prefix, length in PROGRAMS.items():
        if tuple(words[:length]) == prefix:
            return length
    return 0


def _split(text: str) -> tuple[list[str], str]:
    """(words, trailing shell comment) of a command line; a quoting error leaves the words to the reference check."""
    code, _, comment = text.partition(" #")
    try:
        words = shlex.split(code)
    except ValueError:
        words = code.split()
    return words, comment.strip()


def _marked(command: Command, comment: str) -> Command:
    if comment.startswith("exits "):
        status, _, why = comment.removeprefix("exits ").partition(":")
        command.expect, command.why = int(status), why.strip()
    elif comment.startswith("not run by the docs test:"):
        command.expect, command.why = None, comment.partition(":")[2].strip()
    if any("/data/" in word for word in command.argv):
        command.expect, command.why = 1, "names files the reader brings (/data/), absent here"
    return command


@functools.cache
def _parser() -> Any:
    return build_parser()


def _is_complete(argv: list[str]) -> bool:
    """The parser accepts ``argv`` as a whole command (without running it)."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        try:
            _parser().parse_args(argv)
        except SystemExit:
            return False
    return True


def _inline_command(page: str, line: int, span: str) -> Command | None:
    words, comment = _split(" ".join(span.split()))
    skip = _program(words)
    if not skip:
        return None
    argv = words[skip:]
    path = _command_path(argv)
    runs = (len(argv) > len(path) and not any(PLACEHOLDER.match(w) for w in argv)
            and not any(sign in span for sign in SYNOPSIS_SIGNS) and _is_complete(argv))
    return _marked(Command(page, line, " ".join(span.split()), argv, runs), comment)


def page_commands(page: str) -> list[Command]:
    """Every command line and reference of ``page`` (a path relative to the repository), in page order."""
    commands: list[Command] = []
    fence: str | None = None
    transcript: Command | None = None
    synopsis: Command | None = None  # the reference an indented line continues
    prose: list[tuple[int, str]] = []
    for number, line in enumerate((REPO / page).read_text().splitlines(), start=1):
        stripped = line.strip()
        if stripped.startswith("```"):
            fence = None if fence is not None else stripped[3:].strip()
            transcript = synopsis = None
            continue
        if fence is None:
            prose.append((number, line))
            continue
        if transcript is not None and re.fullmatch(r"exit \d+", stripped):
            transcript.expect = int(stripped.split()[1])
            transcript = None
            continue
        if synopsis is not None and line.startswith(" "):  # a synopsis continues on an indented line
            synopsis.argv += _split(stripped)[0]
            synopsis.text += " " + stripped
            continue
        synopsis = None
        is_transcript = stripped.startswith("$ ")
        text = stripped[2:] if is_transcript else stripped
        words, comment = _split(text)
        skip = _program(words)
        if not skip or any(word.endswith(":") for word in words[skip:skip + 2]):
            continue  # another program, or a line of output (``atebm train: error: ...``)
        runs = is_transcript or fence == "bash"
        command = _marked(Command(page, number, text.partition(" #")[0].rstrip(), words[skip:], runs), comment)
        commands.append(command)
        transcript = command if is_transcript else None
        synopsis = None if runs else command
    commands += _inline_commands(page, prose)
    return sorted(commands, key=lambda c: c.line)


def _inline_commands(page: str, prose: list[tuple[int, str]]) -> list[Command]:
    """The inline code spans of the prose lines (a span may continue on the next line)."""
    text = "\n".join(line for _, line in prose)
    numbers = [number for number, _ in prose]
    commands = []
    for match in re.finditer(r"`([^`]+)`", text):
        line = numbers[text.count("\n", 0, match.start())]
        command = _inline_command(page, line, match.group(1).replace("\\|", "|"))
        if command is not None:
            commands.append(command)
    return commands


def torchrun_lines() -> list[str]:
    """The inline code spans of README.md that start with ``torchrun``."""
    return [span for span in re.findall(r"`([^`\n]+)`", README.read_text()) if span.split()[:1] == ["torchrun"]]


# ------------------------------------------------------------------------------------------------ references
def _subparsers(parser: Any) -> dict[str, Any]:
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            return dict(action.choices)
    return {}


def _command_path(argv: list[str]) -> list[str]:
    """The leading words of ``argv`` that name (sub)commands; ``a|b`` names alternatives."""
    path: list[str] = []
    parsers = [_parser()]
    for word in argv:
        names = word.split("|")
        choices = [_subparsers(p) for p in parsers]
        if not all(choices) or not all(name in c for name in names for c in choices):
            break
        path.append(word)
        parsers = [c[name] for name in names for c in choices]
    return path


def _parsers(path: list[str]) -> list[Any]:
    parsers = [_parser()]
    for word in path:
        parsers = [_subparsers(p)[name] for name in word.split("|") for p in parsers]
    return parsers


def unknown_options(command: Command) -> list[str]:
    """The options ``command`` names that its (sub)commands do not have; a first word that is not a command."""
    argv = command.argv
    path = _command_path(argv)
    rest = argv[len(path):]
    needs_command = all(_subparsers(p) for p in _parsers(path))
    if rest and needs_command and not rest[0].startswith(("-", "[")) and not PLACEHOLDER.match(rest[0]):
        return [f"command {' '.join([*path, rest[0]])!r}"]
    flags = re.findall(r"(?<![\w-])--?[a-zA-Z][\w-]*", " ".join(argv[len(path):]))
    return [flag for parser in _parsers(path) for flag in flags
            if flag.startswith("--") and flag not in parser._option_string_actions]


def all_commands() -> list[Command]:
    return [c for page in PAGES for c in page_commands(page)]


def test_the_pages_show_commands_and_the_rule_finds_them():
    commands = all_commands()
    runs = [c for c in commands if c.runs]
    assert len(runs) >= 20 and len(commands) - len(runs) >= 20, [str(c) for c in runs]
    found = {str(c) for c in runs}
    assert any("atebm sample --checkpoint /tmp/docs/run" in c for c in found)           # a bash block line
    assert any("critic_steps=0" in str(c) and c.expect == 1 for c in runs)            # a transcript's `exit 1`
    assert any("atebm presets --command train" in c for c in found)                     # an inline span
    expected_failures = {c.argv[0] for c in runs if c.expect == 1}
    assert {"train", "dsgan"} <= expected_failures


@pytest.mark.parametrize("command", [c for c in all_commands()], ids=str)
def test_every_command_and_reference_names_existing_options(command):
    """A renamed option or command breaks the page that still prints the old one."""
    assert not unknown_options(command), f"{command}: unknown {unknown_options(command)}"
    if command.runs:
        assert _is_complete(_in_world(command.argv, Path("/world"))), f"{command}: the parser refuses it"


# ------------------------------------------------------------------------------------------------ smoke budget
#: ``atebm train``'s smoke budget: the conftest's TINY_MNIST_OVERRIDES, split into budgets (appended always) and the
#: network and data (appended where the documented line sets none); K stays the documented one (``k_max=0``: OE).
TRAIN_DEFAULTS = {item.partition("=")[0]: item for item in TINY_MNIST_OVERRIDES
                  if item.partition("=")[0] in ("model", "data", "p0", "seeds")}
TRAIN_BUDGET = [item for item in TINY_MNIST_OVERRIDES
                if item.partition("=")[0] not in (*TRAIN_DEFAULTS, "k_max")]
DSGAN_BUDGET = ["max_iters=2", "log_every=1", "ckpt_every=2", "batch_size=8", "progress=false"]


def smoke_budget(argv: list[str], expect: int | None = 0) -> list[str]:
    """What the smoke budget appends to the documented ``argv`` of a command expected to exit with ``expect``. The
    one place that knows every command's budget options; a runnable command without an entry fails here. A command
    expected to fail gets no data sources: it must fail on its own."""
    path = tuple(_command_path(argv))
    keys = {word.partition("=")[0] for word in argv if "=" in word and not word.startswith("-")}
    if path == ("train",):
        if "--resume" in argv:
            return ["max_iters=6"]  # the run it continues stopped at 4
        defaults = {} if expect else TRAIN_DEFAULTS
        return TRAIN_BUDGET + [value for key, value in defaults.items() if key not in keys]
    if path in (("restore", "denoise"), ("restore", "inpaint"), ("compose",)):
        return ["--n", "4", "--steps", "2"]
    if path == ("translate",):
        return ["--n", "4"]  # the steps stay the checkpoint's: the documented --trajectory reaches 32
    if path == ("interpolate",):
        return ["--n", "4", "--num", "3", "--steps", "2"]
    if path == ("sample",):
        return ["--n", "4", "--steps", "2"]
    if path == ("eval-ood",):
        attackers = argv[argv.index("--attackers") + 1:] if "--attackers" in argv else ["pgd", "apgd"]
        budget = ["--n", "4", "--n-in", "8", "--steps", "2", "--apgd-steps", "2"]
        return budget + (["--square-steps", "2"] if "square" in attackers else [])
    if path == ("toy2d",):
        return ["--iters", "2", "--rounds", "2", "--particles", "16", "--d-steps", "1", "--batch-size", "16",
                "--hidden", "8", "--depth", "1"]
    if path == ("demo",):
        return ["--smoke"]
    if path in (("presets",), ("report",)):
        return []
    if path == ("dsgan", "train"):
        return DSGAN_BUDGET + ["--n-eval", "8"]
    if path == ("dsgan", "sample"):
        return ["--n", "8"]
    if path == ("dsgan", "ssl"):
        return ["max_iters=2", "log_every=1", "ckpt_every=2"]
    if path == ("ablate",):
        return ["--smoke", "--budget", "3", "--seeds", "0", "1"]  # two seeds: the per-seed statistics run
    if path == ("gat", "train"):
        return ["--smoke", "--workers", "1", "--data", "mnist?n=500"]
    if path in (("gat", "eval"), ("gat", "classify-eval")):
        return ["--protocol", "smoke"]
    if path == ("gat", "calibrate"):
        return []
    if path == ("gat", "robust-softmax"):
        return ["--iterations", "2", "--warmup", "1"]
    if path == ("gat", "explain"):
        return ["--per-class", "1", "--counterfactuals", "2", "--ig-n", "1"]
    raise AssertionError(f"no smoke budget for `atebm {' '.join(path)}`: add one to smoke_budget")


def test_every_command_line_has_a_smoke_budget():
    for command in all_commands():
        if command.runs and command.expect is not None:
            smoke_budget(command.argv)


# ------------------------------------------------------------------------------------------------ running
def _in_world(argv: list[str], world: Path) -> list[str]:
    return [word.replace("/tmp/docs", str(world / "docs")) for word in argv]


def _write_digit_subsets(world: Path) -> None:
    """apps.md: "The subsets were written as NPZ files from the embedded MNIST 5,000 training split (...), keep the
    labels of the subset, numpy.savez(path, x=...)" (here 32 digits each)."""
    from atebm.data import load_dataset

    digits = load_dataset("mnist", split="train")
    assert digits.y is not None
    (world / "docs").mkdir(parents=True, exist_ok=True)
    for name, low, high in (("digits_0to5", 0, 5), ("digits_4to9", 4, 9)):
        keep = (digits.y >= low) & (digits.y <= high)
        np.savez(world / "docs" / f"{name}.npz", x=digits.x[keep][:32].numpy())


#: Files a page says the reader writes by hand, written before its commands run.
PREPARE: dict[str, Callable[[Path], None]] = {"docs/commands/apps.md": _write_digit_subsets}


class World:
    """The reader's machine: one folder in which the pages' commands run in order, each page once."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.done: dict[str, list[tuple[Command, float]]] = {}  # page -> its commands and their seconds
        self.ran: set[tuple[str, ...]] = set()

    def run_page(self, page: str) -> list[tuple[Command, float]]:
        if page not in self.done:
            for needed in NEEDS.get(page, ()):
                self.run_page(needed)
            if page in PREPARE:
                PREPARE[page](self.root)
            self.done[page] = [(c, self.run(c)) for c in page_commands(page) if c.runs]
        return self.done[page]

    def run(self, command: Command) -> float:
        """Runs ``command`` at the smoke budget (once: a line that ran before, e.g. apps.md's mention of
        train.md's training, names that run) and checks its exit status; returns the wall-clock seconds."""
        if command.expect is None or tuple(command.argv) in self.ran:
            return 0.0
        self.ran.add(tuple(command.argv))
        argv = _in_world(command.argv, self.root) + smoke_budget(command.argv, command.expect)
        out, err = io.StringIO(), io.StringIO()
        threads, cwd = torch.get_num_threads(), Path.cwd()
        start = os.times()
        os.chdir(self.root)
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                status = main(argv)
        finally:
            os.chdir(cwd)
            torch.set_num_threads(threads)  # a documented --threads 1 must not outlive its command
        seconds = os.times().elapsed - start.elapsed
        assert status == command.expect, (f"{command}\n  ran as: atebm {shlex.join(argv)}\n  exit {status}, "
                                          f"expected {command.expect}\n{err.getvalue()[-3000:]}")
        if status:
            lines = err.getvalue().strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("atebm "), f"{command}: not a one-line error: {lines}"
        return seconds


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    old = os.environ.pop("ATEBM_TRACEBACK", None)
    yield World(tmp_path_factory.mktemp("docs-world"))
    if old is not None:
        os.environ["ATEBM_TRACEBACK"] = old


#: Pages whose commands use nothing another page made: they may run in another pytest-xdist worker (its own world).
STANDALONE = ("docs/commands/gat.md", "docs/commands/ablate.md")


@pytest.mark.slow
@pytest.mark.parametrize("page", [page if page in STANDALONE else pytest.param(page, marks=pytest.mark.xdist_group(
    "docs-world")) for page in PAGES])
def test_the_command_lines_of_each_page_run(page, world, capsys):
    ran = world.run_page(page)
    with capsys.disabled():
        for command, seconds in ran:
            if command.expect is None:
                print(f"\n  not run: {command} ({command.why})")
            elif seconds > 5:
                print(f"\n  {seconds:5.1f} s  {command}")


# ------------------------------------------------------------------------------------------------ torchrun
def _env() -> dict[str, str]:
    # CPU only (so gloo), one thread per process on the shared cores
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _torchrun() -> list[str]:
    """The ``torchrun`` of this interpreter's environment (its console script, else the module it runs)."""
    script = Path(sys.executable).with_name("torchrun")
    return [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.xdist_group("torchrun")
@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's elastic agent needs a POSIX system")
def test_the_readme_torchrun_line_trains_with_two_processes(tmp_path, tiny_mnist_overrides):
    commands = torchrun_lines()
    assert len(commands) == 1, f"README.md should show one torchrun line, found {commands}"
    argv = shlex.split(commands[0])
    assert "--nproc_per_node=2" in argv
    out = tmp_path / "run"
    # the line as printed, plus a run folder and a smoke budget (the line ends with the train command's options)
    result = subprocess.run(_torchrun() + argv[1:] + ["--out", str(out), *tiny_mnist_overrides],
                            capture_output=True, text=True, timeout=240, env=_env(), cwd=tmp_path)
    assert result.returncode == 0, f"{commands[0]} failed:\n{result.stderr[-3000:]}"
    # one run trained by two ranks (not two separate one-process runs): rank 0 reports the world and writes
    assert "2 process(es)" in result.stderr
    assert result.stdout.count("done: 4 iterations") == 1, result.stdout
    state = load_checkpoint(out / CHECKPOINT_FILE)
    assert state["trainer"]["world"] == 2 and state["trainer"]["step"] == 4
    assert (out / MODEL_FILE).is_file()


@pytest.mark.parametrize("module", ["atebm", "atebm.cli"])
def test_both_module_entry_points_run_the_command_line(module):
    """``python -m atebm`` and ``python -m atebm.cli`` (the form older docs printed) are the same program."""
    result = subprocess.run([sys.executable, "-m", module, "--version"], capture_output=True, text=True,
                            timeout=120, env=_env())
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("atebm ")
