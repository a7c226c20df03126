"""Limits: read from the environment, and written in messages. No Keras import.

Every bound StackLab puts on input (file sizes, parameters, memory, workers) can be set by a
STACKLAB_* environment variable; `positive_from_env` reads each the same way and refuses a
bad value with the same message, and `format_bytes` writes every size a message names.

Example:
    >>> positive_from_env("STACKLAB_MAX_PARAMS", 100_000_000, whole=True)   # "2e8" reads as 200000000
    100000000
    >>> format_bytes(200 * 2**20)
    '200.0 MiB'
"""

from __future__ import annotations

import dataclasses
import math
import os
from typing import Any, ClassVar, Mapping


def positive_from_env(name: str, default: float, *, whole: bool = False,
                      environ: Mapping[str, str] | None = None) -> float:
    """The positive number in environment variable `name`, or `default` when it is unset or empty.

    Args:
        whole: the number must be a whole number ("2e8" and "1_000" are accepted); it is
            returned as an int.
        environ: the environment to read (default `os.environ`).

    Raises:
        ValueError: the variable is set, but not to a positive (whole) number.
    """
    text = (os.environ if environ is None else environ).get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text.replace("_", ""))
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0 or (whole and (value < 1 or value != int(value))):
        kind = "positive whole number" if whole else "positive number"
        raise ValueError(f"{name} must be a {kind}, received {text!r}. Fix or unset it.")
    return int(value) if whole else value


def format_bytes(size: float) -> str:
    """A size as a person reads it: 512 -> '512 bytes', 1536 -> '1.5 KiB', 2**31 -> '2.0 GiB'."""
    if size < 1024:
        return f"{size:,.0f} bytes"
    for unit in ("KiB", "MiB", "GiB"):
        size /= 1024
        if size < 1024:
            return f"{size:,.1f} {unit}"
    return f"{size / 1024:,.1f} TiB"


class EnvLimits:
    """Base of a frozen dataclass of positive limits, each settable by an environment variable.

    A subclass names its variables in ENV_VARS (field -> variable) and the fields that may
    be fractional in FRACTIONAL; every other field is a whole number.

    Example:
        >>> DataLimits.from_env({"STACKLAB_MAX_ROWS": "5000"}).max_rows
        5000
    """

    ENV_VARS: ClassVar[Mapping[str, str]] = {}
    FRACTIONAL: ClassVar[frozenset[str]] = frozenset()

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, field.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{type(self).__name__}.{field.name} must be a positive number, "
                                 f"received {value!r}.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Any:
        """The limits with any of ENV_VARS applied over the defaults.

        Args:
            environ: the environment to read (default `os.environ`).

        Raises:
            ValueError: a variable is set but is not a positive (whole) number.
        """
        defaults = cls()
        return cls(**{field.name: positive_from_env(cls.ENV_VARS[field.name], getattr(defaults, field.name),
                                                    whole=field.name not in cls.FRACTIONAL, environ=environ)
                      for field in dataclasses.fields(cls)})  # type: ignore[arg-type]
