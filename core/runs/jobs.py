"""Training runs: start, watch, stop, resume, delete. No Keras import.

Each run trains in its own worker process (`python -m core.runs.worker RUN_ID`): a closed tab
does not kill it, a crash in it does not take the server down, and its memory is returned
when it exits. `core.runs.scheduler` decides when a queued run gets its worker.

Example:
    >>> run_id = runs.start(spec)
    >>> runs.get(run_id).status
    'running'
    >>> runs.metrics(run_id, since_epoch=0)[-1]["metrics"]["val_accuracy"]
    0.93
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any

from core.runs import scheduler
from core.runs.devices import machine_gpus
from core.runs.store import RESUMABLE_STATUSES, Progress, Run, current_store
from core.spec import DatasetSpec, SpecError, StackSpec, backend_problem, gpus_wanted
from core.storage.paths import run_dir


def start(spec: StackSpec, dataset: DatasetSpec | None = None, parent_id: str | None = None) -> str:
    """Queue a run of `spec` (on `dataset`, if given) and start a worker if a slot is free.

    Returns:
        The new run's id.

    Raises:
        SpecError: a number of the spec is out of range (a spec built in code is checked
            here, before it is queued, as reading one from JSON would), its distribution
            cannot run on the workers' Keras backend (KERAS_BACKEND), or it asks for more
            GPUs than the machine has.
        FileNotFoundError: an uploaded file the spec refers to is not in the upload store.
        RunStoreError: the run store cannot be used.
    """
    from core.storage.uploads import resolve

    if dataset is not None:
        spec = spec.replace(dataset=dataset)
    spec.check_values()
    check_devices(spec)
    for member in spec.all_members():
        if member.source == "file" and member.file:
            resolve(member.file)
    if spec.dataset.source != "builtin" and spec.dataset.path:
        resolve(spec.dataset.path)
    run_id = current_store().create(spec, parent_id=parent_id)
    scheduler.schedule()
    return run_id


def check_devices(spec: StackSpec) -> None:
    """Refuse, before queueing, a distribution the workers cannot run on this machine.

    The workers inherit this process's KERAS_BACKEND (TensorFlow when unset); the GPUs are
    the scheduler's (`core.runs.devices.machine_gpus`).

    Raises:
        SpecError: the backend cannot run it, or it asks for more GPUs than there are.
    """
    distribution = spec.train.distribution
    problem = backend_problem(distribution, os.environ.get("KERAS_BACKEND", "tensorflow"))
    if problem:
        raise SpecError(problem)
    try:
        gpus_wanted(distribution, len(machine_gpus()))
    except ValueError as error:
        raise SpecError(str(error)) from None


def list_runs(statuses: tuple[str, ...] | None = None, limit: int | None = None) -> list[Run]:
    """Runs, newest first, optionally only those with the given statuses."""
    return current_store().list_runs(statuses, limit)


def get(run_id: str) -> Run:
    return current_store().get(run_id)


def metrics(run_id: str, since_epoch: int = 0) -> list[dict[str, Any]]:
    """Epoch rows after `since_epoch`: epoch, phase, metrics, duration, learning rate, member updates."""
    return current_store().metrics(run_id, since_epoch)


def progress(run_id: str) -> Progress | None:
    return current_store().progress(run_id)


def phases(run_id: str) -> list[dict[str, Any]]:
    return current_store().phases(run_id)


def artifacts(run_id: str) -> dict[str, Path]:
    """Artifact name -> path for the files a run has written (model.keras, history.csv, ...)."""
    return current_store().artifacts(run_id)


def stop(run_id: str) -> Run:
    """Ask a run to stop. A queued run stops at once; a running one at its next batch,
    keeping the model of its last finished epoch."""
    runs = current_store()
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
    runs = current_store()
    with runs.transaction():
        run = runs.get(run_id)
        # reconcile() waits DEAD_WORKER_GRACE_S after the last heartbeat because it cannot
        # tell a dead worker from one that has not reported yet. Here the pid is known and
        # gone, so there is nothing to wait for. An orphaned trainer ends itself within a
        # heartbeat (HEARTBEAT_S in core.runs.worker, 0.5 s), long before a new worker has
        # imported Keras and opened the checkpoint.
        if run.status in ("running", "stopping") and run.worker_pid and not scheduler.alive(
                run.worker_pid, runs.worker_signs(run_id).worker_started):
            scheduler.mark_interrupted(runs, run, time.time())
            run = runs.get(run_id)
        if run.status not in RESUMABLE_STATUSES:
            raise ValueError(f"Run '{run_id}' is {run.status}; only {', '.join(RESUMABLE_STATUSES)} runs can be "
                             f"resumed.")
        runs.update(run_id, status="queued", stop_requested=0, resume_requested=1, error="", ended_at=None,
                    worker_pid=None)
    scheduler.schedule()
    return runs.get(run_id)


def delete(run_id: str) -> None:
    """Delete a run's row and folder.

    Raises:
        ValueError: the run is still active (stop it first).
    """
    runs = current_store()
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
        scheduler.reconcile()
        time.sleep(poll_s)
