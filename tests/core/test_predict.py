"""core.predict: predictions on new rows, the checks on them, class names, the CLI."""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pandas as pd
import pytest

import core.data
from core import predict as predictions
from core.data import DataError
from core.storage.paths import run_dir

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["no", "yes", "maybe"]
ROWS = pd.DataFrame({"age": [30.0, 41.5, 22.0, 60.0], "color": ["red", "blue", "green", "red"],
                     "note": ["a", "b", "c", "d"]})


@pytest.fixture(scope="module")
def tabular_model():
    """A dict-input model as a run's end-to-end model.keras is: a float and a string column."""
    keras.utils.set_random_seed(0)
    age = keras.Input(shape=(1,), name="age", dtype="float32")
    color = keras.Input(shape=(1,), name="color", dtype="string")
    one_hot = keras.layers.StringLookup(vocabulary=["blue", "red"], output_mode="one_hot")(color)
    features = keras.layers.Concatenate()([keras.layers.Normalization(mean=40.0, variance=100.0)(age), one_hot])
    output = keras.layers.Dense(len(CLASSES), activation="softmax")(features)
    return keras.Model({"age": age, "color": color}, output)


@pytest.fixture(scope="module")
def image_model():
    keras.utils.set_random_seed(0)
    inputs = keras.Input(shape=(4, 4, 1))
    outputs = keras.layers.Dense(1)(keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs)))
    return keras.Model(inputs, outputs)


def write_csv(tmp_path, frame, name="rows.csv") -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def save_run(model, run_id: str, card: dict | None) -> Path:
    folder = run_dir(run_id)
    folder.mkdir(parents=True)
    model.save(folder / "model.keras")
    if card is not None:
        (folder / "data.json").write_text(json.dumps(card))
    return folder


def expected(model, frame) -> np.ndarray:
    return np.asarray(model({"age": frame[["age"]].to_numpy("float32"),
                             "color": frame[["color"]].to_numpy(str)}, training=False))


def test_a_runs_predictions_name_its_classes_and_ignore_extra_columns(tabular_model, tmp_path):
    save_run(tabular_model, "run1", {"schema": 1, "task": "multiclass", "class_names": CLASSES})
    table = predictions.predict("run1", write_csv(tmp_path, ROWS))
    assert list(table.columns) == ["predicted", *CLASSES]
    probabilities = expected(tabular_model, ROWS)
    np.testing.assert_allclose(table[CLASSES].to_numpy(), probabilities, atol=1e-6)
    assert list(table["predicted"]) == [CLASSES[i] for i in probabilities.argmax(axis=1)]
    assert table.attrs["notes"] == ["Ignored 1 column(s) the model does not take: ['note']."]
    # "green" was never seen: the lookup's out-of-vocabulary slot, not a crash
    assert np.isfinite(table.loc[2, CLASSES].to_numpy(float)).all()


def test_without_a_data_card_the_classes_are_numbered_with_a_note(tabular_model, tmp_path):
    table = predictions.predict(tabular_model, ROWS[["age", "color"]])
    assert list(table.columns) == ["predicted", "0", "1", "2"]
    assert set(table["predicted"]) <= {"0", "1", "2"}
    assert "the classes are shown by index" in table.attrs["notes"][0]


def test_class_names_passed_in_win_and_must_fit_the_output(tabular_model):
    assert list(predictions.predict(tabular_model, ROWS, class_names=["a", "b", "c"]).columns)[1:] == ["a", "b", "c"]
    with pytest.raises(ValueError, match=r"names 2 classes \['a', 'b'\], but the model outputs 3 value"):
        predictions.predict(tabular_model, ROWS, class_names=["a", "b"])


def test_a_missing_column_is_named_with_what_the_model_needs(tabular_model, tmp_path):
    with pytest.raises(DataError, match=r"'rows.csv' has no column\(s\) \['color'\]; the model needs the "
                                        r"columns \['age', 'color'\]"):
        predictions.predict(tabular_model, write_csv(tmp_path, ROWS[["age", "note"]]))


def test_text_in_a_numeric_column_is_named_with_an_example(tabular_model, tmp_path):
    rows = ROWS.assign(age=["30", "41", "old", "60"])
    with pytest.raises(DataError, match=r"Column 'age' of 'rows.csv' holds text \(e.g. 'old'\), but the model "
                                        r"takes it as numbers \(float32\)"):
        predictions.predict(tabular_model, write_csv(tmp_path, rows))


def test_a_true_false_column_is_not_taken_as_numbers(tabular_model, tmp_path):
    rows = ROWS.assign(age=["True", "False", "True", "False"])
    with pytest.raises(DataError, match=r"Column 'age' of 'rows.csv' holds text \(e.g. 'True'\)"):
        predictions.predict(tabular_model, write_csv(tmp_path, rows))


