"""What the pages ask of `core`, with the caching each answer allows. Never imports Keras.

- Model questions (templates, pre-flight checks, uploaded model files, evaluations) go to
  the inspector process through `core.inspector`'s client.
- Data previews come from `core.data`, which is Keras-free.
- Runs are read from the run store (`core.runs`); only the rows a tab has not seen yet are
  read again (`new_epoch_rows`).

Caches: `st.cache_data` for answers that depend only on their arguments (the template
list, a check of a given spec JSON, a preview of a built-in or content-addressed dataset),
keyed by `$STACKLAB_HOME` as well so two homes never share answers; session state (see
`dashboard.state`) for per-tab memos. `st.cache_resource` holds only the start-up marker.
"""

from __future__ import annotations

import dataclasses
import io
import json
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core import runs
from core.data import DataError, list_builtins, load_dataset
from core.inspector import InspectorError, get_client
from core.spec import DatasetSpec, StackSpec
from core.storage.paths import run_model_path, run_stack_path, stacklab_home
from dashboard import state

PREVIEW_SAMPLES = 24
PREVIEW_ROWS = 20
HISTOGRAM_SAMPLES = 5000


def client():
    """The process-wide inspector client (thread-safe; shared by every session)."""
    return get_client()


def _home() -> str:
    return str(stacklab_home())


@st.cache_resource(show_spinner=False)
def _started(home: str) -> bool:
    # Once per server process (and per home): runs whose worker died while the server was
    # down become "interrupted", queued runs get a worker, and the inspector starts warming
    # up in the background so the first check does not wait for Keras to import.
    runs.reconcile()
    client().start()
    return True


def startup() -> None:
    """Reconcile the run store and warm the inspector, once per server process.

    Raises:
        RunStoreError: the run store cannot be used.
    """
    _started(_home())


# -- the inspector --------------------------------------------------------------------------


@st.cache_data(show_spinner=False)
def _templates(home: str) -> list[dict[str, Any]]:
    return client().templates()


def templates() -> dict[str, dict[str, Any]]:
    """Template name -> description (title, params, input_ranks, output, tags).

    Raises:
        InspectorError: the inspector cannot answer.
    """
    return {template["name"]: template for template in _templates(_home())}


@st.cache_data(show_spinner=False, max_entries=256, ttl=3600)
def _check(home: str, model_json: str) -> dict[str, Any]:
    # Values out of range are the inspector's to report (as an invalid spec), like any other problem.
    return client().check(StackSpec.from_json(model_json, check_values=False))


def check(spec: StackSpec) -> dict[str, Any]:
    """The pre-flight report of `spec`, cached per model: on the spec without its layout
    (`StackSpec.model_key`), so moving a node on the canvas asks the inspector nothing. Uploads
    are content-addressed and a finished run's model does not change.

    Raises:
        InspectorError: the inspector cannot answer.
    """
    return _check(_home(), json.dumps(spec.model_key(), sort_keys=True))


def check_or_error(spec: StackSpec) -> tuple[dict[str, Any] | None, InspectorError | None]:
    """(report, None), or (None, the inspector's error: its message says why, its `kind` says
    whether the spec is at fault ("invalid") or the inspector ("timeout", "crashed", ...))."""
    try:
        return check(spec), None
    except InspectorError as error:
        return None, error


def inspect_model(ref: str) -> tuple[str, Any]:
    """("ok", summary) or ("refused", one-line reason) for a model file: an upload reference,
    or the path of a run's model. Remembered per tab, so a refused file is not re-inspected
    on every rerun."""
    memo = state.inspections()
    if ref not in memo:
        try:
            memo[ref] = ("ok", client().inspect_file(ref))
        except InspectorError as error:
            memo[ref] = ("refused", str(error))
    return memo[ref]


def inspect_run_model(run_id: str) -> tuple[str, Any]:
    """The layers of a finished run's model, for cutting it."""
    return inspect_model(str(run_stack_path(run_id)))


def evaluate(run_id: str) -> dict[str, Any]:
    """Evaluation of a finished run on its validation data, remembered per tab.

    Raises:
        InspectorError: the inspector cannot evaluate it.
    """
    memo = state.evaluations()
    if run_id not in memo:
        memo[run_id] = client().evaluate(run_id)
    return memo[run_id]


# -- data -------------------------------------------------------------------------------------


