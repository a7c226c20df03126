"""A dataset in memory: raw features, labels or targets, its task; and the train/validation split.

Features stay as the data holds them: scaling, one-hot encoding and pixel rescaling are
layers of the model (`core.build.preprocessing`), fitted on the training split only.

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
from core.spec.tasks import TaskInfo

FEATURE_KINDS = ("numeric", "categorical")


@dataclass(frozen=True, eq=False)  # eq=False: comparing numpy arrays with == is ambiguous
class Dataset:
    """Features, targets and the task they define.

    The features are raw: a model trained on them carries its own preprocessing
    (`core.build.preprocessing.prepare`), so the TaskInfo here describes the raw samples; the input shape
    a model is built for (one-hot widths) comes from `prepare`'s training split.

    Args:
        name: a short name (the built-in name or the file name).
        x: raw features of shape (num_samples, *task.input_shape): float32, or for a table
            with text columns (`feature_kinds` holds "categorical") an object array whose
            numeric columns hold floats and text columns hold str.
        y: int64 labels 0..n-1 for classification; float32 targets of shape (n,) or
            (n, k) for regression.
        task: the learning task; sizes the model's output layer.
        feature_names: one name per feature column for tabular data, () otherwise.
        description: one or two sentences for the dashboard.
        feature_kinds: for a table of named columns (a CSV), "numeric" or "categorical"
            per column of `feature_names`; the model then takes a dict of columns. ()
            for arrays (built-ins, NPZ, images), whose model takes one array.
        pixel_range: for raw images, the largest pixel value the format allows (255.0 for
            8-bit images): the model starts with Rescaling(1 / pixel_range). None when the
            values are already in a usable range.

    Raises:
        DataError: x and y differ in length, x's shape disagrees with the task, or the
            feature kinds do not match the columns.
    """

    name: str
    x: np.ndarray
    y: np.ndarray
    task: TaskInfo
    feature_names: tuple[str, ...] = ()
    description: str = ""
    feature_kinds: tuple[str, ...] = ()
    pixel_range: float | None = None

    def __post_init__(self) -> None:
        # Coerce here so every consumer can rely on the dtypes, whoever built the Dataset.
        if self.feature_kinds:
            self._check_columns()
        text = "categorical" in self.feature_kinds
        x = np.asarray(self.x, dtype=object if text else np.float32)
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
        if self.pixel_range is not None and not self.pixel_range > 0:
            raise DataError(f"Dataset '{self.name}' has pixel_range {self.pixel_range!r}; it must be the "
                            f"largest raw pixel value (e.g. 255.0), or None.")
        object.__setattr__(self, "x", x)
        object.__setattr__(self, "y", y)
        object.__setattr__(self, "feature_names", tuple(self.feature_names))
        object.__setattr__(self, "feature_kinds", tuple(self.feature_kinds))

    def _check_columns(self) -> None:
        unknown = sorted(set(self.feature_kinds) - set(FEATURE_KINDS))
        if unknown or len(self.feature_kinds) != len(self.feature_names) or len(self.task.input_shape) != 1:
            raise DataError(
                f"Dataset '{self.name}' has feature_kinds {list(self.feature_kinds)} for columns "
                f"{list(self.feature_names)} and input shape {tuple(self.task.input_shape)}; give one kind "
                f"({' or '.join(FEATURE_KINDS)}) per column of a (samples, columns) table.")

    @property
    def is_table(self) -> bool:
        """Whether the features are named columns (a CSV): the model takes a dict of them."""
        return bool(self.feature_kinds)

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
        numbers = self._numeric_features()
        if numbers.size:
            out["x_stats"] = {"min": float(numbers.min()), "max": float(numbers.max()),
                              "mean": float(numbers.mean())}
        if self.feature_kinds:
            out["feature_kinds"] = list(self.feature_kinds)
        if self.pixel_range is not None:
            out["pixel_range"] = self.pixel_range
        if not self.task.is_classification and self.num_samples:
            out["target_stats"] = {"min": float(self.y.min()), "max": float(self.y.max()),
                                   "mean": float(self.y.mean()), "std": float(self.y.std())}
        return out

    def _numeric_features(self) -> np.ndarray:
        if not self.num_samples:
            return np.zeros(0, np.float32)
        if "categorical" not in self.feature_kinds:
            return self.x
        numeric = [i for i, kind in enumerate(self.feature_kinds) if kind == "numeric"]
        return self.x[:, numeric].astype(np.float32)


@dataclass(frozen=True, eq=False)
class Split:
    """Training and validation arrays; the validation arrays may be empty (0 samples).

    From `split` the arrays are raw (as the Dataset holds them); from `core.build.preprocessing.prepare`
    the x arrays are encoded, float32, what the stack trains on.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray


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
