"""The inspector's client: model questions sent to one long-lived Keras process.

The Streamlit server never imports Keras (see DESIGN.md, "How data flows"). It asks the
inspector process instead, through `InspectorClient`, and gets plain data back: the
pre-flight report of a spec, the summary of an uploaded model file, the templates' forms, the
evaluation of a finished run and its member ablation. A hostile or huge upload can exhaust
only that process, which runs under a request timeout and a memory limit and is restarted
after it dies.

The parts: this module holds the client and the protocol's constants; `core.inspector.process`
one running server's pipes and log; `core.inspector.server` the server; `core.training.evaluation`
the scoring of a finished run, `core.training.ablation` its member ablation.

Protocol (`python -m core.inspector.server`, or `python -m core.inspector`): one JSON
object per line.
- The server's first stdout line is `{"ready": true, "pid", "backend", ...}`, written once
  Keras is imported; then it reads requests `{"id", "op", "args"}` on stdin and answers
  each with `{"id", "ok": true, "result"}` or `{"id", "ok": false, "error", "kind"}`, kind
  "refused" (a model file was refused), "invalid" (bad spec, data, file or run id) or
  "internal" (a bug: the type and message; the traceback goes to the log).
- stdout carries only those lines: anything else that prints (TensorFlow included) goes to
  stderr, which the client appends to `$STACKLAB_HOME/inspector.log`.
- A watchdog thread exits with status 86 when the resident memory passes
  STACKLAB_INSPECTOR_MEMORY_BYTES, and with 0 when its client is gone; EOF on stdin ends it.

The client imports no Keras. Limits, from the environment unless passed to the client:
STACKLAB_INSPECTOR_TIMEOUT_S (per request, default 120 s), STACKLAB_INSPECTOR_START_TIMEOUT_S
(Keras import, default 90 s), STACKLAB_INSPECTOR_MEMORY_BYTES (default 6 GiB).
STACKLAB_INSPECTOR_TEST_OPS=1 adds the test-only requests sleep, allocate and raise.

Example:
    >>> client = get_client()
    >>> client.start()                      # at dashboard start: Keras loads meanwhile
    >>> client.check(spec)["total_params"]
    693962
    >>> client.inspect_file("sha256:1f0c...")["layers"][0]["name"]
    'hidden'
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from pathlib import Path
from typing import Any, Mapping

from core.inspector.process import InspectorProcess
from core.inspector.protocol import (
    DEFAULT_MEMORY_BYTES,
    DEFAULT_START_TIMEOUT_S,
    DEFAULT_TIMEOUT_S,
    LOG_NAME,
    MEMORY_ENV,
    MEMORY_EXIT_CODE,
    START_TIMEOUT_ENV,
    TIMEOUT_ENV,
)
from core.limits import format_bytes, positive_from_env
from core.processes import child_env, signal_name
from core.spec import StackSpec, resolve_paths
from core.storage.paths import stacklab_home
from core.storage.uploads import display_name, is_ref


class InspectorError(RuntimeError):
    """A request to the inspector failed; the message is one line to show as is.

    kind: "refused" (a model file was refused), "invalid" (bad spec, data, file or run),
    "internal" (a bug in the inspector), "timeout", "memory", "crashed" (the process
    died) or "start" (it could not start).
    """

    def __init__(self, message: str, kind: str = "internal"):
        super().__init__(message)
        self.kind = kind


class InspectorClient:
    """Sends model questions to the inspector process and returns its plain-data answers.

    Thread-safe: one request at a time goes through a lock. The process starts on the
    first request (or `start()`), and a fresh one starts after it died, timed out or ran
    out of memory, so the request after a failure works.

    Args:
        timeout_s: seconds a request may take once the process is ready (default
            STACKLAB_INSPECTOR_TIMEOUT_S, or 120).
        timeouts: per-request overrides, e.g. {"evaluate": 600}.
        start_timeout_s: seconds to wait for a starting process to import Keras.
        memory_bytes: the server's resident-memory limit (STACKLAB_INSPECTOR_MEMORY_BYTES).
        env: extra environment variables for the server, e.g. {"STACKLAB_HOME": ...}.

    Raises:
        ValueError: a limit from the environment is not a positive number.
    """

    def __init__(self, *, timeout_s: float | None = None, timeouts: Mapping[str, float] | None = None,
                 start_timeout_s: float | None = None, memory_bytes: int | None = None,
                 env: Mapping[str, str] | None = None):
        self.env = dict(env or {})
        self.timeout_s = timeout_s or positive_from_env(TIMEOUT_ENV, DEFAULT_TIMEOUT_S)
        self.timeouts = dict(timeouts or {})
        self.start_timeout_s = start_timeout_s or positive_from_env(START_TIMEOUT_ENV, DEFAULT_START_TIMEOUT_S)
        self.memory_bytes = int(
            memory_bytes or positive_from_env(MEMORY_ENV, DEFAULT_MEMORY_BYTES,
                                              environ={**os.environ, **self.env}))
        self._lock = threading.Lock()
        self._process: InspectorProcess | None = None
        self._ids = itertools.count(1)

    # -- the questions ----------------------------------------------------------------------

    def check(self, spec: StackSpec, *, timeout_s: float | None = None) -> dict:
        """`core.build.stacking.check(spec).to_dict()`; the server loads the spec's dataset.

        Relative file paths in the spec are taken from this process's working directory.

        Raises:
            InspectorError: kind "invalid" for a dataset or spec that cannot be used.
        """
        spec = resolve_paths(spec, Path.cwd())
        return self.request("check", {"spec": spec.to_dict()}, timeout_s=timeout_s,
                            detail=f"stack '{spec.name}'")

    def inspect_file(self, ref_or_path: str, *, timeout_s: float | None = None) -> dict:
        """An uploaded model file's `ModelSummary.to_dict()`, with its layer table.

        Raises:
            InspectorError: kind "refused" with the refusal's one line ("Refused 'x.keras':
                ..."), or "invalid" when the file or upload does not exist.
        """
        ref = ref_or_path if is_ref(ref_or_path) else str(Path(ref_or_path).expanduser().absolute())
        return self.request("inspect_file", {"file": ref}, timeout_s=timeout_s,
                            detail=f"'{display_name(ref_or_path)}'")

    def templates(self, *, timeout_s: float | None = None) -> list[dict]:
        """Every template's `to_dict()`, in registry order, for the dashboard's forms."""
        return self.request("templates", {}, timeout_s=timeout_s)

    def evaluate(self, run_id: str, *, timeout_s: float | None = None) -> dict:
        """The evaluation of a finished run on its validation split (see `evaluate_run`).

        Raises:
            InspectorError: kind "invalid" for an unknown run or one without model.keras.
        """
        return self.request("evaluate", {"run_id": run_id}, timeout_s=timeout_s, detail=f"run '{run_id}'")

    def ablation(self, run_id: str, *, timeout_s: float | None = None) -> dict:
        """A finished fusion, ensemble or graph run's member ablation (see `core.training.ablation.ablate_run`):
        the validation metric of the whole stack and with each member removed, and the reading.

        Raises:
            InspectorError: kind "invalid" for an unknown run, one without a model, or a
                sequential or transfer run (the message says why and what to do).
        """
        return self.request("ablation", {"run_id": run_id}, timeout_s=timeout_s, detail=f"run '{run_id}'")

    def ping(self, *, timeout_s: float | None = None) -> dict:
        """The server's backend, pid, rss_bytes, memory_limit_bytes, keras_version, uptime_s."""
        return self.request("ping", {}, timeout_s=timeout_s)

    # -- the process ------------------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        """The server's pid, or None when no process is running."""
        process = self._process
        return process.popen.pid if process is not None and process.alive() else None

    def start(self) -> None:
        """Start the process without waiting for it, so Keras is loaded before the first
        question. Does nothing if one is running."""
        with self._lock:
            if self._process is None or not self._process.alive():
                self._spawn()

    def close(self) -> None:
        """End the process. A later request starts a fresh one."""
        # At interpreter exit a request may still hold the lock: end the process anyway.
        locked = self._lock.acquire(timeout=5.0)
        try:
            if self._process is not None:
                self._process.end()
                self._process = None
        finally:
            if locked:
                self._lock.release()

    def __enter__(self) -> "InspectorClient":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def request(self, op: str, args: Mapping[str, Any] | None = None, *, timeout_s: float | None = None,
                detail: str = "") -> Any:
        """Send one request and return its result (the methods above use this).

        Raises:
            InspectorError: the server answered with an error, or the request timed out,
                ran out of memory, or the process died; the next request works.
        """
        label = f"the '{op}' request" + (f" for {detail}" if detail else "")
        timeout = timeout_s or self.timeouts.get(op) or self.timeout_s
        with self._lock:
            process = self._ready_process()
            request_id = next(self._ids)
            process.send({"id": request_id, "op": op, "args": dict(args or {})})
            deadline = time.monotonic() + timeout
            while True:
                try:
                    message = process.next_message(deadline)
                except TimeoutError:
                    process.kill()
                    self._restart()
                    raise InspectorError(
                        f"{label[0].upper()}{label[1:]} took longer than {timeout:g} s; the inspector was "
                        f"restarted, so the next request works. If the request is genuine, raise "
                        f"{TIMEOUT_ENV}.", "timeout") from None
                if message is None:  # EOF: it died during the request
                    raise self._death(process, label)
                if message.get("id") == request_id:
                    break
        if message.get("ok") is True:
            return message.get("result")
        raise InspectorError(str(message.get("error") or "The inspector gave no reason."),
                             str(message.get("kind") or "internal"))

    def _spawn(self) -> InspectorProcess:
        env = child_env({**os.environ, **self.env})
        home = Path(env.get("STACKLAB_HOME") or stacklab_home())
        home.mkdir(parents=True, exist_ok=True)
        env["STACKLAB_HOME"] = str(home)
        env[MEMORY_ENV] = str(self.memory_bytes)
        env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            self._process = InspectorProcess(env, home / LOG_NAME)
        except OSError as error:
            self._process = None
            raise InspectorError(f"Could not start the inspector process: {error}.", "start") from None
        return self._process

    def _restart(self) -> None:
        """Start a fresh process after a failure, so it is ready sooner for the next request."""
        try:
            self._spawn()
        except InspectorError:
            pass  # the next request tries again and says why it cannot start

    def _ready_process(self) -> InspectorProcess:
        """The running process, started (and waited for) if needed."""
        process = self._process
        if process is None or not process.usable():
            if process is not None:
                process.kill()  # died between requests (killed, or out of memory): reap it
            process = self._spawn()
        deadline = time.monotonic() + self.start_timeout_s
        while process.ready is None:
            try:
                message = process.next_message(deadline)
            except TimeoutError:
                process.kill()
                self._process = None
                raise InspectorError(
                    f"The inspector did not start within {self.start_timeout_s:g} s (it imports Keras "
                    f"first); raise {START_TIMEOUT_ENV} on a slow machine. Its log: {process.log_path}.",
                    "start") from None
            if message is None:
                code = process.exit_code()
                process.kill()
                self._process = None
                if code == MEMORY_EXIT_CODE:
                    raise InspectorError(
                        f"The inspector needs more memory than its {format_bytes(self.memory_bytes)} limit "
                        f"just to start; raise {MEMORY_ENV}.", "start")
                raise InspectorError(
                    f"The inspector failed to start (exit status {code}): {process.last_log_line()} "
                    f"(log: {process.log_path}).", "start")
            if message.get("ready") is True:
                process.ready = message
        return process

    def _death(self, process: InspectorProcess, label: str) -> InspectorError:
        """The error for a process that ended during a request; a fresh one starts now."""
        code = process.exit_code()
        process.kill()  # and whatever it started (a model-file loader)
        self._restart()
        if code == MEMORY_EXIT_CODE:
            return InspectorError(
                f"The inspector ran out of memory handling {label}: it went over its "
                f"{format_bytes(self.memory_bytes)} memory limit and exited. It was restarted, so the next "
                f"request works; if the file or data is genuine, raise {MEMORY_ENV}.", "memory")
        if code < 0:
            name = signal_name(code)
            how = f"killed by {name}"
            if name == "SIGKILL":
                how += ", most likely the system ran out of memory"
        else:
            how = f"exit status {code}"
        return InspectorError(
            f"The inspector process died ({how}) while handling {label}. It was restarted, so the "
            f"next request works; its log is {process.log_path}.", "crashed")


_client: InspectorClient | None = None
_client_lock = threading.Lock()


def get_client() -> InspectorClient:
    """The process-wide client (the dashboard's sessions share one inspector).

    Example:
        >>> get_client().templates()[0]["name"]
        'cnn_features'
    """
    global _client
    with _client_lock:
        if _client is None:
            import atexit

            _client = InspectorClient()
            atexit.register(_client.close)
        return _client

