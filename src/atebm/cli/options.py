"""Options and argument types shared by the ``atebm`` sub-commands, declared once.

Every command takes the options it shares with others from here, so that a flag's type, help and choices are the
same everywhere: ``--device`` (auto, cpu, cuda), ``--threads``, ``--seed``, ``--out``, ``--resume``, ``--data``,
``--preset``, ``--checkpoint``, ``--input``, ``--no-report``, and ``key=value`` overrides of a config dataclass.

Defaults come from the library, never from a literal here: the signature of the function a command calls
(:func:`pipeline_defaults`) or the fields of the config it builds (:func:`config_defaults`). An option declared with
:func:`add_library_option` is left out of the parsed namespace when it is not given, so the library applies its own
default and the command can tell which options the user gave (:func:`given`), which is how contradictory options
are found and refused (:func:`refuse`).

``key=value`` overrides (:func:`add_overrides`, :func:`read_overrides`): the help lists the valid keys, read with
``dataclasses.fields`` from the config class the command builds; an unknown key is a one-line error naming the valid
ones; a key that an option of the command sets is refused with that option, or, when the command has both, refused
only when both are given.

Image size and channels are never options of a command that loads a checkpoint: they come from the checkpoint
(``model.meta``; see :func:`atebm.load_model`). Errors are ``ValueError`` with one line naming the fix;
:func:`atebm.cli.main` prints them without a traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import yaml

__all__ = ["positive_int", "non_negative_int", "positive_float", "non_negative_float", "fraction", "integer_list",
           "DEVICES", "pipeline_defaults", "config_defaults", "shown", "add_library_option", "add_options_of",
           "OptionRow", "given", "refuse",
           "add_device", "add_checkpoint", "add_out", "add_threads", "add_seed", "add_input", "add_resume",
           "add_data", "add_preset", "add_no_report", "add_run_options", "apply_threads", "parse_overrides",
           "add_overrides", "read_overrides", "library_device"]

#: ``--device`` choices; ``auto`` picks CUDA when available (:func:`atebm.training.resolve_device`).
DEVICES = ("auto", "cpu", "cuda")


# ----------------------------------------------------------------------------------------------- argument types
def _number(text: str, kind: type, lowest: float, inclusive: bool, what: str) -> Any:
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


def integer_list(text: str) -> list[int]:
    """Comma-separated integers (``1,7`` or ``0,1,2``), at least one."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers like 1,7, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one integer")
    return values


# ----------------------------------------------------------------------------------------------- library defaults
def pipeline_defaults(pipeline: Callable[..., Any]) -> dict[str, Any]:
    """The keyword defaults of a library function: the one place they are declared (parsers show them)."""
    return {name: p.default for name, p in inspect.signature(pipeline).parameters.items()
            if p.default is not inspect.Parameter.empty}


def config_defaults(config: type) -> dict[str, Any]:
    """The field defaults of a config dataclass (``default_factory`` fields built once), by field name."""
    defaults: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        if f.default is not dataclasses.MISSING:
            defaults[f.name] = f.default
        elif f.default_factory is not dataclasses.MISSING:
            defaults[f.name] = f.default_factory()
    return defaults


def library_device() -> str:
    """The library's default device, :class:`atebm.TrainConfig`'s (``auto``: CUDA when available), for commands
    that load models themselves."""
    from ..training import TrainConfig

    return str(config_defaults(TrainConfig)["device"])


