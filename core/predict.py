"""Predictions of a trained model on new rows, with the checks an upload gets.

`predict(model_or_path, data)` reads a CSV (for a model whose inputs are a dict of columns,
as a run's end-to-end `model.keras` is) or an NPZ (for a model with one array input), refuses
data the model cannot take with a one-line reason (a missing column, text in a numeric
column, missing or infinite values, samples of the wrong shape, too many rows), and returns
one row per sample: the predicted class name (or value), and one probability column per
class. Class names come from the run's `data.json`, or the `data.json` next to a bare
model file; without one the classes are numbered, and the table's notes say so.

`python -m core predict (RUN_ID | MODEL.keras) (DATA.csv | DATA.npz | --validation)
[--out predictions.csv]` is the same from the command line (`add_parser`, `run`); the
dashboard's Predict tab runs it in a child process (`python -m core.predict ... --json`),
because the Streamlit server never imports Keras.

Keras is imported inside the functions that load or call a model.

Example:
    >>> table = predict("runs-id-or/model.keras", "new_rows.csv")
    >>> table.columns.tolist()
    ['predicted', 'no', 'yes']
"""

from __future__ import annotations

import json
import math
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.data import DEFAULT_LIMITS, DataError, DataLimits, csv_files, npz_files
from core.limits import positive_from_env
from core.processes import answer, refused, reserve_stdout
from core.storage.paths import RUN_ID_PATTERN, run_dir
from core.storage.uploads import display_name, is_ref, resolve

BATCH_SIZE = 256
MAX_ROWS_ENV = "STACKLAB_MAX_PREDICT_ROWS"
DEFAULT_MAX_ROWS = 100_000
DATA_CARD = "data.json"
MAX_CARD_BYTES = 4 << 20  # a data card with a vocabulary of thousands is well under this
VALIDATION_ROWS = 1000
PREDICTED = "predicted"
TRUE = "true"


@dataclass(frozen=True)
class ModelInputs:
    """What a model takes: named columns (a dict input) or one array of `sample_shape`.

    columns: (name, dtype) per input of a dict-input model, e.g. ("age", "float32"),
    ("color", "string"); empty for an array model. sample_shape: one sample's shape for an
    array model (None where any size goes), None for a dict-input model.
    """

    columns: tuple[tuple[str, str], ...] = ()
    sample_shape: tuple[int | None, ...] | None = None

    @property
    def needed(self) -> list[str]:
        return [name for name, _ in self.columns]


def max_rows() -> int:
    """Rows one prediction may take (STACKLAB_MAX_PREDICT_ROWS, default 100,000)."""
    return int(positive_from_env(MAX_ROWS_ENV, DEFAULT_MAX_ROWS, whole=True))


# ---- the model ------------------------------------------------------------------------------


def locate_model(target: str) -> tuple[Path, dict | None, bool]:
    """(model file, data card or None, whether it is a run's own model) for a run id or a path.

    Raises:
        FileNotFoundError: neither a model file nor a run with a model.keras.
    """
    path = Path(target).expanduser()
    if path.suffix.lower() in (".keras", ".h5", ".hdf5") or is_ref(target):
        file = resolve(target)
        return file, read_data_card(file.parent / DATA_CARD), False
    if RUN_ID_PATTERN.match(target):
        model = run_dir(target) / "model.keras"
        if model.is_file():
            return model, read_data_card(model.parent / DATA_CARD), True
        if run_dir(target).is_dir():
            raise FileNotFoundError(f"Run '{target}' has no model.keras yet: predictions need a finished run.")
    raise FileNotFoundError(
        f"'{target}' is neither a model file (.keras) nor a run id with a model (see `python -m core runs list`).")


def read_data_card(path: Path) -> dict | None:
    """The run's data card (data.json), or None when there is none.

    Raises:
        ValueError: the card is there but is not a JSON object of a sane size.
    """
    if not path.is_file():
        return None
    if path.stat().st_size > MAX_CARD_BYTES:
        raise ValueError(f"'{path}' is over {MAX_CARD_BYTES >> 20} MiB; a data card is a few KiB. Remove it.")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, ValueError) as error:
        raise ValueError(f"'{path}' is not valid JSON ({error}); remove it or write it again.") from None
    if not isinstance(card, dict):
        raise ValueError(f"'{path}' holds {type(card).__name__}, not the JSON object of a data card.")
    return card


