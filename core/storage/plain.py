"""JSON-ready plain data from values that numpy computed.

The inspector's answers and a run's evaluation.json are JSON; their numbers often come out
of numpy as arrays, numpy scalars or NaN, which `json` cannot write (or writes as NaN, which
is not JSON).

Example:
    >>> to_plain({"accuracy": np.float32(0.5), "matrix": np.eye(2, dtype=int), "r2": float("nan")})
    {'accuracy': 0.5, 'matrix': [[1, 0], [0, 1]], 'r2': None}
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def to_plain(value: Any) -> Any:
    """JSON-ready: numpy values as Python numbers, tuples as lists, NaN and inf as None."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return to_plain(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
