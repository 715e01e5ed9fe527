"""Typed configs: every value checked against its dataclass's type hint when it is read.

A config is a tree of dataclasses (``TrainConfig``, ``IvectorConfig``, ``FeatureConfig``,
``AugmentConfig``, ``BackendOptions``); :func:`build_config` makes one from the mapping a
YAML file gave, and refuses what does not fit, naming the dotted key and what it expected
(``conf/gru_softmax.yaml: optimizer.lr_start: expected a number, got 'abc'``).  A value
of the wrong type would otherwise travel into a job and fail there, or worse, not fail:
``bool("false")`` is True.

The hints understood: ``int``, ``float``, ``bool``, ``str``, ``X | None``, unions,
``list[X]``, ``tuple[...]``, ``Literal[...]``, ``dict[K, V]`` and nested dataclasses (a
mapping, its keys checked the same way; ``null`` or an empty section is the defaults).
The coercions, all of them:

* an integer is accepted for a float (YAML reads ``1`` as an int), kept as written so a
  config's signature does not change;
* a boolean is never a number, although Python's True is an int;
* a float is never an integer (``batch_size: 64.0`` is refused, not truncated);
* a string that is a plain decimal or scientific number (``1e-3``, ``+5``, ``.5``) is
  accepted for a float and converted: PyYAML follows YAML 1.1, which reads ``1e-3``
  (no dot) as a string, and that is how learning rates are written.  Nothing else
  becomes a number (``nan``, ``inf``, ``1_000``, ``0x10`` stay refused), and NaN is
  refused even as a float, since it passes every range check;
* a quoted ``"false"``, ``"no"``, ``"off"``, ... is not a boolean (the message says to
  drop the quotes); for a ``Literal`` of words, a YAML 1.1 boolean that is the reading
  of exactly one of them is that word (``amp: off`` reads as False and means ``"off"``);
* a list is accepted for a tuple and a tuple for a list, a path for a string, numpy
  scalars for Python ones.

Ranges and parse functions ride on the hint, ``typing.Annotated`` (``batch_size:
Count = 64``; :data:`Count`, :data:`Fraction`, :data:`Seed`, ... below), and are
checked at read time too: the range after the type, a :class:`Parse` function (Kaldi's
``"15:10:5:0"`` SNR lists) before it.  Checks that relate fields stay in the
dataclass's ``__post_init__``; its ValueError is reported under the section's key.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from typing import Annotated, Any, Literal

import numpy as np

from .utils import ConfigError

# A plain decimal or scientific number, as users write it (see the module docstring).
_PLAIN_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?")
# The words YAML 1.1 (PyYAML) reads as booleans, in lower case.
_BOOL_WORDS = {True: ("true", "yes", "on"), False: ("false", "no", "off")}
_PLURALS = {int: "integers", float: "numbers", str: "strings", bool: "booleans"}


class Refused(ValueError):
    """A value that does not fit its declared type or range; the text starts with its dotted key."""


class OutOfRange(Refused):
    """A value of the right type outside its :class:`Range` (a union does not try the next type)."""


@dataclasses.dataclass(frozen=True)
class Parse:
    """``Annotated[hint, Parse(f)]``: ``f(value)`` is checked instead of ``value``.

    For the forms a field accepts beside its type (``"15:10:5:0"`` for a list of
    numbers); a ValueError from ``f`` is reported under the key.
    """

    function: Callable[[Any], Any]


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a number: ``ge`` <= v, ``gt`` < v, v <= ``le``, v < ``lt`` (None: no bound)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def __contains__(self, v: float) -> bool:
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def __str__(self) -> str:
        low = f"[{self.ge}" if self.ge is not None else f"({self.gt}" if self.gt is not None else ""
        high = f"{self.le}]" if self.le is not None else f"{self.lt})" if self.lt is not None else ""
        if low and high:
            return f"within {low}, {high}"
        if low:
            return f"{'>=' if low[0] == '[' else '>'} {low[1:]}"
        return f"{'<=' if high[-1] == ']' else '<'} {high[:-1]}"


# The ranges the configs use, by name.
Count = Annotated[int, Range(ge=1)]
NonNegativeInt = Annotated[int, Range(ge=0)]
Positive = Annotated[float, Range(gt=0)]
NonNegative = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]
Seed = Annotated[int, Range(ge=0, lt=2**32)]  # what numpy's, torch's and sklearn's seeding accept


def build_config(cls: type, values: Mapping[str, Any] | None, where: str) -> Any:
    """Dataclass ``cls`` from ``values``; a ConfigError ``where: key: what is wrong`` otherwise."""
    try:
        return _build(cls, values, "")
    except Refused as e:
        raise ConfigError(f"{where}: {e}") from None


def check_value(hint: Any, value: Any, key: str = "value") -> Any:
    """``value`` as type ``hint`` allows it (see the coercions above); Refused otherwise."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return value
    if origin is Annotated:
        return _annotated(hint, value, key)
    if origin in (typing.Union, types.UnionType):
        return _union(hint, value, key)
    if origin is Literal:
        return _literal(hint, value, key)
    if dataclasses.is_dataclass(hint):
        return _section(hint, value, key)
    scalar = _SCALARS.get(hint)
    if scalar is not None:
        return scalar(value, key)
    if hint in (list, tuple) or origin in (list, tuple):
        return _sequence(hint, value, key)
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        return _mapping(hint, value, key)
    if isinstance(hint, type) and not isinstance(value, hint):
        _refuse(hint, value, key)
    return value