def load_model(target: str):
    """A model, loaded uncompiled with safe_mode=True: a run's own model.keras as it is, any
    other file through `core.model_files.loading.load_model_file` (inspected, then verified in
    a child process first), as an upload is."""
    import keras

    path, _, is_run = locate_model(target)
    if is_run:
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    from core.model_files.loading import load_model_file

    return load_model_file(str(path))


def model_inputs(model) -> ModelInputs:
    """The columns or the sample shape `model` takes.

    Raises:
        ValueError: a model with several array inputs, or a dict input not of shape (1,).
    """
    structure = model.input
    if isinstance(structure, dict):
        columns = []
        for name, tensor in structure.items():
            if tuple(tensor.shape[1:]) != (1,):
                raise ValueError(
                    f"The model's input '{name}' takes shape {tuple(tensor.shape)}, but predictions from a CSV "
                    f"feed one column per input, shape (None, 1).")
            columns.append((str(name), str(tensor.dtype)))
        return ModelInputs(columns=tuple(columns))
    if isinstance(structure, (list, tuple)):
        raise ValueError(f"The model takes {len(structure)} array inputs; predictions handle a dict of named "
                         f"columns or a single array input.")
    return ModelInputs(sample_shape=tuple(structure.shape[1:]))


# ---- the data -------------------------------------------------------------------------------


def read_rows(data: Any, wanted: ModelInputs, limits: DataLimits = DEFAULT_LIMITS,
              row_limit: int | None = None) -> tuple[Any, list[str]]:
    """The model's inputs from `data`, checked, and notes about what was left out.

    Args:
        data: a CSV or NPZ path or upload reference, a DataFrame (dict-input models), an
            array (array models), or a dict of column -> (n, 1) arrays as `core.data.validation_inputs`
            gives.
        wanted: what the model takes (`model_inputs`).
        limits: file size limits; row_limit: rows allowed (default `max_rows()`).

    Returns:
        (inputs, notes): a dict of column -> (n, 1) array, or an (n, ...) float32 array.

    Raises:
        DataError: the one-line reason the data cannot be used.
    """
    row_limit = row_limit or max_rows()
    if isinstance(data, pd.DataFrame):
        return _columns_from_frame(data, "the rows", wanted, row_limit)
    if isinstance(data, dict):  # already the model's columns (core.data.validation_inputs)
        if not wanted.columns:
            _refuse_columns_for_array_model(wanted)
        _check_columns(list(data), "the rows", wanted)
        return {name: np.asarray(data[name]).reshape(-1, 1) for name in wanted.needed}, []
    if isinstance(data, np.ndarray):
        return _checked_array(data, "the array", wanted, row_limit), []
    text = str(data)
    try:
        path = resolve(text)
    except FileNotFoundError as error:
        raise DataError(str(error)) from None
    name = display_name(text)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".npz"):
        raise DataError(f"Cannot predict on '{name}': expected a .csv or .npz file, received '{suffix or name}'.")
    if csv_files.check_file_size(path, name, limits) == 0:
        raise DataError(f"'{name}' is empty (0 bytes).")
    if suffix == ".csv":
        if not wanted.columns:
            raise DataError(f"The model takes arrays of shape {_shape_text(wanted.sample_shape)}, not CSV columns: "
                            f"give an NPZ with the samples as x (np.savez('rows.npz', x=samples)).")
        return _columns_from_csv(path, name, wanted, row_limit)
    if wanted.columns:
        _refuse_columns_for_array_model(wanted, name)
    return _checked_array(_read_npz_samples(path, name, limits, row_limit), name, wanted, row_limit), []


def _refuse_columns_for_array_model(wanted: ModelInputs, name: str = "the data"):
    raise DataError(f"The model takes the columns {wanted.needed}, so {name} must be a CSV with those "
                    f"columns, not arrays.")


def _columns_from_csv(path: Path, name: str, wanted: ModelInputs, row_limit: int) -> tuple[dict, list[str]]:
    header = csv_files.read_header(path, name)
    _check_columns(header, f"'{name}'", wanted)
    text = {column: str for column, dtype in wanted.columns if dtype == "string"}  # kept verbatim: "007" stays
    frame = csv_files.read_frame(path, name, nrows=row_limit + 1, dtype=text)
    return _columns_from_frame(frame, f"'{name}'", wanted, row_limit)


