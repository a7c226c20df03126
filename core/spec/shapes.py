"""Shapes in words, the one way StackLab writes them: '(batch, 28, 28, 1)', '(28, 28, 1)', 'an image'.

Messages from core say `(batch, ...)`, so a shape reads as what a layer receives; the
dashboard, whose tables show per-sample shapes, leaves the batch axis out.
"""

from __future__ import annotations

from typing import Any

RANK_WORDS = {1: "a feature vector", 2: "a sequence (steps, channels)", 3: "an image (height, width, channels)"}


def format_shape(shape: Any, batch: bool = True) -> str:
    """A shape without its batch axis, written out.

    Example:
        >>> format_shape((28, 28, 1)), format_shape([10], batch=False), format_shape(None)
        ('(batch, 28, 28, 1)', '(10,)', '?')
        >>> format_shape([[4], [8, 3]])   # several shapes, e.g. a model with two inputs
        '(batch, 4), (batch, 8, 3)'
    """
    if shape is None:
        return "?"
    if isinstance(shape, dict):
        shape = list(shape.values())
    if shape and all(isinstance(item, (list, tuple, dict)) or item is None for item in shape):
        return ", ".join(format_shape(item, batch) for item in shape)
    dims = ["?" if d is None else str(d) for d in shape]
    if batch:
        return f"(batch, {', '.join(dims)})"
    return f"({dims[0]},)" if len(dims) == 1 else f"({', '.join(dims)})"