def test_missing_and_infinite_values_are_counted_per_column(tabular_model, tmp_path):
    rows = ROWS.assign(age=[np.nan, 1.0, np.inf, 2.0], color=["red", None, "blue", "red"])
    with pytest.raises(DataError, match=r"missing or infinite values in column\(s\) 'age' \(2 rows\), "
                                        r"'color' \(1 row\)"):
        predictions.predict(tabular_model, write_csv(tmp_path, rows))


def test_rows_over_the_limit_and_empty_files_are_refused(tabular_model, tmp_path, monkeypatch):
    monkeypatch.setenv(predictions.MAX_ROWS_ENV, "3")
    with pytest.raises(DataError, match=r"more than 3 rows, the limit for one prediction.*STACKLAB_MAX_PREDICT_ROWS"):
        predictions.predict(tabular_model, write_csv(tmp_path, ROWS))
    with pytest.raises(DataError, match="has a header but no data rows"):
        predictions.predict(tabular_model, write_csv(tmp_path, ROWS.iloc[:0]))
    with pytest.raises(DataError, match="expected a .csv or .npz file"):
        predictions.predict(tabular_model, write_csv(tmp_path, ROWS, "rows.txt"))


def test_an_unparsable_csv_gets_the_uploads_reason(tabular_model, tmp_path):
    path = tmp_path / "broken.csv"
    path.write_text("age,color\n1,red\n2,blue,extra,fields\n")
    with pytest.raises(DataError, match="could not be read as CSV"):
        predictions.predict(tabular_model, str(path))


def test_text_columns_are_read_verbatim(tmp_path):
    """A code column of digits stays text ("007", not 7) when the model takes it as a string."""
    code = keras.Input(shape=(1,), name="code", dtype="string")
    model = keras.Model({"code": code}, keras.layers.StringLookup(vocabulary=["007"], output_mode="one_hot")(code))
    (tmp_path / "codes.csv").write_text("code\n007\n7\n")
    table = predictions.predict(model, str(tmp_path / "codes.csv"), class_names=["other", "007"])
    assert list(table["predicted"]) == ["007", "other"]


def test_an_array_model_takes_npz_samples_of_its_shape(image_model, tmp_path):
    x = np.random.default_rng(0).integers(0, 255, (5, 4, 4, 1)).astype("uint8")
    np.savez(tmp_path / "only.npz", samples=x)  # the only array, whatever its name
    table = predictions.predict(image_model, str(tmp_path / "only.npz"), class_names=[])
    np.testing.assert_allclose(table["predicted"], np.asarray(image_model(x.astype("float32")))[:, 0], rtol=1e-5)
    np.savez(tmp_path / "wrong.npz", x=np.zeros((5, 4, 4)))
    with pytest.raises(DataError, match=r"have shape \(4, 4\) .*takes samples of shape \(4, 4, 1\)"):
        predictions.predict(image_model, str(tmp_path / "wrong.npz"))
    np.savez(tmp_path / "two.npz", a=x, b=x)
    with pytest.raises(DataError, match=r"has no array 'x' \(found: \['a', 'b'\]\)"):
        predictions.predict(image_model, str(tmp_path / "two.npz"))
    np.savez(tmp_path / "nan.npz", x=np.full((2, 4, 4, 1), np.nan))
    with pytest.raises(DataError, match=r"missing or infinite values in 2 sample\(s\)"):
        predictions.predict(image_model, str(tmp_path / "nan.npz"))
    with pytest.raises(DataError, match="not CSV columns: give an NPZ"):
        predictions.predict(image_model, write_csv(tmp_path, ROWS))


def test_a_sigmoid_output_gives_both_class_probabilities(tmp_path):
    inputs = keras.Input(shape=(2,))
    model = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(inputs))
    x = np.array([[5.0, 5.0], [-5.0, -5.0]], "float32")
    table = predictions.predict(model, x, class_names=["cat", "dog"])
    p = np.asarray(model(x))[:, 0]
    np.testing.assert_allclose(table["dog"], p, atol=1e-6)
    np.testing.assert_allclose(table["cat"], 1 - p, atol=1e-6)
    assert list(table["predicted"]) == ["dog" if v > 0.5 else "cat" for v in p]


def test_a_bare_model_file_is_loaded_as_an_upload_with_the_data_card_beside_it(tabular_model, tmp_path):
    tabular_model.save(tmp_path / "model.keras")
    (tmp_path / "data.json").write_text(json.dumps({"task": "multiclass", "class_names": CLASSES}))
    table = predictions.predict(str(tmp_path / "model.keras"), ROWS)
    assert list(table.columns) == ["predicted", *CLASSES]
    (tmp_path / "evil.keras").write_text("not a zip")
    with pytest.raises(ValueError, match="evil.keras"):
        predictions.predict(str(tmp_path / "evil.keras"), ROWS)
    with pytest.raises(FileNotFoundError, match="neither a model file"):
        predictions.predict("no-such-run", ROWS)


