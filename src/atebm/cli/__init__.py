"""The ``atebm`` command: the only layer that parses options. Each module of this package registers its
sub-commands (``register(subparsers)``, setting ``func``) and calls library functions; nothing in the library
imports this package. Options shared by several commands are declared once, in :mod:`atebm.cli.options`."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

# Modules that contribute sub-commands, in help order.
COMMAND_MODULES = (
    "atebm.cli.train",     # train, sample, demo, presets
    "atebm.cli.apps",      # restore, translate, interpolate, compose
    "atebm.cli.ood",       # eval-ood
    "atebm.cli.toy2d",     # toy2d
    "atebm.cli.report",    # report
    "atebm.cli.dsgan",     # dsgan train, sample, ssl
    "atebm.cli.gat",       # gat train, gat eval
    "atebm.cli.ablate",    # ablate NAME (the papers' ablations)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atebm",
        description="Energy-based models learned by binary adversarial training (higher score = in-distribution).",
    )
    parser.add_argument("--version", action="version", version=_version())
    parser.add_argument("--traceback", action="store_true",
                        help="show the full Python traceback of an error (also: environment ATEBM_TRACEBACK=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _version() -> str:
    from .. import __version__

    return f"atebm {__version__}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help()
        return 2
    try:
        result = args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError, TypeError, OSError) as err:
        if args.traceback or os.environ.get("ATEBM_TRACEBACK"):
            raise
        print(f"atebm {args.command}: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
