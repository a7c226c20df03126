"""The model's preprocessing as Keras layers, and `prepare`: the one road from data to a stack.

A model trained by StackLab carries its preprocessing: the downloaded model.keras takes raw
inputs (a dict of CSV columns, or raw arrays) and starts with Keras's own layers, fitted on
the training split only (`core.data.encoding`):

- a CSV number column: `Normalization(mean, variance)` (or nothing, scaling "none");
- a CSV text column: `StringLookup(vocabulary, num_oov_indices=1, output_mode="one_hot")`,
  so a value never seen in training lands in the out-of-vocabulary slot, not an error;
- 2-D array data: one `Normalization` over the features; raw images: `Rescaling(1 / range)`.

Training still feeds encoded float32 arrays (fast, and a stack sees one array): they are
computed by calling these same layers, so the end-to-end model reproduces them exactly.

`prepare(dataset_spec, train_spec)` is what every caller that needs the task, the input
shape or the split uses (training, the pre-flight check, evaluation): it loads, splits,
fits and encodes once, and caches the result per process (the inspector checks a drawing
at every edit).

Example:
    >>> prepared = prepare(spec.dataset, spec.train)
    >>> prepared.task.input_shape, prepared.split.x_train.dtype
    ((9,), dtype('float32'))
    >>> model = end_to_end_model(prepared.preprocessing, trained_stack)
"""

from __future__ import annotations

import dataclasses
import re
import threading
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import keras
import numpy as np

from core.data.dataset import Dataset, Split, split
from core.data.encoding import Preprocessing, data_card, fit_preprocessing
from core.data.inputs import table_inputs
from core.data.limits import DEFAULT_LIMITS, DataLimits
from core.spec import DatasetSpec, TrainSpec
from core.spec.tasks import TaskInfo

# Rows encoded per call of the layers: bounds the memory of one-hot blocks of a big table.
ENCODE_CHUNK_ROWS = 65_536
# Prepared datasets kept per process: the last couple a drawing or a run asked for.
CACHE_SIZE = 2


class PreprocessingLayers:
    """The Keras layers of one Preprocessing, applied to raw inputs (symbolic or numpy).

    Built-in layers only, so model.keras loads with plain `keras.saving.load_model` under
    safe_mode=True. Layers are float32 whatever the mixed-precision policy: statistics in
    float16 would lose the digits a one-to-one reproduction needs.
    """

    def __init__(self, prep: Preprocessing):
        self.prep = prep
        self.column_layers: dict[str, keras.layers.Layer | None] = {}
        used: set[str] = set()
        for column in prep.columns:
            stem = _layer_name(column.name, used)
            if column.kind == "categorical":
                layer = keras.layers.StringLookup(vocabulary=list(column.vocabulary), num_oov_indices=1,
                                                  output_mode="one_hot", name=f"{stem}_lookup")
            elif column.mean is not None:
                layer = keras.layers.Normalization(mean=[column.mean], variance=[column.variance],
                                                   name=f"{stem}_normalization", dtype="float32")
            else:
                layer = None
            self.column_layers[column.name] = layer
        self.rescaling = (keras.layers.Rescaling(1.0 / prep.pixel_range, name="rescaling", dtype="float32")
                          if prep.pixel_range is not None and not prep.is_table else None)
        self.normalization = (keras.layers.Normalization(axis=-1, mean=list(prep.mean), variance=list(prep.variance),
                                                         name="normalization", dtype="float32")
                              if prep.mean is not None else None)
        # An Input is named after its column (Keras matches dict keys to input names), except
        # that Keras refuses '/' in a name; such a column's Input gets a free name instead.
        taken = {column.name for column in prep.columns if "/" not in column.name}
        self._input_names = {column.name: column.name if "/" not in column.name else _layer_name(column.name, taken)
                             for column in prep.columns}

    def inputs(self) -> dict[str, keras.KerasTensor] | keras.KerasTensor:
        """The end-to-end model's inputs: one (1,)-shaped Input per CSV column, or one array."""
        if not self.prep.is_table:
            return keras.Input(shape=tuple(self.prep.input_shape), name="input", dtype="float32")
        return {column.name: keras.Input(shape=(1,), name=self._input_names[column.name],
                                         dtype="float32" if column.kind == "numeric" else "string")
                for column in self.prep.columns}

    def apply(self, inputs):
        """Raw inputs (as `inputs()` describes, symbolic or numpy) -> the encoded float32 tensor."""
        if not self.prep.is_table:
            x = inputs
            if self.rescaling is not None:
                x = self.rescaling(x)
            if self.normalization is not None:
                x = self.normalization(x)
            return x
        pieces = []
        for column in self.prep.columns:
            layer = self.column_layers[column.name]
            pieces.append(inputs[column.name] if layer is None else layer(inputs[column.name]))
        return pieces[0] if len(pieces) == 1 else keras.layers.Concatenate(axis=-1, dtype="float32")(pieces)

    def encode(self, x: np.ndarray) -> np.ndarray:
        """Raw samples (a Dataset's x rows) -> encoded float32 samples, as the end-to-end model computes them."""
        if not self.prep.has_layers:
            return np.asarray(x, np.float32)
        blocks = []
        for start in range(0, len(x), ENCODE_CHUNK_ROWS):
            rows = x[start:start + ENCODE_CHUNK_ROWS]
            raw = (table_inputs([c.name for c in self.prep.columns], [c.kind for c in self.prep.columns], rows)
                   if self.prep.is_table else np.asarray(rows, np.float32))
            blocks.append(keras.ops.convert_to_numpy(self.apply(raw)).astype(np.float32, copy=False))
        if not blocks:  # no rows (an empty validation part): the encoded shape, 0 samples
            return np.zeros((0, *self.prep.encoded_shape), np.float32)
        return np.concatenate(blocks)


