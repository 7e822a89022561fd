"""``atebm report RUN_DIR``: re-renders a run's ``report.html`` from its ``report.json``."""
from __future__ import annotations

import argparse

from ..report import render

__all__ = ["register"]


def _run(args: argparse.Namespace) -> int:
    path = render(args.run_dir)
    print(f"report written to {path}")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("report", help="re-render a run's self-contained report.html",
                                   description="Re-renders RUN_DIR/report.html from RUN_DIR/report.json.")
    parser.add_argument("run_dir", help="run folder holding report.json")
    parser.set_defaults(func=_run)
