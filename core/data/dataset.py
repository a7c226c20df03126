"""A dataset in memory: float32 features, labels or targets, its task; scaling and the split.

Example:
    >>> parts = split(dataset, validation_split=0.2, seed=0)
    >>> len(parts.x_train), len(parts.x_val)
    (1438, 359)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from core.data.limits import DataError
from core.spec import SCALINGS
from core.spec.tasks import TaskInfo


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays with == is ambiguous
class Dataset:
    """Features, targets and the task they define.

    Args:
        name: a short name (the built-in name or the file name).
        x: features, float32, shape (num_samples, *task.input_shape).
        y: int64 labels 0..n-1 for classification; float32 targets of shape (n,) or
            (n, k) for regression.
        task: the learning task; sizes the model's output layer.
        feature_names: one name per feature column for tabular data, () otherwise.
        description: one or two sentences for the dashboard.

    Raises:
        DataError: x and y differ in length, or x's shape disagrees with the task.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    task: TaskInfo
    feature_names: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        # Coerce here so every consumer can rely on the dtypes, whoever built the Dataset.
        x = np.asarray(self.x, dtype=np.float32)
        y_dtype = np.int64 if self.task.is_classification else np.float32
        y = np.asarray(self.y, dtype=y_dtype)
        if len(x) != len(y):
            raise DataError(
                f"Dataset '{self.name}' has {len(x)} samples in x but {len(y)} in y. "
                f"Give every sample exactly one target."
            )
        if self.task.is_classification and y.size and (
                y.ndim != 1 or y.min() < 0 or y.max() >= self.task.num_classes):
            raise DataError(
                f"Dataset '{self.name}' needs labels 0..{self.task.num_classes - 1} of shape "
                f"(samples,) for its {self.task.num_classes} classes; y has shape {y.shape}, "
                f"values {y.min()}..{y.max()}."
            )
        if tuple(x.shape[1:]) != tuple(self.task.input_shape):
            raise DataError(
                f"Dataset '{self.name}' has samples of shape {x.shape[1:]} but its task "
                f"declares input_shape {tuple(self.task.input_shape)}."
            )
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)

    @property
    def num_samples(self) -> int:
        return int(len(self.x))

    def class_counts(self) -> dict[str, int]:
        """Samples per class name, in label order; empty for regression."""
        if not self.task.is_classification:
            return {}
        counts = np.bincount(self.y, minlength=self.task.num_classes)
        return {name: int(count) for name, count in zip(self.task.class_names, counts)}

    def summary(self) -> dict[str, Any]:
        """Plain data describing the dataset, for the dashboard and the CLI.

        Returns:
            A JSON-ready dict: name, description, num_samples, input_shape, the task,
            feature_names, class_counts (classification) or target statistics
            (regression), and the features' min/max/mean.

        Example:
            >>> load_dataset(DatasetSpec(name="iris")).summary()["class_counts"]
            {'setosa': 50, 'versicolor': 50, 'virginica': 50}
        """
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "num_samples": self.num_samples,
            "input_shape": list(self.task.input_shape),
            "task": self.task.to_dict(),
            "feature_names": list(self.feature_names),
            "class_counts": self.class_counts(),
            "x_bytes": int(self.x.nbytes),
        }
        if self.num_samples:
            out["x_stats"] = {"min": float(self.x.min()), "max": float(self.x.max()),
                              "mean": float(self.x.mean())}
        if not self.task.is_classification and self.num_samples:
            out["target_stats"] = {"min": float(self.y.min()), "max": float(self.y.max()),
                                   "mean": float(self.y.mean()), "std": float(self.y.std())}
        return out