def test_the_validation_split_adds_the_true_label_and_accuracy(tabular_model, monkeypatch):
    folder = save_run(tabular_model, "run2", {"task": "multiclass", "class_names": CLASSES})
    from tests.fake_runs import TINY

    (folder / "spec.json").write_text(TINY.to_json())
    inputs = {"age": ROWS[["age"]].to_numpy("float32"), "color": ROWS[["color"]].to_numpy(str)}
    truth = expected(tabular_model, ROWS).argmax(axis=1)
    truth[0] = (truth[0] + 1) % 3  # one of four wrong
    monkeypatch.setattr(core.data, "validation_inputs", lambda spec, limit: (inputs, truth), raising=False)
    table = predictions.predict_validation("run2", limit=4)
    assert list(table.columns) == ["true", "predicted", *CLASSES]
    assert list(table["true"]) == [CLASSES[i] for i in truth]
    assert table.attrs["metrics"] == {"accuracy": 0.75}


def test_a_regression_runs_validation_split_reports_the_mae_in_the_targets_units(image_model, monkeypatch):
    folder = save_run(image_model, "run7", {"task": "regression", "class_names": [],
                                            "target": {"name": "price", "mean": 100.0, "std": 10.0}})
    from tests.fake_runs import TINY

    (folder / "spec.json").write_text(TINY.to_json())
    x = np.random.default_rng(1).integers(0, 255, (3, 4, 4, 1)).astype("float32")
    predicted = np.asarray(image_model(x))[:, 0]
    truth = predicted + np.array([1.0, -2.0, 3.0], "float32")
    monkeypatch.setattr(core.data, "validation_inputs", lambda spec, limit: (x, truth), raising=False)
    table = predictions.predict_validation("run7", limit=3)
    assert list(table.columns) == ["true", "predicted"]
    np.testing.assert_allclose(table["true"], truth)
    assert table.attrs["metrics"]["mae"] == pytest.approx(2.0, rel=1e-5)


def test_the_validation_split_is_the_one_training_drew(tabular_model, tmp_path):
    """core.data.validation_inputs for real: the run's CSV split as training split it."""
    from core.spec import DatasetSpec, TrainSpec
    from tests.fake_runs import TINY

    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"age": rng.normal(40, 10, 40).round(1), "color": rng.choice(["red", "blue"], 40),
                          "label": rng.choice(sorted(CLASSES), 40)})
    csv = write_csv(tmp_path, frame, "people.csv")
    spec = TINY.replace(dataset=DatasetSpec(source="csv", path=csv, target="label"),
                        train=TrainSpec(epochs=1, validation_split=0.25, seed=3))
    folder = save_run(tabular_model, "run6", {"task": "multiclass", "class_names": sorted(CLASSES)})
    (folder / "spec.json").write_text(spec.to_json())
    table = predictions.predict_validation("run6", limit=6)
    assert len(table) == 6 and list(table.columns) == ["true", "predicted", *sorted(CLASSES)]
    _, y = core.data.validation_inputs(spec, limit=6)
    assert list(table["true"]) == [sorted(CLASSES)[i] for i in y]
    assert table.attrs["metrics"]["accuracy"] == pytest.approx(float((table["true"] == table["predicted"]).mean()))
    assert table.attrs["notes"][0] == "The first 6 samples of the validation split."


def run_cli(*argv: str) -> int:
    parser = argparse.ArgumentParser()
    predictions.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["predict", *argv])
    return args.run(args)


def test_the_cli_writes_the_predictions_csv(tabular_model, tmp_path, capsys):
    save_run(tabular_model, "run3", {"task": "multiclass", "class_names": CLASSES})
    out = tmp_path / "predictions.csv"
    assert run_cli("run3", write_csv(tmp_path, ROWS), "--out", str(out)) == 0
    printed = capsys.readouterr().out
    assert f"wrote 4 predictions to {out}" in printed and "Ignored 1 column(s)" in printed
    written = pd.read_csv(out)
    assert list(written.columns) == ["predicted", *CLASSES] and len(written) == 4
    assert run_cli("run3", write_csv(tmp_path, ROWS[["age"]])) == 1
    assert "error: 'rows.csv' has no column(s) ['color']" in capsys.readouterr().err
    assert run_cli("run3") == 1
    assert "either a DATA file (.csv or .npz) or --validation" in capsys.readouterr().err


def test_the_dashboards_child_answers_one_json_line(tabular_model, tmp_path):
    save_run(tabular_model, "run4", {"task": "multiclass", "class_names": CLASSES})
    out, rows = tmp_path / "p.csv", write_csv(tmp_path, ROWS)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "core.predict", "run4", rows, "--out", str(out), "--json"],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)  # only the answer on stdout: TensorFlow's lines went to stderr
    assert answer["ok"] and answer["rows"] == 4 and answer["class_names"] == CLASSES
    assert pd.read_csv(out)["predicted"].isin(CLASSES).all()
