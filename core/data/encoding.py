"""What a model's preprocessing knows, as plain data: fitted on the training split only.

`fit_preprocessing(dataset, split, scaling)` reads the raw training split and returns a
`Preprocessing`: per CSV column its scaling statistics or its vocabulary, for array data
the per-feature statistics and the pixel range, and for regression the target's mean and
variance. `core.build.preprocessing` turns it into Keras layers (Normalization,
StringLookup, Rescaling); the run's data.json records it (`data_card`). Nothing here
imports Keras, so the dashboard can read a data card.

Statistics are computed in float64 over the float32 values the model receives:

- "standard": mean and (population) variance, what `Normalization.adapt` computes;
- "minmax": Normalization(mean=min, variance=(max - min)**2), i.e. (x - min) / (max - min);
- "none": no Normalization layer.

A constant column gets variance 1 (the layer then only centres it), where Keras would
divide by its epsilon and turn any new value into a huge number.

Example:
    >>> prep = fit_preprocessing(dataset, split(dataset, 0.2, seed=0), "standard")
    >>> prep.columns[1].vocabulary, prep.encoded_shape
    (('blue', 'red'), (4,))
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.data.dataset import Dataset, Split
from core.data.limits import DataError
from core.spec import SCALINGS

OOV_TOKEN = "[UNK]"  # StringLookup's default out-of-vocabulary token, slot 0 of a one-hot column
CARD_SCHEMA = 1


@dataclass(frozen=True)
class ColumnEncoding:
    """One raw CSV column and how the model encodes it.

    Args:
        name: the column's name (the end-to-end model's input key).
        kind: "numeric" (Normalization, or passed through) or "categorical" (StringLookup
            with this vocabulary, one-hot, slot 0 for values not in it).
        mean, variance: the Normalization layer's arguments (None: no scaling).
        vocabulary: the categorical column's values seen in the training split, sorted.
    """

    name: str
    kind: str
    mean: float | None = None
    variance: float | None = None
    vocabulary: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        """Encoded columns: 1 for a number, the vocabulary plus the out-of-vocabulary slot for text."""
        return 1 if self.kind == "numeric" else len(self.vocabulary) + 1

    @property
    def encoded_names(self) -> list[str]:
        if self.kind == "numeric":
            return [self.name]
        return [f"{self.name}={value}" for value in (OOV_TOKEN, *self.vocabulary)]


@dataclass(frozen=True)
class TargetScaling:
    """A regression target's training-split mean and variance (one per target column).

    The stack trains on standardized targets: its last layer is
    Normalization(mean, variance, invert=True), so it outputs the target's own units.
    """

    name: str
    mean: tuple[float, ...]
    variance: tuple[float, ...]

    @property
    def std(self) -> tuple[float, ...]:
        return tuple(float(np.sqrt(v)) for v in self.variance)


@dataclass(frozen=True)
class Preprocessing:
    """Everything the model's preprocessing layers need, fitted on the training split.

    Args:
        input_shape: the raw sample shape ((columns,) for a CSV).
        scaling: "standard", "minmax" or "none".
        columns: a CSV's columns in order (the model takes a dict of them); () for arrays.
        feature_names: names of a 2-D array's features (built-in tables), for the card.
        mean, variance: per-feature Normalization arguments of 2-D array data (None: none).
        pixel_range: raw images' largest value; the model starts with Rescaling(1 / it).
        target: the regression target's statistics; None for classification.
        class_names: the classes in label order; () for regression.
    """

    input_shape: tuple[int, ...]
    scaling: str
    columns: tuple[ColumnEncoding, ...] = ()
    feature_names: tuple[str, ...] = ()
    mean: tuple[float, ...] | None = None
    variance: tuple[float, ...] | None = None
    pixel_range: float | None = None
    target: TargetScaling | None = None
    class_names: tuple[str, ...] = ()

    @property
    def is_table(self) -> bool:
        """Whether the end-to-end model takes a dict of named raw columns."""
        return bool(self.columns)

    @property
    def encoded_shape(self) -> tuple[int, ...]:
        """The shape of one sample as the stack receives it (one-hot columns widen a table)."""
        if self.is_table:
            return (sum(column.width for column in self.columns),)
        return tuple(self.input_shape)

    @property
    def encoded_names(self) -> list[str]:
        """One name per encoded column of a table ("color=red"); [] for arrays."""
        return [name for column in self.columns for name in column.encoded_names]

    @property
    def has_layers(self) -> bool:
        """Whether the end-to-end model differs from the stack (any preprocessing layer)."""
        return self.is_table or self.mean is not None or self.pixel_range is not None

    def statistics(self) -> dict[str, dict[str, float]]:
        """What the scalers saw: per scaled feature its Normalization mean and variance."""
        if self.is_table:
            return {c.name: {"mean": c.mean, "variance": c.variance} for c in self.columns
                    if c.kind == "numeric" and c.mean is not None}
        if self.mean is None:
            return {}
        names = self.feature_names or tuple(f"x{i}" for i in range(len(self.mean)))
        return {name: {"mean": m, "variance": v} for name, m, v in zip(names, self.mean, self.variance)}


def _column_statistics(values: np.ndarray, scaling: str) -> tuple[np.ndarray, np.ndarray]:
    """Normalization's mean and variance per column of `values` (float64, rows x columns)."""
    if scaling == "standard":
        center, spread = values.mean(axis=0), values.var(axis=0)
    else:  # minmax: (x - min) / (max - min) is Normalization(mean=min, variance=(max - min)**2)
        center = values.min(axis=0)
        spread = (values.max(axis=0) - center) ** 2
    return center, np.where(spread > 0, spread, 1.0)


