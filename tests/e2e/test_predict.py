"""The issue's path in a real browser: a CSV uploaded on the Data page, trained, then the run's
Predict tab on an uploaded file (predictions with class names, downloaded as CSV), and the
model exported to ONNX, downloaded, and run in onnxruntime to the same numbers.
Screenshots go to test-artifacts/e2e/."""

from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from playwright.sync_api import expect

from tests.e2e import ui
from tests.examples import example

pytestmark = pytest.mark.e2e

EPOCHS = 2
EXPORT_TIMEOUT_MS = 240_000  # the child imports TensorFlow, converts and verifies
# A small MLP for the CSV's columns (the default stack is a CNN for images).
SPEC = {"schema_version": 1, "name": "customers_mlp", "mode": "sequential",
        "members": [{"name": "encoder", "template": "mlp", "params": {"hidden_units": [16]}},
                    {"name": "head", "template": "dense_head", "params": {"hidden_units": []}}],
        "train": {"epochs": EPOCHS, "batch_size": 16, "learning_rate": 0.01, "validation_split": 0.25},
        "dataset": {"source": "builtin", "name": "iris"}}


def csv_maker():
    """examples/csv_end_to_end.py's customers CSV (age, income, color, bought)."""
    return example("csv_end_to_end").write_csv


def test_train_on_a_csv_then_predict_an_uploaded_file_and_download_csv_and_onnx(tab, server, server_runs,
                                                                                 artifacts, tmp_path):
    training = csv_maker()(tmp_path / "customers.csv", rows=400, seed=0)
    new = pd.read_csv(csv_maker()(tmp_path / "new.csv", rows=30, seed=1)).drop(columns="bought")
    new.insert(0, "customer_id", [f"c{i:03d}" for i in range(len(new))])  # a column the model does not take
    new.loc[0, "color"] = "violet"  # never seen in training: the lookup's out-of-vocabulary slot
    rows = tmp_path / "new_customers.csv"
    new.to_csv(rows, index=False)
    spec_path = tmp_path / "customers_mlp.json"
    spec_path.write_text(json.dumps(SPEC))

    ui.open_app(tab, server.url, "assemble")  # the MLP stack, imported as a user would
    tab.get_by_text("Import spec (.json)", exact=True).click()
    ui.upload(tab, "asm-import", spec_path)
    expect(ui.keyed(tab, "draft-name").locator("input")).to_have_value("customers_mlp")
    tab.keyboard.press("Escape")  # closes the import popover, as a user's click elsewhere would
    ui.wait_idle(tab)

    ui.go_to(tab, "Data")
    ui.keyed(tab, "draft-data-source").get_by_text("CSV file", exact=True).click()
    ui.wait_idle(tab)
    ui.upload(tab, "data-upload-csv", training)
    samples = tab.get_by_test_id("stMetric").filter(has_text="Samples")
    expect(samples).to_contain_text("400")
    ui.wait_idle(tab)
    assert ui.errors_shown(tab) == []
    ui.shot(tab, artifacts, "predict-data-page", focus=samples)

    ui.go_to(tab, "Train")
    run_id = ui.start_training(tab, EPOCHS)
    ui.wait_until_finished(tab, run_id)
    assert server_runs.get(run_id).status == "finished"

    ui.go_to(tab, "Runs")
    expect(tab.get_by_role("heading", name=re.compile(re.escape(run_id)))).to_be_visible()
    tab.get_by_role("tab", name="Predict").click()
    expect(tab.get_by_text("A CSV with the columns age (number), income (number), color (text)").first).to_be_visible()
    ui.upload(tab, "runs-predict-upload", rows)
    expect(tab.get_by_role("button", name="Download predictions (.csv)", exact=True)).to_be_visible(
        timeout=ui.TRAIN_TIMEOUT_MS)
    ui.wait_idle(tab)
    assert ui.errors_shown(tab) == []
    expect(tab.get_by_text("Ignored 1 column(s) the model does not take: ['customer_id'].")).to_be_visible()
    table = ui.keyed(tab, "runs-predict-result").get_by_test_id("stDataFrame")
    expect(table).to_be_visible()
    ui.shot(tab, artifacts, "predict-tab", focus=table)
    predictions = pd.read_csv(ui.download(tab, "Download predictions (.csv)", tmp_path))
    assert list(predictions.columns) == ["predicted", "no", "yes"] and len(predictions) == len(new)
    assert set(predictions["predicted"]) <= {"no", "yes"}
    np.testing.assert_allclose(predictions["no"] + predictions["yes"], 1.0, atol=1e-6)
    assert (predictions["predicted"] == np.where(predictions["yes"] > 0.5, "yes", "no")).all()

    ui.button(tab, "runs-export-onnx").click()
    verified = tab.get_by_test_id("stAlertContentSuccess").filter(has_text="max |ONNX - Keras|")
    expect(verified).to_be_visible(timeout=EXPORT_TIMEOUT_MS)
    ui.wait_idle(tab)
    ui.shot(tab, artifacts, "predict-onnx-exported", focus=verified)
    onnx_path = ui.download(tab, "Download ONNX (.onnx)", tmp_path)
    assert onnx_path.name == f"customers_mlp-{run_id}-model.onnx"

    import onnxruntime

    session = onnxruntime.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    feed = {}
    for given in session.get_inputs():
        column = given.name.split(":")[0]
        values = new[column].to_numpy()
        feed[given.name] = (values.astype(object) if given.type == "tensor(string)"
                            else values.astype(np.float32)).reshape(-1, 1)
    (yes,) = session.run(None, feed)
    np.testing.assert_allclose(np.asarray(yes).reshape(-1), predictions["yes"], atol=1e-4)
    ui.no_app_exception(tab)