def _layer_name(text: str, used: set[str]) -> str:
    """A layer name for a column: Keras refuses '/' in names, and two layers cannot share one."""
    stem = re.sub(r"[^\w.-]", "_", text).strip("_") or "column"
    name, counter = stem, 2
    while name in used:
        name, counter = f"{stem}_{counter}", counter + 1
    used.add(name)
    return name


def end_to_end_model(prep: Preprocessing, stack: keras.Model, name: str | None = None) -> keras.Model:
    """The downloadable model: raw inputs -> preprocessing layers -> the trained stack.

    Args:
        prep: the run's fitted preprocessing.
        stack: the trained stack (for regression, its last layer already outputs the
            target's units).
        name: the model's name; "<stack name>_end_to_end" by default.

    Returns:
        A functional model; the stack itself when there is no preprocessing layer.
    """
    if not prep.has_layers:
        return stack
    layers = PreprocessingLayers(prep)
    inputs = layers.inputs()
    return keras.Model(inputs, stack(layers.apply(inputs)), name=name or f"{stack.name}_end_to_end")


@dataclass(frozen=True, eq=False)
class Prepared:
    """A dataset made ready for a stack: the encoded split, its task and the preprocessing.

    Args:
        dataset: the raw dataset.
        split: the encoded split (float32 x, the stack's inputs; y as in the dataset).
        preprocessing: what the end-to-end model's layers hold.
        task: the dataset's task with the ENCODED input shape (what the stack is built for).
        validation_split, seed: how the split was drawn.
    """

    dataset: Dataset
    split: Split
    preprocessing: Preprocessing
    task: TaskInfo
    validation_split: float
    seed: int

    def data_card(self) -> dict[str, Any]:
        """The run's data.json (see `core.data.encoding.data_card`)."""
        return data_card(self.preprocessing, self.task.kind, {
            "train_rows": int(len(self.split.x_train)), "val_rows": int(len(self.split.x_val)),
            "seed": self.seed, "validation_split": self.validation_split})


def prepare_dataset(dataset: Dataset, train_spec: TrainSpec, scaling: str = "standard",
                    target_name: str = "target") -> Prepared:
    """Split `dataset` as `train_spec` says, fit the preprocessing on the training part, encode both.

    Raises:
        DataError: a bad validation_split or scaling, or too few samples to split.
    """
    raw = split(dataset, train_spec.validation_split, train_spec.seed)
    prep = fit_preprocessing(dataset, raw, scaling, target_name)
    layers = PreprocessingLayers(prep)
    encoded = Split(layers.encode(raw.x_train), raw.y_train, layers.encode(raw.x_val), raw.y_val)
    for array in (encoded.x_train, encoded.y_train, encoded.x_val, encoded.y_val):
        array.flags.writeable = False  # cached and shared by every caller: writes must fail loudly
    task = dataclasses.replace(dataset.task, input_shape=prep.encoded_shape)
    return Prepared(dataset, encoded, prep, task, train_spec.validation_split, train_spec.seed)


_cache: OrderedDict = OrderedDict()
_cache_lock = threading.Lock()


def _file_key(spec: DatasetSpec) -> Any:
    """What identifies the file's content: an upload's hash names it; a plain path, its size and time."""
    if spec.source == "builtin" or not spec.path or spec.path.startswith("sha256:"):
        return spec.path
    from core.storage.uploads import resolve

    try:
        stat = resolve(spec.path).stat()
    except (FileNotFoundError, OSError):
        return None  # load_dataset reports the missing file
    return (stat.st_size, stat.st_mtime_ns)


def prepare(dataset_spec: DatasetSpec, train_spec: TrainSpec, limits: DataLimits = DEFAULT_LIMITS) -> Prepared:
    """Load the spec's dataset and prepare it for a stack (cached per process).

    Args:
        dataset_spec: which data, its target and scaling.
        train_spec: validation_split and seed (the split; nothing else is read).
        limits: file limits for `load_dataset`.

    Returns:
        A Prepared: the same object for the same data, split and scaling while cached.

    Raises:
        DataError: the data cannot be loaded or split.

    Example:
        >>> prepare(DatasetSpec(name="iris"), TrainSpec(validation_split=0.2)).task.input_shape
        (4,)
    """
    from core.data import load_dataset

    key = (dataset_spec, _file_key(dataset_spec), float(train_spec.validation_split), int(train_spec.seed), limits)
    with _cache_lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    dataset = load_dataset(dataset_spec, limits)
    prepared = prepare_dataset(dataset, train_spec, dataset_spec.scaling, dataset_spec.target or "target")
    with _cache_lock:
        _cache[key] = prepared
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return prepared
