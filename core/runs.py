"""Training runs: start, watch, stop, resume, delete. The job manager behind the dashboard.

Each run trains in its own worker process (`python -m core.worker RUN_ID`): a closed tab
does not kill it, a crash in it does not take the server down, and its memory is returned
when it exits. At most `STACKLAB_MAX_WORKERS` (default 1) run at once; queued runs start in
the order they were queued, started by whichever process notices a free slot (the worker
that just ended, or the dashboard). No Keras import.

Example:
    >>> run_id = runs.start(spec)
    >>> runs.get(run_id).status
    'running'
    >>> runs.metrics(run_id, since_epoch=0)[-1]["metrics"]["val_accuracy"]
    0.93
"""

from __future__ import annotations

import builtins
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from core.paths import run_dir, stacklab_home
from core.run_store import (  # noqa: F401  (re-exported for callers of core.runs)
    ACTIVE_STATUSES,
    RESUMABLE_STATUSES,
    STATUSES,
    Progress,
    Run,
    RunNotFound,
    RunStore,
    RunStoreError,
)
from core.spec import DatasetSpec, StackSpec

ROOT = Path(__file__).resolve().parents[1]
# A worker whose process is gone and which has not written a heartbeat for this long is
# interrupted. Claimed runs whose worker has not reported yet get the longer grace.
DEAD_WORKER_GRACE_S = 3.0
SPAWN_GRACE_S = 60.0

_stores: dict[Path, RunStore] = {}
_stores_lock = threading.Lock()


def store() -> RunStore:
    """The run store of the current `$STACKLAB_HOME` (one per home and process)."""
    home = stacklab_home()
    with _stores_lock:
        if home not in _stores:
            _stores[home] = RunStore(home)
        return _stores[home]


def max_workers() -> int:
    value = os.environ.get("STACKLAB_MAX_WORKERS", "1")
    try:
        count = int(value)
    except ValueError:
        raise ValueError(f"STACKLAB_MAX_WORKERS must be a whole number, received {value!r}.") from None
    if count < 1:
        raise ValueError(f"STACKLAB_MAX_WORKERS must be at least 1, received {count}.")
    return count


def start(spec: StackSpec, dataset: DatasetSpec | None = None, parent_id: str | None = None) -> str:
    """Queue a run of `spec` (on `dataset`, if given) and start a worker if a slot is free.

    Returns:
        The new run's id.

    Raises:
        SpecError: a number of the spec is out of range (a spec built in code is checked
            here, before it is queued, as reading one from JSON would).
        FileNotFoundError: an uploaded file the spec refers to is not in the upload store.
        RunStoreError: the run store cannot be used.
    """
    from core.uploads import resolve

    if dataset is not None:
        spec = spec.replace(dataset=dataset)
    spec.check_values()
    for member in spec.all_members():
        if member.source == "file" and member.file:
            resolve(member.file)
    if spec.dataset.source != "builtin" and spec.dataset.path:
        resolve(spec.dataset.path)
    run_id = store().create(spec, parent_id=parent_id)
    schedule()
    return run_id


def list(statuses: tuple[str, ...] | None = None, limit: int | None = None) -> builtins.list[Run]:  # noqa: A001
    """Runs, newest first, optionally only those with the given statuses."""
    return store().list(statuses, limit)


def get(run_id: str) -> Run:
    return store().get(run_id)


def metrics(run_id: str, since_epoch: int = 0) -> builtins.list[dict[str, Any]]:
    """Epoch rows after `since_epoch`: epoch, phase, metrics, duration, learning rate, member updates."""
    return store().metrics(run_id, since_epoch)


def progress(run_id: str) -> Progress | None:
    return store().progress(run_id)


def phases(run_id: str) -> builtins.list[dict[str, Any]]:
    return store().phases(run_id)


def artifacts(run_id: str) -> dict[str, Path]:
    """Artifact name -> path for the files a run has written (model.keras, history.csv, ...)."""
    return store().artifacts(run_id)


def stop(run_id: str) -> Run:
    """Ask a run to stop. A queued run stops at once; a running one at its next batch,
    keeping the model of its last finished epoch."""
    runs = store()
    with runs.transaction():
        run = runs.get(run_id)
        if run.status == "queued":
            runs.update(run_id, status="stopped", ended_at=time.time(), error="stopped before it started")
        elif run.status == "running":
            runs.update(run_id, status="stopping", stop_requested=1)
    return runs.get(run_id)


def resume(run_id: str) -> Run:
    """Queue a stopped, failed or interrupted run again; it continues from its last checkpoint.

    A run still marked running or stopping whose worker process is gone (killed a moment
    ago, before `reconcile` noticed) is marked interrupted first, and resumed.

    Raises:
        ValueError: the run is active (its worker is alive) or finished.
    """
    runs = store()
    with runs.transaction():
        run = runs.get(run_id)
        # reconcile() waits DEAD_WORKER_GRACE_S after the last heartbeat because it cannot
        # tell a dead worker from one that has not reported yet. Here the pid is known and
        # gone, so there is nothing to wait for. An orphaned trainer ends itself within a
        # heartbeat (HEARTBEAT_S in core.worker, 0.5 s), long before a new worker has
        # imported Keras and opened the checkpoint.
        if run.status in ("running", "stopping") and run.worker_pid and not _alive(
                run.worker_pid, _worker_started(runs, run_id)):
            _mark_interrupted(runs, run, time.time())
            run = runs.get(run_id)
        if run.status not in RESUMABLE_STATUSES:
            raise ValueError(f"Run '{run_id}' is {run.status}; only {', '.join(RESUMABLE_STATUSES)} runs can be "
                             f"resumed.")
        runs.update(run_id, status="queued", stop_requested=0, resume_requested=1, error="", ended_at=None,
                    worker_pid=None)
    schedule()
    return runs.get(run_id)


