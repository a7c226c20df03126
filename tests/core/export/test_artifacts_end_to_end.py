"""model.keras is the end-to-end model: raw CSV columns in, plain Keras outside StackLab gives StackLab's numbers.

A run trains on a CSV with number and text columns and a text label; its model.keras is then
loaded in a fresh process with nothing but Keras (safe_mode=True, no `core` import) and
predicts on the raw validation rows.
"""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest

from core.data import load_dataset, split, validation_inputs
from core.export.artifacts import export_run
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec
from core.storage.paths import run_stack_path
from core.training.loop import train
from tests.examples import example

ROOT = Path(__file__).resolve().parents[3]
COLORS = ("red", "green", "blue")

FRESH = textwrap.dedent("""
    import json, sys
    import numpy as np
    import keras
    model = keras.saving.load_model(sys.argv[1], safe_mode=True)
    rows = np.load(sys.argv[2])  # str and float32 arrays: no pickle
    inputs = {name: rows[name] for name in rows.files}
    probabilities = keras.ops.convert_to_numpy(model(inputs))
    unseen = {name: rows[name][:1] for name in rows.files}
    unseen["color"] = np.array([["violet"]])  # a colour the training split never had
    print(json.dumps({"probabilities": probabilities.tolist(),
                      "unseen": keras.ops.convert_to_numpy(model(unseen)).tolist(),
                      "core_imported": any(m == "core" or m.startswith("core.") for m in sys.modules),
                      "normalization": model.get_layer("age_normalization").get_config()}))
""")


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("csv_run")
    csv = example("csv_end_to_end").write_csv(folder / "people.csv", rows=240)  # numbers, text, a text label
    spec = StackSpec(
        name="csv end to end",
        members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [16]}),
                 MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(epochs=4, batch_size=16, validation_split=0.25, seed=0, learning_rate=0.01),
        dataset=DatasetSpec(source="csv", path=str(csv), target="bought"))
    result = train(spec)
    assert result.status == "finished"
    paths = export_run(result.model, spec, result.history, folder / "run", compile_args=result.compile_args,
                       prepared=result.prepared)
    return spec, result, paths


def fresh_predictions(model_path: Path, inputs: dict, folder: Path) -> dict:
    rows = folder / "rows.npz"
    np.savez(rows, **inputs)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("PYTHONPATH", None)  # nothing of StackLab on the path
    done = subprocess.run([sys.executable, "-c", FRESH, str(model_path), str(rows)], capture_output=True,
                          text=True, cwd=folder, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_plain_keras_in_a_fresh_process_reproduces_the_reported_accuracy(csv_run, tmp_path):
    spec, result, paths = csv_run
    inputs, y = validation_inputs(spec, limit=1000)
    assert sorted(inputs) == ["age", "color", "income"] and inputs["color"].dtype.kind == "U"
    assert len(y) == 60  # every validation row
    answer = fresh_predictions(paths["model.keras"], inputs, tmp_path)
    assert not answer["core_imported"]
    probabilities = np.array(answer["probabilities"])
    assert probabilities.shape == (60, 1)  # one sigmoid unit: P(class_names[1])
    accuracy = float(((probabilities[:, 0] > 0.5).astype(int) == y).mean())
    assert accuracy == pytest.approx(result.history[-1]["val_accuracy"], abs=1e-6)
    assert accuracy > 0.6  # it learned something: the comparison is not of two constant answers
    unseen = np.array(answer["unseen"])
    assert unseen.shape == (1, 1) and np.isfinite(unseen).all()


def test_the_scalers_saw_only_the_training_split(csv_run, tmp_path):
    spec, result, paths = csv_run
    raw = split(load_dataset(spec.dataset), spec.train.validation_split, spec.train.seed)
    ages = raw.x_train[:, 0].astype(np.float32).astype(np.float64)
    card = json.loads(paths["data.json"].read_text())
    assert card["statistics"]["age"]["mean"] == pytest.approx(ages.mean(), rel=1e-12)
    assert card["statistics"]["age"]["variance"] == pytest.approx(ages.var(), rel=1e-12)
    everything = load_dataset(spec.dataset).x[:, 0].astype(np.float64)
    assert abs(card["statistics"]["age"]["mean"] - everything.mean()) > 1e-3  # not the whole file's
    assert card["split"] == {"train_rows": 180, "val_rows": 60, "seed": 0, "validation_split": 0.25}
    assert card["class_names"] == ["no", "yes"] and card["task"] == "binary"
    assert card["inputs"][2] == {"name": "color", "dtype": "string", "kind": "categorical",
                                 "vocabulary": sorted(COLORS)}
    # The layer in model.keras holds the same numbers.
    inputs, _ = validation_inputs(spec, limit=3)
    config = fresh_predictions(paths["model.keras"], inputs, tmp_path)["normalization"]
    assert np.ravel(config["mean"])[0] == pytest.approx(ages.mean(), rel=1e-6)
    assert np.ravel(config["variance"])[0] == pytest.approx(ages.var(), rel=1e-6)


def test_stack_keras_is_the_trained_stack_on_encoded_inputs(csv_run):
    _, result, paths = csv_run
    stack = keras.saving.load_model(paths["stack.keras"], safe_mode=True)
    assert stack.input_shape == (None, *result.prepared.task.input_shape)
    x_val = result.prepared.split.x_val
    np.testing.assert_allclose(stack.predict(x_val, verbose=0), result.model.predict(x_val, verbose=0),
                               rtol=1e-6, atol=1e-7)
    end_to_end = keras.saving.load_model(paths["model.keras"], safe_mode=True)
    assert isinstance(end_to_end.input, dict) or len(end_to_end.inputs) == 3


def test_a_run_member_loads_stack_keras_and_old_runs_their_model_keras(stacklab_home):
    new, old = stacklab_home / "runs" / "new-run", stacklab_home / "runs" / "old-run"
    for folder in (new, old):
        folder.mkdir(parents=True)
        (folder / "model.keras").write_bytes(b"end to end")
    (new / "stack.keras").write_bytes(b"stack")
    assert run_stack_path("new-run") == new / "stack.keras"
    assert run_stack_path("old-run") == old / "model.keras"  # a run exported before stack.keras existed


def test_the_csv_example_trains_and_predicts_with_plain_keras(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "csv_end_to_end.py"), "--epochs", "1",
                           "--out", str(tmp_path / "run")], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.strip().splitlines()
    assert lines[0].startswith("trained: val_accuracy")
    assert len([line for line in lines if line.startswith("row ")]) == 3  # "violet" too: no crash
    assert {"model.keras", "stack.keras", "data.json"} <= {p.name for p in (tmp_path / "run").iterdir()}
