"""With STACKLAB_MLFLOW_TRACKING_URI set, a run a worker trained is in MLflow when it ends."""

import pytest

from core import runs
from core.tracking import export_note
from tests.core.runs.test_worker import iris_spec, wait_for

pytestmark = pytest.mark.slow


def test_a_worker_logs_its_run_to_the_tracking_store_when_it_ends(stacklab_home, tmp_path, monkeypatch):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("STACKLAB_MLFLOW_TRACKING_URI", uri)  # the workers inherit it
    run = runs.wait(runs.start(iris_spec(epochs=3)), timeout_s=300)
    assert run.status == "finished", run.error
    # The supervisor exports after the run is recorded: wait for its note.
    note = wait_for(lambda: export_note(run.id), timeout_s=120, what="the MLflow export")
    assert note["ok"], note
    client = MlflowClient(uri)
    (logged,) = client.search_runs([note["experiment_id"]], f"tags.`stacklab.run_id` = '{run.id}'")
    assert logged.info.status == "FINISHED"
    assert [point.step for point in client.get_metric_history(logged.info.run_id, "val_accuracy")] == [1, 2, 3]
    files = {item.path for item in client.list_artifacts(logged.info.run_id)}
    assert {"spec.json", "history.csv", "model"} <= files
