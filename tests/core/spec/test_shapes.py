"""core/spec/shapes.py: the one way shapes are written, with or without the batch axis."""

from core.spec.shapes import format_shape


def test_shapes_with_and_without_the_batch_axis():
    assert format_shape((28, 28, 1)) == "(batch, 28, 28, 1)"
    assert format_shape((None, 3)) == "(batch, ?, 3)"
    assert format_shape([10], batch=False) == "(10,)"
    assert format_shape([28, 28, 1], batch=False) == "(28, 28, 1)"
    assert format_shape(None) == "?"


def test_several_shapes_are_joined():
    assert format_shape([[4], [8, 3]]) == "(batch, 4), (batch, 8, 3)"
    assert format_shape({"a": [4], "b": [2]}) == "(batch, 4), (batch, 2)"