def shown(value: Any) -> str:
    """A default as ``--help`` prints it: numbers with ``%g``, sequences space-separated, None as ``none``."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return "inf" if math.isinf(value) else f"{value:g}"
    if isinstance(value, (list, tuple)):
        return " ".join(shown(v) for v in value)
    return str(value)


def add_library_option(parser: argparse.ArgumentParser | Any, *flags: str, default: Any, help: str,
                       **kwargs: Any) -> None:
    """An option whose default is the library's ``default``: printed in the help, but the option is absent from the
    parsed namespace unless given (the library applies the default; :func:`given` says what the user gave)."""
    text = (kwargs.pop("default_text", None) or shown(default)).replace("%", "%%")  # argparse formats help with %
    parser.add_argument(*flags, default=argparse.SUPPRESS, help=f"{help} (default: {text})", **kwargs)


#: One row of :func:`add_options_of`: flag, the library parameter or field it sets, argparse keywords, help.
OptionRow = tuple[str, str, Mapping[str, Any], str]


def add_options_of(parser: argparse.ArgumentParser | Any, defaults: Mapping[str, Any],
                   rows: Sequence[OptionRow], *, default_texts: Mapping[str, str] | None = None) -> None:
    """One :func:`add_library_option` per row ``(flag, name, keywords, help)``, its default ``defaults[name]``
    (``default_texts[name]``, when given, says it in words: "the checkpoint's")."""
    for flag, name, keywords, text in rows:
        add_library_option(parser, flag, dest=name, default=defaults[name], help=text,
                           default_text=(default_texts or {}).get(name), **keywords)


def given(args: argparse.Namespace, *names: str) -> dict[str, Any]:
    """The options among ``names`` (destinations) that the command line gave, by destination."""
    return {name: getattr(args, name) for name in names if getattr(args, name, None) is not None}


def refuse(conflicts: Mapping[str, str]) -> None:
    """Raises one ``ValueError`` for the first contradiction ``{"--flag": "why it does not apply here"}`` (an
    empty mapping passes): an option that the chosen mode would ignore is an error, not silently dropped."""
    for flag, why in conflicts.items():
        raise ValueError(f"{flag} {why}: drop {flag}")


# ----------------------------------------------------------------------------------------------- shared options
def add_device(parser: argparse.ArgumentParser | Any, default: str | None, *,
               key: str | None = None) -> None:
    """``--device``. ``default`` is the library's (a signature default or a config field); ``key``: the command's
    ``key=value`` config also has a device field, so the option defaults to None and the key may set it instead."""
    where = "where to run: auto (CUDA when available), cpu or cuda"
    if key is not None:
        parser.add_argument("--device", choices=DEVICES, default=None,
                            help=f"{where} (default: {default}; or {key}=..., not both)")
    else:
        parser.add_argument("--device", choices=DEVICES, default=default, help=f"{where} (default: {default})")


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


def add_threads(parser: argparse.ArgumentParser | Any, default: int | None = None, why: str = "") -> None:
    parser.add_argument("--threads", type=positive_int, default=default,
                        help=f"torch CPU threads (default: {default if default else 'torch' + chr(39) + 's choice'}"
                             f"{why})")


def apply_threads(args: argparse.Namespace) -> None:
    """Applies ``--threads`` when the command declared it and the user set it."""
    threads = getattr(args, "threads", None)
    if threads:
        import torch

        torch.set_num_threads(threads)


def add_seed(parser: argparse.ArgumentParser | Any, default: int, help: str = "random seed") -> None:
    parser.add_argument("--seed", type=int, default=default, help=f"{help} (default: {default})")


def add_input(parser: argparse.ArgumentParser | Any, defaults: Mapping[str, Any]) -> None:
    """``--input PATH`` (NPZ key ``x`` / NPY in [0, 1], NCHW, an image folder, an IDX file or a source string) or
    ``--data NAME`` (an embedded or named data set), one of them required, with ``--split`` and ``--n``
    (``defaults``: the pipeline's, :func:`pipeline_defaults`)."""
    from ..apps.run import DATA_COUNT

    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--input", metavar="PATH",
                       help="NPZ (key x) / NPY array in [0,1] NCHW, an image folder, or a data-source string")
    where.add_argument("--data", metavar="NAME", help="a named data set of atebm.data (mnist, fashion, lfw, ...)")
    add_library_option(parser, "--split", default=defaults["split"],
                       help="split of --data (or of a data set named by --input)")
    add_library_option(parser, "--n", type=positive_int, metavar="N", default=defaults["n"],
                       default_text=f"all of --input, {DATA_COUNT} of --data", help="use the first N images")


def add_resume(parser: argparse.ArgumentParser | Any, help: str = "continue the run in --out exactly") -> None:
    parser.add_argument("--resume", action="store_true", help=help)


def add_data(parser: argparse.ArgumentParser | Any, default: str | None,
             help: str = "labelled data source string") -> None:
    """``--data SOURCE``: ``default`` None means the run's or preset's own source, named in ``help``."""
    parser.add_argument("--data", metavar="SOURCE", default=default,
                        help=help + (f" (default: {default})" if default is not None else ""))


def add_preset(parser: argparse.ArgumentParser | Any, command: str, *, default: str | None = None,
               help: str = "training recipe (`atebm presets` lists them)") -> None:
    """``--preset NAME`` with the choices of ``command`` in :data:`atebm.presets.REGISTRY`; required unless the
    library function has a ``default``."""
    from ..presets import REGISTRY

    parser.add_argument("--preset", choices=REGISTRY.names(command), default=default, required=default is None,
                        help=help + (f" (default: {default})" if default is not None else ""))


