"""Options and argument types shared by the ``atebm`` sub-commands, declared once.

Every command that takes a device, a checkpoint, input images, an output folder, a thread count or a seed adds
it with the function below, so the flag, its type, default and help are the same everywhere. Image size and
channels are never options of a command that loads a checkpoint: they come from the checkpoint
(``model.meta``; see :func:`atebm.load_model`).
"""
from __future__ import annotations

import argparse
from typing import Any

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float", "fraction",
           "add_device", "add_checkpoint", "add_out", "add_threads", "add_seed", "add_input", "apply_threads",
           "DEVICES", "pipeline_defaults"]

#: ``--device`` choices; ``auto`` picks CUDA when available (:func:`atebm.training.resolve_device`).
DEVICES = ("auto", "cpu", "cuda")


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


def fraction(text: str) -> float:
    """A number in [0, 1]."""
    value = _number(text, float, 0.0, True, "a number in [0, 1]")
    if value > 1:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text}")
    return value


def add_device(parser: argparse.ArgumentParser | Any, default: str | None = "auto") -> None:
    parser.add_argument("--device", choices=DEVICES, default=default,
                        help="where to run: auto (CUDA when available), cpu or cuda"
                             + (f" (default: {default})" if default else " (default: the preset's)"))


def add_checkpoint(parser: argparse.ArgumentParser | Any, *, several: bool = False, required: bool = True,
                   flag: str = "--checkpoint", help: str | None = None) -> None:
    what = help or ("run folder (its model.pt: the weights the run selected) or a model/checkpoint file")
    if several:
        parser.add_argument(flag, nargs="+", required=required, metavar="PATH",
                            help=what + "; several are summed into one score")
    else:
        parser.add_argument(flag, required=required, metavar="PATH", help=what)


def add_out(parser: argparse.ArgumentParser | Any, *, required: bool = True, default: str | None = None,
            help: str = "output (run) folder") -> None:
    parser.add_argument("--out", required=required, default=default, metavar="DIR",
                        help=help + (f" (default: {default})" if default else ""))


def add_threads(parser: argparse.ArgumentParser | Any, default: int | None = None) -> None:
    parser.add_argument("--threads", type=positive_int, default=default,
                        help=f"torch CPU threads (default: {default if default else 'torch' + chr(39) + 's choice'})")


def apply_threads(args: argparse.Namespace) -> None:
    """Applies ``--threads`` when the command declared it and the user set it."""
    threads = getattr(args, "threads", None)
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_seed(parser: argparse.ArgumentParser | Any, default: int = 0, help: str = "random seed") -> None:
    parser.add_argument("--seed", type=int, default=default, help=f"{help} (default: {default})")


def add_input(parser: argparse.ArgumentParser | Any, *, required: bool = True) -> None:
    """``--input PATH`` (NPZ key ``x`` / NPY in [0, 1], NCHW, an image folder, an IDX file or a source string) or
    ``--data NAME`` (an embedded or named data set), with ``--split`` and ``--n``."""
    where = parser.add_mutually_exclusive_group(required=required)
    where.add_argument("--input", metavar="PATH",
                       help="NPZ (key x) / NPY array in [0,1] NCHW, an image folder, or a data-source string")
    where.add_argument("--data", metavar="NAME", help="a named data set of atebm.data (mnist, fashion, lfw, ...)")
    parser.add_argument("--split", default="test", help="split of --data (default: test)")
    parser.add_argument("--n", type=positive_int, default=None, metavar="N",
                        help="use the first N images (default: all of --input, 64 of --data)")


def pipeline_defaults(pipeline: Any) -> dict[str, Any]:
    """The keyword defaults of a library pipeline function: the one place they are declared (parsers show and
    use them)."""
    import inspect

    return {name: p.default for name, p in inspect.signature(pipeline).parameters.items()
            if p.default is not inspect.Parameter.empty}
