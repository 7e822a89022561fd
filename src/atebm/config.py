"""One configuration idiom for every config and spec of the library: frozen dataclasses validated when built.

A config is a ``@dataclass(frozen=True)`` that subclasses :class:`Config`. Each field declares its type, and through
:func:`setting` the rules its value must satisfy (:func:`one_of`, :func:`at_least`, :func:`above`,
:func:`in_range`, :func:`each`, :func:`non_empty`, :func:`distinct`, :func:`satisfies`, :func:`checked_by`)::

    @dataclass(frozen=True)
    class Solver(Config):
        steps: int = setting(100, at_least(1))
        norm: str = setting("l2", one_of("l2", "linf"))
        decay: float | None = setting(None, in_range(0, 1, lo_open=True, hi_open=True))

Building one (directly, with :meth:`Config.from_dict` or with :meth:`Config.replace`):

1. converts what JSON and YAML write differently: lists to the declared tuples, mappings to nested configs,
   integers to floats for ``float`` fields, whole numbers to ``int``; :meth:`Config.from_dict` also reads number
   text (``"inf"``, as :func:`atebm.training.write_json` writes it) as a float where a float is declared;
2. checks every field's type, then its rules (``None`` passes them where the type allows it), and once every
   field is valid the class's cross-field rules (:meth:`Config.check`, for what one field cannot say alone);
3. raises one ``ValueError`` naming every problem: the field, the value and the valid choices or range.

A subclass that only changes a field's default (``lr: float = 2e-4``) keeps the rules the base declared for it.
This module is core: it imports only the standard library.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
import types
import typing
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Self

__all__ = ["Config", "Rule", "REQUIRED", "setting", "one_of", "at_least", "above", "in_range", "each", "non_empty",
           "distinct", "satisfies", "checked_by"]

#: The default of a field that has none: ``setting(REQUIRED, one_of(...))``.
REQUIRED: Any = dataclasses.MISSING
_RULES = "atebm.config.rules"
_CONVERT = "atebm.config.convert"


# ------------------------------------------------------------------------------------------------------ rules
@dataclasses.dataclass(frozen=True)
class Rule:
    """A constraint on one field's value: ``test(value)`` must hold; ``text`` completes "``name`` must be ..." and
    ``why`` says what the rule protects.

    ``items``: the rule applies to every item (not None) of a sequence (:func:`each`). ``checker``: a function
    that raises ``ValueError`` with its own message instead (:func:`checked_by`)."""

    test: Callable[[Any], bool]
    text: str
    why: str | None = None
    items: bool = False
    checker: Callable[[Any], Any] | None = None

    def problem(self, name: str, value: Any, optional: bool) -> str | None:
        """The sentence naming what is wrong with ``value`` of field ``name``, or None when the rule holds."""
        if self.checker is not None:
            try:
                for item in (value if self.items else (value,)):
                    if item is not None:
                        self.checker(item)
            except ValueError as error:
                return str(error) if str(error).startswith(name) else f"{name}: {error}"
            return None
        try:
            holds = all(self.test(item) for item in value if item is not None) if self.items else self.test(value)
        except (TypeError, ValueError):
            holds = False
        if holds:
            return None
        what = f"a list whose items are each {self.text}" if self.items else self.text
        return (f"{name} must be {what}{' or None' if optional else ''}{f' ({self.why})' if self.why else ''}, "
                f"got {value!r}")


def satisfies(test: Callable[[Any], bool], text: str, *, why: str | None = None) -> Rule:
    """Any predicate; ``text`` completes "``name`` must be ..." (e.g. ``"auto, cpu, cuda or cuda:N"``)."""
    return Rule(test, text, why)


def one_of(*choices: Any, why: str | None = None) -> Rule:
    """The value is one of ``choices``; one mapping ``{choice: meaning}`` names what each choice does."""
    if len(choices) == 1 and isinstance(choices[0], Mapping):
        meanings = choices[0]
        text = "one of " + ", ".join(f"{choice!r} ({meaning})" for choice, meaning in meanings.items())
        return Rule(lambda value: value in meanings, text, why)
    return Rule(lambda value: value in choices, f"one of {choices}", why)


def in_range(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False, why: str | None = None) -> Rule:
    """``lo <= value <= hi``, either end excluded with ``lo_open`` / ``hi_open`` (NaN never passes)."""
    def test(value: Any) -> bool:
        above_lo = value > lo if lo_open else value >= lo
        below_hi = value < hi if hi_open else value <= hi
        return bool(above_lo and below_hi)

    if hi == math.inf:
        text = ("a finite number " if hi_open else "") + f"{'>' if lo_open else '>='} {lo:g}"
    else:
        text = f"in {'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
    return Rule(test, text, why)


def at_least(lo: float, *, why: str | None = None) -> Rule:
    """``value >= lo`` (infinity included)."""
    return in_range(lo, math.inf, why=why)


def above(lo: float, *, why: str | None = None) -> Rule:
    """``value > lo`` (infinity included)."""
    return in_range(lo, math.inf, lo_open=True, why=why)


def each(rule: Rule) -> Rule:
    """``rule`` holds for every item of a sequence (items that are None are skipped)."""
    return dataclasses.replace(rule, items=True)


def non_empty() -> Rule:
    """The sequence holds at least one item."""
    return Rule(lambda value: len(value) > 0, "non-empty")


def distinct() -> Rule:
    """No item of the sequence is repeated."""
    return Rule(lambda value: len(set(value)) == len(value), "a list without repeated items")


def checked_by(checker: Callable[[Any], Any]) -> Rule:
    """The value passes ``checker``, an existing check that raises ``ValueError`` with its own message."""
    return Rule(lambda value: True, "", checker=checker)


def setting(default: Any = REQUIRED, *rules: Rule, factory: Callable[[], Any] | None = None,
            convert: Callable[[Any], Any] | None = None) -> Any:
    """A config field: its ``default`` (or ``factory`` for a mutable one; :data:`REQUIRED` for none), the
    ``rules`` its value must satisfy and ``convert``, applied to a given value before anything else (to accept
    another form of it, e.g. (name, spec) pairs for a mapping)."""
    metadata = {_RULES: rules, _CONVERT: convert}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


# ------------------------------------------------------------------------------------------------------ types
def _union_members(tp: Any) -> tuple[Any, ...] | None:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        return typing.get_args(tp)
    return None


def _coerce(value: Any, tp: Any) -> Any:
    """``value`` in the declared type's form where an unambiguous conversion exists, else ``value`` unchanged."""
    members = _union_members(tp)
    if members is not None:
        if value is None:
            return None
        for member in members:
            converted = _coerce(value, member)
            if _matches(converted, member):
                return converted
        return value
    origin = typing.get_origin(tp) or tp
    if tp is float and isinstance(value, numbers.Real) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, numbers.Real) and not isinstance(value, bool):
        if isinstance(value, numbers.Integral):
            return int(value)
        return int(float(value)) if float(value).is_integer() else value
    if origin is tuple and isinstance(value, (list, tuple)):
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(item, args[0]) for item in value)
        if args and len(args) == len(value):
            return tuple(_coerce(item, arg) for item, arg in zip(value, args))
        return tuple(value)
    if origin in (dict, Mapping) and isinstance(value, Mapping):
        args = typing.get_args(tp)
        if not args or args[1] is Any:
            return value
        converted = {key: _coerce(item, args[1]) for key, item in value.items()}
        return value if all(converted[key] is item for key, item in value.items()) else converted
    if isinstance(tp, type) and issubclass(tp, Config) and isinstance(value, Mapping):
        return tp.from_dict(value)
    return value


