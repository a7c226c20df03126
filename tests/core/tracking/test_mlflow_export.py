"""MLflow export against a local SQLite tracking store: what a reader of the store sees."""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core import runs
from core.runs import RunNotFound
from core.spec.events import EpochEnd
from core.tracking import (
    RUN_ID_TAG,
    MlflowMissing,
    TrackingError,
    after_run,
    export_note,
    export_run_to_mlflow,
    log_run,
    mlflow_export,
)
from tests.core.tracking.conftest import ARTIFACT_FILES, epoch_end, make_run

pytestmark = pytest.mark.usefixtures("no_workers")


def history(client: MlflowClient, mlflow_run_id: str, key: str) -> list[tuple[int, float, int]]:
    return sorted((m.step, m.value, m.timestamp) for m in client.get_metric_history(mlflow_run_id, key))


def test_the_metrics_a_reader_of_the_store_sees(tracking_uri):
    run_id = make_run(epochs=3)
    mlflow_run_id = export_run_to_mlflow(run_id, tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    expected = [epoch_end(epoch) for epoch in (1, 2, 3)]
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        assert history(client, mlflow_run_id, key) == [
            (row.epoch, pytest.approx(row.metrics[key]), int(row.ended_at * 1000)) for row in expected]
    learning_rates = [v for _, v, _ in history(client, mlflow_run_id, "learning_rate")]
    assert learning_rates == pytest.approx([0.002, 0.001, 0.002 / 3])
    assert [v for _, v, _ in history(client, mlflow_run_id, "duration_s")] == [3.0, 4.0, 5.0]
    assert [v for _, v, _ in history(client, mlflow_run_id, "update/encoder")] == pytest.approx([0.1, 0.05, 0.1 / 3])
    # The latest value of each metric is the last epoch's.
    assert client.get_run(mlflow_run_id).data.metrics["val_accuracy"] == pytest.approx(0.75)


def test_params_tags_and_status(tracking_uri):
    run_id = make_run(epochs=3)
    mlflow_run_id = export_run_to_mlflow(run_id, tracking_uri, experiment="stacklab-params")
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_run(mlflow_run_id)
    params, tags = found.data.params, found.data.tags
    assert params["train.learning_rate"] == "0.002" and params["train.epochs"] == "3"
    assert params["members.encoder.template"] == "mlp"
    assert params["members.encoder.params.hidden_units"] == "[8]"
    assert params["dataset.name"] == "iris" and params["mode"] == "sequential"
    assert "layout" not in params
    assert tags[RUN_ID_TAG] == run_id and tags["stacklab.mode"] == "sequential"
    assert tags["stacklab.dataset"] == "iris" and tags["stacklab.status"] == "finished"
    assert tags["stacklab.devices"] == "CPU" and tags["stacklab.best"] == "val_accuracy=0.75 at epoch 3"
    assert found.info.run_name == f"tiny-{run_id}"
    assert client.get_experiment(found.info.experiment_id).name == "stacklab-params"
    run = runs.get(run_id)
    assert found.info.status == "FINISHED" and found.info.end_time == int(run.ended_at * 1000)
    assert found.info.start_time == int(run.started_at * 1000)


def test_the_run_files_are_listed_and_the_model_is_under_model(tracking_uri, tmp_path):
    run_id = make_run()
    member_file = runs.get(run_id).folder / "members" / "encoder.keras"  # a member stack.py loads
    member_file.parent.mkdir()
    member_file.write_bytes(b"PK member")
    runs.current_store().add_artifact(run_id, "members/encoder.keras", member_file)
    mlflow_run_id = export_run_to_mlflow(run_id, tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    top = {item.path for item in client.list_artifacts(mlflow_run_id)}
    assert top == {"model", "members", "stack.keras", "data.json", "history.csv", "spec.json", "stack.py"}
    assert [item.path for item in client.list_artifacts(mlflow_run_id, "members")] == ["members/encoder.keras"]
    assert [item.path for item in client.list_artifacts(mlflow_run_id, "model")] == ["model/model.keras"]
    local = client.download_artifacts(mlflow_run_id, "model/model.keras", str(tmp_path))
    assert Path(local).read_bytes() == ARTIFACT_FILES["model.keras"]


def test_a_failed_run_without_artifacts_keeps_its_spec_and_reason(tracking_uri):
    run_id = make_run(epochs=1, status="failed", artifacts=False)
    (runs.get(run_id).folder / "traceback.txt").write_text("Traceback: boom\n")
    mlflow_run_id = export_run_to_mlflow(run_id, tracking_uri)
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_run(mlflow_run_id)
    assert found.info.status == "FAILED" and found.data.tags["stacklab.error"] == "failed for the test"
    assert {item.path for item in client.list_artifacts(mlflow_run_id)} == {"spec.json", "traceback.txt"}


def test_a_second_export_updates_the_same_mlflow_run(tracking_uri):
    run_id = make_run(epochs=2, status="stopped")
    first = log_run(run_id, tracking_uri)
    again = log_run(run_id, tracking_uri)
    assert again.mlflow_run_id == first.mlflow_run_id and first.created and not again.created
    assert again.params_logged == 0 and again.metric_points_logged == 0
    client = MlflowClient(tracking_uri=tracking_uri)
    assert len(history(client, first.mlflow_run_id, "val_accuracy")) == 2
    assert client.get_run(first.mlflow_run_id).info.status == "KILLED"
    # Resumed from its epoch 1 checkpoint: epoch 2 trained again (another value), epoch 3 new.
    store = runs.current_store()
    store.update(run_id, status="running", ended_at=None, error="")
    store.record(run_id, epoch_end(2, val_accuracy=0.9))
    store.record(run_id, epoch_end(3, val_accuracy=0.95))
    store.update(run_id, status="finished", ended_at=1_800_000_000.0)
    third = log_run(run_id, tracking_uri)
    assert third.mlflow_run_id == first.mlflow_run_id and third.metric_points_logged > 0
    found = client.search_runs([third.experiment_id], filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'")
    assert len(found) == 1
    points = history(client, first.mlflow_run_id, "val_accuracy")
    assert [(step, round(value, 6)) for step, value, _ in points] == [(1, 0.55), (2, 0.65), (2, 0.9), (3, 0.95)]
    assert found[0].data.metrics["val_accuracy"] == pytest.approx(0.95)
    assert found[0].info.status == "FINISHED" and found[0].data.tags["stacklab.status"] == "finished"
    assert found[0].info.end_time == 1_800_000_000_000


def test_nan_metrics_are_logged_once(tracking_uri):
    run_id = make_run(epochs=0, status="failed", artifacts=False)
    runs.current_store().record(run_id, EpochEnd(epoch=1, phase="train", duration_s=1.0, learning_rate=1e-3,
                                                 metrics={"loss": math.nan}, member_updates={}))
    first = log_run(run_id, tracking_uri)
    again = log_run(run_id, tracking_uri)
    assert again.metric_points_logged == 0
    values = history(MlflowClient(tracking_uri=tracking_uri), first.mlflow_run_id, "loss")
    assert len(values) == 1 and math.isnan(values[0][1])


def test_an_active_run_is_logged_as_running(tracking_uri):
    run_id = make_run(epochs=1, status="running", artifacts=False)
    mlflow_run_id = export_run_to_mlflow(run_id, tracking_uri)
    assert MlflowClient(tracking_uri=tracking_uri).get_run(mlflow_run_id).info.status == "RUNNING"


def test_the_files_go_next_to_the_sqlite_store_never_into_the_current_folder(tmp_path, monkeypatch):
    start_folder = tmp_path / "started-here"
    start_folder.mkdir()
    monkeypatch.chdir(start_folder)
    uri = f"sqlite:///{tmp_path / 'store' / 'mlflow.db'}"
    (tmp_path / "store").mkdir()
    mlflow_run_id = export_run_to_mlflow(make_run(), uri)
    assert list(start_folder.iterdir()) == []
    artifact_uri = MlflowClient(tracking_uri=uri).get_run(mlflow_run_id).info.artifact_uri
    assert artifact_uri.startswith((tmp_path / "store" / "mlartifacts").as_uri())
    assert (tmp_path / "store" / "mlartifacts").is_dir()


def test_the_note_says_where_the_run_went(tracking_uri):
    run_id = make_run()
    mlflow_run_id = export_run_to_mlflow(run_id, tracking_uri)
    note = export_note(run_id)
    assert note["ok"] and note["mlflow_run_id"] == mlflow_run_id and note["status"] == "finished"
    assert note["experiment"] == "stacklab" and note["tracking_uri"] == tracking_uri and note["url"] is None


def test_without_mlflow_the_error_says_how_to_install_it(monkeypatch, tracking_uri):
    run_id = make_run()
    monkeypatch.setitem(sys.modules, "mlflow", None)  # `import mlflow` raises ImportError
    with pytest.raises(MlflowMissing, match=r"mlflow-skinny.*pip install -r requirements-tracking\.txt"):
        export_run_to_mlflow(run_id, tracking_uri)


def test_a_store_needing_a_package_mlflow_skinny_lacks_says_which(monkeypatch, tracking_uri):
    run_id = make_run()

    def client_without_sqlalchemy(tracking_uri):
        raise ModuleNotFoundError("No module named 'sqlalchemy'", name="sqlalchemy")

    monkeypatch.setattr("mlflow.MlflowClient", client_without_sqlalchemy)
    with pytest.raises(MlflowMissing, match=r"needs the package sqlalchemy.*`pip install sqlalchemy`"):
        export_run_to_mlflow(run_id, tracking_uri)


def test_without_a_tracking_uri_the_error_names_the_variable(monkeypatch):
    monkeypatch.delenv("STACKLAB_MLFLOW_TRACKING_URI", raising=False)
    with pytest.raises(ValueError, match="pass --tracking-uri or set STACKLAB_MLFLOW_TRACKING_URI"):
        export_run_to_mlflow(make_run())


def test_the_tracking_uri_comes_from_the_environment(monkeypatch, tracking_uri):
    monkeypatch.setenv("STACKLAB_MLFLOW_TRACKING_URI", tracking_uri)
    mlflow_run_id = export_run_to_mlflow(make_run())
    assert MlflowClient(tracking_uri=tracking_uri).get_run(mlflow_run_id).info.status == "FINISHED"


def test_an_unknown_run_is_refused_before_mlflow_is_touched(tracking_uri):
    with pytest.raises(RunNotFound, match="No run with id 'nope'"):
        export_run_to_mlflow("nope", tracking_uri)


def test_a_deleted_experiment_is_named_with_how_to_restore_it(tracking_uri):
    client = MlflowClient(tracking_uri=tracking_uri)
    client.delete_experiment(client.create_experiment("gone", artifact_location=None))
    with pytest.raises(TrackingError, match="experiment 'gone' .* is deleted. Restore it"):
        export_run_to_mlflow(make_run(), tracking_uri, experiment="gone")


@pytest.mark.parametrize("store", ["not a database", "a file in the way", "no server"])
def test_a_store_that_refuses_is_a_tracking_error_naming_it(store, tmp_path, monkeypatch):
    run_id = make_run()
    (tmp_path / "junk").write_bytes(b"\x00junk" * 1000)
    uri, reason = {"not a database": (f"sqlite:///{tmp_path / 'junk'}", "file is not a database"),
                   "a file in the way": (f"sqlite:///{tmp_path / 'junk' / 'mlflow.db'}", "File exists"),
                   "no server": ("http://127.0.0.1:9", "Max retries exceeded")}[store]
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    with pytest.raises(TrackingError, match=rf"Logging run {run_id} to MLflow at {re.escape(uri)} failed: .*{reason}"):
        export_run_to_mlflow(run_id, uri)


def test_passwords_never_reach_notes_or_messages():
    assert mlflow_export.redact("postgresql://me:secret@db.example/mlflow") == "postgresql://me:***@db.example/mlflow"
    assert mlflow_export.redact("http://mlflow.example:5000") == "http://mlflow.example:5000"
    assert mlflow_export.run_url("https://u:p@ml.example/", "3", "abc") == "https://u:***@ml.example/#/experiments/3/runs/abc"


# -- after_run: what the worker calls when a run ends ----------------------------------------


def test_after_run_does_nothing_without_the_variable(monkeypatch):
    monkeypatch.delenv("STACKLAB_MLFLOW_TRACKING_URI", raising=False)
    run_id = make_run()
    assert after_run(run_id) is None and export_note(run_id) is None


def test_after_run_exports_to_the_configured_store_and_experiment(monkeypatch, tracking_uri):
    monkeypatch.setenv("STACKLAB_MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.setenv("STACKLAB_MLFLOW_EXPERIMENT", "from-workers")
    run_id = make_run()
    mlflow_run_id = after_run(run_id)
    client = MlflowClient(tracking_uri=tracking_uri)
    found = client.get_run(mlflow_run_id)
    assert found.data.tags[RUN_ID_TAG] == run_id
    assert client.get_experiment(found.info.experiment_id).name == "from-workers"
    assert export_note(run_id)["ok"] is True


@pytest.mark.parametrize("cause", ["mlflow missing", "store refuses", "run deleted", "a bug"])
def test_after_run_never_raises_and_leaves_the_reason(cause, monkeypatch, tmp_path, tracking_uri, capsys):
    monkeypatch.setenv("STACKLAB_MLFLOW_TRACKING_URI", tracking_uri)
    run_id = make_run()
    expected = {"mlflow missing": "pip install -r requirements-tracking.txt", "store refuses": "file is not a database",
                "run deleted": "No run with id", "a bug": "boom"}[cause]
    if cause == "mlflow missing":
        monkeypatch.setitem(sys.modules, "mlflow", None)
    elif cause == "store refuses":
        (tmp_path / "junk.db").write_bytes(b"\x00junk" * 1000)
        monkeypatch.setenv("STACKLAB_MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'junk.db'}")
    elif cause == "run deleted":
        runs.current_store().delete(run_id)  # the row only: the folder (and its note) stays
    else:
        def broken(*args, **kwargs):
            raise RuntimeError("boom")
        monkeypatch.setattr(mlflow_export, "log_run", broken)
    assert after_run(run_id) is None
    printed = capsys.readouterr().err  # the worker's stderr is the run's worker.log
    assert f"MLflow export of run {run_id}" in printed and expected in printed
    note = export_note(run_id)
    assert note["ok"] is False and expected in note["error"]


def test_after_run_leaves_mlflow_retry_settings_as_they_were(monkeypatch, tracking_uri):
    monkeypatch.setenv("STACKLAB_MLFLOW_TRACKING_URI", tracking_uri)
    monkeypatch.delenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", raising=False)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "7")
    seen = {}

    def spy(*args, **kwargs):
        import os

        seen.update(retries=os.environ.get("MLFLOW_HTTP_REQUEST_MAX_RETRIES"),
                    timeout=os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT"))
        raise RuntimeError("stop here")

    monkeypatch.setattr(mlflow_export, "log_run", spy)
    after_run(make_run())
    assert seen == {"retries": "2", "timeout": "7"}  # bounded while exporting; the user's own choice kept
    import os

    assert "MLFLOW_HTTP_REQUEST_MAX_RETRIES" not in os.environ and os.environ["MLFLOW_HTTP_REQUEST_TIMEOUT"] == "7"


def test_importing_core_tracking_imports_neither_mlflow_nor_keras():
    code = ("import sys, core.tracking, core.tracking.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('mlflow', 'keras', 'tensorflow', 'jax')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[3])
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"