def _check_columns(columns, name: str, wanted: ModelInputs) -> None:
    missing = [column for column in wanted.needed if column not in columns]
    if missing:
        raise DataError(f"{name} has no column(s) {missing}; the model needs the columns {wanted.needed} "
                        f"(named as in the CSV it trained on). Add them; other columns are ignored.")


def _columns_from_frame(frame: pd.DataFrame, name: str, wanted: ModelInputs,
                        row_limit: int) -> tuple[dict, list[str]]:
    if not wanted.columns:
        _refuse_columns_for_array_model(wanted, name)
    _check_columns([str(c) for c in frame.columns], name, wanted)
    if frame.empty:
        raise DataError(f"{name} has a header but no data rows. Add the rows to predict below the header.")
    if len(frame) > row_limit:
        raise DataError(f"{name} has more than {row_limit:,} rows, the limit for one prediction. Split it, "
                        f"or raise {MAX_ROWS_ENV}.")
    inputs, bad = {}, {}
    for column, dtype in wanted.columns:
        series = frame[column]
        missing = series.isna().to_numpy()
        if dtype == "string":
            values = series.astype(str).to_numpy(dtype=str)
        else:
            numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)
            if not numeric:
                as_numbers = pd.to_numeric(series, errors="coerce")
                strays = series[as_numbers.isna() & series.notna()]  # none for a bool column: True is 1
                example = (strays if len(strays) else series.dropna()).iloc[0]
                raise DataError(f"Column '{column}' of {name} holds text (e.g. {str(example)!r}), but the model "
                                f"takes it as numbers ({dtype}). Fix or drop those rows.")
            with np.errstate(over="ignore"):  # a value too large for float32 becomes inf, refused below
                values = series.to_numpy(dtype=np.float64, na_value=np.nan).astype(dtype)
            missing = missing | ~np.isfinite(values)
        if missing.any():
            bad[column] = int(missing.sum())
        inputs[column] = values.reshape(-1, 1)
    if bad:
        listed = ", ".join(f"'{c}' ({n} row{'s' * (n != 1)})" for c, n in bad.items())
        raise DataError(f"{name} has missing or infinite values in column(s) {listed}. Drop those rows or "
                        f"fill them in: the model needs a value in every column it takes.")
    extra = [str(c) for c in frame.columns if str(c) not in wanted.needed]
    notes = [f"Ignored {len(extra)} column(s) the model does not take: {extra}."] if extra else []
    return inputs, notes


def _read_npz_samples(path: Path, name: str, limits: DataLimits, row_limit: int) -> np.ndarray:
    """Array x (or the only array) of an NPZ, with the archive checked as an upload's is
    (core.data.npz_files: members, ratios, .npy headers, no pickle) before it is read."""
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError):
        raise DataError(f"'{name}' is not an NPZ archive (a zip of .npy arrays). Save the samples with "
                        f"np.savez('rows.npz', x=samples).") from None
    with archive:
        infos = archive.infolist()
        if len(infos) > npz_files.MAX_MEMBERS:
            raise DataError(f"'{name}' has {len(infos)} archive members; an NPZ of samples needs one (x).")
        for info in infos:
            npz_files.check_member(info, name, limits)
        arrays = {info.filename[:-4]: info for info in infos if info.filename.endswith(".npy")}
        key = "x" if "x" in arrays else (next(iter(arrays)) if len(arrays) == 1 else None)
        if key is None:
            raise DataError(f"'{name}' has no array 'x' (found: {sorted(arrays) or 'none'}). Save the samples "
                            f"as x: np.savez('rows.npz', x=samples).")
        header = npz_files.read_npy_header(archive, arrays[key], name)
        if header.dtype.kind not in "biuf":
            raise DataError(f"Array {key} of '{name}' has dtype {header.dtype}; samples must be numbers, "
                            f"e.g. {key}.astype('float32').")
        if header.shape and header.shape[0] > row_limit:
            raise DataError(f"'{name}' has {header.shape[0]:,} samples, more than the {row_limit:,} of one "
                            f"prediction. Split it, or raise {MAX_ROWS_ENV}.")
        needed = header.data_bytes + math.prod(header.shape) * 4
        if needed > limits.max_array_bytes:
            raise DataError(f"Array {key} of '{name}' needs {needed:,} bytes to load, over the limit of "
                            f"{limits.max_array_bytes:,}. Split it, or raise STACKLAB_MAX_ARRAY_BYTES.")
        return npz_files.read_npy(archive, arrays[key], name)


