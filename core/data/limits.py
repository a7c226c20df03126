"""How much data a file may hold, and the error every reader raises. No Keras import."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Mapping

from core.limits import positive_from_env

MiB = 1 << 20


class DataError(ValueError):
    """The data cannot be used; the message says what is wrong and how to fix it."""


# Environment variable for each limit, so an operator can raise or lower them without code.
LIMIT_ENV_VARS = {
    "max_file_bytes": "STACKLAB_MAX_DATA_BYTES",
    "max_array_bytes": "STACKLAB_MAX_ARRAY_BYTES",
    "max_rows": "STACKLAB_MAX_ROWS",
    "max_columns": "STACKLAB_MAX_COLUMNS",
    "max_categories_per_column": "STACKLAB_MAX_CATEGORIES",
    "max_compression_ratio": "STACKLAB_MAX_COMPRESSION_RATIO",
    "max_classes": "STACKLAB_MAX_CLASSES",
}


@dataclass(frozen=True)
class DataLimits:
    """How much data a file may hold before StackLab refuses it.

    Every limit can be set from the environment (`DataLimits.from_env()`):

    - max_file_bytes (STACKLAB_MAX_DATA_BYTES): size of a CSV or NPZ file on disk.
    - max_array_bytes (STACKLAB_MAX_ARRAY_BYTES): memory needed to load an NPZ's x and
      y (as declared by their .npy headers, plus x's float32 copy), and the most any
      archive member may inflate to.
    - max_rows (STACKLAB_MAX_ROWS): samples (CSV rows, NPZ first axis).
    - max_columns (STACKLAB_MAX_COLUMNS): CSV columns, and feature columns after one-hot
      encoding.
    - max_categories_per_column (STACKLAB_MAX_CATEGORIES): distinct values of a text
      column that gets one-hot encoded.
    - max_compression_ratio (STACKLAB_MAX_COMPRESSION_RATIO): how many times an NPZ
      member may inflate relative to its compressed size (checked for members over
      1 MiB, where a bomb matters; tiny arrays of zeros legitimately compress far more).
    - max_classes (STACKLAB_MAX_CLASSES): distinct classes of a classification target.
    """

    max_file_bytes: int = 200 * MiB
    # A GiB of arrays still trains comfortably on a small machine; more is usually a
    # mistake (wrong dtype, float64 images) rather than a real need.
    max_array_bytes: int = 1024 * MiB
    max_rows: int = 1_000_000
    max_columns: int = 1_000
    # One-hot columns beyond a few dozen categories mostly add noise; an ID column or a
    # free-text column is the usual cause.
    max_categories_per_column: int = 50
    # Real numeric arrays compress 1-20x; zip bombs inflate about 1000x.
    max_compression_ratio: float = 200.0
    max_classes: int = 1_000

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"DataLimits.{f.name} must be a positive number, received {value!r}.")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "DataLimits":
        """Limits with any STACKLAB_MAX_* environment variable applied over the defaults.

        Args:
            environ: the environment to read (default `os.environ`).

        Returns:
            A DataLimits.

        Raises:
            ValueError: a variable is set but is not a positive (whole) number.

        Example:
            >>> DataLimits.from_env({"STACKLAB_MAX_ROWS": "5000"}).max_rows
            5000
        """
        defaults = cls()
        return cls(**{f.name: positive_from_env(LIMIT_ENV_VARS[f.name], getattr(defaults, f.name),
                                                whole=f.name != "max_compression_ratio", environ=environ)
                      for f in dataclasses.fields(cls)})


DEFAULT_LIMITS = DataLimits.from_env()
