"""``atebm presets [NAME] [--command COMMAND]``: the named presets of every command, read from
:data:`atebm.presets.REGISTRY`.

Without ``NAME`` it lists every preset grouped by command (``atebm train --preset``, ``atebm gat train --preset``,
``atebm dsgan train --case``), each with its one-line summary, data needs, hardware and measured time. With ``NAME``
it shows that preset in full, in every command that has one of that name; for a training preset that includes the
settings table (pixels, batch, K schedule, PGD step, generation, hardware, wall-clock) and the files it needs.
"""
from __future__ import annotations

import argparse
import textwrap
from collections.abc import Iterable, Mapping
from typing import Any

from ..presets import COMMANDS, REGISTRY, Preset, PresetEntry

__all__ = ["register", "format_overview", "format_preset", "training_table"]

WIDTH = 118  # characters per printed line


def _wrapped(label: str, text: str, indent: int) -> str:
    """``label text`` wrapped to :data:`WIDTH`, continuation lines indented under the text."""
    first = " " * indent + label
    return textwrap.fill(text, WIDTH, initial_indent=first, subsequent_indent=" " * len(first),
                         break_on_hyphens=False, break_long_words=False)


def format_overview(commands: Iterable[str] | None = None) -> str:
    """Every preset of ``commands`` (default: all), grouped by command: name and summary, then data, hardware and
    time."""
    blocks = []
    for command in commands or REGISTRY.commands:
        entries = REGISTRY.entries(command)
        width = max(len(e.name) for e in entries) + 2
        kind = "cases" if COMMANDS[command] == "--case" else "presets"
        lines = [f"atebm {command} {COMMANDS[command]} NAME ({len(entries)} {kind})"]
        for e in entries:
            lines.append(_wrapped(e.name.ljust(width), e.summary, 2))
            for label, text in (("data: ", e.data), ("hardware: ", e.hardware), ("time: ", e.wall_clock)):
                lines.append(_wrapped(label, text, 2 + width))
        blocks.append("\n".join(lines))
    blocks.append("`atebm presets NAME` shows one preset in full (a training preset: its settings table).")
    return "\n\n".join(blocks)


def training_table(presets: Iterable[Preset]) -> str:
    """The settings table of training presets (one row each), then the files each of them needs."""
    presets = list(presets)
    rows = [(p.name, p.size, f"{p.train['batch_size']}", f"0..{p.train['k_max']}", f"{p.train['step_size']}",
             f"{p.generate.steps} x {p.generate.step_size}", p.hardware, p.wall_clock) for p in presets]
    header = ("preset", "px", "batch", "K", "step", "generation", "hardware", "wall-clock")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(len(header))]
    lines = ["  ".join(str(v).ljust(w) for v, w in zip(row, widths)).rstrip() for row in [header] + rows]
    lines += [f"\n{p.name}: needs {p.needs_files}" for p in presets if p.needs_files]
    return "\n".join(lines)


def _settings(values: Mapping[str, Any]) -> str:
    """``key=value`` pairs of the plain (non-dict) values of ``values``."""
    return " ".join(f"{k}={v}" for k, v in values.items() if not isinstance(v, dict))


def format_preset(entry: PresetEntry) -> str:
    """One preset in full: the command line, its description, data needs, hardware, time and settings."""
    p = entry.preset
    lines = [entry.usage, _wrapped("", entry.description, 2)]
    for label, text in (("data: ", entry.data), ("hardware: ", entry.hardware), ("time: ", entry.wall_clock)):
        lines.append(_wrapped(label, text, 2))
    if entry.command == "train":
        lines += ["", training_table([p]), "",
                  f"every setting: atebm train --preset {entry.name} --dry-run (override any as key=value)"]
    elif entry.command == "gat train":
        lines.append(_wrapped("threat model: ", f"{p.norm.upper()} eps {p.eps:g}; training attack rule "
                                                f"{p.train_attack}", 2))
        for label, values in (("detector training: ", p.train), ("validation: ", p.validation.to_dict()),
                              ("classifier: ", p.classifier.to_dict())):
            lines.append(_wrapped(label, _settings(values), 2))
    elif entry.command == "dsgan train":
        lines.append(_wrapped("paper: ", f"{p.paper}; {p.kind}", 2))
        lines.append(_wrapped("config: ", f"{_settings(p.config)} (override any DSGANConfig field as key=value)", 2))
    return "\n".join(lines)


def _presets(args: argparse.Namespace) -> int:
    commands = [args.only] if args.only else list(REGISTRY.commands)
    if args.name is None:
        print(format_overview(commands))
        return 0
    entries = [e for e in REGISTRY.find(args.name) if e.command in commands]
    if not entries:
        known = "; ".join(f"{c}: {', '.join(REGISTRY.names(c))}" for c in commands)
        raise ValueError(f"unknown preset {args.name!r}; choose from {known}")
    print("\n\n".join(format_preset(e) for e in entries))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds ``presets``."""
    presets = subparsers.add_parser(
        "presets", help="list the presets of every command (atebm presets NAME: one in full)",
        description="Lists the named presets of every command that takes one, grouped by command, with data needs, "
                    "hardware and measured time; with NAME, that preset in full.")
    presets.add_argument("name", nargs="?", metavar="NAME", help="show this preset in full")
    presets.add_argument("--command", dest="only", choices=list(REGISTRY.commands), default=None,
                         help="only the presets of this command (quote the two-word ones: --command 'gat train')")
    presets.set_defaults(func=_presets)
