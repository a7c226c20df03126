"""How much data a file may hold, and the error every reader raises. No Keras import."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Mapping

from core.limits import EnvLimits

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
class DataLimits(EnvLimits):
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

    ENV_VARS: ClassVar[Mapping[str, str]] = LIMIT_ENV_VARS
    FRACTIONAL: ClassVar[frozenset[str]] = frozenset({"max_compression_ratio"})

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


DEFAULT_LIMITS = DataLimits.from_env()
