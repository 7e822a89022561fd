"""Argument types shared by every ``atebm`` sub-command (argparse ``type=`` callables with range checks)."""
from __future__ import annotations

import argparse

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float"]


def _number(text: str, kind: type, lowest: float, inclusive: bool, what: str):
    try:
        value = kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if not (value >= lowest if inclusive else value > lowest):
        raise argparse.ArgumentTypeError(f"expected {what}, got {text}")
    return value


def positive_int(text: str) -> int:
    return _number(text, int, 1, True, "an integer >= 1")


def non_negative_int(text: str) -> int:
    return _number(text, int, 0, True, "an integer >= 0")


def positive_float(text: str) -> float:
    return _number(text, float, 0.0, False, "a number > 0")


def non_negative_float(text: str) -> float:
    return _number(text, float, 0.0, True, "a number >= 0")