def _checked_array(x: np.ndarray, name: str, wanted: ModelInputs, row_limit: int) -> np.ndarray:
    expected = wanted.sample_shape or ()
    if x.ndim == 0 or len(x.shape[1:]) != len(expected) or any(
            want is not None and want != got for want, got in zip(expected, x.shape[1:])):
        raise DataError(f"The samples of {name} have shape {_shape_text(x.shape[1:])} (array {x.shape}), but the "
                        f"model takes samples of shape {_shape_text(expected)}. Reshape them, e.g. "
                        f"x.reshape(-1, {', '.join(str(d or -1) for d in expected)}).")
    if len(x) == 0:
        raise DataError(f"{name} holds no samples.")
    if len(x) > row_limit:
        raise DataError(f"{name} has {len(x):,} samples, more than the {row_limit:,} of one prediction.")
    if x.dtype.kind not in "biuf":
        raise DataError(f"The samples of {name} have dtype {x.dtype}; they must be numbers.")
    with np.errstate(over="ignore"):
        x = x.astype(np.float32, copy=False)
    finite = np.isfinite(x).reshape(len(x), -1).all(axis=1)
    if not finite.all():
        raise DataError(f"{name} has missing or infinite values in {int((~finite).sum())} sample(s). Drop those "
                        f"samples or fill them in.")
    return x


