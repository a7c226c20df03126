"""A Keras model in the formats people deploy: SavedModel (zipped), ONNX and LiteRT, each verified.

`export_model(model, format, path, samples)` converts the model (a `keras.Model`, or a
`.keras` file, read and never written), runs the result in its own runtime on up to 100
samples and compares it with Keras: a file is written only if the largest absolute
difference is within `TOLERANCE` (1e-4), and the `ExportResult` reports it.

| format        | converter                                        | runtime that verifies it          |
| ------------- | ------------------------------------------------ | --------------------------------- |
| `saved_model` | `model.export(format="tf_saved_model")`, zipped  | `keras.layers.TFSMLayer`          |
| `onnx`        | tf2onnx on that SavedModel                       | `onnxruntime.InferenceSession`    |
| `litert`      | `model.export(format="litert")` (Keras's)        | `ai_edge_litert` `Interpreter`    |

ONNX is converted from the SavedModel rather than with `model.export(format="onnx")`:
Keras hands tf2onnx a bare function, in which tf2onnx cannot find a StringLookup's table
("Could not determine table shared name"); it then writes a graph that onnxruntime refuses
("No Op registered for LookupTableFindV2"). From the SavedModel tf2onnx exports the tables,
so tabular models with string columns convert and verify. Both ONNX and LiteRT carry string
inputs and lookup tables (LiteRT's HASHTABLE ops are built in).

A layer the converter or runtime cannot take (a `Hashing` layer: TensorFlow's
StringToHashBucketFast has no ONNX mapping and no built-in LiteRT kernel) raises
`ExportError` naming the layer, the op, the column that feeds it, and a format that works.
The ONNX and LiteRT packages are optional (`requirements-export.txt`); `missing_packages`
says which are absent. All three formats need the TensorFlow backend. Keras is imported
inside the functions that need it, so `missing_packages` costs no Keras import.

Example:
    >>> result = export_model("runs/42/model.keras", "onnx", "runs/42/model.onnx", samples)
    >>> result.summary()
    'ONNX: model.onnx (14.2 KB), max |ONNX - Keras| = 1.2e-07 on 100 samples (limit 1e-04)'
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import os
import re
import tempfile
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping

import numpy as np

from core.limits import format_bytes
from core.storage.atomic import atomic_target

FORMATS = ("saved_model", "onnx", "litert")
LABELS = {"saved_model": "SavedModel", "onnx": "ONNX", "litert": "LiteRT"}
FILE_NAMES = {"saved_model": "saved_model.zip", "onnx": "model.onnx", "litert": "model.tflite"}
# (import name, pip name) of what each format needs beyond requirements.txt.
PACKAGES = {
    "saved_model": (),
    "onnx": (("tf2onnx", "tf2onnx"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")),
    "litert": (("ai_edge_litert", "ai-edge-litert"),),
}
INSTALL_COMMAND = "pip install -r requirements-export.txt"
MISSING_PACKAGES_MESSAGE = ("{label} export needs {packages}, not installed here: run `" + INSTALL_COMMAND
                            + "` in StackLab's checkout (about 180 MB) to add them.")
MAX_SAMPLES = 100
TOLERANCE = 1e-4
# What each format suggests when a layer does not convert: SavedModel carries every TensorFlow op.
FALLBACKS = {"onnx": "export to SavedModel instead (it carries every TensorFlow op)",
             "litert": "export to SavedModel instead (it carries every TensorFlow op)",
             "saved_model": "download model.keras instead (it needs only Keras)"}
# TensorFlow's rule for a SavedModel signature's input names (tensorflow/python/framework/ops.py):
# a CSV column such as "sepal length (cm)" breaks it, so such inputs get a name that keeps it.
SIGNATURE_NAME = re.compile(r"^[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*$")


class ExportError(ValueError):
    """The model does not convert to a format, or the converted file does not match Keras."""


class MissingExportPackages(ExportError):
    """A format's optional packages are not installed (see `INSTALL_COMMAND`)."""