def _from_text(value: Any, tp: Any) -> Any:
    """``value`` with number text (``"inf"``, ``"nan"``, ``"1e-3"``: how JSON files of the library and YAML write
    them) read as floats where ``tp`` declares a float, inside tuples too; anything else unchanged."""
    members = _union_members(tp)
    if isinstance(value, str) and (tp is float or (members is not None and float in members)):
        try:
            return float(value)
        except ValueError:
            return value
    args = typing.get_args(tp)
    if typing.get_origin(tp) is tuple and isinstance(value, (list, tuple)):
        if len(args) == 2 and args[1] is Ellipsis:
            return [_from_text(item, args[0]) for item in value]
        if len(args) == len(value):
            return [_from_text(item, arg) for item, arg in zip(value, args)]
    if members is not None and value is not None:
        for member in members:
            converted = _from_text(value, member)
            if converted is not value:
                return converted
    return value


def _matches(value: Any, tp: Any) -> bool:
    members = _union_members(tp)
    if members is not None:
        return any(_matches(value, member) for member in members)
    if tp is Any:
        return True
    if tp is None or tp is type(None):
        return value is None
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if not isinstance(value, tuple):
            return False
        if len(args) == 2 and args[1] is Ellipsis:
            return all(_matches(item, args[0]) for item in value)
        return not args or (len(args) == len(value) and all(_matches(v, a) for v, a in zip(value, args)))
    if origin in (dict, Mapping):
        return isinstance(value, origin) and (not args or all(
            _matches(k, args[0]) and _matches(v, args[1]) for k, v in value.items()))
    return isinstance(value, origin or tp)


