"""Where StackLab keeps its files: `$STACKLAB_HOME` (default `~/.stacklab`).

    $STACKLAB_HOME/uploads/<sha256>.<suffix>   uploaded files, content-addressed
    $STACKLAB_HOME/runs/<run id>/              one folder per run: model, history, logs
    $STACKLAB_HOME/stacklab.db                 the run store (SQLite)
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from core.processes import PROJECT_ROOT

RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")


def shipped_file(relative: str) -> Path:
    """A file StackLab ships beside its packages ("examples/seed_sequential.json",
    ".streamlit/config.toml"): in the checkout, or where `pip install` put it (share/stacklab).

    Raises:
        FileNotFoundError: it is in neither place.
    """
    for folder in (PROJECT_ROOT, Path(sys.prefix) / "share" / "stacklab"):
        if (folder / relative).is_file():
            return folder / relative
    raise FileNotFoundError(f"StackLab's {relative} is neither in {PROJECT_ROOT} nor in "
                            f"{Path(sys.prefix) / 'share' / 'stacklab'}: reinstall StackLab (`pip install .` "
                            f"in its checkout).")


def stacklab_home() -> Path:
    """`$STACKLAB_HOME`, default `~/.stacklab`; created on first use."""
    home = Path(os.environ.get("STACKLAB_HOME") or Path.home() / ".stacklab")
    home.mkdir(parents=True, exist_ok=True)
    return home


def uploads_dir() -> Path:
    folder = stacklab_home() / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def runs_dir() -> Path:
    folder = stacklab_home() / "runs"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def run_dir(run_id: str) -> Path:
    """The folder of one run. Raises ValueError for an id that could escape `runs/`."""
    if not RUN_ID_PATTERN.match(run_id or ""):
        raise ValueError(
            f"Invalid run id {run_id!r}: run ids are letters, digits, '_' and '-' "
            f"(as printed by `python -m core runs list`)."
        )
    return runs_dir() / run_id


def run_model_path(run_id: str) -> Path:
    """The model a finished run's user downloads and predicts with: model.keras, end to end
    (the preprocessing fitted on the training split in front of the trained stack)."""
    return run_dir(run_id) / "model.keras"


def run_stack_path(run_id: str) -> Path:
    """The trained stack of a finished run, on the encoded inputs training fed: what a later
    stack uses as a member. stack.keras, or model.keras for a run from before the end-to-end
    export (the stack was all it wrote)."""
    model = run_model_path(run_id)
    stack = model.with_name("stack.keras")
    return stack if stack.exists() or not model.exists() else model