@st.cache_data(show_spinner=False)
def builtins() -> dict[str, dict[str, Any]]:
    """Built-in datasets by name (title, description, input shape, task, classes)."""
    return {entry["name"]: entry for entry in list_builtins()}


@st.cache_data(show_spinner=False, max_entries=64)
def _preview(home: str, dataset_json: str) -> tuple[str, Any]:
    try:
        dataset = load_dataset(DatasetSpec.from_dict(json.loads(dataset_json)))
    except DataError as error:
        return "error", str(error)
    summary = dataset.summary()
    task = dataset.task
    rng = np.random.default_rng(0)
    picked = np.sort(rng.choice(dataset.num_samples, size=min(PREVIEW_SAMPLES, dataset.num_samples), replace=False))
    names = list(task.class_names)
    labels = [names[int(y)] if task.is_classification and int(y) < len(names) else f"{float(y):.3g}"
              for y in dataset.y[picked]]
    preview: dict[str, Any] = {"summary": summary, "labels": labels, "kind": _data_kind(task.input_shape)}
    if preview["kind"] == "table":
        columns = list(dataset.feature_names) or [f"x{i}" for i in range(dataset.x.shape[1])]
        table = pd.DataFrame(dataset.x[picked[:PREVIEW_ROWS]], columns=columns)
        table.insert(0, "target", labels[:PREVIEW_ROWS])
        preview["table"] = table
    else:
        preview["samples"] = dataset.x[picked]
    if not task.is_classification:
        y = dataset.y if dataset.num_samples <= HISTOGRAM_SAMPLES else dataset.y[
            rng.choice(dataset.num_samples, HISTOGRAM_SAMPLES, replace=False)]
        preview["targets"] = np.asarray(y, dtype=float)
    return "ok", preview


def _data_kind(input_shape: tuple) -> str:
    """"images" for (h, w, 1 or 3), "sequences" for (steps, channels), "table" for vectors."""
    if len(input_shape) == 3 and input_shape[-1] in (1, 3):
        return "images"
    if len(input_shape) == 2:
        return "sequences"
    return "table" if len(input_shape) == 1 else "other"


def dataset_preview(dataset: DatasetSpec) -> tuple[str, Any]:
    """("ok", {summary, labels, kind, samples | table, targets?}) or ("error", DataError message).

    Errors are cached too: a dataset spec names a built-in or a content-addressed upload, so
    the same spec gives the same answer.
    """
    return _preview(_home(), json.dumps(dataset.to_dict(), sort_keys=True))


def store_upload(uploaded) -> str | None:
    """Store a Streamlit UploadedFile in the upload store once per tab; returns its reference,
    or None after showing why the file type is not accepted."""
    from core.storage.uploads import store_bytes

    memo = state.stored_uploads()
    if uploaded.file_id not in memo:
        try:
            memo[uploaded.file_id] = store_bytes(uploaded.getvalue(), uploaded.name)
        except ValueError as error:
            st.error(str(error))
            return None
    return memo[uploaded.file_id]


# -- runs ---------------------------------------------------------------------------------------


def new_epoch_rows(run: runs.Run) -> list[dict[str, Any]]:
    """Every epoch row of `run`, reading from the store only the epochs this tab has not seen.

    The rows are read again in full when the run was resumed or ended since the last read
    (its epochs after the last checkpoint are trained again) or the store holds fewer epochs
    than this tab saw.
    """
    cache = state.epoch_cache()
    entry = cache.get(run.id)
    if entry is None or entry["ended_at"] != run.ended_at or run.epochs_done < len(entry["rows"]):
        entry = {"ended_at": run.ended_at, "rows": []}
    last = entry["rows"][-1]["epoch"] if entry["rows"] else 0
    entry["rows"] = entry["rows"] + runs.metrics(run.id, since_epoch=last)
    cache[run.id] = entry
    return entry["rows"]


def progress_dict(run_id: str) -> dict[str, Any] | None:
    progress = runs.progress(run_id)
    return dataclasses.asdict(progress) if progress is not None else None


# -- predictions (a child process: Keras never loads in the server) -----------------------------

PREDICT_TIMEOUT_S = 300
PREDICTION_LABELS = ("predicted", "true")  # class names, read back as text ("1" stays "1")


class ChildFailed(RuntimeError):
    """A `python -m core...` child gave no answer; the message says how it ended."""


