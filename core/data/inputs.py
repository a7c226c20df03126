"""Samples in the form the END-TO-END model takes, for predictions and export checks. No Keras.

A CSV run's model.keras takes a dict of raw columns ({name: array of shape (n, 1)}, numbers
float32, text str); any other run's takes one raw array. `model_inputs` turns a Dataset's
raw rows into that form; `validation_inputs` gives the first validation samples of a run's
spec with their targets, the rows StackLab scored.

Example:
    >>> inputs, y = validation_inputs(spec, limit=5)
    >>> sorted(inputs), y.tolist()
    (['age', 'color'], [1, 0, 0, 1, 1])
"""

from __future__ import annotations

import numpy as np

from core.data.dataset import Dataset, split
from core.spec import StackSpec


def model_inputs(dataset: Dataset, x: np.ndarray) -> dict[str, np.ndarray] | np.ndarray:
    """Raw rows of `dataset` (as its x holds them) in the end-to-end model's input form.

    Returns:
        For a table (a CSV): {column: array of shape (n, 1)}, float32 for numbers, str for
        text. Otherwise the rows as a float32 array of the raw sample shape.

    Note: Keras's `model.predict` refuses numpy str arrays; call the model on the dict
    (`model(inputs)`), or pass text columns as `tf.constant(...)`.
    """
    if not dataset.is_table:
        return np.asarray(x, np.float32)
    return table_inputs(dataset.feature_names, dataset.feature_kinds, x)


def table_inputs(names, kinds, rows: np.ndarray) -> dict[str, np.ndarray]:
    """Table rows (columns in order) as {name: (n, 1) array}: float32 numbers, str text."""
    return {name: (np.asarray(rows[:, index], np.float32) if kind == "numeric"
                   else np.asarray(rows[:, index]).astype(str)).reshape(-1, 1)
            for index, (name, kind) in enumerate(zip(names, kinds))}


def validation_inputs(spec: StackSpec, limit: int = 100):
    """The first `limit` validation samples of the spec's data, as the end-to-end model takes them.

    The split is the one training drew (`split` with the spec's validation_split and seed).
    A spec without a validation split (validation_split 0) gives its first training samples.

    Args:
        spec: the run's spec (its dataset and train settings).
        limit: at most this many samples.

    Returns:
        (inputs, y): inputs as `model_inputs` gives them; y the class indices (int64) or
        the targets in their own units (float32).

    Raises:
        DataError: the dataset cannot be loaded or split.
    """
    from core.data import load_dataset

    dataset = load_dataset(spec.dataset)
    parts = split(dataset, spec.train.validation_split, spec.train.seed)
    x, y = (parts.x_val, parts.y_val) if len(parts.x_val) else (parts.x_train, parts.y_train)
    return model_inputs(dataset, x[:limit]), y[:limit]
