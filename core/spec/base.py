"""How a spec dataclass reads and writes itself: plain JSON-ready data in, checked values out.

`_SpecBase` gives every spec dataclass `to_dict`/`from_dict`: types come from the type
hints, fixed choices from `_choices`, numeric bounds from `_ranges` (a `Range` per field),
and every error names the key path, what is allowed and what was received. Documents over
STACKLAB_MAX_SPEC_BYTES or nested more than MAX_SPEC_DEPTH levels are refused before
anything recurses into them. No Keras import.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from core.limits import positive_from_env

MAX_SPEC_BYTES_ENV = "STACKLAB_MAX_SPEC_BYTES"
# A spec is a few kilobytes (the seed's are under 1 KB); a megabyte is a thousand of them.
DEFAULT_MAX_SPEC_BYTES = 2**20
# Lists and objects inside each other. The deepest real spec is about 6 levels (members ->
# member -> params -> a list); past ~1,000 the JSON parser itself fails.
MAX_SPEC_DEPTH = 32


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    """The resolved field types of a spec class: resolving them (typing.get_type_hints) costs
    more than reading a whole spec, and a class's annotations never change."""
    return typing.get_type_hints(cls)


class SpecError(ValueError):
    """A spec value has the wrong type, an unknown key or a value outside its choices or range."""


def _choice(value: Any, allowed: tuple[Any, ...], key: str) -> Any:
    if value not in allowed:
        raise SpecError(f"'{key}' must be one of {list(allowed)}, received {value!r}.")
    return value


def _number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))  # 1.0 stays "1.0"


@dataclass(frozen=True)
class Range:
    """The values a number may take: from `minimum` to `maximum` (None: no bound), each end
    included unless marked exclusive.

    Example:
        >>> Range(0.0, 0.9).describe()
        'between 0.0 and 0.9'
        >>> Range(0.0, exclusive_minimum=True).describe()
        'greater than 0.0'
    """

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False

    def contains(self, value: float) -> bool:
        if self.minimum is not None and (value <= self.minimum if self.exclusive_minimum else value < self.minimum):
            return False
        if self.maximum is not None and (value >= self.maximum if self.exclusive_maximum else value > self.maximum):
            return False
        return True

    def describe(self) -> str:
        """'at least 1', 'greater than 0', 'between 0 and 0.9', 'at least 0 and less than 1'."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None and not (self.exclusive_minimum or self.exclusive_maximum):
            return f"between {_number_text(low)} and {_number_text(high)}"
        parts = []
        if low is not None:
            parts.append(f"{'greater than' if self.exclusive_minimum else 'at least'} {_number_text(low)}")
        if high is not None:
            parts.append(f"{'less than' if self.exclusive_maximum else 'at most'} {_number_text(high)}")
        return " and ".join(parts) or "any number"

    def check(self, value: Any, key: str) -> None:
        """Raise SpecError naming `key` when `value` is not a number in this range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"'{key}' must be a number, received {value!r}.")
        if not self.contains(value):
            raise SpecError(f"'{key}' must be {self.describe()}, received {_number_text(value)}.")