_NAMES = {bool: ("true or false", "booleans"), int: ("an integer", "integers"), float: ("a number", "numbers"),
          str: ("a string", "strings")}


def _describe(tp: Any, plural: bool = False) -> str:
    """``tp`` in words: ``"an integer"``, ``"a list of 2 numbers"``, ``"a number or None"``, ..."""
    members = _union_members(tp)
    if members is not None:
        return " or ".join("None" if m is type(None) else _describe(m, plural) for m in members)
    if tp in _NAMES:
        return _NAMES[tp][plural]
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            text = f"a list of {_describe(args[0], plural=True)}"
        elif args and all(arg == args[0] for arg in args):
            text = f"a list of {len(args)} {_describe(args[0], plural=True)}"
        else:
            text = f"a list ({', '.join(_describe(arg) for arg in args)})"
        return f"lists ({text})" if plural else text
    if origin in (dict, Mapping):
        text = "a mapping" + (f" to {_describe(args[1], plural=True)}" if args and args[1] is not Any else "")
        return f"mappings ({text})" if plural else text
    name = getattr(tp, "__name__", str(tp))
    if isinstance(tp, type) and issubclass(tp, Config):
        return f"{name}s (or their dicts)" if plural else f"a {name} (or its dict)"
    return f"{name}s" if plural else f"a {name}"


@dataclasses.dataclass(frozen=True)
class _FieldSpec:
    name: str
    type: Any
    rules: tuple[Rule, ...]
    convert: Callable[[Any], Any] | None

    @property
    def optional(self) -> bool:
        return _matches(None, self.type)


_SPECS: dict[type, tuple[_FieldSpec, ...]] = {}


def _field_specs(cls: type) -> tuple[_FieldSpec, ...]:
    """Every field of ``cls`` with its resolved type and its rules (those of the nearest class declaring any)."""
    if cls in _SPECS:
        return _SPECS[cls]
    hints = typing.get_type_hints(cls)
    specs = []
    for f in dataclasses.fields(cls):
        declared: Mapping[str, Any] = {}
        for klass in cls.__mro__:
            own = klass.__dict__.get("__dataclass_fields__", {}).get(f.name)
            if own is not None and (own.metadata.get(_RULES) or own.metadata.get(_CONVERT)):
                declared = own.metadata
                break
        specs.append(_FieldSpec(f.name, hints[f.name], tuple(declared.get(_RULES, ())), declared.get(_CONVERT)))
    _SPECS[cls] = tuple(specs)
    return _SPECS[cls]


