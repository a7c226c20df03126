"""Shapes in words, the one way core writes them in messages: '(batch, 28, 28, 1)', 'an image'."""

from __future__ import annotations


RANK_WORDS = {1: "a feature vector", 2: "a sequence (steps, channels)", 3: "an image (height, width, channels)"}


def format_shape(shape: tuple) -> str:
    """(28, 28, 1) -> '(batch, 28, 28, 1)'; the batch axis is implied."""
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return f"(batch, {dims})"
