"""Open every dashboard page and use its main controls, then report which modules got imported.

Run as a script in a fresh interpreter (test_no_keras.py does): it prints one JSON line
{"pages": [...], "errors": [...], "modules": [...]} where "modules" lists every imported
module of tensorflow, keras, jax and torch, and of `core`. The Streamlit process must never
import Keras or TensorFlow (DESIGN.md): model questions go to the inspector process and
training to workers, which are other processes.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ["STACKLAB_HOME"] = tempfile.mkdtemp(prefix="stacklab-open-every-page-")

from streamlit.testing.v1 import AppTest  # noqa: E402

from core import runs  # noqa: E402
from core.events import EpochEnd, RunStarted  # noqa: E402
from core.inspector import get_client  # noqa: E402
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec  # noqa: E402

WATCHED = ("tensorflow", "keras", "tf_keras", "jax", "torch", "core")
TINY = StackSpec(name="tiny", train=TrainSpec(epochs=2), dataset=DatasetSpec(name="iris"),
                 members=(MemberSpec("encoder", template="mlp"), MemberSpec("head", template="dense_head")))


def finished_run_with_artifacts() -> str:
    """A finished run as the store holds it, with artifact files (no worker, no Keras)."""
    store = runs.store()
    run_id = runs.start(TINY)
    store.record(run_id, RunStarted(epochs=2, steps_per_epoch=4, total_params=10, trainable_params=10))
    for epoch in (1, 2):
        store.record(run_id, EpochEnd(epoch=epoch, phase="train", duration_s=0.1, learning_rate=1e-3,
                                      metrics={"loss": 1 / epoch, "val_loss": 1.1 / epoch},
                                      member_updates={"encoder": 0.1, "head": 0.2}))
    folder = runs.get(run_id).folder
    for name in ("model.keras", "history.csv", "stack.py", "spec.json"):
        (folder / name).write_text("not used")
        store.add_artifact(run_id, name, folder / name)
    store.update(run_id, status="finished", ended_at=time.time())
    return run_id


def main() -> int:
    runs._spawn = lambda run_id: None  # workers are other processes; keep this one alone
    finished_run_with_artifacts()
    errors: list[str] = []
    opened: list[str] = []

    def check(at: AppTest, where: str) -> None:
        errors.extend(f"{where}: {e.value}" for e in at.exception)

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    check(at, "train")
    at.number_input(key="draft-train-epochs").set_value(2).run()
    at.button(key="train-start").click().run()
    at.run()
    check(at, "train (live)")
    opened.append("train")

    at.switch_page("app_pages/data.py").run()
    at.selectbox(key="draft-data-builtin").set_value("iris").run()
    check(at, "data")
    opened.append("data")

    at.switch_page("app_pages/assemble.py").run()
    at.selectbox(key="draft-mode").set_value("fusion").run()
    at.toggle(key=at.toggle[0].key).set_value(True).run()
    at.text_input(key="asm-rule-regex").set_value(".*dense.*").run()
    check(at, "assemble")
    opened.append("assemble")

    at.switch_page("app_pages/runs.py").run()
    at.session_state["runs-table"] = {"selection": {"rows": [0, 1], "columns": [], "cells": []}}
    at.run()
    check(at, "runs")
    opened.append("runs")

    modules = sorted(name for name in sys.modules if name.split(".")[0] in WATCHED)
    get_client().close()
    print(json.dumps({"pages": opened, "errors": errors, "modules": modules}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