def _plain(value: Any) -> Any:
    """JSON-ready: nested configs as dicts, tuples as lists, mappings as (copied) dicts."""
    if isinstance(value, Config):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_plain(item) for item in value]
    if isinstance(value, Mapping):
        return {key: _plain(item) for key, item in value.items()}
    return value


# ------------------------------------------------------------------------------------------------------ the base
class Config:
    """Base of every config and spec of the library (mix into a ``@dataclass(frozen=True)``; module doc).

    Gives validation on construction, :meth:`from_dict`, :meth:`to_dict` and :meth:`replace`; a subclass adds
    cross-field rules in :meth:`check`."""

    def __post_init__(self) -> None:
        problems: list[str] = []
        for spec in _field_specs(type(self)):
            given = getattr(self, spec.name)
            try:
                value = _coerce(spec.convert(given) if spec.convert else given, spec.type)
            except (TypeError, ValueError) as error:
                problems.append(f"{spec.name}: {error}")
                continue
            if value is not given:
                object.__setattr__(self, spec.name, value)
            if not _matches(value, spec.type):
                problems.append(f"{spec.name} must be {_describe(spec.type)}, got {value!r}")
            elif value is not None:
                problems += [p for rule in spec.rules if (p := rule.problem(spec.name, value, spec.optional))]
        if not problems:  # the cross-field rules may rely on every field being valid
            problems = list(self.check())
        if problems:
            raise ValueError(f"invalid {type(self).__name__}: " + "; ".join(problems))

    def check(self) -> Iterator[str]:
        """Cross-field rules: one sentence per problem (run once every field has passed its type and rules)."""
        return iter(())

    @classmethod
    def check_keys(cls, names: Iterable[str], *, also: Iterable[str] = ()) -> None:
        """Refuses names that are not fields (nor in ``also``), listing the valid ones: typos fail loudly."""
        valid = {f.name for f in dataclasses.fields(_dataclass(cls))} | set(also)
        unknown = sorted(set(names) - valid)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} key(s) {unknown}; valid keys: {sorted(valid)}")

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> Self:
        """The config of ``values`` (e.g. :meth:`to_dict` output read back from JSON): unknown keys and missing
        required ones fail; omitted fields take their defaults."""
        if not isinstance(values, Mapping):
            raise TypeError(f"{cls.__name__} settings must be a mapping of field names to values, got "
                            f"{type(values).__name__}")
        cls.check_keys(values)
        missing = sorted(f.name for f in dataclasses.fields(_dataclass(cls)) if f.name not in values
                         and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING)
        if missing:
            raise ValueError(f"{cls.__name__} needs key(s) {missing}")
        types = {spec.name: spec.type for spec in _field_specs(cls)}
        return cls(**{key: _from_text(value, types[key]) for key, value in values.items()})

    def to_dict(self) -> dict[str, Any]:
        """Every field, JSON-ready (nested configs as dicts, tuples as lists); :meth:`from_dict` reads it back."""
        return {f.name: _plain(getattr(self, f.name)) for f in dataclasses.fields(_dataclass(self))}

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes`` applied, validated again (unknown names fail)."""
        self.check_keys(changes)
        return dataclasses.replace(_dataclass(self), **changes)


def _dataclass(obj: Any) -> Any:
    """``obj`` (a :class:`Config` subclass or instance) for the ``dataclasses`` functions; a subclass that is not
    a dataclass is a TypeError naming the fix."""
    if not dataclasses.is_dataclass(obj):
        raise TypeError(f"{getattr(obj, '__name__', type(obj).__name__)} subclasses Config but is not a dataclass; "
                        "decorate it with @dataclass(frozen=True)")
    return obj
