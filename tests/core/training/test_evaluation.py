"""core.training.evaluation: scoring a finished run's model on the validation split it trained with.

The runs are fakes: an untrained stack saved where a finished run keeps it (stack.keras, or
model.keras for a run from before the end-to-end export), beside the spec.json that names its
dataset. It is scored on the encoded split `core.build.preprocessing.prepare` gives. `evaluate_run` runs in
this process; the inspector's `evaluate` request, which calls it there, is tested in test_inspector.py.
"""

import json
import os
from pathlib import Path

import keras
import numpy as np
import pytest

from core.build.preprocessing import prepare
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec
from core.training.evaluation import evaluate_run


def fake_run(home: Path, run_id: str, dataset: str, validation_split: float, model: keras.Model,
             file_name: str = "stack.keras") -> Path:
    folder = home / "runs" / run_id
    folder.mkdir(parents=True)
    model.save(folder / file_name)
    spec = StackSpec(name=run_id, members=(MemberSpec("head", template="dense_head"),),
                     train=TrainSpec(validation_split=validation_split, seed=3),
                     dataset=DatasetSpec(name=dataset))
    (folder / "spec.json").write_text(spec.to_json())
    return folder


def test_evaluate_a_classification_run_and_cache_it(stacklab_home):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    folder = fake_run(stacklab_home, "iris-run", "iris", 0.2, model)
    parts = prepare(DatasetSpec(name="iris"), TrainSpec(validation_split=0.2, seed=3)).split
    predicted = model.predict(parts.x_val, verbose=0).argmax(axis=1)
    expected = np.zeros((3, 3), int)
    np.add.at(expected, (parts.y_val, predicted), 1)

    result = evaluate_run("iris-run")
    assert result["kind"] == "classification" and result["subset"] == "validation" and not result["cached"]
    assert result["class_names"] == ["setosa", "versicolor", "virginica"]
    assert result["confusion_matrix"] == expected.tolist() and result["num_samples"] == 30
    assert result["accuracy"] == pytest.approx(np.trace(expected) / 30)
    recall = [row["recall"] for row in result["per_class"]]
    assert recall == pytest.approx((np.diag(expected) / expected.sum(axis=1)).tolist())
    assert json.loads((folder / "evaluation.json").read_text())["confusion_matrix"] == expected.tolist()

    again = evaluate_run("iris-run")
    assert again["cached"] and {**again, "cached": False} == result
    later = (folder / "stack.keras").stat().st_mtime + 5
    os.utime(folder / "stack.keras", (later, later))  # a newer model: the cache is stale
    assert not evaluate_run("iris-run")["cached"]


def test_evaluate_a_regression_run_without_validation_uses_everything(stacklab_home):
    model = keras.Sequential([keras.Input((10,)), keras.layers.Dense(1)])
    fake_run(stacklab_home, "diabetes-run", "diabetes", 0.0, model, file_name="model.keras")  # an older run
    result = evaluate_run("diabetes-run")
    assert result["kind"] == "regression" and result["subset"] == "all" and "whole dataset" in result["note"]
    every = prepare(DatasetSpec(name="diabetes"), TrainSpec(validation_split=0.0, seed=3)).split
    assert sorted(result["y_true"]) == pytest.approx(sorted(every.y_train.tolist()))  # every sample
    errors = np.array(result["y_pred"]) - every.y_train
    assert result["mae"] == pytest.approx(np.abs(errors).mean(), rel=1e-4)
    assert result["rmse"] == pytest.approx(np.sqrt((errors ** 2).mean()), rel=1e-4)
    assert result["r2"] is not None and result["r2"] < 0.5  # an untrained model
