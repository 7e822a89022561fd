"""The ``atebm`` command. Sub-commands live beside the code they drive; each module exposes
``register(subparsers)`` that adds its parser(s) and sets ``func`` (called with the parsed namespace)."""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from typing import Sequence

# Modules that contribute sub-commands, in help order.
COMMAND_MODULES = (
    "atebm.commands",      # train, sample, demo, presets
    "atebm.apps.cli",      # restore, translate, interpolate, compose
    "atebm.ood.cli",       # eval-ood
    "atebm.toy2d.cli",     # toy2d
    "atebm.report.cli",    # report
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atebm",
        description="Energy-based models learned by binary adversarial training (higher score = in-distribution).",
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except ModuleNotFoundError:
            found = False
        if found:
            importlib.import_module(name).register(sub)
    return parser


def _version() -> str:
    from . import __version__

    return f"atebm {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"atebm {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
