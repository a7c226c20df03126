"""Datasets for training: built-in (offline), CSV and NPZ files, checked and split.

`load_dataset(spec)` turns a `core.spec.DatasetSpec` into a `Dataset`: float32 features,
integer labels (or float targets) and the `TaskInfo` that sizes the model's output. Bad
data raises `DataError`, whose message says what is wrong and how to fix it, so the
dashboard can show it as is. Files are read with explicit `DataLimits`; NPZ archives are
inspected (members, sizes, .npy headers) before any array is read.

No Keras, TensorFlow, Streamlit or Plotly here: the dashboard imports this for previews.

Example:
    >>> dataset = load_dataset(DatasetSpec(source="builtin", name="digits28"))
    >>> dataset.x.shape, dataset.task.kind
    ((1797, 28, 28, 1), 'multiclass')
    >>> parts = split(dataset, validation_split=0.2, seed=0)
    >>> len(parts.x_train), len(parts.x_val)
    (1438, 359)
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import numpy as np

from core import datasets_builtin
from core.spec import SCALINGS, DatasetSpec
from core.tasks import TaskInfo
from core.uploads import display_name, resolve

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
            ValueError: a variable is set but is not a positive number.

        Example:
            >>> DataLimits.from_env({"STACKLAB_MAX_ROWS": "5000"}).max_rows
            5000
        """
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            text = environ.get(LIMIT_ENV_VARS[f.name], "").strip()
            if not text:
                continue
            kind = float if f.name == "max_compression_ratio" else int
            try:
                values[f.name] = kind(text)
            except ValueError:
                values[f.name] = -1  # reported just below, with the same message
            if values[f.name] <= 0:
                raise ValueError(
                    f"{LIMIT_ENV_VARS[f.name]} must be a positive {kind.__name__}, "
                    f"received {text!r}. Fix or unset it."
                )
        return cls(**values)


DEFAULT_LIMITS = DataLimits.from_env()


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


@dataclass(frozen=True)
class BuiltinDataset:
    """A built-in dataset in the registry: what it is called and how to make its arrays."""

    name: str
    title: str
    description: str
    loader: Callable[[], datasets_builtin.Arrays]


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    entry.name: entry for entry in (
        BuiltinDataset("digits28", "Handwritten digits, 28x28",
                       "scikit-learn's 1,797 handwritten digits upscaled to 28x28x1 in [0, 1], "
                       "so MNIST-style CNNs run on real handwriting offline.",
                       datasets_builtin.make_digits28),
        BuiltinDataset("digits8", "Handwritten digits, 8x8",
                       "scikit-learn's 1,797 handwritten digits as 8x8x1 images in [0, 1].",
                       datasets_builtin.make_digits8),
        BuiltinDataset("iris", "Iris flowers",
                       "150 flowers, 4 measurements, 3 species.", datasets_builtin.make_iris),
        BuiltinDataset("wine", "Wine cultivars",
                       "178 wines, 13 chemical measurements, 3 cultivars.",
                       datasets_builtin.make_wine),
        BuiltinDataset("breast_cancer", "Breast cancer (binary)",
                       "569 tumours, 30 cell-nucleus features, malignant or benign.",
                       datasets_builtin.make_breast_cancer),
        BuiltinDataset("diabetes", "Diabetes progression (regression)",
                       "442 patients, 10 baseline features, disease progression after one "
                       "year (a number from 25 to 346).", datasets_builtin.make_diabetes),
        BuiltinDataset("transactions", "Card transactions: fraud detection",
                       "10,000 generated card transactions, 13 features (amount, hour, "
                       "merchant risk, distances, device...), 2.5% fraud. Imbalanced: "
                       "watch AUC, precision and recall, not only accuracy.",
                       datasets_builtin.make_transactions),
        BuiltinDataset("waveforms", "Waveforms: sequence classification",
                       "4,000 generated noisy sequences of 64 steps (shape (64, 1)): sine, "
                       "square, sawtooth or smoothed noise, with random frequency and phase. "
                       "For Conv1D, GRU and LSTM members.", datasets_builtin.make_waveforms),
    )
}


