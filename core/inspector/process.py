"""One inspector server process, as its client sees it: the pipes, the answers, the log.

`InspectorProcess` starts `python -m core.inspector.server` in a session of its own, moves
its stdout lines into a queue from a reader thread, and knows how to end it, kill it (with
whatever it started) and read why it died. It imports no Keras; `core.inspector`'s client
decides when to start one and what a death means.

Example:
    >>> process = InspectorProcess(env, home / "inspector.log")
    >>> process.next_message(time.monotonic() + 90)["ready"]
    True
    >>> process.send({"id": 1, "op": "ping", "args": {}})
    >>> process.next_message(time.monotonic() + 120)["result"]["pid"] == process.popen.pid
    True
    >>> process.end()
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from core.processes import PROJECT_ROOT

SERVER_MODULE = "core.inspector.server"
MAX_LOG_BYTES = 8 * 2**20  # a longer log is started afresh when the inspector starts


def _pump(stream, lines: queue.Queue) -> None:
    with stream:
        for line in stream:
            lines.put(line)
    lines.put(None)  # EOF: the process is gone


class InspectorProcess:
    """One server process: its pipes, a thread moving its stdout lines into a queue."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.log_path = log_path
        mode = "wb" if log_path.exists() and log_path.stat().st_size > MAX_LOG_BYTES else "ab"
        with open(log_path, mode) as log:
            # A session of its own: Ctrl-C on the dashboard does not reach it, and a kill
            # of its process group also ends the model-file loader it may be running.
            self.popen = subprocess.Popen(
                [sys.executable, "-m", SERVER_MODULE], cwd=PROJECT_ROOT, env=env,
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, start_new_session=True)
        self.lines: queue.Queue[bytes | None] = queue.Queue()
        self.ready: dict | None = None
        # The thread holds the pipe, not this object: a client dropped without close() lets
        # its pipes close, and the server exits at EOF.
        threading.Thread(target=_pump, args=(self.popen.stdout, self.lines), daemon=True,
                         name="stacklab-inspector-reader").start()

    def send(self, message: dict) -> None:
        """Write one request line to the server's stdin."""
        try:
            self.popen.stdin.write((json.dumps(message) + "\n").encode("utf-8"))
            self.popen.stdin.flush()
        except OSError:
            pass  # it died; its EOF is in the queue, and next_message returns None

    def next_message(self, deadline: float) -> dict | None:
        """The next JSON object the server wrote, or None at EOF (the process is gone).

        Args:
            deadline: a `time.monotonic()` value.

        Raises:
            TimeoutError: nothing came before the deadline.
        """
        while True:
            try:
                raw = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise TimeoutError from None
            if raw is None:
                return None
            try:
                message = json.loads(raw)
            except ValueError:
                continue  # not ours: only the protocol writes to the server's stdout
            if isinstance(message, dict):
                return message

    def alive(self) -> bool:
        return self.popen.poll() is None

    def usable(self) -> bool:
        """Alive, and no EOF waiting: a process killed a moment ago may not be reaped yet."""
        if self.ready is not None:  # between requests anything queued is stale
            while not self.lines.empty():
                if self.lines.get_nowait() is None:
                    return False
        return self.alive()

    def kill(self) -> None:
        try:
            os.killpg(self.popen.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.popen.wait()
        self._close_stdin()

    def end(self, grace_s: float = 5.0) -> None:
        """Close stdin (the server exits at EOF); kill it if it does not."""
        self._close_stdin()
        try:
            self.popen.wait(grace_s)
        except subprocess.TimeoutExpired:
            self.kill()

    def _close_stdin(self) -> None:
        try:
            self.popen.stdin.close()
        except OSError:  # a request it never read: nothing to deliver now
            pass

    def exit_code(self) -> int:
        try:
            return self.popen.wait(5.0)
        except subprocess.TimeoutExpired:  # stdout closed but still running: make it end
            self.kill()
            return self.popen.returncode

    def last_log_line(self) -> str:
        try:
            with open(self.log_path, "rb") as log:
                log.seek(max(0, log.seek(0, os.SEEK_END) - 8192))
                lines = log.read().decode("utf-8", errors="replace").splitlines()
        except OSError:
            return ""
        return next((line.strip() for line in reversed(lines) if line.strip()), "")