def _shape_text(shape) -> str:
    return "(" + ", ".join("None" if d is None else str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"


# ---- predictions ---------------------------------------------------------------------------


def outputs(model, inputs, batch_size: int = BATCH_SIZE) -> np.ndarray:
    """The model's outputs, batch by batch, as a float64 (n, k) array.

    The model is called per batch rather than through `model.predict`: Keras's predict does not
    take NumPy string arrays (the text columns of a dict input), while a call does.
    """
    from keras import ops

    count = len(next(iter(inputs.values()))) if isinstance(inputs, dict) else len(inputs)
    parts = []
    for start in range(0, count, batch_size):
        batch = ({name: values[start:start + batch_size] for name, values in inputs.items()}
                 if isinstance(inputs, dict) else inputs[start:start + batch_size])
        result = model(batch, training=False)
        if isinstance(result, (list, tuple, dict)):
            raise ValueError(f"The model has {len(result)} outputs; predictions handle models with one output.")
        parts.append(np.asarray(ops.convert_to_numpy(result), dtype=np.float64).reshape(len(result), -1))
    return np.concatenate(parts)


def class_names_for(card: dict | None, columns: int, given=None) -> tuple[str, list[str], list[str]]:
    """(task, class names, notes) for a model with `columns` outputs: "classification" or
    "regression", from `given` names, the data card, or (neither) the output's width.

    Raises:
        ValueError: the names do not fit the model's output.
    """
    notes = []
    if given is not None:
        names = [str(name) for name in given]
        task = "classification" if names else "regression"
    elif card is not None and "class_names" in card:
        names = [str(name) for name in card.get("class_names") or []]
        task = "regression" if card.get("task") == "regression" or not names else "classification"
    else:
        task = "classification" if columns > 1 else "regression"
        names = [str(i) for i in range(columns)] if columns > 1 else []
        notes.append("No data.json beside the model, so " + (
            "the classes are shown by index (0, 1, ...)." if columns > 1
            else "its single output is shown as a value (a binary classifier's would be the probability of class 1)."))
    if task == "classification" and len(names) not in (columns, 2 if columns == 1 else columns):
        raise ValueError(f"The data card names {len(names)} classes {names}, but the model outputs {columns} "
                         f"value(s) per sample; was the model or data.json replaced?")
    return task, names, notes


def table(values: np.ndarray, task: str, class_names: list[str]) -> pd.DataFrame:
    """One row per sample: the predicted class name (or value), then a probability per class."""
    if task == "regression":
        if values.shape[1] == 1:
            return pd.DataFrame({PREDICTED: values[:, 0]})
        return pd.DataFrame({f"{PREDICTED}_{i}": values[:, i] for i in range(values.shape[1])})
    probabilities = np.hstack([1 - values, values]) if values.shape[1] == 1 else values  # a sigmoid's P(class 1)
    names = list(class_names)
    if {PREDICTED, TRUE} & set(names) or len(set(names)) != len(names):
        names = [f"p({name})#{i}" if names.count(name) > 1 else f"p({name})" for i, name in enumerate(names)]
    frame = pd.DataFrame({PREDICTED: np.asarray(class_names, dtype=object)[probabilities.argmax(axis=1)]})
    for i, name in enumerate(names):
        frame[name] = probabilities[:, i]
    return frame


def predict(model_or_path, data, class_names=None, *, batch_size: int = BATCH_SIZE,
            row_limit: int | None = None, limits: DataLimits = DEFAULT_LIMITS) -> pd.DataFrame:
    """Predictions of a model on rows it has not seen, one row per sample.

    Args:
        model_or_path: a loaded `keras.Model`, a run id, or a model file path (loaded with
            safe_mode=True; a file that is not a run's own model is inspected first, as an upload is).
        data: a CSV or NPZ path (or upload reference), a DataFrame, an array, or a dict of
            column -> (n, 1) arrays (see `read_rows`).
        class_names: the classes in label order; default the run's data.json (or the one next to
            the model file); [] for a regression model.
        batch_size: samples per model call; row_limit: rows allowed (default STACKLAB_MAX_PREDICT_ROWS).

    Returns:
        A DataFrame with `predicted` (the class name, or the value in the target's units) and,
        for a classifier, one probability column per class named after it. `table.attrs["notes"]`
        lists what the caller should know (ignored columns, numbered classes).

    Raises:
        DataError: the data cannot be used (a missing column, text in a numeric column, missing
            values, wrong sample shape, too many rows): the message says which and how to fix it.
        ValueError: the model's inputs or outputs are not ones predictions handle.
        FileNotFoundError: no such run, model file or data file.
        ModelFileRefused: the model file failed the safety checks.

    Example:
        >>> predict("3f9c2a", "new_customers.csv").head(2)
          predicted    no   yes
        0       yes  0.12  0.88
        1        no  0.93  0.07
    """
    card = None
    if isinstance(model_or_path, (str, Path)):
        card = locate_model(str(model_or_path))[1]
        model = load_model(str(model_or_path))
    else:
        model = model_or_path
    inputs, notes = read_rows(data, model_inputs(model), limits, row_limit)
    values = outputs(model, inputs, batch_size)
    task, names, name_notes = class_names_for(card, values.shape[1], class_names)
    frame = table(values, task, names)
    frame.attrs["notes"] = notes + name_notes
    frame.attrs["task"] = task
    frame.attrs["class_names"] = names
    return frame


def predict_validation(run_id: str, limit: int = VALIDATION_ROWS) -> pd.DataFrame:
    """A run's predictions on the first `limit` samples of its validation split, with the true
    label (or value) in column `true` and `attrs["metrics"]`: accuracy, or MAE, on them.

    Raises:
        FileNotFoundError: no such run or no model; DataError: its dataset cannot be loaded.
    """
    from core.data import validation_inputs
    from core.spec import StackSpec

    folder = run_dir(run_id)
    spec_path = folder / "spec.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"Run '{run_id}' has no spec.json, so its validation split is unknown.")
    spec = StackSpec.from_json(spec_path.read_text(encoding="utf-8"), check_values=False)
    inputs, y = validation_inputs(spec, limit=limit)
    frame = predict(run_id, inputs)
    y = np.asarray(y)
    if frame.attrs["task"] == "classification":
        truth = np.asarray(frame.attrs["class_names"], dtype=object)[y.astype(np.int64).reshape(-1)]
        frame.insert(0, TRUE, truth)
        frame.attrs["metrics"] = {"accuracy": float(np.mean(frame[PREDICTED].to_numpy() == truth))}
    else:
        frame.insert(0, TRUE, y.reshape(len(y), -1)[:, 0])
        frame.attrs["metrics"] = {"mae": float(np.mean(np.abs(frame[PREDICTED] - frame[TRUE])))}
    which = (f"The first {len(frame):,} samples of the validation split." if spec.train.validation_split else
             f"The run trained without a validation split: these are its first {len(frame):,} training samples, "
             f"so expect optimistic numbers.")
    frame.attrs["notes"] = [which, *frame.attrs["notes"]]
    return frame


# ---- the command line -------------------------------------------------------------------------


def add_parser(commands):
    """Add `predict` to the CLI's subcommands (`commands` from `add_subparsers`); returns its parser."""
    parser = commands.add_parser(
        "predict", help="predict with a run's model (or a .keras file) on a CSV or NPZ file",
        description="One row per sample: the predicted class (or value) and the class probabilities. The data "
                    "gets the checks an upload gets; columns the model does not take are ignored.")
    parser.add_argument("model", metavar="RUN_ID|MODEL.keras", help="a run id, or a model file (a data.json next "
                                                                    "to it names the classes)")
    parser.add_argument("data", nargs="?", metavar="DATA.csv|DATA.npz",
                        help="CSV rows for a model with named inputs, NPZ samples (array x) for an array model")
    parser.add_argument("--validation", action="store_true",
                        help="predict the run's validation split instead (adds the true label and the accuracy or MAE)")
    parser.add_argument("--limit", type=int, default=VALIDATION_ROWS,
                        help=f"--validation: how many samples (default {VALIDATION_ROWS})")
    parser.add_argument("--out", help="write the predictions CSV here (default: print it to stdout)")
    parser.add_argument("--json", action="store_true",
                        help="with --out: print one JSON line (rows, columns, notes, metrics) instead of words")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    """`python -m core predict ...`: 0 with the predictions written, 1 with a one-line reason on stderr."""
    answers = None
    if args.json:
        answers = reserve_stdout()  # what TensorFlow prints goes to stderr, never into the answer
    try:
        frame = _predictions(args)
    except (ValueError, OSError) as error:  # DataError, ModelFileRefused, FileNotFoundError: the reason
        return refused(error, answers)
    notes = list(frame.attrs.get("notes", []))
    metrics = frame.attrs.get("metrics", {})
    if args.out:
        from core.storage.atomic import write_text_atomically

        write_text_atomically(Path(args.out), frame.to_csv(index=False))
    if answers is not None:
        answer(answers, ok=True, rows=len(frame), columns=[str(c) for c in frame.columns],
               task=frame.attrs.get("task"), class_names=frame.attrs.get("class_names", []), notes=notes,
               metrics=metrics, out=args.out)
        return 0
    words = [*notes, *(f"{name}: {value:.4f} on these samples" for name, value in metrics.items())]
    if args.out:
        print(f"wrote {len(frame):,} predictions to {args.out}")
    else:  # the table on stdout, so `... > predictions.csv` works; the words beside it
        sys.stdout.write(frame.to_csv(index=False))
    for line in words:
        print(line, file=sys.stdout if args.out else sys.stderr)
    return 0


def _predictions(args) -> pd.DataFrame:
    if args.validation == (args.data is not None):
        raise ValueError("Give either a DATA file (.csv or .npz) or --validation (a run's validation split), "
                         "not both and not neither.")
    if args.json and not args.out:
        raise ValueError("--json needs --out: the predictions go to the file, the JSON line to stdout.")
    if args.validation:
        if not RUN_ID_PATTERN.match(args.model) or Path(args.model).suffix:
            raise ValueError(f"--validation needs a run id (its validation split), received '{args.model}'.")
        if args.limit < 1:
            raise ValueError(f"--limit must be a positive number of samples, received {args.limit}.")
        return predict_validation(args.model, limit=args.limit)
    return predict(args.model, args.data)


if __name__ == "__main__":  # the dashboard's child: python -m core.predict RUN_ID DATA --out F --json
    import argparse

    _parser = argparse.ArgumentParser(prog="python -m core")
    add_parser(_parser.add_subparsers(dest="command", required=True))
    _args = _parser.parse_args(["predict", *sys.argv[1:]])
    sys.exit(_args.run(_args))