@dataclass(frozen=True)
class ExportResult:
    """One verified export.

    format: "saved_model" | "onnx" | "litert". path: the file written (a .zip for SavedModel).
    size_bytes: its size. max_abs_diff: the largest |runtime - Keras| over every output value
    of the samples. samples: how many samples were compared. tolerance: the limit it passed.
    input_names: the model's input (a column) -> that input's name in the file; they differ
    where TensorFlow refuses the name ("sepal length (cm)" -> "sepal_length_cm" in SavedModel
    and LiteRT signatures; ONNX keeps every name).
    """

    format: str
    path: Path
    size_bytes: int
    max_abs_diff: float
    samples: int
    tolerance: float = TOLERANCE
    input_names: Mapping[str, str] = field(default_factory=dict)

    @property
    def renamed_inputs(self) -> dict[str, str]:
        return {name: in_file for name, in_file in self.input_names.items() if name != in_file}

    def summary(self) -> str:
        label = LABELS[self.format]
        renamed = "; inputs renamed in the file: " + ", ".join(
            f"'{name}' -> '{in_file}'" for name, in_file in self.renamed_inputs.items()) if self.renamed_inputs else ""
        return (f"{label}: {self.path.name} ({format_bytes(self.size_bytes)}), max |{label} - Keras| = "
                f"{self.max_abs_diff:.1e} on {self.samples} samples (limit {self.tolerance:.0e}){renamed}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "path": str(self.path), "input_names": dict(self.input_names)}


def missing_packages(format: str) -> list[str]:  # noqa: A002 - the word the CLI and the dashboard use
    """The pip names of the packages `format` needs that are not installed ([] when none are).

    Raises:
        ValueError: an unknown format.
    """
    _check_format(format)
    return [pip_name for module, pip_name in PACKAGES[format] if importlib.util.find_spec(module) is None]


def missing_packages_message(format: str) -> str | None:  # noqa: A002
    """The one-line reason (with the install command) that `format` cannot run here, or None."""
    missing = missing_packages(format)
    if not missing:
        return None
    return MISSING_PACKAGES_MESSAGE.format(label=LABELS[format], packages=", ".join(missing))


def export_model(model: Any, format: str, path: str | Path, samples: Any, *,  # noqa: A002
                 max_samples: int = MAX_SAMPLES, tolerance: float = TOLERANCE) -> ExportResult:
    """Convert `model` to `format`, check it in that format's runtime, then write it to `path`.

    Args:
        model: a `keras.Model`, or the path of a `.keras` file (loaded with safe_mode=True,
            never written).
        format: "saved_model" (a .zip of the SavedModel folder), "onnx" or "litert".
        path: the file to write (atomically; nothing is written when a check fails).
        samples: inputs in the form the model takes: a dict of column -> (n, 1) array
            (strings for text columns) or one array; the first `max_samples` are compared.
        max_samples: how many samples to compare at most.
        tolerance: the largest absolute difference from Keras that passes.

    Returns:
        The ExportResult: path, size, max absolute difference, sample count.

    Raises:
        MissingExportPackages: the format's packages are not installed.
        ExportError: not the TensorFlow backend, a layer that does not convert, or a runtime
            whose outputs differ from Keras by more than `tolerance`.
        ValueError: an unknown format, no samples, or `path` is the model file itself.
    """
    _check_format(format)
    message = missing_packages_message(format)
    if message:
        raise MissingExportPackages(message)
    from core.training.backend import backend_name

    if backend_name() != "tensorflow":
        raise ExportError(f"{LABELS[format]} export needs the TensorFlow backend (KERAS_BACKEND=tensorflow, the "
                          f"default); this process runs '{backend_name()}'. Unset KERAS_BACKEND and export again.")
    path = Path(path)
    model = _loaded(model, path)
    inputs, count = _sample_inputs(model, samples, max_samples)
    expected = _outputs_of(model(inputs, training=False))
    signature = Signature.of(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The work folder is beside the target, so the final move is a rename on one file system.
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=f".{path.name}.") as work:
        converted = CONVERTERS[format](model, Path(work), signature)
        names = signature.onnx_names if format == "onnx" else signature.names
        with _conversion_failures(format, model, who=f"the {RUNTIME_NAMES[format]} runtime"):
            received = RUNTIMES[format](converted, inputs, names)
        difference = _max_abs_diff(format, expected, received)
        if not difference <= tolerance:  # also refuses NaN
            raise ExportError(f"{LABELS[format]} export does not match Keras: max |{LABELS[format]} - Keras| = "
                              f"{difference:.3g} on {count} samples, over the {tolerance:.0e} limit; nothing was "
                              f"written. The model file is unchanged; {FALLBACKS[format]}.")
        with atomic_target(path, suffix=path.suffix or ".tmp") as temporary:
            if format == "saved_model":
                _zip_folder(converted, temporary, top=path.stem or "saved_model")
            else:
                os.replace(converted, temporary)
    return ExportResult(format, path, path.stat().st_size, float(difference), count, tolerance, names)


# ---- inputs and outputs ---------------------------------------------------------------------


def _check_format(format: str) -> None:  # noqa: A002
    if format not in FORMATS:
        raise ValueError(f"Unknown export format {format!r}: expected one of {', '.join(FORMATS)}.")


def _loaded(model: Any, target: Path):
    if not isinstance(model, (str, Path)):
        return model
    source = Path(model)
    if target.resolve() == source.resolve():
        raise ValueError(f"The export would overwrite its own model file '{source}': choose another --out path.")
    import keras

    return keras.saving.load_model(source, safe_mode=True, compile=False)


def _as_input(values: Any, dtype: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype.kind in "USO" or dtype == "string":
        # Keras, onnxruntime and LiteRT all take text as an object array of str.
        decode = np.vectorize(lambda v: v.decode("utf-8") if isinstance(v, bytes) else str(v), otypes=[object])
        return decode(array) if array.size else array.astype(object)
    return array.astype(dtype if dtype not in ("", "string") else "float32")


def _sample_inputs(model, samples: Any, max_samples: int) -> tuple[Any, int]:
    dtypes = {tensor.name: str(tensor.dtype) for tensor in model.inputs}
    if isinstance(samples, Mapping):
        if not isinstance(model.input, dict):
            raise ValueError(f"The model takes one array input, not columns; received a dict of "
                             f"{', '.join(map(repr, samples))}.")
        expected = model.input
        missing = [name for name in expected if name not in samples]
        if missing:
            raise ValueError(f"The samples lack the model's input column(s) {', '.join(map(repr, missing))}; "
                             f"received {', '.join(map(repr, samples)) or 'none'}.")
        keys = list(expected)
        inputs = {key: _as_input(samples[key], dtypes.get(key, "float32"))[:max_samples] for key in keys}
        counts = {len(value) for value in inputs.values()}
        if len(counts) != 1:
            raise ValueError(f"The sample columns have different lengths: {sorted(counts)}; give each the same rows.")
        count = counts.pop()
    else:
        if len(model.inputs) != 1:
            raise ValueError(f"The model takes {len(model.inputs)} inputs; give the samples as a dict keyed by "
                             f"their names ({', '.join(dtypes)}), not one array.")
        inputs = _as_input(samples, str(model.inputs[0].dtype))[:max_samples]
        count = len(inputs)
    if count == 0:
        raise ValueError("No samples to verify the export with: give at least one sample (up to 100 are compared).")
    return inputs, count


def _outputs_of(outputs: Any) -> list[np.ndarray]:
    import keras

    return [np.asarray(keras.ops.convert_to_numpy(value), dtype=np.float64) for value in keras.tree.flatten(outputs)]


def _ordered(outputs: Mapping[str, Any]) -> list[np.ndarray]:
    """Outputs named output_0, output_1, ... (SavedModel signatures), in that order."""
    def index(name: str) -> tuple[int, str]:
        found = re.search(r"(\d+)$", name)
        return (int(found.group(1)) if found else 0, name)

    return [np.asarray(outputs[name], dtype=np.float64) for name in sorted(outputs, key=index)]


def _max_abs_diff(format: str, expected: list[np.ndarray], received: list[np.ndarray]) -> float:  # noqa: A002
    shapes = [value.shape for value in expected], [value.shape for value in received]
    if shapes[0] != shapes[1]:
        raise ExportError(f"{LABELS[format]} export gives outputs of shapes {shapes[1]}, Keras {shapes[0]}; "
                          f"nothing was written.")
    return max((float(np.max(np.abs(a - b))) if a.size else 0.0 for a, b in zip(expected, received)), default=0.0)


def _feed(inputs: Any, in_file: list[str], names: Mapping[str, str], label: str) -> dict[str, Any]:
    """The samples keyed by the file's input names (`names`: model input -> name in the file)."""
    if not isinstance(inputs, dict):
        if len(in_file) != 1:
            raise ExportError(f"The {label} file takes {len(in_file)} inputs ({', '.join(in_file)}), "
                              f"the model one array.")
        return {in_file[0]: inputs}
    feed = {names.get(key, key): value for key, value in inputs.items()}
    if sorted(in_file) != sorted(feed):
        raise ExportError(f"The {label} file's inputs are {sorted(in_file)}, the model's {sorted(feed)}.")
    return feed


@dataclass(frozen=True)
class Signature:
    """The input signature every format is exported with.

    specs: Keras's `input_signature` (the model's input structure of `keras.InputSpec`s,
    named as TensorFlow allows), or None to let Keras infer one. names: model input (a
    dict key, or an array input's name) -> its name in SavedModel and LiteRT files.
    """

    specs: Any = None
    names: Mapping[str, str] = field(default_factory=dict)

    @property
    def onnx_names(self) -> dict[str, str]:
        """ONNX allows any name, so an ONNX file's inputs keep the model's (the CSV's) names."""
        return {key: key for key in self.names}

    @classmethod
    def of(cls, model) -> "Signature":
        import keras

        try:
            structure = model.input
        except (AttributeError, ValueError):  # a subclassed model: Keras infers the signature
            return cls()
        keys = list(structure) if isinstance(structure, dict) else [t.name for t in keras.tree.flatten(structure)]
        names = _signature_names(keys)

        def spec(name: str, tensor) -> keras.InputSpec:
            return keras.InputSpec(shape=(None, *tensor.shape[1:]), dtype=tensor.dtype, name=name)

        if isinstance(structure, dict):
            return cls([{key: spec(names[key], tensor) for key, tensor in structure.items()}], names)
        ordered = iter(names.values())
        return cls([keras.tree.map_structure(lambda tensor: spec(next(ordered), tensor), structure)], names)


def _signature_names(keys: list[str]) -> dict[str, str]:
    """Each key as is where TensorFlow accepts it, else "sepal length (cm)" -> "sepal_length_cm";
    unique ignoring case, as TensorFlow compares them ("Age" and "age" collide: "age_2")."""
    names: dict[str, str] = {}
    taken: set[str] = set()
    for key in sorted(keys, key=lambda key: not SIGNATURE_NAME.match(key)):  # valid names keep theirs first
        stem = key
        if not SIGNATURE_NAME.match(key):
            stem = re.sub(r"[^A-Za-z0-9.-]+", "_", key).strip("_-") or "input"
            stem = stem if SIGNATURE_NAME.match(stem) else f"input_{stem}"
        name, counter = stem, 2
        while name.lower() in taken:
            name, counter = f"{stem}_{counter}", counter + 1
        taken.add(name.lower())
        names[key] = name
    return {key: names[key] for key in keys}


# ---- converters and runtimes ----------------------------------------------------------------


@contextlib.contextmanager
def _converter_logs() -> Iterator[list[str]]:
    """Hold back what TensorFlow's and tf2onnx's Python loggers say while converting (a
    harmless "Issue encountered when serializing table_initializer"); yields their errors."""
    errors: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.levelno >= logging.ERROR:
                errors.append(record.getMessage())

    keep, saved = Keep(), {}
    for name in ("tensorflow", "tf2onnx"):
        logger = logging.getLogger(name)
        saved[name] = (logger.level, logger.propagate, list(logger.handlers))
        logger.handlers, logger.propagate = [keep], False
        logger.setLevel(logging.ERROR)
    try:
        yield errors
    finally:
        for name, (level, propagate, handlers) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.handlers, logger.propagate = handlers, propagate


def _write_saved_model(model, work: Path, signature: Signature) -> Path:
    folder = work / "saved_model"
    with _converter_logs(), _conversion_failures("saved_model", model):
        model.export(str(folder), format="tf_saved_model", verbose=False, input_signature=signature.specs)
    return folder


def _run_saved_model(folder: Path, inputs: Any, names: Mapping[str, str]) -> list[np.ndarray]:
    import keras

    # The "serve" endpoint takes the model's own structure (its dict keys); the names are
    # those of the serving_default signature that TensorFlow Serving reads.
    return _outputs_of(keras.layers.TFSMLayer(str(folder), call_endpoint="serve")(inputs))


def _write_onnx(model, work: Path, signature: Signature) -> Path:
    saved = _write_saved_model(model, work, signature)
    # tf2onnx's saved-model path, as its own CLI (`python -m tf2onnx.convert --saved-model`)
    # takes it; `_convert_common` is what that CLI calls (tf2onnx is pinned at 1.17.0).
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    with _converter_logs() as errors, _conversion_failures("onnx", model):
        graph, inputs, outputs, tables, renames = tf_loader.from_saved_model(
            str(saved), None, None, tag="serve", signatures=["serving_default"],
            return_initialized_tables=True, return_tensors_to_rename=True)
        # Back to the model's own input names (a CSV's columns), which ONNX allows. (`renames`
        # maps graph tensors to signature names; TensorFlow lower-cases the tensors' names.)
        back = {in_file.lower(): key for key, in_file in signature.names.items()}
        renames = {tensor: back.get(name.lower(), name) if tensor in inputs else name
                   for tensor, name in renames.items()}
        proto, _ = _convert_common(graph, name=model.name, input_names=inputs, output_names=outputs,
                                   initialized_tables=tables, tensors_to_rename=renames)
    _refuse_unconverted_onnx_ops(proto, model, errors)
    path = work / "model.onnx"
    path.write_bytes(proto.SerializeToString())
    return path


def _refuse_unconverted_onnx_ops(proto, model, errors: list[str]) -> None:
    """tf2onnx leaves a TensorFlow op it has no mapping for in the graph (and logs it); such
    a file loads nowhere, so it is refused here, naming the op and its layer."""
    import onnx

    for node in proto.graph.node:
        if not onnx.defs.has(node.op_type, node.domain or ""):
            raise ExportError(_unsupported_op("onnx", model, node.op_type, [node.name],
                                              "which tf2onnx cannot convert to ONNX"))
    if errors:  # a node it knew but failed to convert
        raise ExportError(_failure("onnx", model, errors[0]))


def _run_onnx(path: Path, inputs: Any, names: Mapping[str, str]) -> list[np.ndarray]:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feed = _feed(inputs, [value.name for value in session.get_inputs()], names, "ONNX")
    names = [value.name for value in session.get_outputs()]
    return _ordered(dict(zip(names, session.run(None, feed))))


def _write_litert(model, work: Path, signature: Signature) -> Path:
    path = work / "model.tflite"
    with _converter_logs(), _conversion_failures("litert", model):
        model.export(str(path), format="litert", verbose=False, input_signature=signature.specs)
    # Keras lets the converter fall back to TensorFlow ("Flex") ops, which the LiteRT
    # runtime does not have: such a file would fail on the device, so it is refused here.
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path))
    tensors = {detail["index"]: detail["name"] for detail in interpreter.get_tensor_details()}
    for op in getattr(interpreter, "_get_ops_details", list)():
        if op["op_name"].startswith("Flex"):
            names = [tensors.get(int(index), "") for index in [*op["outputs"], *op["inputs"]]]
            raise ExportError(_unsupported_op(
                "litert", model, op["op_name"].removeprefix("Flex"), names,
                "which the LiteRT runtime has no kernel for (only an app linking TensorFlow's Flex delegate runs it)"))
    return path


