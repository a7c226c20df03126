"""One StackLab run logged to an MLflow tracking server or store: spec, epoch metrics, tags, files.

`export_run_to_mlflow(run_id)` logs the run's spec as params (`params.spec_params`), every
epoch row as metric points at step = epoch (`params.metric_points`), tags (the StackLab run
id, mode, dataset, status, devices, best metric) and the run's files: model.keras under
`model/`, the other artifacts (stack.keras, data.json, history.csv, spec.json, stack.py,
exports) at the top. The model goes as a file, not through `mlflow.keras`: that flavor
imports Keras, and this module must stay importable by the dashboard, which never does.

Exporting again updates the same MLflow run (found by its `stacklab.run_id` tag): params
already there are kept, only metric points not yet logged are added, the tags, status and
files are written again. `after_run(run_id)` is what a worker calls when a run ends.

mlflow is imported only when an export runs (it takes ~1.5 s and ~170 MB), from the optional
`requirements-tracking.txt`. No Keras import.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import os
import socket
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit, urlunsplit

from core import runs
from core.storage.atomic import write_text_atomically
from core.storage.paths import run_dir, stacklab_home
from core.tracking.params import (
    MAX_TAG_VALUE_LENGTH,
    MetricPoint,
    clip,
    metric_points,
    spec_params,
)

TRACKING_URI_ENV = "STACKLAB_MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "STACKLAB_MLFLOW_EXPERIMENT"
ARTIFACT_LOCATION_ENV = "STACKLAB_MLFLOW_ARTIFACT_LOCATION"
DEFAULT_EXPERIMENT = "stacklab"
INSTALL_HINT = "pip install -r requirements-tracking.txt"
RUN_ID_TAG = "stacklab.run_id"
NOTE_FILE = "mlflow.json"
MODEL_ARTIFACT_DIR = "model"
# Files of a run folder worth keeping with it that are not run artifacts.
EXTRA_FILES = ("spec.json", "traceback.txt")
MLFLOW_STATUS = {"queued": "SCHEDULED", "running": "RUNNING", "stopping": "RUNNING", "finished": "FINISHED",
                 "stopped": "KILLED", "interrupted": "KILLED", "failed": "FAILED"}
# log_batch's limits (mlflow.utils.validation): 1000 metrics, 100 params and tags per call.
METRICS_PER_BATCH = 1000
PARAMS_PER_BATCH = 100


class MlflowMissing(ImportError):
    """mlflow is not installed; the message says which command installs it."""


class TrackingError(RuntimeError):
    """The tracking server or store refused the export; the message names it and says why."""


@dataclass(frozen=True)
class MlflowExport:
    """What one export did: where the StackLab run now is in MLflow, and what was written."""

    run_id: str
    mlflow_run_id: str
    experiment: str
    experiment_id: str
    tracking_uri: str  # passwords replaced by ***
    url: str | None  # the run's page on an http(s) tracking server
    created: bool  # False: an earlier export's MLflow run was updated
    params_logged: int
    metric_points_logged: int
    artifacts: tuple[str, ...]  # artifact paths in the MLflow run
    params_kept: tuple[str, ...] = ()  # params MLflow already had with another value (never changed)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "artifacts": list(self.artifacts), "params_kept": list(self.params_kept)}

    def summary(self) -> str:
        verb = "Logged" if self.created else "Updated"
        return (f"{verb} run {self.run_id} as MLflow run {self.mlflow_run_id} in experiment '{self.experiment}' "
                f"at {self.tracking_uri}: {self.params_logged} params, {self.metric_points_logged} new metric "
                f"points, {len(self.artifacts)} files.")


def import_mlflow():
    """The mlflow module, or MlflowMissing saying how to install it."""
    try:
        import mlflow
        from mlflow import MlflowClient  # noqa: F401  (mlflow-skinny has it; an old mlflow may not)
    except ImportError as error:
        raise MlflowMissing(
            f"MLflow export needs the optional package mlflow-skinny, which cannot be imported here ({error}). "
            f"Install it with `{INSTALL_HINT}` and try again.") from error
    return mlflow


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The tracking URI to export to: `explicit`, else $STACKLAB_MLFLOW_TRACKING_URI.

    Raises:
        ValueError: neither is set (MLflow's own default would write into the current folder).
    """
    uri = (explicit or os.environ.get(TRACKING_URI_ENV, "")).strip()
    if not uri:
        raise ValueError(
            f"No MLflow tracking URI: pass --tracking-uri or set {TRACKING_URI_ENV}, e.g. "
            f"http://mlflow.example:5000 or sqlite:////absolute/path/mlflow.db.")
    return uri