class _SpecBase:
    """Shared to_dict/from_dict for the spec dataclasses.

    Subclasses list string fields with a fixed set of values in `_choices`, numeric fields
    with their allowed `Range` in `_ranges` (for a tuple of numbers: the range of each item)
    and rules between fields in `_check_rules`; nested spec types are found from the type
    hints, so each dataclass stays a plain list of fields with comments.
    """

    _choices: typing.ClassVar[dict[str, tuple[Any, ...]]] = {}
    _ranges: typing.ClassVar[dict[str, Range]] = {}

    @classmethod
    def range_of(cls, name: str) -> Range | None:
        """The allowed range of numeric field `name` (for forms), or None when it has none."""
        return cls._ranges.get(name)

    def check_values(self, where: str = "") -> None:
        """Check every number against its range and every rule between fields, nested specs
        included (`from_dict` does this; call it on a spec built in code before using it).

        Args:
            where: the key path of this spec inside its parent, for messages ("train").

        Raises:
            SpecError: the first value out of range or rule broken, naming its key path,
                the allowed range and the value received.
        """
        prefix = f"{where}." if where else ""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value, key = getattr(self, f.name), prefix + f.name
            allowed = self._ranges.get(f.name)
            items = list(enumerate(value)) if isinstance(value, tuple) else None
            if allowed is not None and value is not None:
                for index, item in items if items is not None else [(None, value)]:
                    allowed.check(item, key if index is None else f"{key}[{index}]")
            if isinstance(value, _SpecBase):
                value.check_values(key)
            for index, item in items or ():
                if isinstance(item, _SpecBase):
                    item.check_values(f"{key}[{index}]")
        self._check_rules(prefix)

    def _check_rules(self, prefix: str) -> None:
        """Rules between this spec's fields; raise SpecError naming the key (prefix + name)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _to_plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "", check_values: bool = True):
        """Read a spec from plain data (parsed JSON), checking types, choices, keys and ranges.

        Args:
            data: the mapping to read.
            where: its key path inside a parent spec, for messages.
            check_values: also check numeric ranges and rules between fields. Off only to
                read back what was stored before a rule existed (a run's spec, a draft).

        Raises:
            SpecError: the first thing wrong, naming its key path.
        """
        _check_depth(data, where)
        spec = cls._read(data, where)
        if check_values:
            spec.check_values(where)
        return spec

    @classmethod
    def _read(cls, data: Mapping[str, Any], where: str):
        """Types, choices and keys of `data` (not ranges): the recursive part of from_dict."""
        prefix = f"{where}." if where else ""
        if not isinstance(data, Mapping):
            raise SpecError(
                f"'{where or cls.__name__}' must be an object (a JSON dict), "
                f"received {type(data).__name__}."
            )
        hints = _type_hints(cls)
        fields_by_name = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields_by_name) - {"schema_version"})
        if unknown:
            raise SpecError(
                f"Unknown key '{prefix}{unknown[0]}' in {cls.__name__}. "
                f"Allowed keys: {sorted(fields_by_name)}."
            )
        kwargs = {}
        for name, value in data.items():
            if name == "schema_version":
                continue
            key = prefix + name
            kwargs[name] = _from_plain(value, hints[name], key)
            if name in cls._choices:
                _choice(kwargs[name], cls._choices[name], key)
        missing = [
            n for n, f in fields_by_name.items()
            if n not in kwargs and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        ]
        if missing:
            raise SpecError(f"Missing required key '{prefix}{missing[0]}' in {cls.__name__}.")
        return cls(**kwargs)


def _to_plain(value: Any) -> Any:
    if isinstance(value, _SpecBase):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


def _from_plain(value: Any, hint: Any, key: str) -> Any:
    """Convert a JSON value to the declared field type, or raise naming the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for option in non_none:
            try:
                return _from_plain(value, option, key)
            except SpecError as error:
                errors.append(str(error))
        raise SpecError(errors[0])
    if isinstance(hint, type) and issubclass(hint, _SpecBase):
        return hint._read(value, where=key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"'{key}' must be a list, received {type(value).__name__}.")
        item_hint = args[0] if args else Any
        return tuple(_from_plain(v, item_hint, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise SpecError(f"'{key}' must be an object, received {type(value).__name__}.")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(f"'{key}' must be true or false, received {value!r}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"'{key}' must be an integer, received {value!r}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"'{key}' must be a number, received {value!r}.")
        if not math.isfinite(value):
            raise SpecError(f"'{key}' must be a finite number, received {value!r}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SpecError(f"'{key}' must be a string, received {value!r}.")
        return value
    raise TypeError(f"Unsupported spec field type {hint!r} for '{key}'.")  # a bug, not input


def max_spec_bytes() -> int:
    """The largest spec document read: STACKLAB_MAX_SPEC_BYTES, default 1 MiB.

    Raises:
        ValueError: the variable is set, but not to a positive whole number.
    """
    return positive_from_env(MAX_SPEC_BYTES_ENV, DEFAULT_MAX_SPEC_BYTES, whole=True)


def too_deep_message(path: str) -> str:
    """Why a document nested past MAX_SPEC_DEPTH is refused (at `path`, if known)."""
    where = f" at '{path if len(path) <= 60 else path[:60] + '…'}'" if path else ""
    return (f"The spec is nested more than {MAX_SPEC_DEPTH} levels deep{where} (lists and objects inside "
            f"each other); a StackLab spec needs fewer than 10. Check that this is a StackLab spec.")


def _check_depth(data: Any, where: str) -> None:
    """Refuse plain data nested deeper than MAX_SPEC_DEPTH, before anything recurses into it."""
    pending = [(data, 1, where)]
    while pending:
        value, depth, path = pending.pop()
        if isinstance(value, Mapping):
            children = [(item, f"{path}.{key}" if path else str(key)) for key, item in value.items()]
        elif isinstance(value, (list, tuple)):
            children = [(item, f"{path}[{index}]") for index, item in enumerate(value)]
        else:
            continue
        if depth > MAX_SPEC_DEPTH:
            raise SpecError(too_deep_message(path))
        pending.extend((item, depth + 1, child) for item, child in children)
