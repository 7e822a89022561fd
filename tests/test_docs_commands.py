"""Command lines printed in the docs run as printed: the README's multi-process ``torchrun`` line (2 gloo processes
on the CPU, at a smoke budget given as ``key=value`` overrides appended to it), and both module entry points
``python -m atebm`` and ``python -m atebm.cli``."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from atebm.training import CHECKPOINT_FILE, MODEL_FILE, load_checkpoint

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def readme_commands(program: str) -> list[str]:
    """The inline code spans of README.md that start with ``program``."""
    return [span for span in re.findall(r"`([^`\n]+)`", README.read_text()) if span.split()[:1] == [program]]


def _env() -> dict[str, str]:
    # CPU only (so gloo), one thread per process on the shared cores
    return {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _torchrun() -> list[str]:
    """The ``torchrun`` of this interpreter's environment (its console script, else the module it runs)."""
    script = Path(sys.executable).with_name("torchrun")
    return [str(script)] if script.exists() else [sys.executable, "-m", "torch.distributed.run"]


@pytest.mark.skipif(sys.platform == "win32", reason="torchrun's elastic agent needs a POSIX system")
def test_the_readme_torchrun_line_trains_with_two_processes(tmp_path, tiny_mnist_overrides):
    commands = readme_commands("torchrun")
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
