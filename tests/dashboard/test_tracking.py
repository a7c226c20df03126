"""The Runs page's MLflow button (dashboard/widgets/tracking.py), alone in an AppTest."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient
from streamlit.testing.v1 import AppTest

from core.tracking import RUN_ID_TAG, after_run
from dashboard.widgets import tracking
from tests.dashboard.apptest import fake_run, texts

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.usefixtures("no_workers")


def panel(run_id: str):
    from core import runs
    from dashboard.widgets import tracking

    tracking.mlflow_button(runs.get(run_id))


def show(run_id: str) -> AppTest:
    at = AppTest.from_function(panel, args=(run_id,), default_timeout=120)  # a click waits for the child
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def buttons(at: AppTest) -> list:
    return [button for button in at.button if button.key == "runs-mlflow-export"]


@pytest.fixture
def tracking_uri(tmp_path, monkeypatch) -> str:
    uri = f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"
    monkeypatch.setenv("STACKLAB_MLFLOW_TRACKING_URI", uri)
    return uri


def test_the_button_logs_the_run_then_says_where_it_went(tracking_uri):
    run_id = fake_run(epochs=2, status="finished")
    at = show(run_id)
    assert buttons(at)[0].label == "Log to MLflow" and not buttons(at)[0].disabled
    buttons(at)[0].click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert f"Logged run {run_id} as MLflow run" in at.success[0].value
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.search_runs([client.get_experiment_by_name("stacklab").experiment_id],
                               filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'")
    assert len(found) == 1 and len(client.get_metric_history(found[0].info.run_id, "val_accuracy")) == 2
    again = show(run_id)  # a later visit: the note
    assert buttons(again)[0].label == "Log to MLflow again"
    assert f"Logged to MLflow run {found[0].info.run_id} (experiment 'stacklab', {tracking_uri})" in texts(again)


def test_an_export_made_before_the_run_changed_says_so(tracking_uri):
    run_id = fake_run(epochs=1, status="stopped")
    assert after_run(run_id) is not None
    from core import runs

    runs.current_store().update(run_id, status="failed")
    assert "The run was stopped then; log it again for its failed state." in texts(show(run_id))


def test_a_refused_export_shows_the_reason(tmp_path, monkeypatch):
    (tmp_path / "junk.db").write_bytes(b"\x00junk" * 1000)
    monkeypatch.setenv("STACKLAB_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'junk.db'}")
    run_id = fake_run(epochs=1, status="finished")
    at = show(run_id)
    buttons(at)[0].click().run()
    assert not at.exception and not at.success
    assert "to MLflow at sqlite:" in at.error[0].value and "file is not a database" in at.error[0].value


def test_a_failed_automatic_export_is_shown(tmp_path, monkeypatch):
    (tmp_path / "junk.db").write_bytes(b"\x00junk" * 1000)
    monkeypatch.setenv("STACKLAB_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'junk.db'}")
    run_id = fake_run(epochs=1, status="failed")
    assert after_run(run_id) is None  # what the worker did when the run ended
    at = show(run_id)
    assert at.warning[0].value.startswith("The automatic MLflow export failed: Logging run")
    assert buttons(at)[0].label == "Log to MLflow"


def test_without_a_tracking_uri_the_button_says_what_to_set(monkeypatch):
    monkeypatch.delenv("STACKLAB_MLFLOW_TRACKING_URI", raising=False)
    at = show(fake_run(epochs=1, status="finished"))
    assert buttons(at)[0].disabled and "STACKLAB_MLFLOW_TRACKING_URI" in buttons(at)[0].help
    assert "To log runs to MLflow, set STACKLAB_MLFLOW_TRACKING_URI and restart the dashboard." in texts(at)


@pytest.mark.parametrize("case", ["running", "mlflow not installed"])
def test_no_button_for_an_active_run_or_without_mlflow(case, tracking_uri, monkeypatch):
    if case == "mlflow not installed":
        real = tracking.importlib.util.find_spec
        monkeypatch.setattr(tracking.importlib.util, "find_spec",
                            lambda name, *args: None if name == "mlflow" else real(name, *args))
    run_id = fake_run(epochs=1, status=None if case == "running" else "finished")
    at = show(run_id)
    assert buttons(at) == [] and texts(at) == ""


def test_the_dashboard_process_never_imports_mlflow():
    code = ("import sys, dashboard.widgets.tracking as t; t.mlflow_installed(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'keras', 'tensorflow')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