def delete(run_id: str) -> None:
    """Delete a run's row and folder.

    Raises:
        ValueError: the run is still active (stop it first).
    """
    runs = store()
    run = runs.get(run_id)
    if run.is_active:
        raise ValueError(f"Run '{run_id}' is {run.status}; stop it before deleting it.")
    runs.delete(run_id)
    shutil.rmtree(run_dir(run_id), ignore_errors=True)


def wait(run_id: str, timeout_s: float = 600.0, poll_s: float = 0.2) -> Run:
    """Block until the run is no longer active (for the CLI and tests)."""
    deadline = time.monotonic() + timeout_s
    while True:
        run = get(run_id)
        if not run.is_active:
            return run
        if time.monotonic() > deadline:
            raise TimeoutError(f"Run '{run_id}' is still {run.status} after {timeout_s:.0f} s.")
        reconcile()
        time.sleep(poll_s)


# -- the job manager -------------------------------------------------------------------------


def _alive(pid: int | None, started: float | None) -> bool:
    """Whether the process `pid`, started at `started`, still runs (pids get reused)."""
    if pid is None:
        return False
    try:
        process = psutil.Process(pid)
        if started is not None and abs(process.create_time() - started) > 1.0:
            return False
        return process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _worker_started(runs: RunStore, run_id: str) -> float | None:
    row = runs.execute("SELECT worker_started FROM runs WHERE id = ?", (run_id,)).fetchone()
    return row["worker_started"] if row is not None else None


def _mark_interrupted(runs: RunStore, run: Run, now: float) -> None:
    """Mark `run` (running or stopping, its worker gone) interrupted; call inside a transaction."""
    runs.update(run.id, status="interrupted", ended_at=now, error=(
        f"The worker process{f' (pid {run.worker_pid})' if run.worker_pid else ''} is gone: the "
        f"server or machine restarted, or it was killed. Resume continues from the last "
        f"checkpoint (epoch {run.epochs_done})."))


def reconcile() -> builtins.list[str]:
    """Mark runs whose worker is gone as interrupted, then start queued runs if slots are free.

    Called when the dashboard starts, on every poll, and by `wait`. Returns the ids marked
    interrupted.
    """
    runs = store()
    now = time.time()
    interrupted = []
    for run in runs.list(("running", "stopping")):
        row = runs.execute("SELECT worker_started, heartbeat_at, started_at FROM runs WHERE id = ?",
                           (run.id,)).fetchone()
        last_sign = row["heartbeat_at"] or row["started_at"] or now
        grace = DEAD_WORKER_GRACE_S if run.worker_pid else SPAWN_GRACE_S
        if not _alive(run.worker_pid, row["worker_started"]) and now - last_sign > grace:
            with runs.transaction():
                current = runs.get(run.id)
                if current.status in ("running", "stopping"):
                    _mark_interrupted(runs, current, now)
                    interrupted.append(run.id)
    schedule()
    return interrupted


def schedule() -> builtins.list[str]:
    """Start workers for the oldest queued runs while fewer than `max_workers()` are active."""
    runs = store()
    claimed = []
    # A read first: the dashboard calls this every second, and most of the time nothing
    # is queued, so it should not take the write lock for nothing.
    if runs.execute("SELECT 1 FROM runs WHERE status = 'queued' LIMIT 1").fetchone() is None:
        return claimed
    with runs.transaction():
        active = runs.execute("SELECT COUNT(*) FROM runs WHERE status IN ('running', 'stopping')").fetchone()[0]
        free = max_workers() - active
        if free > 0:
            rows = runs.execute("SELECT id, started_at FROM runs WHERE status = 'queued' ORDER BY seq LIMIT ?",
                                (free,)).fetchall()
            now = time.time()
            for row in rows:
                runs.update(row["id"], status="running", started_at=row["started_at"] or now, heartbeat_at=now,
                            worker_pid=None, worker_started=None)
                claimed.append(row["id"])
    for run_id in claimed:
        _spawn(run_id)
    return claimed


def _spawn(run_id: str) -> None:
    folder = run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env["STACKLAB_HOME"] = str(stacklab_home())
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    try:
        with open(folder / "worker.log", "ab") as log:
            # A new session: stopping the dashboard (Ctrl-C to its process group) does not
            # kill the training.
            process = subprocess.Popen(
                [sys.executable, "-m", "core.worker", run_id], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as error:
        store().update(run_id, status="failed", ended_at=time.time(),
                       error=f"Could not start the worker process: {error}.")
        return
    # Reap the worker when it exits, so a long-lived caller (the dashboard) keeps no zombies.
    threading.Thread(target=process.wait, daemon=True, name=f"stacklab-reap-{run_id}").start()
    try:
        started = psutil.Process(process.pid).create_time()
    except psutil.Error:
        started = None
    runs = store()
    with runs.transaction():
        if runs.get(run_id).worker_pid is None:  # the worker may already have written its own
            runs.update(run_id, worker_pid=process.pid, worker_started=started)
