"""TensorBoard for chosen runs: one `tensorboard` process on localhost, started and stopped for the dashboard.

Every run writes TensorBoard logs in `runs/<id>/tensorboard/` (core.runs.worker). `start(run_ids)`
serves exactly those runs (links to their folders, named by run id) on a free localhost port and
returns once TensorBoard answers; a second call with other runs replaces it, so there is at
most one per process. It stops with the app: on a normal exit (`atexit`), and, because
the child is started through this module's `main`, which exits as soon as its parent is
gone, also when the dashboard is killed. No Keras import here; TensorBoard runs in its own
process.

Example:
    >>> board = start(["20261201-101500-ab12cd"])
    >>> board.url
    'http://localhost:43117/'
    >>> stop()
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from core.processes import PROJECT_ROOT, child_env
from core.storage.paths import run_dir, stacklab_home

# TensorBoard imports TensorFlow when it is installed: ~3 s here, more on a cold disk.
START_TIMEOUT_S = 60.0
PARENT_CHECK_S = 1.0
LOG_FILE = "tensorboard.log"
VIEW_FOLDER = "tensorboard-view"


class TensorBoardError(RuntimeError):
    """TensorBoard could not be started; the message says why."""


@dataclass(frozen=True)
class TensorBoard:
    url: str
    run_ids: tuple[str, ...]
    pid: int


_lock = threading.Lock()
_process: subprocess.Popen | None = None
_current: TensorBoard | None = None
_atexit_registered = False


def log_folders(run_ids: Sequence[str]) -> dict[str, Path]:
    """Run id -> its TensorBoard folder, for the runs that have one."""
    folders = {run_id: run_dir(run_id) / "tensorboard" for run_id in dict.fromkeys(run_ids)}
    return {run_id: folder for run_id, folder in folders.items() if folder.is_dir()}


def current() -> TensorBoard | None:
    """The TensorBoard this process started, while it is still running."""
    with _lock:
        if _process is not None and _process.poll() is None:
            return _current
        return None


def start(run_ids: Sequence[str], timeout_s: float = START_TIMEOUT_S) -> TensorBoard:
    """Serve the TensorBoard logs of `run_ids` on localhost; replaces one serving other runs.

    Raises:
        TensorBoardError: none of the runs has logs, or TensorBoard did not start (the
            message ends with the last lines of its log).
    """
    global _process, _current, _atexit_registered
    folders = log_folders(run_ids)
    if not folders:
        raise TensorBoardError(f"None of the runs {', '.join(run_ids)} has TensorBoard logs yet: a run writes "
                               f"them in runs/<id>/tensorboard/ as its epochs end.")
    with _lock:
        if _process is not None and _process.poll() is None and _current is not None \
                and set(_current.run_ids) == set(folders):
            return _current
        _stop_locked()
        port = _free_port()
        log_path = stacklab_home() / LOG_FILE
        command = [sys.executable, "-m", "core.runs.tensorboard", str(os.getpid()), "--logdir",
                   str(_view_of(folders)),
                   "--host", "localhost", "--port", str(port), "--reload_interval", "5"]
        env = child_env(TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
        with open(log_path, "ab") as log:
            _process = subprocess.Popen(command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log,
                                        stderr=subprocess.STDOUT)
        threading.Thread(target=_process.wait, daemon=True, name="stacklab-tensorboard-reap").start()
        if not _atexit_registered:
            atexit.register(stop)
            _atexit_registered = True
        url = f"http://localhost:{port}/"
        _wait_until_serving(_process, url, timeout_s, log_path)
        _current = TensorBoard(url=url, run_ids=tuple(folders), pid=_process.pid)
        return _current


def stop() -> None:
    """Stop the TensorBoard this process started, if any."""
    with _lock:
        _stop_locked()


def _stop_locked() -> None:
    global _process, _current
    if _process is not None and _process.poll() is None:
        _process.terminate()
        try:
            _process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            _process.kill()
    _process, _current = None, None


def _view_of(folders: dict[str, Path]) -> Path:
    """A folder of links named by run id, one to each run's logs: TensorBoard names a run after
    its folder under --logdir, so the runs show as their ids (with --logdir_spec they would
    show as '<id>/.')."""
    view = stacklab_home() / VIEW_FOLDER
    if view.exists():
        shutil.rmtree(view)
    view.mkdir()
    for run_id, folder in folders.items():
        (view / run_id).symlink_to(folder, target_is_directory=True)
    return view


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def _wait_until_serving(process: subprocess.Popen, url: str, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise TensorBoardError(f"TensorBoard exited with code {process.returncode} before serving: "
                                   f"{_log_tail(log_path)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.25)
    process.terminate()
    raise TensorBoardError(f"TensorBoard did not answer on {url} within {timeout_s:.0f} s: {_log_tail(log_path)}")


def _log_tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " / ".join(text[-lines:]) or "(empty log)"


def main(argv: list[str]) -> int:
    """`python -m core.runs.tensorboard PARENT_PID <tensorboard arguments>`: TensorBoard that exits
    when the process that started it is gone (killed dashboards leave no server behind)."""
    parent = int(argv[0])

    def watch_parent() -> None:
        while True:
            time.sleep(PARENT_CHECK_S)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch_parent, daemon=True, name="stacklab-parent-watch").start()
    from tensorboard import main as tensorboard_main

    sys.argv = ["tensorboard", *argv[1:]]
    tensorboard_main.run_main()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
