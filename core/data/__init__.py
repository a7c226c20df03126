"""Datasets for training: built-in (offline), CSV and NPZ files, checked, split and prepared.

`load_dataset(spec)` turns a `core.spec.DatasetSpec` into a `Dataset` of RAW features (a
CSV's columns as numbers and text, images as stored), integer labels (or float targets)
and the `TaskInfo` that sizes the model's output. Bad data raises `DataError`, whose
message says what is wrong and how to fix it, so the dashboard can show it as is. Files
are read with explicit `DataLimits`; NPZ archives are inspected (members, sizes, .npy
headers) before any array is read.

Preprocessing belongs to the model: `core.build.preprocessing.prepare(dataset_spec,
train_spec)` splits, fits the scaling, vocabularies and target statistics on the training
split only (`encoding.fit_preprocessing`, plain data here), and encodes the split with the
Keras layers the exported model starts with. Everything that needs the stack's input shape
or the split goes through it; it lives with the builder because it needs Keras.

- `limits`: DataLimits (from STACKLAB_* variables) and DataError;
- `dataset`: Dataset and the train/validation split;
- `encoding`: what the preprocessing knows (plain data) and the run's data card;
- `inputs`: samples in the end-to-end model's form, `validation_inputs`;
- `builtin`: the built-in datasets (made offline); `csv_files`, `npz_files`: the readers.

No Keras, TensorFlow, Streamlit or Plotly (import-linter checks it): the dashboard imports
this for previews.

Example:
    >>> dataset = load_dataset(DatasetSpec(source="builtin", name="digits28"))
    >>> dataset.x.shape, dataset.task.kind
    ((1797, 28, 28, 1), 'multiclass')
"""

from __future__ import annotations

from core.data.builtin import BUILTIN_DATASETS, list_builtins, load_builtin
from core.data.csv_files import check_file_size, read_csv, read_header
from core.data.dataset import Dataset, Split, split
from core.data.encoding import Preprocessing
from core.data.inputs import model_inputs, validation_inputs
from core.data.limits import DEFAULT_LIMITS, DataError, DataLimits
from core.data.npz_files import read_npz
from core.spec import SCALINGS, DatasetSpec
from core.storage.uploads import display_name, resolve

__all__ = ["BUILTIN_DATASETS", "DEFAULT_LIMITS", "DataError", "DataLimits", "Dataset", "Preprocessing", "Split",
           "csv_columns", "list_builtins", "load_dataset", "model_inputs", "split", "validation_inputs"]


def load_dataset(spec: DatasetSpec, limits: DataLimits = DEFAULT_LIMITS) -> Dataset:
    """Load the dataset a spec describes: a built-in, a CSV or NPZ file, or a ZIP of image folders, raw.

    Built-in datasets are cached and their arrays are read-only: copy before changing.
    The features are not scaled here: `prepare` fits the scaling on the training split.

    Args:
        spec: source, name or path ("sha256:<hex>" for an upload), and for CSV the
            target, features and task (the scaling is checked, and used by `prepare`).
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
        return load_builtin(spec.name)
    if spec.source not in ("csv", "npz", "images"):
        raise DataError(f"Dataset source must be 'builtin', 'csv', 'npz' or 'images', received {spec.source!r}.")
    if not spec.path:
        raise DataError(
            f"A '{spec.source}' dataset needs a file: upload one or set dataset.path."
        )
    try:
        path = resolve(spec.path)
    except FileNotFoundError as error:
        raise DataError(str(error)) from None
    if spec.source == "images":  # a ZIP of class folders: raw pixels, pixel_range 255
        from core.data.image_folders import read_image_folders

        return read_image_folders(path, display_name(spec.path), spec, limits)
    reader = read_csv if spec.source == "csv" else read_npz
    return reader(path, display_name(spec.path), spec, limits)


def csv_columns(path_or_ref: str, limits: DataLimits = DEFAULT_LIMITS) -> list[str]:
    """The column names of a CSV file (its header), for choosing a target and features.

    Raises:
        DataError: the file is missing, too big, or its header cannot be read.

    Example:
        >>> csv_columns("sha256:ab12...")
        ['amount', 'hour', 'label']
    """
    try:
        path = resolve(path_or_ref)
    except FileNotFoundError as error:
        raise DataError(str(error)) from None
    name = display_name(path_or_ref)
    check_file_size(path, name, limits)
    return read_header(path, name)