def _run_litert(path: Path, inputs: Any, names: Mapping[str, str]) -> list[np.ndarray]:
    from ai_edge_litert.interpreter import Interpreter

    runner = Interpreter(model_path=str(path)).get_signature_runner("serving_default")
    feed = _feed(inputs, list(runner.get_input_details()), names, "LiteRT")
    return _ordered(runner(**feed))


CONVERTERS = {"saved_model": _write_saved_model, "onnx": _write_onnx, "litert": _write_litert}
RUNTIMES = {"saved_model": _run_saved_model, "onnx": _run_onnx, "litert": _run_litert}
RUNTIME_NAMES = {"saved_model": "TensorFlow", "onnx": "onnxruntime", "litert": "LiteRT"}


def _zip_folder(folder: Path, target: Path, top: str) -> None:
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for file in sorted(folder.rglob("*")):
            if file.is_file():
                archive.write(file, f"{top}/{file.relative_to(folder).as_posix()}")


# ---- naming the layer that failed -----------------------------------------------------------


@contextlib.contextmanager
def _conversion_failures(format: str, model, who: str = "the converter") -> Iterator[None]:  # noqa: A002
    """A converter's (or runtime's) own exception (their types vary: ConverterError,
    ValueError, RuntimeError, onnxruntime's Fail) becomes an ExportError naming the layer in
    its message, with the original chained."""
    try:
        yield
    except ExportError:
        raise
    except Exception as error:  # noqa: BLE001 - any converter failure is reported, chained, never hidden
        raise ExportError(_failure(format, model, str(error), who)) from error


