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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ["STACKLAB_HOME"] = tempfile.mkdtemp(prefix="stacklab-open-every-page-")

from streamlit.testing.v1 import AppTest  # noqa: E402

from core.inspector import get_client  # noqa: E402
from core.runs import scheduler  # noqa: E402
from tests.fake_runs import finished_run_with_artifacts  # noqa: E402

WATCHED = ("tensorflow", "keras", "tf_keras", "jax", "torch", "core")


def main() -> int:
    scheduler._spawn = lambda run_id: None  # workers are other processes; keep this one alone
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

    at.switch_page("app_pages/sweeps.py").run()
    check(at, "sweeps")
    opened.append("sweeps")

    modules = sorted(name for name in sys.modules if name.split(".")[0] in WATCHED)
    get_client().close()
    print(json.dumps({"pages": opened, "errors": errors, "modules": modules}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