def redact(uri: str) -> str:
    """`uri` with the password of its user part (if any) replaced by ***, for notes and tags."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    host = parts.netloc.rsplit("@", 1)[1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def artifact_location(uri: str) -> str | None:
    """Where a new experiment keeps its files: $STACKLAB_MLFLOW_ARTIFACT_LOCATION; for a SQLite
    store, `mlartifacts/` next to the database; for another database, $STACKLAB_HOME/mlartifacts;
    None (the server's or file store's own default) otherwise. Never MLflow's fallback, ./mlruns
    in whatever folder the process was started from."""
    configured = os.environ.get(ARTIFACT_LOCATION_ENV, "").strip()
    if configured:
        return configured
    scheme = urlsplit(uri).scheme.split("+")[0].lower()
    if scheme == "sqlite":
        database = uri.split("://", 1)[1].split("?", 1)[0]
        database = database[1:] if database.startswith("/") else database  # sqlite:///rel, sqlite:////abs
        if database and database != ":memory:":
            return (Path(database).expanduser().resolve().parent / "mlartifacts").as_uri()
        return (stacklab_home() / "mlartifacts").as_uri()
    if scheme in ("postgresql", "mysql", "mssql"):
        return (stacklab_home() / "mlartifacts").as_uri()
    return None


def run_url(uri: str, experiment_id: str, mlflow_run_id: str) -> str | None:
    """The MLflow UI page of a run on an http(s) tracking server; None for a local store."""
    if urlsplit(uri).scheme.lower() not in ("http", "https"):
        return None
    return f"{redact(uri).rstrip('/')}/#/experiments/{experiment_id}/runs/{mlflow_run_id}"


def export_run_to_mlflow(run_id: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> str:
    """Log a StackLab run to MLflow (or update the MLflow run an earlier export made).

    Args:
        run_id: the StackLab run, in any status (an active run is logged as RUNNING so far).
        tracking_uri: the MLflow tracking URI; None: $STACKLAB_MLFLOW_TRACKING_URI.
        experiment: the MLflow experiment, created if missing.

    Returns:
        The MLflow run id.

    Raises:
        MlflowMissing: mlflow is not installed.
        ValueError: no tracking URI.
        RunNotFound: no such StackLab run.
        TrackingError: the tracking server or store refused (unreachable, a deleted experiment...).

    Example:
        >>> export_run_to_mlflow(run_id, "sqlite:////tmp/mlflow.db")
        '3f0c...'
    """
    return log_run(run_id, tracking_uri, experiment).mlflow_run_id


def log_run(run_id: str, tracking_uri: str | None = None, experiment: str = DEFAULT_EXPERIMENT) -> MlflowExport:
    """`export_run_to_mlflow`, returning what it did (for the CLI and the dashboard); also writes
    the run folder's note (`export_note`)."""
    import_mlflow()
    from mlflow import MlflowClient

    uri = resolve_tracking_uri(tracking_uri)
    run = runs.get(run_id)  # RunNotFound before anything is written to MLflow
    try:
        client = MlflowClient(tracking_uri=uri)  # a local store is opened (and migrated) here
        experiment_id = _experiment_id(client, experiment, uri)
        mlflow_run_id, created = _mlflow_run(client, experiment_id, run)
        params_logged, params_kept = _log_params(client, mlflow_run_id, run, created)
        points = _log_metrics(client, mlflow_run_id, metric_points(runs.metrics(run_id)), created)
        client.log_batch(mlflow_run_id, tags=_tags(run))
        artifacts = _log_files(client, mlflow_run_id, run_id)
        _set_status(client, mlflow_run_id, run)
    except ImportError as error:  # mlflow-skinny leaves out what some stores need (SQLAlchemy for a database)
        raise MlflowMissing(
            f"The MLflow tracking store {redact(uri)} needs the package {error.name or 'named here'}, which cannot "
            f"be imported ({error}). Install it (`pip install {error.name or '...'}`; a SQLite or other database "
            f"store needs sqlalchemy and alembic) or use an http(s) tracking server.") from error
    except _store_errors() as error:
        raise TrackingError(f"Logging run {run_id} to MLflow at {redact(uri)} failed: "
                            f"{' '.join(str(error).split())}") from error
    result = MlflowExport(run_id=run_id, mlflow_run_id=mlflow_run_id, experiment=experiment,
                          experiment_id=experiment_id, tracking_uri=redact(uri),
                          url=run_url(uri, experiment_id, mlflow_run_id), created=created,
                          params_logged=params_logged, metric_points_logged=points, artifacts=artifacts,
                          params_kept=params_kept)
    _write_note(run_id, {"ok": True, **result.to_dict(), "status": run.status, "exported_at": time.time()})
    return result


