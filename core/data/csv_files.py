"""CSV files and in-memory arrays turned into checked `Dataset`s of raw features.

A CSV becomes a table of named columns: numbers stay numbers, text (and bool) columns
stay text; their scaling and one-hot encoding are layers of the model, fitted on the
training split (`core.build.preprocessing`). Files are untrusted: their size is checked
before reading, and every refusal is a `DataError` naming the file and the fix. NPZ archives
(core.data.npz_files) end here too, in
`dataset_from_arrays`.

Example:
    >>> dataset_from_arrays(np.zeros((4, 3)), np.array([0, 1, 0, 1])).task.kind
    'binary'
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from core.data.dataset import Dataset
from core.data.limits import DEFAULT_LIMITS, DataError, DataLimits
from core.limits import format_bytes
from core.spec import DatasetSpec
from core.spec.tasks import TaskInfo

# With task "auto", a numeric target is read as classes when it holds whole numbers and
# at most this many distinct values (labels 0..9, ratings 1..5); otherwise as a quantity.
AUTO_CLASSIFICATION_MAX_CLASSES = 20


# ---- CSV --------------------------------------------------------------------------------


def read_csv(path: Path, name: str, spec: DatasetSpec, limits: DataLimits = DEFAULT_LIMITS) -> Dataset:
    """Read a CSV file: one target column, and numeric and text feature columns as they are.

    Args:
        path: the file to read.
        name: the file name to show in messages (the upload's original name).
        spec: target (required), features (empty: all other columns) and task.
        limits: file size, rows, columns and categories allowed.

    Returns:
        A Dataset whose feature_names are the CSV's feature columns, with feature_kinds
        "numeric" (float32 values) or "categorical" (text values, str) for each.

    Raises:
        DataError: empty or unreadable file, missing or unknown target or features,
            missing values, too many categories, rows or columns, one-class target.

    Example:
        >>> read_csv(Path("houses.csv"), "houses.csv", DatasetSpec(source="csv", target="price"))
    """
    if check_file_size(path, name, limits) == 0:
        raise DataError(f"'{name}' is empty (0 bytes). Upload a CSV with a header row and data rows.")
    columns = read_header(path, name)
    if len(columns) > limits.max_columns:
        raise DataError(
            f"'{name}' has {len(columns)} columns, over the limit of {limits.max_columns}. "
            f"Keep the columns you need, or raise STACKLAB_MAX_COLUMNS."
        )
    target, features = _pick_columns(spec, columns, name)
    # All columns, not usecols: with usecols pandas silently drops fields beyond the header.
    frame = read_frame(path, name, nrows=limits.max_rows + 1)
    if frame.empty:
        raise DataError(f"'{name}' has a header but no data rows. Add rows of data below the header.")
    if len(frame) > limits.max_rows:
        raise DataError(
            f"'{name}' has more than {limits.max_rows:,} rows, the limit. Sample it down, "
            f"or raise STACKLAB_MAX_ROWS."
        )
    _check_missing(frame, features, target, name)
    x, kinds = _feature_table(frame, features, name, limits)
    y, task = encode_target(frame[target].to_numpy(), spec.task, f"target column '{target}'",
                            name, limits, input_shape=(len(features),))
    return Dataset(Path(name).stem, x, y, task, tuple(features),
                   f"{name}: {len(frame)} rows, target '{target}'.", feature_kinds=tuple(kinds))


def read_header(path: Path, name: str) -> list[str]:
    """The column names of a CSV file, read from its first line only."""
    return [str(c) for c in read_frame(path, name, nrows=0).columns]


def read_frame(path: Path, name: str, **options) -> pd.DataFrame:
    """A CSV file as pandas reads it, every read of an upload the same way.

    Args:
        path: the file; name: the name messages show; options: more `pd.read_csv` options
            (nrows, dtype, ...).

    Raises:
        DataError: no CSV data, not UTF-8, or a row that does not parse (the reason and the fix).
    """
    try:
        # low_memory=False reads each column's type from the whole file, not per chunk;
        # index_col=False stops pandas from quietly turning an extra field into an index,
        # and the ParserWarning it gives instead (data would be lost) becomes an error.
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)
            return pd.read_csv(path, low_memory=False, index_col=False, **options)
    except pd.errors.EmptyDataError:
        raise DataError(f"'{name}' holds no CSV data. Upload a CSV with a header row and data rows.") from None
    except UnicodeDecodeError:
        raise DataError(
            f"'{name}' is not UTF-8 text, so it cannot be read as CSV. If it is a spreadsheet, "
            f"export it as 'CSV UTF-8' first."
        ) from None
    except (pd.errors.ParserError, pd.errors.ParserWarning, ValueError) as error:
        reason = str(error).strip().splitlines()[0]
        raise DataError(
            f"'{name}' could not be read as CSV ({reason}). Check that it is comma-separated "
            f"and every row has the same number of fields as the header."
        ) from None


def _pick_columns(spec: DatasetSpec, columns: list[str], name: str) -> tuple[str, list[str]]:
    available = f"Available columns: {columns}."
    if len(columns) == 1 and any(sep in columns[0] for sep in ";\t|"):
        available += " (The file looks separated by ';', tab or '|': save it comma-separated.)"
    if not spec.target:
        raise DataError(f"Choose the target column of '{name}' (dataset.target). {available}")
    if spec.target not in columns:
        raise DataError(f"'{name}' has no column '{spec.target}' to use as the target. {available}")
    unknown = [c for c in spec.features if c not in columns]
    if unknown:
        raise DataError(f"'{name}' has no feature column(s) {unknown}. {available}")
    if spec.target in spec.features:
        raise DataError(
            f"Column '{spec.target}' of '{name}' is both the target and a feature. "
            f"Remove it from the features."
        )
    features = list(dict.fromkeys(spec.features)) or [c for c in columns if c != spec.target]
    if not features:
        raise DataError(
            f"'{name}' has no feature columns besides the target '{spec.target}'. "
            f"Add at least one column of inputs."
        )
    return spec.target, features


def _check_missing(frame: pd.DataFrame, features: list[str], target: str, name: str) -> None:
    bad = {}
    for column in [*features, target]:
        series = frame[column]
        missing = series.isna().to_numpy()
        if pd.api.types.is_float_dtype(series):
            missing = missing | np.isinf(series.to_numpy(dtype=np.float64, na_value=np.nan))
        if missing.any():
            bad[column] = int(missing.sum())
    if target in bad:
        raise DataError(
            f"Target column '{target}' of '{name}' has missing or infinite values in "
            f"{bad[target]} row(s). Drop those rows: a sample without a target cannot train."
        )
    if bad:
        listed = ", ".join(f"'{c}' ({n} row{'s' * (n != 1)})" for c, n in bad.items())
        raise DataError(
            f"'{name}' has missing or infinite values in column(s) {listed}. Drop those rows, "
            f"fill them in (impute, e.g. with the column median), or leave the column out."
        )


def _feature_table(frame: pd.DataFrame, features: list[str], name: str,
                   limits: DataLimits) -> tuple[np.ndarray, list[str]]:
    """The feature columns as one (rows, columns) array, and each column's kind.

    Numeric columns are numeric; text, bool and category columns are categorical (their
    values as str, "True"/"False" for bools). The array is float32 when every column is
    numeric, else an object array holding floats and str.
    """
    kinds, values, encoded_width = [], [], 0
    for column in features:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
            kinds.append("numeric")
            values.append(series.to_numpy(dtype=np.float32))
            encoded_width += 1
            continue
        text = series.astype(str).to_numpy(dtype=object)
        count = len(pd.unique(text))
        if count > limits.max_categories_per_column:
            raise DataError(_too_many_categories(series, column, count, name, limits))
        kinds.append("categorical")
        values.append(text)
        encoded_width += count + 1  # one-hot, plus the slot for values never seen in training
    if encoded_width > limits.max_columns:
        raise DataError(
            f"'{name}' has {encoded_width} feature columns after one-hot encoding its text "
            f"columns, over the limit of {limits.max_columns}. Leave out or bin text columns "
            f"with many values, or raise STACKLAB_MAX_COLUMNS."
        )
    if "categorical" not in kinds:
        return np.column_stack(values).astype(np.float32), kinds
    table = np.empty((len(frame), len(features)), dtype=object)
    for index, column_values in enumerate(values):
        # Numbers as Python floats of their float32 value: what the model's input receives.
        table[:, index] = column_values.astype(np.float64) if kinds[index] == "numeric" else column_values
    return table, kinds


def _too_many_categories(series: pd.Series, column: str, count: int, name: str,
                         limits: DataLimits) -> str:
    message = (
        f"Column '{column}' of '{name}' has {count} distinct text values, over the limit of "
        f"{limits.max_categories_per_column} for one-hot encoding. Leave it out of the "
        f"features, bin it into fewer groups, or raise STACKLAB_MAX_CATEGORIES."
    )
    # A number column with a few stray entries ("?", "n/a") is read as text: say so.
    as_numbers = pd.to_numeric(series, errors="coerce")
    if as_numbers.notna().mean() >= 0.9:
        strays = sorted(set(series[as_numbers.isna()].astype(str)))[:3]
        message += f" It looks numeric except for entries such as {strays}: fix or drop those rows."
    return message


# ---- targets and arrays -----------------------------------------------------------------


def encode_target(values: np.ndarray, task: str, what: str, name: str,
                  limits: DataLimits = DEFAULT_LIMITS,
                  input_shape: tuple[int, ...] = ()) -> tuple[np.ndarray, TaskInfo]:
    """Turn raw target values into labels 0..n-1 or float targets, and the task.

    Args:
        values: shape (n,), or (n, k) for several regression targets or one-hot labels.
        task: "auto", "classification" or "regression". Auto: text, bool or whole
            numbers with at most 20 distinct values are classes, anything else is
            regression; a 0/1 matrix with one 1 per row is one-hot classes.
        what: how messages name the target ("target column 'price'", "array y").
        name: the file name, for messages.
        limits: max_classes.
        input_shape: the shape of one sample, recorded in the TaskInfo.

    Returns:
        (y, task): int64 labels in sorted order of the original values, whose strings
        become class_names; or float32 targets for regression.

    Raises:
        DataError: missing values, text for regression, one class, too many classes.
    """
    values = np.asarray(values)
    numeric = values.dtype.kind in "iuf"
    if values.ndim not in (1, 2) or len(values) == 0:
        raise DataError(f"{what} of '{name}' must have shape (samples,) or (samples, targets), "
                        f"received {values.shape}.")
    if numeric and not np.isfinite(values).all():
        rows = int((~np.isfinite(values.reshape(len(values), -1))).any(axis=1).sum())
        raise DataError(f"{what} of '{name}' has missing or infinite values in {rows} row(s). "
                        f"Drop those rows or fill them in.")
    if values.ndim == 2 and task != "regression" and _is_one_hot(values):
        values = values.argmax(axis=1)
    if task == "regression":
        if not numeric:
            example = values.reshape(-1)[0]
            raise DataError(f"{what} of '{name}' holds text (e.g. {str(example)!r}), but "
                            f"regression needs numbers. Use task 'classification' or 'auto'.")
    elif task == "classification" or not numeric or (
            values.ndim == 1 and np.array_equal(values, np.round(values))
            and len(np.unique(values)) <= AUTO_CLASSIFICATION_MAX_CLASSES):
        return _encode_classes(values, what, name, limits, input_shape)
    targets = values.astype(np.float32)
    if not np.isfinite(targets).all():
        raise DataError(f"{what} of '{name}' has values too large for float32. Rescale it.")
    output_dim = 1 if targets.ndim == 1 else targets.shape[1]
    return targets, TaskInfo("regression", input_shape, output_dim=output_dim)


def _is_one_hot(values: np.ndarray) -> bool:
    return (values.dtype.kind in "biuf" and values.shape[1] > 1
            and bool(np.isin(values, (0, 1)).all()) and bool((values.sum(axis=1) == 1).all()))


def _encode_classes(values, what, name, limits, input_shape) -> tuple[np.ndarray, TaskInfo]:
    if values.ndim != 1:
        raise DataError(f"{what} of '{name}' has shape {values.shape}, but classification needs "
                        f"one label per sample, shape (samples,). Use task 'regression'.")
    if values.dtype.kind not in "iuf":
        values = values.astype(str)  # bool and mixed objects: classes by their text
    classes = np.unique(values)
    if len(classes) < 2:
        raise DataError(
            f"{what} of '{name}' has only one class ({_class_name(classes[0])!r}); a classifier "
            f"needs at least two. Check the file, or choose another target."
        )
    if len(classes) > limits.max_classes:
        raise DataError(
            f"{what} of '{name}' has {len(classes)} distinct values, over the limit of "
            f"{limits.max_classes} classes. Use task 'regression' if it is a quantity, "
            f"choose another target, or raise STACKLAB_MAX_CLASSES."
        )
    labels = np.searchsorted(classes, values).astype(np.int64)
    kind = "binary" if len(classes) == 2 else "multiclass"
    names = tuple(_class_name(c) for c in classes)
    return labels, TaskInfo(kind, input_shape, num_classes=len(classes), class_names=names)


def _class_name(value) -> str:
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))  # 1.0 -> "1": labels read as floats still look like labels
    return str(value)


def dataset_from_arrays(x, y, *, name: str = "arrays", task: str = "auto",
                        limits: DataLimits = DEFAULT_LIMITS, description: str = "",
                        pixel_range: float | None = None) -> Dataset:
    """Check and wrap in-memory arrays as a Dataset (what an NPZ file becomes).

    Args:
        x: numeric features of shape (samples, ...), rank >= 2; kept as shaped.
        y: labels or targets, shape (samples,) (or (samples, k), see `encode_target`).
        name: used in messages and as the dataset name.
        task: "auto", "classification" or "regression".
        limits: max_rows and max_classes.
        description: for the dashboard.
        pixel_range: the largest raw pixel value of images (255.0 for 8-bit), so the model
            rescales them; None guesses it: 255.0 for a uint8 x of rank >= 3 (images),
            else no rescaling. The values themselves are kept as given (scaling of 2-D x
            is a layer of the model, `core.build.preprocessing`).

    Returns:
        A Dataset.

    Raises:
        DataError: non-numeric x, wrong rank, length mismatch, missing values, too many
            rows, or a bad target (see `encode_target`).

    Example:
        >>> dataset_from_arrays(np.random.rand(10, 5, 1), np.arange(10) % 2).task.input_shape
        (5, 1)
    """
    x, y = np.asarray(x), np.asarray(y)
    if y.ndim == 0:
        raise DataError(f"Array y of '{name}' is a single value; it needs one target per sample.")
    if x.dtype.kind not in "biuf":
        raise DataError(f"Array x of '{name}' has dtype {x.dtype}; features must be numbers. "
                        f"Convert them, e.g. x.astype('float32').")
    if x.ndim < 2:
        raise DataError(f"Array x of '{name}' has shape {x.shape}; it needs (samples, features...). "
                        f"For one feature per sample use x.reshape(-1, 1).")
    if len(x) != len(y):
        raise DataError(f"'{name}' has {len(x)} samples in x but {len(y)} in y. "
                        f"Save one target per sample.")
    if len(x) > limits.max_rows:
        raise DataError(f"'{name}' has {len(x):,} samples, over the limit of {limits.max_rows:,}. "
                        f"Sample it down, or raise STACKLAB_MAX_ROWS.")
    if pixel_range is None and x.dtype == np.uint8 and x.ndim >= 3:
        pixel_range = 255.0  # 8-bit images: the model divides by 255, the arrays stay raw
    x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x).reshape(len(x), -1)
    if not finite.all():
        rows = int((~finite.all(axis=1)).sum())
        where = ""
        if x.ndim == 2:
            where = f" (columns {np.flatnonzero(~finite.all(axis=0)).tolist()[:10]})"
        raise DataError(f"Array x of '{name}' has missing, infinite or too-large values in "
                        f"{rows} sample(s){where}. Drop those samples or fill them in.")
    y, task_info = encode_target(y, task, "array y", name, limits, tuple(x.shape[1:]))
    return Dataset(Path(name).stem, x, y, task_info, (), description or f"{name}: {len(x)} samples.",
                   pixel_range=pixel_range)


def check_file_size(path: Path, name: str, limits: DataLimits) -> int:
    """The file's size in bytes; DataError when it is over `limits.max_file_bytes`."""
    size = path.stat().st_size
    if size > limits.max_file_bytes:
        raise DataError(
            f"'{name}' is {format_bytes(size)}, over the limit of "
            f"{format_bytes(limits.max_file_bytes)}. Use a smaller sample of the data, or "
            f"raise STACKLAB_MAX_DATA_BYTES."
        )
    return size
