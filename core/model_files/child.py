"""Loading a model file in a child process, under a time and a memory limit.

`verify_in_child` runs `python -m core.model_files.loading --verify PATH`, which enters `child_main`: it
lowers its own resource limits before Keras (and TensorFlow's memory) is imported, checks the
file statically again, loads it with `safe_mode=True, compile=False`, and prints one JSON
line: the summary fields, or the reason it refused. A child that is stopped or dies answers
through its exit status, which `death_reason` words.

Example:
    >>> fields = verify_in_child(Path("/tmp/copy/model.keras"), "model.keras", LoadLimits())
    >>> fields["model_class"], fields["total_params"]
    ('Sequential', 53)
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from core.limits import format_bytes
from core.model_files.container_checks import MODEL_FORMATS, check_model_file
from core.model_files.limits import (
    ENV_PREFIX,
    LoadLimits,
    ModelFileRefused,
    first_line,
    refusals_for,
    refuse,
)
from core.model_files.summary import summary_fields
from core.processes import PROJECT_ROOT, answer, child_env, read_answer, reserve_stdout, signal_name

# One TensorFlow/BLAS thread and two malloc arenas keep the child's address space (what
# RLIMIT_AS counts) about the same on any core count; no GPU: verifying is CPU work.
# Without oneDNN, TensorFlow's CPU allocator fails at once when memory runs out, instead
# of retrying for 10 s, and loading maps less memory.
CHILD_ENV = {
    "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": "", "JAX_PLATFORMS": "cpu",
    "TF_NUM_INTRAOP_THREADS": "1", "TF_NUM_INTEROP_THREADS": "1", "OMP_NUM_THREADS": "1",
    "MALLOC_ARENA_MAX": "2", "TF_ENABLE_ONEDNN_OPTS": "0",
}
OUT_OF_MEMORY_SIGNS = ("resourceexhausted", "resource_exhausted", "out of memory", "failed to map",
                       "cannot allocate memory", "bad_alloc")


def verify_in_child(path: Path, file_name: str, limits: LoadLimits) -> dict:
    """Load the file at `path` in a child process under `limits`; return its summary fields.

    Raises:
        ModelFileRefused: the child refused the file (a static check or Keras), ran out of
            time or memory, or died; the message names `file_name` and the cause.
    """
    env = child_env(**CHILD_ENV, **limits.to_env())
    command = [sys.executable, "-m", "core.model_files.loading", "--verify", str(path)]
    try:
        done = subprocess.run(command, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=limits.timeout_s, cwd=PROJECT_ROOT)
    except subprocess.TimeoutExpired:
        raise ModelFileRefused(
            file_name,
            f"loading did not finish within {limits.timeout_s:g} s, so the loader process was "
            f"stopped; if the model is genuine, raise {ENV_PREFIX}TIMEOUT_S.",
        ) from None
    details = done.stderr.decode("utf-8", errors="replace")[-4000:]
    result = read_answer(done.stdout)
    if isinstance(result, dict) and result.get("ok") is True:
        return result["model"]
    if isinstance(result, dict) and isinstance(result.get("reason"), str):
        raise ModelFileRefused(file_name, result["reason"], details)
    raise ModelFileRefused(file_name, death_reason(done.returncode, limits), details)


def death_reason(returncode: int, limits: LoadLimits) -> str:
    memory = _memory_reason(limits)
    if returncode < 0:
        name = signal_name(returncode)
        if name == "SIGXCPU":
            return f"the loader process used up its CPU time ({name}); {memory}"
        return f"the loader process died ({name}); most likely {memory}"
    return f"the loader process exited with status {returncode} and no result; most likely {memory}"


def _memory_reason(limits: LoadLimits, cause: str = "") -> str:
    return (
        f"loading needs more than the {format_bytes(limits.memory_bytes)} memory limit"
        f"{f' ({cause})' if cause else ''}; if the model is genuine, raise "
        f"{ENV_PREFIX}MEMORY_BYTES."
    )


def child_main(path: str) -> int:
    """`python -m core.model_files.loading --verify PATH`: limits first, then Keras; prints one JSON line."""
    limits = LoadLimits.from_env()
    _lower_limit("RLIMIT_AS", limits.memory_bytes)
    _lower_limit("RLIMIT_CORE", 0)
    _lower_limit("RLIMIT_CPU", math.ceil(2 * limits.timeout_s) + 10)  # if the parent is gone
    # Anything Keras or TensorFlow prints goes to stderr; stdout carries only the result.
    result_stream = reserve_stdout()
    try:
        result = {"ok": True, "model": _load_and_describe(Path(path), limits)}
    except ModelFileRefused as refused:
        result = {"ok": False, "reason": refused.reason}
    except MemoryError:
        result = {"ok": False, "reason": _memory_reason(limits, "MemoryError")}
    except Exception as error:  # noqa: BLE001 - whatever Keras raises on this file is the answer
        # TensorFlow raises ResourceExhaustedError, JAX "RESOURCE_EXHAUSTED"; a Keras that
        # fails to import under the address-space limit raises whatever ran out first.
        text = f"{type(error).__name__} {error}".lower()
        if "keras" not in sys.modules:
            reason = _memory_reason(limits, f"Keras failed to start: {type(error).__name__}")
        elif any(sign in text for sign in OUT_OF_MEMORY_SIGNS):
            reason = _memory_reason(limits, type(error).__name__)
        else:
            reason = f"Keras could not load it: {first_line(error)}"
        result = {"ok": False, "reason": reason}
    answer(result_stream, **result)
    return 0 if result["ok"] else 1


def _lower_limit(name: str, value: int) -> None:
    """Set a resource limit to `value`, or keep a stricter one this process inherited."""
    import resource

    kind = getattr(resource, name)
    value = min([value] + [limit for limit in resource.getrlimit(kind) if limit != resource.RLIM_INFINITY])
    resource.setrlimit(kind, (value, value))


def _load_and_describe(path: Path, limits: LoadLimits) -> dict:
    fmt = MODEL_FORMATS.get(path.suffix.lower())
    with refusals_for(path.name):  # static checks again: this entry point can be run by hand
        if fmt is None:
            refuse("it is not a .keras or .h5 file.")
        check_model_file(path, fmt, limits)
    import keras

    model = keras.saving.load_model(path, safe_mode=True, compile=False)
    return summary_fields(model)