def _store_errors() -> tuple[type[BaseException], ...]:
    """What a tracking store raises when it refuses or cannot be reached: MLflow's own error
    (every REST answer), and for a local store the file system's and SQLAlchemy's, which
    MLflow lets through (a folder that cannot be made, a file that is not a database)."""
    from mlflow.exceptions import MlflowException

    errors: tuple[type[BaseException], ...] = (MlflowException, OSError)
    try:
        from sqlalchemy.exc import SQLAlchemyError  # only with a database store: absent is fine
    except ImportError:
        return errors
    return (*errors, SQLAlchemyError)


def _experiment_id(client, name: str, uri: str) -> str:
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is None:
        try:
            return client.create_experiment(name, artifact_location=artifact_location(uri))
        except MlflowException:  # another worker created it a moment ago
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
    if found.lifecycle_stage == "deleted":
        raise TrackingError(
            f"The MLflow experiment '{name}' at {redact(uri)} is deleted. Restore it (`mlflow experiments "
            f"restore --experiment-id {found.experiment_id}`) or export to another one (--experiment NAME, "
            f"or {EXPERIMENT_ENV}).")
    return found.experiment_id


def _mlflow_run(client, experiment_id: str, run) -> tuple[str, bool]:
    """The MLflow run of an earlier export of `run` (the first found, if two exports raced), or a new one."""
    existing = client.search_runs([experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run.id}'",
                                  max_results=1, order_by=["attributes.start_time ASC"])
    if existing:
        return existing[0].info.run_id, False
    started = run.started_at or run.created_at
    created = client.create_run(experiment_id, start_time=int(started * 1000),
                                tags={RUN_ID_TAG: run.id, "mlflow.user": _user()},
                                run_name=f"{run.name}-{run.id}")
    return created.info.run_id, True


def _log_params(client, mlflow_run_id: str, run, created: bool) -> tuple[int, tuple[str, ...]]:
    """Log the spec's params MLflow does not have yet. MLflow never changes a param; one it
    holds with another value (a spec flattened by an older StackLab) is kept and named."""
    from mlflow.entities import Param

    wanted = spec_params(run.spec.to_dict())
    have = {} if created else client.get_run(mlflow_run_id).data.params
    kept = tuple(key for key, value in wanted.items() if key in have and have[key] != value)
    new = [Param(key, value) for key, value in wanted.items() if key not in have]
    for start in range(0, len(new), PARAMS_PER_BATCH):
        client.log_batch(mlflow_run_id, params=new[start:start + PARAMS_PER_BATCH])
    return len(new), kept


def _log_metrics(client, mlflow_run_id: str, points: list[MetricPoint], created: bool) -> int:
    """Log the points MLflow does not have yet (same metric, step and value). An epoch trained
    again after a resume has a new value: it is added, with its later timestamp, so MLflow's
    latest value of the metric is the new one."""
    from mlflow.entities import Metric

    if not created:
        have = {MetricPoint(point.key, point.value, point.step, 0).identity
                for key in {point.key for point in points}
                for point in client.get_metric_history(mlflow_run_id, key)}
        points = [point for point in points if point.identity not in have]
    metrics = [Metric(point.key, point.value, point.timestamp_ms, point.step) for point in points]
    for start in range(0, len(metrics), METRICS_PER_BATCH):
        client.log_batch(mlflow_run_id, metrics=metrics[start:start + METRICS_PER_BATCH])
    return len(metrics)


