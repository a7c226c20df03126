"""Child processes: their environment, the stdout they keep for answers, and how their end reads.
No Keras import.

StackLab runs Keras in child processes (workers, the inspector, the model-file verifier,
TensorBoard). Each is started with `python -m core...` from any working directory, so its
environment puts the project root on PYTHONPATH (`child_env`); each that answers on stdout
keeps a private copy of it and sends everything else that prints to stderr
(`reserve_stdout`); and a parent that sees one die says so in words (`exit_words`).

Example:
    >>> env = child_env(STACKLAB_HOME="/tmp/home")
    >>> exit_words(-9)
    'killed by SIGKILL (signal 9): usually the out-of-memory killer (or `kill -9`)'
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any, Mapping, TextIO

PROJECT_ROOT = Path(__file__).resolve().parents[1]

# What a signal usually means when it ends a StackLab child.
SIGNAL_HINTS = {
    signal.SIGKILL: "usually the out-of-memory killer (or `kill -9`)",
    signal.SIGSEGV: "a crash in native code (TensorFlow, a driver)",
    signal.SIGTERM: "terminated from outside",
    signal.SIGXCPU: "it used up its CPU time limit",
}


def child_env(base: Mapping[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a `python -m core...` child: `base` (default os.environ) with the
    project root first on PYTHONPATH, then `extra`."""
    env = dict(os.environ if base is None else base)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def reserve_stdout() -> TextIO:
    """Keep stdout for a child's answers: returns a private copy of it, and points file
    descriptor 1 at stderr, so whatever Keras, TensorFlow or a library prints cannot mix
    into the answers."""
    answers = os.fdopen(os.dup(1), "w", encoding="utf-8")
    os.dup2(2, 1)
    return answers


def answer(answers: TextIO | None, **fields: Any) -> None:
    """Write one JSON line to a child's reserved stdout (`reserve_stdout`); nothing without one."""
    if answers is not None:
        answers.write(json.dumps(fields) + "\n")
        answers.flush()


def read_answer(stdout: str | bytes) -> Any:
    """The answer a child wrote (`answer`): the JSON of its last line on stdout, or None when
    it wrote none (it died, or printed something else last)."""
    text = stdout.decode("utf-8", errors="replace") if isinstance(stdout, bytes) else stdout
    try:
        return json.loads(text.strip().splitlines()[-1])
    except (IndexError, ValueError):
        return None


def refused(error: BaseException, answers: TextIO | None) -> int:
    """A command's refusal: its reason on one line, on stderr and (for --json) as the answer;
    returns the exit code 1."""
    message = " ".join(str(error).split()) or type(error).__name__
    answer(answers, ok=False, error=message)
    print(f"error: {message}", file=sys.stderr)
    return 1


def signal_name(returncode: int) -> str:
    """'SIGKILL' for a child ended by signal 9 (return code -9); 'signal 99' for one with no name."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def exit_words(returncode: int) -> str:
    """How a child ended, in words: 'killed by SIGKILL (signal 9): usually ...' or 'exited with code 3'."""
    if returncode >= 0:
        return f"exited with code {returncode}"
    hint = SIGNAL_HINTS.get(-returncode)
    return f"killed by {signal_name(returncode)} (signal {-returncode})" + (f": {hint}" if hint else "")