def _layers(model) -> Iterator[Any]:
    for layer in getattr(model, "layers", ()):
        yield layer
        yield from _layers(layer)  # members are models nested in the stack


def _layer_named(model, names: Iterable[str]):
    """The deepest layer of `model` whose name is a part of an op name like
    "StatefulPartitionedCall/functional_1/color_hash_1/hash" (TensorFlow's name scopes add
    "_1" to a layer's name when a trace reuses it)."""
    layers = {layer.name: layer for layer in _layers(model)}
    for name in names:
        for part in reversed(re.split(r"[/;:@\"\[\]\s]+", name or "")):
            for candidate in (part, re.sub(r"_\d+$", "", part)):
                if candidate in layers:
                    return layers[candidate]
    return None


def _columns_feeding(layer, model) -> list[str]:
    try:
        import keras

        received = {id(tensor) for tensor in keras.tree.flatten(layer.input)}
    except (AttributeError, ValueError):  # a layer called several times has no single input
        return []
    return [tensor.name for tensor in model.inputs if id(tensor) in received]


def _where(model, names: Iterable[str]) -> str:
    layer = _layer_named(model, names)
    if layer is None:
        return ""
    columns = _columns_feeding(layer, model)
    fed = f" (fed by column {', '.join(map(repr, columns))})" if columns else ""
    return f"layer '{layer.name}' ({type(layer).__name__}){fed}"


def _unsupported_op(format: str, model, op: str, names: list[str], why: str) -> str:  # noqa: A002
    where = _where(model, names) or f"the op at '{next((n for n in names if n), '?')}'"
    return (f"{LABELS[format]} export failed: {where} uses the TensorFlow op {op}, {why}. The model file is "
            f"unchanged; {FALLBACKS[format]}, or replace that layer (StringLookup with a vocabulary instead of "
            f"Hashing, for text).")


def _failure(format: str, model, said: str, who: str = "the converter") -> str:  # noqa: A002
    lines = [line.strip() for line in said.splitlines() if line.strip()]
    reason = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "no reason given")
    where = _where(model, re.findall(r"[\w.\-]+(?:/[\w.\-]+)+", said))
    reason = reason if len(reason) <= 400 else reason[:400].rsplit(" ", 1)[0] + " ..."
    return (f"{LABELS[format]} export failed{' at ' + where if where else ''}: {who} said: "
            f"{reason.rstrip('.')}. The model file is unchanged; {FALLBACKS[format]}.")