@dataclass(frozen=True, eq=False)
class Split:
    """Training and validation arrays; the validation arrays may be empty (0 samples)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


def scale_features(x: np.ndarray, scaling: str, columns: np.ndarray | None = None) -> np.ndarray:
    """Scale feature columns of a 2-D array, returning a new float32 array.

    Args:
        x: shape (num_samples, num_features).
        scaling: "standard" (zero mean, unit variance), "minmax" (to [0, 1]) or "none".
        columns: boolean mask of the columns to scale (default: all); the others, such
            as one-hot columns, are copied unchanged.

    Returns:
        The scaled array. Constant columns become 0 rather than dividing by zero.

    Raises:
        DataError: an unknown scaling.

    Example:
        >>> scale_features(np.array([[1.0], [3.0]]), "minmax").ravel().tolist()
        [0.0, 1.0]
    """
    if scaling not in SCALINGS:
        raise DataError(f"Scaling must be one of {list(SCALINGS)}, received {scaling!r}.")
    values = np.array(x, dtype=np.float64)  # a copy: the caller's array stays unscaled
    if scaling != "none" and len(values):
        mask = np.ones(values.shape[1], bool) if columns is None else np.asarray(columns, bool)
        selected = values[:, mask]
        if scaling == "standard":
            center, spread = selected.mean(axis=0), selected.std(axis=0)
        else:
            center = selected.min(axis=0)
            spread = selected.max(axis=0) - center
        spread = np.where(spread > 0, spread, 1.0)
        values[:, mask] = (selected - center) / spread
    return values.astype(np.float32)


def split(dataset: Dataset, validation_split: float, seed: int) -> Split:
    """Split a dataset into training and validation parts, the same way for a seed.

    Classification splits are stratified (each class keeps its share in both parts)
    when every class has at least two samples; otherwise, and for regression, the split
    is a plain shuffle.

    Args:
        dataset: the dataset to split.
        validation_split: fraction of samples for validation, in [0, 0.9]; 0 gives
            empty validation arrays with the right trailing shape.
        seed: random seed; the same seed gives the same split.

    Returns:
        A Split with shuffled training and validation arrays (new, writable copies).

    Raises:
        DataError: validation_split outside [0, 0.9], or too few samples to split.

    Example:
        >>> parts = split(load_dataset(DatasetSpec(name="iris")), 0.2, seed=0)
        >>> np.bincount(parts.y_val).tolist()
        [10, 10, 10]
    """
    if not 0.0 <= validation_split <= 0.9:
        raise DataError(
            f"validation_split must be between 0 and 0.9, received {validation_split}. "
            f"Use 0.2 for the usual 80/20 split, or 0 to train without validation."
        )
    n = dataset.num_samples
    rng = np.random.default_rng(seed)
    if validation_split == 0:
        train = rng.permutation(n)
        val = np.zeros(0, np.int64)
    else:
        if n < 2:
            raise DataError(
                f"Dataset '{dataset.name}' has {n} sample(s); a validation split needs at "
                f"least 2. Add data or set validation_split to 0."
            )
        # At least one sample on each side, whatever the rounding.
        n_val = min(max(int(round(n * validation_split)), 1), n - 1)
        counts = np.bincount(dataset.y) if dataset.task.is_classification else np.zeros(0)
        if counts.size and counts[counts > 0].min() >= 2:
            val = _stratified_val(dataset.y, counts, n_val, rng)
        else:
            val = rng.permutation(n)[:n_val]
        in_val = np.zeros(n, bool)
        in_val[val] = True
        train = rng.permutation(np.flatnonzero(~in_val))
        val = rng.permutation(val)
    return Split(dataset.x[train], dataset.y[train], dataset.x[val], dataset.y[val])


def _stratified_val(y: np.ndarray, counts: np.ndarray, n_val: int,
                    rng: np.random.Generator) -> np.ndarray:
    """Indices of a validation part holding each class's share of n_val samples."""
    share = counts * (n_val / counts.sum())
    quota = np.floor(share).astype(int)
    # Hand the samples lost to rounding to the classes that lost most (largest remainder).
    for label in np.argsort(-(share - quota), kind="stable")[: n_val - quota.sum()]:
        quota[label] += 1
    # Every class keeps at least one training sample, so the model sees every class.
    quota = np.minimum(quota, np.maximum(counts - 1, 0))
    picked = [rng.permutation(np.flatnonzero(y == label))[:quota[label]]
              for label in range(counts.size)]
    return np.concatenate(picked)
