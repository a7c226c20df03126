"""The inspector's server: the Keras process behind `core.inspector`'s client.

`python -m core.inspector.server` (or `python -m core.inspector`) imports Keras, writes the
ready line, then answers JSON-line requests on stdin until EOF: check, inspect_file,
templates, evaluate, ablation and ping, plus sleep, allocate and raise under
STACKLAB_INSPECTOR_TEST_OPS=1. The protocol and the limits are described in `core.inspector`.
A watchdog thread ends the process when its resident memory passes the limit or its client
is gone; every failure of a request becomes an answer, so one bad request never ends it.

Example:
    $ printf '{"id": 1, "op": "ping", "args": {}}\n' | python -m core.inspector.server
    {"ready": true, "backend": "tensorflow", "pid": 4242, ...}
    {"id": 1, "ok": true, "result": {"backend": "tensorflow", "pid": 4242, ...}}
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import traceback
from typing import Any, Callable, Mapping

import psutil

from core.inspector.protocol import DEFAULT_MEMORY_BYTES, LOG_NAME, MEMORY_ENV, MEMORY_EXIT_CODE, TEST_OPS_ENV
from core.limits import format_bytes, positive_from_env
from core.model_files.limits import shortened
from core.processes import reserve_stdout
from core.spec import StackSpec

# Keras and the library (core.model_files.loading, core.build.stacking, core.training.evaluation,
# core.training.ablation, ...) are imported in _handlers, once the watchdog runs: the memory limit
# then holds while they load.

WATCH_INTERVAL_S = 0.1
# Requests that build Keras models; the session is cleared after answering them.
MODEL_OPS = ("check", "evaluate", "ablation")


class _Watchdog(threading.Thread):
    """Ends the server when its resident memory passes the limit or its client is gone."""

    def __init__(self, limit: int):
        super().__init__(daemon=True, name="stacklab-inspector-watchdog")
        self.limit = limit
        self.parent = os.getppid()
        self.current = "start-up"  # what the server is doing, for the exit message

    def run(self) -> None:
        me = psutil.Process()
        while True:
            rss = me.memory_info().rss
            if rss > self.limit:
                sys.stderr.write(
                    f"stacklab inspector: out of memory: resident memory {format_bytes(rss)} is over "
                    f"the {format_bytes(self.limit)} limit ({MEMORY_ENV}) while handling {self.current}; "
                    f"exiting.\n")
                sys.stderr.flush()
                os._exit(MEMORY_EXIT_CODE)
            if os.getppid() != self.parent:
                os._exit(0)  # orphaned: nobody will read the answer
            time.sleep(WATCH_INTERVAL_S)


def _argument(args: Mapping[str, Any], name: str, kind: type) -> Any:
    value = args.get(name)
    if not isinstance(value, kind):
        what = {dict: "a JSON object", str: "a string"}.get(kind, kind.__name__)
        raise ValueError(f"The request needs '{name}' as {what}, received {shortened(value)}.")
    return value


def _handlers(started: float, watchdog: _Watchdog) -> dict[str, Callable[[Mapping[str, Any]], Any]]:
    """The requests this server answers; imports Keras and the library first."""
    import keras

    from core.build.stacking import check
    from core.build.templates import TEMPLATES
    from core.model_files.loading import summarize_model_file
    from core.training.ablation import ablate_run
    from core.training.evaluation import evaluate_run

    def ping(args):
        return {"backend": keras.backend.backend(), "pid": os.getpid(),
                "rss_bytes": psutil.Process().memory_info().rss, "memory_limit_bytes": watchdog.limit,
                "keras_version": keras.__version__, "uptime_s": time.monotonic() - started}

    handlers = {
        "check": lambda args: check(StackSpec.from_dict(_argument(args, "spec", dict))).to_dict(),
        "inspect_file": lambda args: summarize_model_file(_argument(args, "file", str)).to_dict(),
        "templates": lambda args: [template.to_dict() for template in TEMPLATES.values()],
        "evaluate": lambda args: evaluate_run(_argument(args, "run_id", str)),
        "ablation": lambda args: ablate_run(_argument(args, "run_id", str)),
        "ping": ping,
    }
    if os.environ.get(TEST_OPS_ENV) == "1":
        handlers.update(_test_handlers())
    return handlers


def _test_handlers() -> dict[str, Callable[[Mapping[str, Any]], Any]]:
    """Requests that only the tests use: hang, grow, fail."""

    def allocate(args):
        block = b"\x01" * int(args["bytes"])  # written, so resident
        time.sleep(float(args.get("hold_s", 10)))
        return {"allocated": len(block)}

    def sleep(args):
        time.sleep(float(args["seconds"]))
        return {}

    def fail(args):
        raise RuntimeError(str(args.get("message", "boom")))

    return {"sleep": sleep, "allocate": allocate, "raise": fail}


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _failure(request_id: Any, kind: str, error: str) -> dict:
    return {"id": request_id, "ok": False, "kind": kind, "error": error}


def _answer(raw: bytes, handlers: dict, watchdog: _Watchdog) -> tuple[str | None, dict]:
    """(op, answer) for one request line; every failure becomes an answer."""
    from core.model_files.loading import ModelFileRefused
    from core.storage.plain import to_plain

    request_id = None
    try:
        request = json.loads(raw)
        if not isinstance(request, dict):
            raise TypeError("not a JSON object")
        request_id, op, args = request.get("id"), request.get("op"), request.get("args", {})
        if not isinstance(op, str) or not isinstance(args, dict):
            raise TypeError("'op' must be a string and 'args' an object")
    except (ValueError, TypeError) as error:
        return None, _failure(request_id, "invalid", f"Not a request ({_one_line(error)}): send one JSON "
                                                     f"object per line with 'id', 'op' and 'args'.")
    if op not in handlers:
        return op, _failure(request_id, "invalid",
                            f"Unknown request '{op}'. Requests: {', '.join(sorted(handlers))}.")
    watchdog.current = f"request {request_id} '{op}'"
    try:
        return op, {"id": request_id, "ok": True, "result": to_plain(handlers[op](args))}
    except ModelFileRefused as refused:
        return op, _failure(request_id, "refused", _one_line(refused))
    except (ValueError, OSError) as error:  # SpecError, DataError, FileNotFoundError: the reason
        return op, _failure(request_id, "invalid", _one_line(error))
    except Exception as error:  # noqa: BLE001 - a bug answers this request; the server goes on
        traceback.print_exc(file=sys.stderr)
        return op, _failure(request_id, "internal", f"{type(error).__name__}: {_one_line(error)} (a bug in "
                                                    f"StackLab; the traceback is in {LOG_NAME})")
    finally:
        watchdog.current = "nothing (idle)"


def serve() -> int:
    """`python -m core.inspector.server`: answer JSON-line requests on stdin until EOF."""
    started = time.monotonic()
    # Answers go to a private copy of stdout; whatever else prints lands on stderr.
    answers = reserve_stdout()
    watchdog = _Watchdog(int(positive_from_env(MEMORY_ENV, DEFAULT_MEMORY_BYTES)))
    watchdog.start()
    handlers = _handlers(started, watchdog)
    import keras  # already loaded by _handlers

    def send(message: dict) -> None:
        answers.write(json.dumps(message) + "\n")
        answers.flush()

    send({"ready": True, **handlers["ping"]({})})
    for raw in sys.stdin.buffer:
        if not raw.strip():
            continue
        begun = time.monotonic()
        op, answer = _answer(raw, handlers, watchdog)
        send(answer)
        print(f"stacklab inspector: request {answer['id']} {op!r} "
              f"{'ok' if answer['ok'] else answer['kind']} in {time.monotonic() - begun:.2f} s",
              file=sys.stderr, flush=True)
        if op in MODEL_OPS:
            keras.backend.clear_session()  # after answering: the models it built are garbage now
    return 0


if __name__ == "__main__":
    sys.exit(serve())
