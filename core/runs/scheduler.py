"""The job manager: which queued runs get a worker, and which workers are gone. No Keras import.

At most `max_workers()` runs train at once; queued runs start in the order they were
queued, started by whichever process notices a free slot (the worker that just ended, or
the dashboard, which calls `reconcile` on every poll). A worker whose process is gone and
that has stopped writing heartbeats is marked interrupted: its run resumes from the last
checkpoint.

On a machine with GPUs (`core.runs.devices.machine_gpus`) each run also needs its GPUs
free: one for a one-device run, several for data parallel (`core.spec.gpus_wanted`), none
for a CPU run. A run waiting for several holds the queue behind it (first in, first out),
and its worker sees only its own GPUs (CUDA_VISIBLE_DEVICES). On a machine without GPUs
nothing of this applies.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import psutil

from core.limits import positive_from_env
from core.processes import PROJECT_ROOT, child_env
from core.runs.devices import GPUS_VARIABLE, machine_gpus, machine_visibility_env
from core.runs.store import Run, RunStore, current_store
from core.spec import StackSpec, gpus_wanted
from core.storage.paths import run_dir, stacklab_home

# A worker whose process is gone and which has not written a heartbeat for this long is
# interrupted. Claimed runs whose worker has not reported yet get the longer grace.
DEAD_WORKER_GRACE_S = 3.0
SPAWN_GRACE_S = 60.0


def max_workers() -> int:
    """How many runs train at once: STACKLAB_MAX_WORKERS, default one per GPU (1 without GPUs).

    Raises:
        ValueError: the variable is set, but not to a positive whole number; or
            STACKLAB_GPUS is set to something that is not a list of GPU indices.
    """
    return positive_from_env("STACKLAB_MAX_WORKERS", max(1, len(machine_gpus())), whole=True)


def alive(pid: int | None, started: float | None) -> bool:
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


def mark_interrupted(runs: RunStore, run: Run, now: float) -> None:
    """Mark `run` (running or stopping, its worker gone) interrupted; call inside a transaction."""
    runs.update(run.id, status="interrupted", ended_at=now, error=(
        f"The worker process{f' (pid {run.worker_pid})' if run.worker_pid else ''} is gone: the "
        f"server or machine restarted, or it was killed. Resume continues from the last "
        f"checkpoint (epoch {run.epochs_done})."))


def reconcile() -> list[str]:
    """Mark runs whose worker is gone as interrupted, then start queued runs if slots are free.

    Called when the dashboard starts, on every poll, and by `wait`. Returns the ids marked
    interrupted.
    """
    runs = current_store()
    now = time.time()
    interrupted = []
    for run in runs.list_runs(("running", "stopping")):
        signs = runs.worker_signs(run.id)
        last_sign = signs.heartbeat_at or signs.started_at or now
        grace = DEAD_WORKER_GRACE_S if run.worker_pid else SPAWN_GRACE_S
        if not alive(run.worker_pid, signs.worker_started) and now - last_sign > grace:
            with runs.transaction():
                current = runs.get(run.id)
                if current.status in ("running", "stopping"):
                    mark_interrupted(runs, current, now)
                    interrupted.append(run.id)
    schedule()
    return interrupted


def schedule() -> list[str]:
    """Start workers for the oldest queued runs while fewer than `max_workers()` are active
    and the GPUs each needs are free (a run that needs more GPUs than the machine has fails)."""
    gpus = machine_gpus()
    indices = tuple(gpu.index for gpu in gpus)

    def gpus_for(spec: StackSpec) -> int:
        return gpus_wanted(spec.train.distribution, len(indices))

    claimed = current_store().claim_queued(max_workers(), indices, gpus_for)
    for run_id in claimed:
        _spawn(run_id)
    return claimed


def worker_gpu_env(gpus: tuple[int, ...]) -> dict[str, str]:
    """What a worker given `gpus` gets in its environment so it sees only those.

    On a machine with GPUs (or when STACKLAB_GPUS says which StackLab may use, even none):
    CUDA_VISIBLE_DEVICES lists them ("" for a CPU run), and CUDA numbers GPUs in PCI bus
    order, as nvidia-smi does (CUDA's default puts the fastest first). On a machine where
    nothing was found, the environment is left as it is.
    """
    if not machine_gpus() and os.environ.get(GPUS_VARIABLE) is None:
        return {}
    return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, gpus)), "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
            # The worker's supervisor schedules the next run: it must see the machine's GPUs.
            **machine_visibility_env()}


def _spawn(run_id: str) -> None:
    folder = run_dir(run_id)
    folder.mkdir(parents=True, exist_ok=True)
    env = child_env(STACKLAB_HOME=str(stacklab_home()), **worker_gpu_env(current_store().get(run_id).gpus))
    try:
        with open(folder / "worker.log", "ab") as log:
            # A new session: stopping the dashboard (Ctrl-C to its process group) does not
            # kill the training.
            process = subprocess.Popen(
                [sys.executable, "-m", "core.runs.worker", run_id], cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL,
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    except OSError as error:
        current_store().update(run_id, status="failed", ended_at=time.time(),
                       error=f"Could not start the worker process: {error}.")
        return
    # Reap the worker when it exits, so a long-lived caller (the dashboard) keeps no zombies.
    threading.Thread(target=process.wait, daemon=True, name=f"stacklab-reap-{run_id}").start()
    try:
        started = psutil.Process(process.pid).create_time()
    except psutil.Error:
        started = None
    runs = current_store()
    with runs.transaction():
        if runs.get(run_id).worker_pid is None:  # the worker may already have written its own
            runs.update(run_id, worker_pid=process.pid, worker_started=started)
