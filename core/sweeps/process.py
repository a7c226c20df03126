"""Sweep drivers as processes of this machine: spawn one detached, tell whether one lives, stop them.

Each driver writes `$STACKLAB_HOME/sweeps/<study>.<pid>.pid` (its pid and start time, since
pids get reused) while it runs, so the dashboard knows a sweep is being driven after a
reload or a restart. A spawned driver runs in its own session (a stopped dashboard does not
take it down) and prints to `$STACKLAB_HOME/sweeps/<study>.log`.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil
from optuna.trial import TrialState

from core import runs
from core.processes import PROJECT_ROOT, child_env
from core.runs.scheduler import alive
from core.storage.paths import stacklab_home
from core.sweeps.storage import STORAGE_ENV, load_study, log_path, safe_name, sweeps_dir

# A trial user attr: its run was stopped with the sweep, and resumes when the sweep continues.
PAUSED_ATTR = "paused"


@dataclass(frozen=True)
class DriverId:
    """Who drives a trial: the machine, the StackLab home (its run store), the process."""

    host: str
    home: str
    pid: int
    started: float | None

    @classmethod
    def me(cls) -> "DriverId":
        return cls(socket.gethostname(), str(stacklab_home().resolve()), os.getpid(), _started(os.getpid()))

    def attrs(self) -> dict[str, object]:
        return {"host": self.host, "home": self.home, "driver_pid": self.pid, "driver_started": self.started}

    def same_home(self, attrs: dict) -> bool:
        """Whether a trial with these user attrs ran from this machine's StackLab home."""
        return attrs.get("host") == self.host and attrs.get("home") == self.home


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def pid_file(study: str, pid: int) -> Path:
    return sweeps_dir() / f"{safe_name(study)}.{pid}.pid"


def write_pid_file(study: str, pid: int, started: float | None) -> Path:
    path = pid_file(study, pid)
    path.write_text(json.dumps({"study": study, "pid": pid, "started": started}))
    return path


def live_drivers(study: str) -> list[tuple[int, float | None]]:
    """(pid, start time) of this home's driver processes of `study` that still run; the
    files of dead ones are removed."""
    found = []
    for path in sweeps_dir().glob(f"{safe_name(study)}.*.pid"):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if record.get("study") != study:
            continue
        if alive(record.get("pid"), record.get("started")):
            found.append((record["pid"], record.get("started")))
        else:
            path.unlink(missing_ok=True)
    return found


def driver_alive(study: str) -> bool:
    """Whether a driver of sweep `study` runs from this StackLab home."""
    return bool(live_drivers(study))


def spawn_driver(study: str, storage: str | None = None) -> int:
    """Start a detached driver for sweep `study` (`python -m core.sweeps.cli --study NAME`,
    what `python -m core sweep --study NAME` runs); returns its pid.

    Raises:
        KeyError: no such sweep in the storage.
    """
    load_study(study, storage)  # a missing study is said here, not in a log nobody reads
    command = [sys.executable, "-m", "core.sweeps.cli", "--study", study]
    extra = {"STACKLAB_HOME": str(stacklab_home())}
    if storage:
        extra[STORAGE_ENV] = storage
    with open(log_path(study), "ab") as log:
        process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=child_env(**extra), stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    # Reap it when it exits, so a long-lived caller (the dashboard) keeps no zombies.
    threading.Thread(target=process.wait, daemon=True, name=f"stacklab-sweep-{process.pid}").start()
    write_pid_file(study, process.pid, _started(process.pid))
    return process.pid


def stop_sweep(study: str, storage: str | None = None, timeout_s: float = 10.0) -> list[str]:
    """Stop this home's drivers of sweep `study` and the runs of its active trials.

    The trials stay running in the study, marked paused: a driver started again (`python -m
    core sweep --study NAME`) resumes their runs from their checkpoints.

    Returns:
        The ids of the runs asked to stop.
    """
    for pid, _ in live_drivers(study):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
    deadline = time.monotonic() + timeout_s
    while live_drivers(study) and time.monotonic() < deadline:
        time.sleep(0.1)
    me = DriverId.me()
    loaded = load_study(study, storage)
    stopped = []
    for trial in loaded.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run_id = trial.user_attrs.get("run_id")
        if not run_id or not me.same_home(trial.user_attrs):
            continue
        loaded._storage.set_trial_user_attr(trial._trial_id, PAUSED_ATTR, True)
        try:
            if runs.get(run_id).is_active:
                runs.stop(run_id)
                stopped.append(run_id)
        except runs.RunNotFound:
            continue
    return stopped