def fit_preprocessing(dataset: Dataset, parts: Split, scaling: str, target_name: str = "target") -> Preprocessing:
    """The preprocessing of `dataset`, fitted on the raw training split `parts.x_train` only.

    Args:
        dataset: the raw dataset (its kinds of columns, pixel range and task).
        parts: its raw split (`core.data.split`); only the training part is read.
        scaling: "standard", "minmax" or "none" for numeric features (tables and 2-D arrays;
            images and sequences are never scaled, as before).
        target_name: what the card calls a regression target.

    Returns:
        A Preprocessing.

    Raises:
        DataError: an unknown scaling, or an empty training split.
    """
    if scaling not in SCALINGS:
        raise DataError(f"Scaling must be one of {list(SCALINGS)}, received {scaling!r}.")
    x_train = parts.x_train
    if not len(x_train):
        raise DataError(f"Dataset '{dataset.name}' has no training samples after the split; lower "
                        f"validation_split or add data.")
    task = dataset.task
    target = None
    if not task.is_classification:
        y = np.asarray(parts.y_train, np.float64).reshape(len(parts.y_train), -1)
        center, spread = _column_statistics(y, "standard")
        target = TargetScaling(target_name, tuple(map(float, center)), tuple(map(float, spread)))
    common = {"input_shape": tuple(task.input_shape), "scaling": scaling, "target": target,
              "class_names": tuple(task.class_names), "pixel_range": dataset.pixel_range}
    if dataset.is_table:
        columns = []
        for index, (name, kind) in enumerate(zip(dataset.feature_names, dataset.feature_kinds)):
            values = x_train[:, index]
            if kind == "categorical":
                columns.append(ColumnEncoding(name, kind, vocabulary=tuple(sorted({str(v) for v in values}))))
            elif scaling == "none":
                columns.append(ColumnEncoding(name, kind))
            else:
                center, spread = _column_statistics(values.astype(np.float32).astype(np.float64)[:, None], scaling)
                columns.append(ColumnEncoding(name, kind, float(center[0]), float(spread[0])))
        return Preprocessing(columns=tuple(columns), **{**common, "pixel_range": None})
    if x_train.ndim != 2 or scaling == "none":
        return Preprocessing(**common)
    values = np.asarray(x_train, np.float32)
    if dataset.pixel_range is not None:  # the statistics of what Rescaling hands the Normalization
        values = values * np.float32(1.0 / dataset.pixel_range)
    center, spread = _column_statistics(values.astype(np.float64), scaling)
    return Preprocessing(feature_names=tuple(dataset.feature_names), mean=tuple(map(float, center)),
                         variance=tuple(map(float, spread)), **common)


def data_card(prep: Preprocessing, task_kind: str, split_info: dict[str, Any]) -> dict[str, Any]:
    """The run's data.json: task, class names, raw inputs, target, split and statistics.

    Args:
        prep: the fitted preprocessing.
        task_kind: TaskInfo.kind.
        split_info: train_rows, val_rows, seed, validation_split.

    Returns:
        A JSON-ready dict (schema 1, the layout agreed for issue 12).
    """
    inputs = []
    for column in prep.columns:
        entry: dict[str, Any] = {"name": column.name, "dtype": "float32" if column.kind == "numeric" else "string",
                                 "kind": column.kind}
        if column.kind == "categorical":
            entry["vocabulary"] = list(column.vocabulary)
        inputs.append(entry)
    target = None
    if prep.target is not None:
        single = len(prep.target.mean) == 1
        target = {"name": prep.target.name,
                  "mean": prep.target.mean[0] if single else list(prep.target.mean),
                  "std": prep.target.std[0] if single else list(prep.target.std)}
    card = {"schema": CARD_SCHEMA, "task": task_kind, "class_names": list(prep.class_names), "inputs": inputs,
            "input_shape": list(prep.input_shape), "target": target, "split": dict(split_info),
            "statistics": prep.statistics(), "scaling": prep.scaling}
    if prep.pixel_range is not None:
        card["pixel_range"] = prep.pixel_range
    return card
