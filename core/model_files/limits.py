"""Bounds on a user model file, and the error that refuses one.

`LoadLimits` says how large a model file and its parts may be, and how long and in how much
memory the child process may take to load it. `ModelFileRefused` is the one error a refused
file raises: one line naming the file and the rule it broke.

The checks in `core.model_files.container_checks` and `core.model_files.config_checks` do not know the
file's display name (they work on a private copy), so they raise `Refusal` through
`refuse(reason)`, and the caller turns it into `ModelFileRefused` with `refusals_for(name)`.

Example:
    >>> with refusals_for("model.keras"):
    ...     refuse("it is not a zip archive.")
    Traceback (most recent call last):
    core.model_files.limits.ModelFileRefused: Refused 'model.keras': it is not a zip archive.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
from dataclasses import dataclass
from typing import Any, Iterator

MIB = 2**20
GIB = 2**30
ENV_PREFIX = "STACKLAB_LOAD_"


class ModelFileRefused(ValueError):
    """A model file was not loaded; the message is one line naming the file and why."""

    def __init__(self, file_name: str, reason: str, details: str = ""):
        self.file_name = file_name
        self.reason = " ".join(reason.split())
        self.details = details  # e.g. the loader's stderr tail, for logs only
        super().__init__(f"Refused '{file_name}': {self.reason}")


class Refusal(Exception):
    """Raised by the checks, which do not know the file's display name."""


def refuse(reason: str) -> None:
    raise Refusal(reason)


@contextlib.contextmanager
def refusals_for(file_name: str) -> Iterator[None]:
    """Turn the checks' `Refusal`s inside the block into `ModelFileRefused(file_name, ...)`."""
    try:
        yield
    except Refusal as refusal:
        raise ModelFileRefused(file_name, str(refusal)) from None


@dataclass(frozen=True)
class LoadLimits:
    """Bounds on one model file and on the process that verifies it.

    The defaults fit models with up to ~250 MB of weights. `from_env()` reads each field
    from `STACKLAB_LOAD_<FIELD>` (e.g. `STACKLAB_LOAD_MEMORY_BYTES=8589934592`).
    """

    max_file_bytes: int = 256 * MIB
    # Sum of the sizes a .keras archive's members declare once inflated.
    max_uncompressed_bytes: int = 320 * MIB
    max_members: int = 512
    # DEFLATE peaks near 1032:1; Keras's own guard also uses 100. Members under 1 MiB exempt.
    max_compression_ratio: float = 100.0
    max_config_bytes: int = 8 * MIB
    # Sum of shape * itemsize over all HDF5 datasets: what Keras will read into memory.
    max_weight_bytes: int = 256 * MIB
    max_h5_objects: int = 20_000
    timeout_s: float = 60.0
    # Address space (RLIMIT_AS) of the verifying child, which runs with CHILD_ENV (in
    # core.model_files.child). Measured there (TF 2.21, Keras 3.15.1): importing Keras maps
    # 2.0 GB (0.87 GB resident) and fails under 2.1 GiB; loading peaks at 2.5 GB for 100 MB
    # of weights, 3.3 GB for 256 MB (max_weight_bytes), 4.0 GB for 400 MB. JAX needs less
    # (0.8 GB; 2.4 GB for 256 MB).
    memory_bytes: int = 4 * GIB

    def __post_init__(self):
        for item in dataclasses.fields(self):
            if not getattr(self, item.name) > 0:
                raise ValueError(
                    f"LoadLimits.{item.name} must be positive, received "
                    f"{getattr(self, item.name)!r}."
                )

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> "LoadLimits":
        """Defaults overridden by `STACKLAB_LOAD_<FIELD>` variables (bytes, seconds)."""
        environ = os.environ if environ is None else environ
        values = {}
        for item in dataclasses.fields(cls):
            raw = environ.get(ENV_PREFIX + item.name.upper())
            if raw is None or raw.strip() == "":
                continue
            kind = float if item.type in ("float", float) else int
            try:
                values[item.name] = kind(raw)
            except ValueError:
                raise ValueError(
                    f"{ENV_PREFIX}{item.name.upper()} must be "
                    f"{'a number' if kind is float else 'an integer'}, received {raw!r}."
                ) from None
        return cls(**values)

    def to_env(self) -> dict[str, str]:
        return {ENV_PREFIX + key.upper(): str(value) for key, value in self.to_dict().items()}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------
# Wording of refusals


def shortened(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def first_line(error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    line = text.splitlines()[0]
    return line if len(line) <= 300 else line[:299] + "…"