def _tags(run) -> list:
    from mlflow.entities import RunTag

    described = run.to_dict()
    best = run.best
    values = {
        RUN_ID_TAG: run.id, "stacklab.name": run.name, "stacklab.mode": run.mode,
        "stacklab.dataset": str(described["dataset"] or run.dataset.source), "stacklab.status": run.status,
        "stacklab.devices": run.device_label or "unknown", "stacklab.device_names": json.dumps(list(run.devices)),
        "stacklab.strategy": run.strategy, "stacklab.epochs": f"{run.epochs_done} / {run.epochs_total}",
        "stacklab.host": socket.gethostname(), "stacklab.folder": str(run.folder),
        "mlflow.runName": f"{run.name}-{run.id}", "mlflow.user": _user(), "mlflow.source.name": "stacklab",
        "mlflow.note.content": (f"StackLab run {run.id} ('{run.name}'): a {run.mode} stack on "
                                f"{described['dataset']}, {run.status} after {run.epochs_done} of "
                                f"{run.epochs_total} epochs. spec.json holds the spec."),
    }
    if best:
        values["stacklab.best"] = f"{best['name']}={best['value']:.6g} at epoch {best['epoch']}"
    if run.error:
        values["stacklab.error"] = run.error
    if run.parent_id:
        values["stacklab.parent_id"] = run.parent_id
    return [RunTag(key, clip(str(value), MAX_TAG_VALUE_LENGTH)) for key, value in values.items()]


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no user name in a container without a passwd entry
        return "unknown"


def _log_files(client, mlflow_run_id: str, run_id: str) -> tuple[str, ...]:
    """Upload the run's artifacts (model.keras under model/) and its spec; returns their MLflow paths."""
    folder = run_dir(run_id)
    files = dict(runs.artifacts(run_id))
    for name in EXTRA_FILES:
        if name not in files and (folder / name).is_file():
            files[name] = folder / name
    logged = []
    for name, path in sorted(files.items()):
        directory = MODEL_ARTIFACT_DIR if name == "model.keras" else (str(Path(name).parent) if "/" in name else None)
        client.log_artifact(mlflow_run_id, str(path), directory)
        logged.append(f"{directory}/{path.name}" if directory else path.name)
    return tuple(logged)


def _set_status(client, mlflow_run_id: str, run) -> None:
    status = MLFLOW_STATUS.get(run.status, "RUNNING")
    if run.is_active:
        client.update_run(mlflow_run_id, status=status)
    else:
        client.set_terminated(mlflow_run_id, status, end_time=int((run.ended_at or time.time()) * 1000))


def export_note(run_id: str) -> dict[str, Any] | None:
    """The run's last MLflow export as its folder's note says (None: never exported).

    Returns:
        {"ok": True, "mlflow_run_id", "experiment", "experiment_id", "tracking_uri", "url",
        "status", "exported_at", ...} after an export; {"ok": False, "error", "tracking_uri",
        "at"} after an automatic export (`after_run`) failed.
    """
    try:
        note = json.loads((run_dir(run_id) / NOTE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return note if isinstance(note, dict) else None


def _write_note(run_id: str, note: dict[str, Any]) -> None:
    folder = run_dir(run_id)
    if folder.is_dir():  # a run deleted meanwhile gets no folder back
        write_text_atomically(folder / NOTE_FILE, json.dumps(note, indent=2) + "\n")


@contextlib.contextmanager
def _patient_but_bounded() -> Iterator[None]:
    """While a worker exports: MLflow's HTTP retries bounded (its defaults: 7 retries with
    backoff and a 120 s timeout per request), unless the user chose their own."""
    defaults = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}
    added = [name for name in defaults if name not in os.environ]
    os.environ.update({name: defaults[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def after_run(run_id: str) -> str | None:
    """What a worker calls when a run ends (any status): export it if
    $STACKLAB_MLFLOW_TRACKING_URI is set (to $STACKLAB_MLFLOW_EXPERIMENT, default 'stacklab').

    Never raises: the run's outcome stands whatever MLflow says. A failure is printed to
    stderr (the run's worker.log) with its traceback, and kept as the run's note
    (`export_note`: ok False and the reason), which the Runs page shows.

    Returns:
        The MLflow run id, or None (not configured, or the export failed).
    """
    uri = os.environ.get(TRACKING_URI_ENV, "").strip()
    if not uri:
        return None
    experiment = os.environ.get(EXPERIMENT_ENV, "").strip() or DEFAULT_EXPERIMENT
    try:
        with _patient_but_bounded():
            result = log_run(run_id, uri, experiment)
    except Exception as error:  # noqa: BLE001 - tracking is a side channel; it must never fail the run
        reason = " ".join(str(error).split()) or type(error).__name__
        print(f"MLflow export of run {run_id} to {redact(uri)} failed: {reason}", file=sys.stderr, flush=True)
        traceback.print_exc(file=sys.stderr)
        with contextlib.suppress(Exception):  # noqa: BLE001 - not even a note that cannot be written
            _write_note(run_id, {"ok": False, "error": reason, "tracking_uri": redact(uri),
                                 "experiment": experiment, "at": time.time()})
        return None
    print(result.summary(), file=sys.stderr, flush=True)
    return result.mlflow_run_id