def add_no_report(parser: argparse.ArgumentParser | Any, what: str = "update") -> None:
    parser.add_argument("--no-report", action="store_true", help=f"do not {what} report.html")


def add_run_options(parser: argparse.ArgumentParser | Any, pipeline: Callable[..., Any], *, seed: bool = False,
                    report: str | None = None, device_key: str | None = None) -> None:
    """The options most commands end with: ``--device`` (default: ``pipeline``'s), ``--seed`` (``seed``: default
    ``pipeline``'s), ``--threads`` and, with ``report`` ("write" or "update"), ``--no-report``."""
    defaults = pipeline_defaults(pipeline)
    add_device(parser, defaults["device"], key=device_key)
    if seed:
        add_seed(parser, defaults["seed"])
    add_threads(parser)
    if report:
        add_no_report(parser, report)


# ----------------------------------------------------------------------------------------------- key=value
def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=1e-4", "k_max=8", "data=mnist?split=test"]`` -> typed dict (values parsed as YAML scalars; the source
    strings of :data:`atebm.training.run.SOURCE_KEYS` kept as text)."""
    from ..training.run import SOURCE_KEYS

    values: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, text = item.split("=", 1)
        key = key.strip()
        if key in SOURCE_KEYS:
            values[key] = text
            continue
        try:
            value = yaml.safe_load(text) if text else None
        except yaml.YAMLError as err:
            raise ValueError(f"cannot parse the value of {key}: {' '.join(str(err).split())}") from err
        if isinstance(value, str):  # YAML 1.1 reads "5e-4" and "inf" as text
            try:
                value = float(value)
            except ValueError:
                pass
        values[key] = value
    return values


@dataclasses.dataclass(frozen=True)
class _OverrideSpec:
    """What the ``key=value`` positionals of one command accept."""

    config: type
    reserved: Mapping[str, str]     # key -> the option that sets it, maybe with why (the key is refused)
    mirrored: Mapping[str, str]     # key -> an option that sets it too (refused when both are given)
    extra: Sequence[str]            # keys that are not fields of ``config`` (e.g. data source strings)

    def keys(self) -> list[str]:
        fields = [f.name for f in dataclasses.fields(self.config) if f.name not in self.reserved]
        return fields + [k for k in self.extra if k not in fields]


def add_overrides(parser: argparse.ArgumentParser | Any, config: type, *, example: str,
                  reserved: Mapping[str, str] | None = None, mirrored: Mapping[str, str] | None = None,
                  extra: Mapping[str, str] | None = None) -> None:
    """``key=value ...`` positionals that override fields of the dataclass ``config``. The help lists the valid
    keys: its fields (``dataclasses.fields``) except ``reserved`` (key -> the option that sets it instead), plus the
    ``extra`` keys (key -> meaning). ``mirrored``: key -> an option that sets the same field (either, not both)."""
    spec = _OverrideSpec(config, dict(reserved or {}), dict(mirrored or {}), list(extra or {}))
    notes = "".join(f"; {key}= {meaning}" for key, meaning in (extra or {}).items())
    notes += "".join(f"; {key}= is set by {option}" for key, option in spec.reserved.items())
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help=f"{config.__name__} fields, values parsed as YAML (e.g. {example}){notes}; keys: "
                             + ", ".join(spec.keys()))
    parser.set_defaults(override_spec=spec)


def read_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The command's ``key=value`` overrides, typed; the value of a mirrored option given on the command line joins
    them under its key. Unknown keys, reserved keys and a key given both ways are one-line errors."""
    spec: _OverrideSpec = args.override_spec
    values = parse_overrides(args.overrides)
    for key, option in spec.reserved.items():
        if key in values:
            raise ValueError(f"{key}= is set by {option}: use {option.split(' ', 1)[0]} instead of {key}=")
    valid = spec.keys()
    unknown = [key for key in values if key not in valid]
    if unknown:
        raise ValueError(f"unknown key(s) {', '.join(unknown)}; valid keys: {', '.join(valid)}")
    for key, option in spec.mirrored.items():
        value = getattr(args, option.lstrip("-").replace("-", "_"), None)
        if value is None:
            continue
        if key in values:
            raise ValueError(f"{option} and {key}= both set the {key}: give one of them")
        values[key] = value
    return values
