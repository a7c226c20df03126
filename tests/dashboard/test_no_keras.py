"""The Streamlit process never imports TensorFlow or Keras, whatever page is opened.

DESIGN.md: with Keras imported, Streamlit clears the Keras session and collects garbage
after every rerun (~150 ms each), and training beside the server runs 10-60x slower. The
pages are opened in a fresh interpreter (this test process may have imported Keras). Which
core packages the dashboard may import at all is import-linter's to check (pyproject.toml,
run by the test command); this test checks what really gets imported when the pages run.
"""

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).with_name("open_every_page.py")
# The Keras side of core: only the inspector and the workers import these.
KERAS_SIDE_PACKAGES = ("core.build", "core.training", "core.export")


def test_opening_every_page_imports_no_keras_or_tensorflow(tmp_path):
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["pages"] == ["train", "data", "assemble", "runs", "sweeps"]
    assert report["errors"] == []
    modules = set(report["modules"])
    assert not {m for m in modules if m.split(".")[0] in ("tensorflow", "keras", "tf_keras", "jax", "torch")}
    assert not {m for m in modules if m.startswith(KERAS_SIDE_PACKAGES)}
    assert {"core.inspector", "core.runs", "core.data"} <= modules  # the pages really ran