def describe_type(hint: Any) -> str:
    """What ``hint`` asks for, in the words of a YAML user: 'an integer', 'one of auto, off'."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return describe_type(args[0])
    if origin in (typing.Union, types.UnionType):
        some = [a for a in args if a is not type(None)]
        words = _words(some)
        text = f"one of {', '.join(words)}" if words else " or ".join(map(describe_type, some))
        return text + (" or null" if len(some) < len(args) else "")
    if origin is Literal:
        words = [_yaml_word(a) for a in args]
        return words[0] if len(words) == 1 else f"one of {', '.join(words)}"
    if hint is type(None):
        return "null"
    if dataclasses.is_dataclass(hint):
        return "a mapping"
    if hint in _NAMES:
        return _NAMES[hint]
    if hint in (list, tuple) or origin in (list, tuple):
        if not args:
            return "a list"
        if origin is list or args[-1] is Ellipsis:
            return f"a list of {_PLURALS.get(args[0], 'items, each ' + describe_type(args[0]))}"
        return f"a list of {len(args)} items ({', '.join(map(describe_type, args))})"
    if hint in (dict, Mapping) or origin in (dict, Mapping):
        return "a mapping"
    return f"a {getattr(hint, '__name__', hint)}"


def describe_value(value: Any) -> str:
    """``value`` as the YAML user wrote it: strings quoted, true/false, null, NaN."""
    if value is None:
        return "null"
    if isinstance(value, (bool, np.bool_)):
        return "true" if value else "false"
    if isinstance(value, numbers.Integral):
        return repr(int(value))
    if isinstance(value, numbers.Real):
        return "NaN" if math.isnan(value) else repr(float(value))
    if isinstance(value, Mapping):
        return "a mapping"
    text = repr(list(value) if isinstance(value, tuple) else value)
    return text if len(text) <= 80 else text[:77] + "..."


# --------------------------------------------------------------------------- the builder


@functools.cache
def _schema(cls: type) -> tuple[dict[str, dataclasses.Field], dict[str, Any]]:
    """(init fields by name, resolved type hints) of ``cls``, once per class."""
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    return fields, typing.get_type_hints(cls, include_extras=True)


def _build(cls: type, values: Mapping[str, Any] | None, prefix: str) -> Any:
    at = f"{prefix}: " if prefix else ""
    if values is not None and not isinstance(values, Mapping):
        raise Refused(f"{at}expected a mapping, got {describe_value(values)}")
    fields, hints = _schema(cls)
    values = dict(values or {})
    unknown = sorted(set(values) - set(fields), key=str)
    if unknown:
        raise Refused(f"{at}unknown key(s) {', '.join(map(str, unknown))}; "
                      f"known keys are {', '.join(sorted(fields))}")
    missing = [name for name, f in fields.items() if name not in values
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise Refused(f"{at}missing key(s) {', '.join(missing)}")
    for name, value in values.items():
        key = f"{prefix}.{name}" if prefix else name
        values[name] = check_value(hints.get(name, Any), value, key)
    try:
        return cls(**values)
    except Refused:
        raise
    except (TypeError, ValueError) as e:  # the dataclass's own checks (__post_init__)
        raise Refused(f"{at}{e}") from e


# --------------------------------------------------------------------------- the checks


def _refuse(hint: Any, value: Any, key: str, why: str = "") -> typing.NoReturn:
    raise Refused(f"{key}: expected {describe_type(hint)}, got {describe_value(value)}{why}")


def _annotated(hint: Any, value: Any, key: str) -> Any:
    base, *extras = typing.get_args(hint)
    for parse in (e for e in extras if isinstance(e, Parse)):
        try:
            value = parse.function(value)
        except Refused:
            raise
        except ValueError as e:
            raise Refused(f"{key}: {e}") from None
    value = check_value(base, value, key)
    for bounds in (e for e in extras if isinstance(e, Range)):
        if _is_number(value) and value not in bounds:
            raise OutOfRange(f"{key}: must be {bounds}, got {describe_value(value)}")
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _bool(value: Any, key: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    why = ""
    if isinstance(value, str) and value.lower() in _BOOL_WORDS[True] + _BOOL_WORDS[False]:
        word = "true" if value.lower() in _BOOL_WORDS[True] else "false"
        why = f" (quoted, so a string, not a boolean: write {word} without quotes)"
    _refuse(bool, value, key, why)


def _int(value: Any, key: str) -> int:
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        return value if type(value) is int else int(value)
    _refuse(int, value, key)


def _float(value: Any, key: str) -> float | int:
    if isinstance(value, str) and _PLAIN_NUMBER.fullmatch(value):
        return float(value)
    if _is_number(value) and not math.isnan(value):
        return value if type(value) in (int, float) else float(value)
    _refuse(float, value, key)


def _str(value: Any, key: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    _refuse(str, value, key)


_SCALARS = {bool: _bool, int: _int, float: _float, str: _str}
_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}


def _yaml_word(choice: Any) -> str:
    return describe_value(choice) if not isinstance(choice, str) else choice


def _words(hints: list) -> list[str]:
    """The choices of a union of Literals and bool, as words; [] when it holds anything else."""
    words: list[str] = []
    for h in hints:
        if typing.get_origin(h) is Literal:
            choices = [_yaml_word(c) for c in typing.get_args(h)]
        elif h is bool:
            choices = ["true", "false"]
        else:
            return []
        words += [w for w in choices if w not in words]
    return words


def _union(hint: Any, value: Any, key: str) -> Any:
    args = typing.get_args(hint)
    if value is None and type(None) in args:
        return None
    some = [a for a in args if a is not type(None)]
    if len(some) == 1 and value is not None:
        try:
            return check_value(some[0], value, key)
        except Refused as e:
            # The one alternative's own words (its hint for a quoted "false", an item's
            # key in a list), with "or null" where null was also allowed.
            text = str(e)
            if len(some) < len(args):
                text = text.replace(f"expected {describe_type(some[0])}",
                                    f"expected {describe_type(some[0])} or null", 1)
            raise Refused(text) from None
    for alternative in some:
        try:
            return check_value(alternative, value, key)
        except OutOfRange:
            raise
        except Refused:
            continue
    _refuse(hint, value, key)


def _literal(hint: Any, value: Any, key: str) -> Any:
    choices = typing.get_args(hint)
    for choice in choices:
        if type(choice) is type(value) and choice == value:
            return choice
    if isinstance(value, bool):
        words = [c for c in choices if isinstance(c, str) and c.lower() in _BOOL_WORDS[value]]
        if len(words) == 1:
            return words[0]
    _refuse(hint, value, key)


def _section(cls: type, value: Any, key: str) -> Any:
    if isinstance(value, cls):
        return value
    if value is not None and not isinstance(value, Mapping):
        raise Refused(f"'{key}' must be a mapping, got {value!r}")
    return _build(cls, value, key)


def _sequence(hint: Any, value: Any, key: str) -> list | tuple:
    if not isinstance(value, (list, tuple)):
        _refuse(hint, value, key)
    args = typing.get_args(hint)
    container = tuple if hint is tuple or typing.get_origin(hint) is tuple else list
    if not args:
        return container(value)
    if container is tuple and args[-1] is not Ellipsis:
        if len(value) != len(args):
            _refuse(hint, value, key)
        items = args
    else:
        items = (args[0],) * len(value)
    return container(check_value(h, v, f"{key}[{i}]") for i, (h, v) in enumerate(zip(items, value)))


def _mapping(hint: Any, value: Any, key: str) -> dict:
    if value is None:  # an empty section in YAML (`options:`) is an empty mapping
        return {}
    if not isinstance(value, Mapping):
        _refuse(hint, value, key)
    args = typing.get_args(hint)
    if not args:
        return dict(value)
    return {check_value(args[0], k, f"{key} (a key {k!r})"): check_value(args[1], v, f"{key}.{k}")
            for k, v in value.items()}


__all__ = ["Count", "Fraction", "NonNegative", "NonNegativeInt", "OutOfRange", "Parse", "Positive",
           "Range", "Refused", "Seed", "build_config", "check_value", "describe_type",
           "describe_value"]