def list_builtins() -> list[dict[str, Any]]:
    """Describe every built-in dataset as plain data, for pickers and the CLI.

    Returns:
        One dict per dataset: name, title, description, input_shape, task (kind),
        num_samples, num_classes, class_names.

    Example:
        >>> [d["name"] for d in list_builtins()][:2]
        ['digits28', 'digits8']
    """
    out = []
    for entry in BUILTIN_DATASETS.values():
        dataset = _load_builtin(entry.name, "standard")
        out.append({
            "name": entry.name, "title": entry.title, "description": entry.description,
            "input_shape": list(dataset.task.input_shape), "task": dataset.task.kind,
            "num_samples": dataset.num_samples, "num_classes": dataset.task.num_classes,
            "class_names": list(dataset.task.class_names),
        })
    return out


def load_dataset(spec: DatasetSpec, limits: DataLimits = DEFAULT_LIMITS) -> Dataset:
    """Load the dataset a spec describes: a built-in, a CSV file or an NPZ file.

    Built-in datasets are cached and their arrays are read-only: copy before changing.

    Args:
        spec: source, name or path ("sha256:<hex>" for an upload), and for CSV the
            target, features, task and scaling.
        limits: size limits for files (default: `DataLimits.from_env()` at import).

    Returns:
        A Dataset.

    Raises:
        DataError: unknown built-in, missing file, or data that cannot be used; the
            message names the file and says how to fix it.

    Example:
        >>> load_dataset(DatasetSpec(source="csv", path="sha256:ab12...", target="label"))
    """
    if spec.scaling not in SCALINGS:
        raise DataError(f"Scaling must be one of {list(SCALINGS)}, received {spec.scaling!r}.")
    if spec.source == "builtin":
        if spec.name not in BUILTIN_DATASETS:
            raise DataError(
                f"Unknown built-in dataset '{spec.name}'. Choose one of "
                f"{sorted(BUILTIN_DATASETS)}, or use source 'csv' or 'npz' for your own file."
            )
        return _load_builtin(spec.name, spec.scaling)
    if spec.source not in ("csv", "npz"):
        raise DataError(f"Dataset source must be 'builtin', 'csv' or 'npz', received {spec.source!r}.")
    if not spec.path:
        raise DataError(
            f"A '{spec.source}' dataset needs a file: upload one or set dataset.path."
        )
    try:
        path = resolve(spec.path)
    except FileNotFoundError as error:
        raise DataError(str(error)) from None
    # Imported here because the readers import this module (DataError, Dataset, ...).
    if spec.source == "csv":
        from core.data_files import read_csv as reader
    else:
        from core.data_npz import read_npz as reader
    return reader(path, display_name(spec.path), spec, limits)


def csv_columns(path_or_ref: str, limits: DataLimits = DEFAULT_LIMITS) -> list[str]:
    """The column names of a CSV file (its header), for choosing a target and features.

    Raises:
        DataError: the file is missing, too big, or its header cannot be read.

    Example:
        >>> csv_columns("sha256:ab12...")
        ['amount', 'hour', 'label']
    """
    from core.data_files import check_file_size, read_header

    try:
        path = resolve(path_or_ref)
    except FileNotFoundError as error:
        raise DataError(str(error)) from None
    name = display_name(path_or_ref)
    check_file_size(path, name, limits)
    return read_header(path, name)


@functools.lru_cache(maxsize=None)
def _builtin_arrays(name: str) -> datasets_builtin.Arrays:
    return BUILTIN_DATASETS[name].loader()  # made once per process, whatever the scaling


@functools.lru_cache(maxsize=None)
def _load_builtin(name: str, scaling: str) -> Dataset:
    arrays = _builtin_arrays(name)
    if not arrays.feature_names and scaling != "none":
        return _load_builtin(name, "none")  # images and sequences are never rescaled
    x = scale_features(arrays.x, scaling) if arrays.feature_names else arrays.x
    y = arrays.y
    if arrays.kind == "regression":
        task = TaskInfo("regression", tuple(x.shape[1:]), output_dim=1 if y.ndim == 1 else y.shape[1])
    else:
        task = TaskInfo(arrays.kind, tuple(x.shape[1:]), num_classes=len(arrays.class_names),
                        class_names=arrays.class_names)
    dataset = Dataset(name, x, y, task, arrays.feature_names, BUILTIN_DATASETS[name].description)
    # The cache hands the same arrays to every caller: make writes fail loudly.
    dataset.x.flags.writeable = False
    dataset.y.flags.writeable = False
    return dataset


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


def format_bytes(size: float) -> str:
    """1536 -> '1.5 KiB': sizes in error messages a person can read."""
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
