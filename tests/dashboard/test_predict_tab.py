"""The Runs page's Predict tab: uploaded rows or the validation split, predictions with class names, the CSV."""

import io
import json

import keras
import pandas as pd
import pytest
from streamlit.runtime.media_file_manager import MediaFileManager

from core import runs
from dashboard import services
from tests.dashboard.apptest import app, fake_run, open_page, texts

pytestmark = pytest.mark.usefixtures("inspector_home")
CLASSES = ["no", "yes"]
CARD = {"schema": 1, "task": "binary", "class_names": CLASSES,
        "inputs": [{"name": "age", "dtype": "float32", "kind": "numeric"},
                   {"name": "color", "dtype": "string", "kind": "categorical", "vocabulary": ["blue", "red"]}]}
ROWS = b"age,color,extra\n30,red,x\n52,blue,y\n18,green,z\n"


def tabular_model():
    """A run's end-to-end model as the contract has it: a dict of raw columns, a sigmoid output."""
    age = keras.Input(shape=(1,), name="age", dtype="float32")
    color = keras.Input(shape=(1,), name="color", dtype="string")
    one_hot = keras.layers.StringLookup(vocabulary=["blue", "red"], output_mode="one_hot")(color)
    features = keras.layers.Concatenate()([keras.layers.Normalization(mean=40.0, variance=100.0)(age), one_hot])
    return keras.Model({"age": age, "color": color}, keras.layers.Dense(1, activation="sigmoid")(features))


@pytest.fixture
def tabular_run(no_workers) -> str:
    """A finished run (written without a worker) whose model.keras and data.json are real."""
    run_id = fake_run(epochs=2, status="finished")
    folder = runs.get(run_id).folder
    tabular_model().save(folder / "model.keras")
    (folder / "data.json").write_text(json.dumps(CARD))
    runs.current_store().add_artifact(run_id, "model.keras", folder / "model.keras")
    return run_id


@pytest.fixture
def downloads(monkeypatch) -> dict[str, bytes]:
    """file name -> bytes of every download button made with its data, as Streamlit registers them."""
    made = {}
    register = MediaFileManager.add

    def recording(self, path_or_data, mimetype, coordinates, file_name=None, is_for_static_download=False):
        if file_name:
            made[file_name] = path_or_data
        return register(self, path_or_data, mimetype, coordinates, file_name, is_for_static_download)

    monkeypatch.setattr(MediaFileManager, "add", recording)
    return made


def upload(at, name: str, content: bytes):
    return at.file_uploader(key="runs-predict-upload").set_value((name, content, "text/csv")).run()


def predictions_table(at) -> pd.DataFrame:
    (table,) = [frame.value for frame in at.dataframe if "predicted" in frame.value.columns]
    return table


def test_uploaded_rows_get_predictions_with_class_names_and_a_csv(tabular_run, downloads):
    at = open_page(app(), "runs")
    assert "A CSV with the columns age (number), color (text); other columns are ignored." in texts(at)
    at = upload(at, "new.csv", ROWS)
    assert not at.exception and not at.error, [e.value for e in at.error]
    table = predictions_table(at)
    assert list(table.columns) == ["predicted", "no", "yes"] and len(table) == 3
    assert set(table["predicted"]) <= set(CLASSES)
    assert ((table["no"] + table["yes"]) - 1).abs().max() < 1e-6
    assert "Ignored 1 column(s) the model does not take: ['extra']." in texts(at)
    assert [button.label for button in at.download_button if "predictions" in button.label] == [
        "Download predictions (.csv)"]
    (csv,) = [data for name, data in downloads.items() if name == f"tiny-{tabular_run}-predictions.csv"]
    pd.testing.assert_frame_equal(pd.read_csv(io.BytesIO(csv)), table)


def test_a_refused_upload_says_why_and_stays_in_the_uploader(tabular_run):
    at = upload(open_page(app(), "runs"), "no-color.csv", b"age,extra\n30,x\n")
    assert "'no-color.csv' has no column(s) ['color']; the model needs the columns ['age', 'color']" \
        in at.error[0].value
    assert at.file_uploader(key="runs-predict-upload").value is not None
    assert not [frame for frame in at.dataframe if "predicted" in frame.value.columns]
    at = upload(at, "text.csv", b"age,color\nold,red\n")
    assert "Column 'age' of 'text.csv' holds text (e.g. 'old')" in at.error[0].value


def test_the_validation_split_shows_the_true_label_and_accuracy(tabular_run, monkeypatch):
    table = pd.DataFrame({"true": ["no", "yes"], "predicted": ["no", "no"], "no": [0.9, 0.6], "yes": [0.1, 0.4]})
    asked = []

    def predictions(run_id, data_ref):
        asked.append((run_id, data_ref))
        return "ok", {"table": table, "csv": table.to_csv(index=False).encode(), "task": "classification",
                      "class_names": CLASSES, "metrics": {"accuracy": 0.5},
                      "notes": ["The first 2 samples of the validation split."]}

    monkeypatch.setattr(services, "predictions", predictions)
    at = open_page(app(), "runs")
    assert asked == []  # nothing predicted before the user asks
    at.radio(key="runs-predict-source").set_value("Validation split").run()
    assert asked == [(tabular_run, None)]
    assert list(predictions_table(at).columns) == ["true", "predicted", "no", "yes"]
    assert [metric.value for metric in at.metric if metric.label == "Accuracy on these samples"] == ["0.5000"]
    assert "The first 2 samples of the validation split." in texts(at)


def test_a_run_without_a_model_has_nothing_to_predict_with(no_workers):
    fake_run(epochs=1)
    at = open_page(app(), "runs")
    assert "Predictions need a finished run with a model." in texts(at)
    assert not at.file_uploader


def test_a_prediction_whose_process_died_is_tried_again_next_time(tabular_run, monkeypatch):
    tries = []

    def dying(args, timeout_s):
        tries.append(args)
        raise services.ChildFailed("The process killed by SIGKILL (signal 9) without an answer.")

    monkeypatch.setattr(services, "_child_answer", dying)
    assert services.predictions(tabular_run, None) == (
        "error", "The prediction failed. The process killed by SIGKILL (signal 9) without an answer.")
    services.predictions(tabular_run, None)
    assert len(tries) == 2  # not cached, unlike a refusal of the data
    assert tries[0][:4] == ["-m", "core.predict", tabular_run, "--validation"]