def _child_answer(args: list[str], timeout_s: float) -> dict[str, Any]:
    """The JSON line a `python <args>` child (["-m", "core...", ...]) printed last on stdout.

    Raises:
        ChildFailed: it timed out, or ended without an answer (its last stderr line says why).
    """
    import subprocess
    import sys

    from core.processes import child_env, exit_words, read_answer

    try:
        done = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=child_env(),
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        raise ChildFailed(f"It took longer than {timeout_s:.0f} s and was stopped.") from None
    answer = read_answer(done.stdout)
    if not isinstance(answer, dict):
        reason = (done.stderr.strip().splitlines() or [""])[-1]
        raise ChildFailed(f"The process {exit_words(done.returncode)} without an answer"
                          f"{': ' + reason if reason else ''}.")
    return answer


@st.cache_data(show_spinner=False, max_entries=32)
def _predictions(home: str, run_id: str, model_stamp: int, data_ref: str | None) -> tuple[str, Any]:
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="stacklab-predict-") as folder:
        out = Path(folder) / "predictions.csv"
        source = ["--validation"] if data_ref is None else [data_ref]
        # A child that died or timed out raises: Streamlit caches no exception, so the next try runs again.
        answer = _child_answer(["-m", "core.predict", run_id, *source, "--out", str(out), "--json"],
                               PREDICT_TIMEOUT_S)
        if not answer.get("ok"):
            return "error", answer.get("error", "The prediction failed without a reason.")
        data = out.read_bytes()
    labels = {name: str for name in PREDICTION_LABELS} if answer.get("task") == "classification" else {}
    table = pd.read_csv(io.BytesIO(data), dtype=labels, keep_default_na=not labels)
    return "ok", {**answer, "table": table, "csv": data}


def predictions(run_id: str, data_ref: str | None) -> tuple[str, Any]:
    """("ok", {table, csv, rows, task, class_names, notes, metrics}) or ("error", one-line reason):
    a finished run's predictions on an upload (a reference to a stored CSV or NPZ), or on its
    validation split (`data_ref` None), by `python -m core.predict` in a child process.

    Cached per run, model file (a resumed run's new model is asked again) and upload; refusals
    are cached too (the same file gives the same answer), a child that died or timed out is not.
    """
    model = run_model_path(run_id)
    stamp = model.stat().st_mtime_ns if model.is_file() else 0
    try:
        return _predictions(_home(), run_id, stamp, data_ref)
    except ChildFailed as error:
        return "error", f"The prediction failed. {error}"


def data_card(run_id: str) -> dict[str, Any] | None:
    """The run's data.json (the columns and classes its model takes), or None without one."""
    path = run_model_path(run_id).with_name("data.json")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return card if isinstance(card, dict) else None


# -- exports (a child process too: the converters import TensorFlow) -----------------------------

EXPORT_TIMEOUT_S = 600
# Asks core.export.formats, which imports no Keras, what each format is and what it lacks here.
FORMATS_QUESTION = ("import json; from core.export import formats as f; print(json.dumps({name: {"
                    "'label': f.LABELS[name], 'file_name': f.FILE_NAMES[name], "
                    "'missing': f.missing_packages_message(name)} for name in f.FORMATS}))")


@st.cache_data(show_spinner=False, ttl=300)
def _export_formats(home: str) -> tuple[str, Any]:
    try:
        return "ok", _child_answer(["-c", FORMATS_QUESTION], 60)
    except ChildFailed as error:
        return "error", f"The export formats could not be listed. {error}"


def export_formats() -> tuple[str, Any]:
    """("ok", {format: {label, file_name, missing}}) in the order to show, `missing` the one-line
    reason with the command that adds the format's packages (None when it can run here), or
    ("error", why). Checked again every few minutes, so an install shows without a restart."""
    return _export_formats(_home())


def export(run_id: str, format: str) -> tuple[str, Any]:  # noqa: A002 - the CLI's word
    """("ok", {path, size_bytes, max_abs_diff, samples, tolerance, summary}) or ("error", reason):
    a finished run's model exported to `format` into its folder and verified in that format's
    runtime, by `python -m core export RUN_ID --format F --json` in a child process."""
    try:
        answer = _child_answer(["-m", "core", "export", run_id, "--format", format, "--json"], EXPORT_TIMEOUT_S)
    except ChildFailed as error:
        return "error", f"The export failed. {error}"
    if not answer.get("ok"):
        return "error", answer.get("error", "The export failed without a reason.")
    return "ok", answer
