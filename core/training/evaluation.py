"""Scoring a finished run: its model on the validation split it trained with.

`evaluate_run(run_id)` gives a classification run's confusion matrix, accuracy and
per-class precision, recall and F1, or a regression run's MAE, RMSE, R² and the points of a
predicted-versus-true plot, as plain data. The dashboard asks for it through the inspector
(`InspectorClient.evaluate`), which calls this in its own process; the result is cached in
the run folder as evaluation.json.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from core.build.preprocessing import prepare
from core.spec import StackSpec
from core.spec.tasks import TaskInfo
from core.storage.atomic import write_text_atomically
from core.storage.paths import run_dir, run_stack_path
from core.storage.plain import to_plain

MAX_PLOT_POINTS = 2000
CACHE_NAME = "evaluation.json"


def evaluate_run(run_id: str) -> dict:
    """Score a finished run's model on the validation split it trained with; cache the result.

    The stack (stack.keras; model.keras for a run from before the end-to-end export) is
    loaded with safe_mode=True and scored on the encoded split `core.build.preprocessing.prepare` draws
    with the run's validation_split and seed, the arrays it trained on. A run without
    validation samples is scored on the whole dataset, and `note` says so. The result is
    written atomically to the run folder as evaluation.json, and returned from there while
    it is newer than the model file.

    Returns:
        Plain data: run_id, dataset, task, kind ("classification" or "regression"), subset
        ("validation" or "all"), num_samples, note, cached; for classification class_names,
        confusion_matrix (rows: true class, columns: predicted class), accuracy and per_class
        rows (class, precision, recall, f1, support; None where undefined); for regression
        y_true and y_pred (at most MAX_PLOT_POINTS points), mae, rmse and r2.

    Raises:
        ValueError: an invalid run id, or a model whose output does not fit the dataset.
        FileNotFoundError: the run has no model.keras or no spec.json.
        DataError: the run's dataset cannot be loaded.

    Example:
        >>> evaluate_run(run_id)["confusion_matrix"]
        [[10, 0, 0], [0, 9, 1], [0, 1, 9]]
    """
    folder, model_path = run_dir(run_id), run_stack_path(run_id)
    if not model_path.is_file():
        raise FileNotFoundError(
            f"Run '{run_id}' has no model.keras or stack.keras (in {folder}); only a finished run can be evaluated.")
    cache = folder / CACHE_NAME
    cached = read_cache(cache, model_path)
    if cached is not None:
        return cached
    spec_path = folder / "spec.json"
    if not spec_path.is_file():
        raise FileNotFoundError(f"Run '{run_id}' has no spec.json ({spec_path}), so its dataset is unknown.")
    spec = StackSpec.from_json(spec_path.read_text(encoding="utf-8"), check_values=False)  # a stored run's spec
    split = scored_split(spec)
    model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    scores = split.scores(predict(model, split.x))
    result = to_plain({"run_id": run_id, "dataset": spec.dataset.to_dict(), "task": split.task.to_dict(),
                       "subset": split.subset, "num_samples": len(split.y), "note": split.note, **scores})
    write_text_atomically(cache, json.dumps(result))
    return {**result, "cached": False}


@dataclass(frozen=True)
class ScoredSplit:
    """The samples a finished run is scored on: its validation split, or everything without one."""

    x: np.ndarray
    y: np.ndarray
    subset: str  # "validation" or "all"
    note: str
    task: TaskInfo

    def scores(self, predictions: np.ndarray) -> dict:
        """Classification: class_names, confusion_matrix, accuracy, per_class; regression: mae, rmse, r2, points."""
        if self.task.is_classification:
            return _classification_scores(self.y, predictions, self.task)
        return _regression_scores(self.y, predictions)


def scored_split(spec: StackSpec) -> ScoredSplit:
    """The encoded split `prepare` draws with the run's validation_split and seed (the arrays it trained on).

    Raises:
        DataError: the run's dataset cannot be loaded.
    """
    prepared = prepare(spec.dataset, spec.train)
    parts = prepared.split
    if len(parts.y_val):
        return ScoredSplit(parts.x_val, parts.y_val, "validation", "", prepared.task)
    return ScoredSplit(parts.x_train, parts.y_train, "all",
                       "The run trained without a validation split, so the whole dataset is scored, including "
                       "the samples it trained on: expect optimistic numbers.", prepared.task)


def predict(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """The model's outputs on `x` as float64, one row per sample."""
    predictions = np.asarray(model.predict(x, batch_size=256, verbose=0), dtype=np.float64)
    return predictions.reshape(len(predictions), -1)


def read_cache(cache: Path, model_path: Path) -> dict | None:
    """A result cached in the run folder while it is newer than the model file (marked cached), else None."""
    try:
        if cache.stat().st_mtime_ns > model_path.stat().st_mtime_ns:
            return {**json.loads(cache.read_text(encoding="utf-8")), "cached": True}
    except (OSError, ValueError):
        pass  # no cache yet, or a broken one: compute it again
    return None


def _classification_scores(y, predictions, task) -> dict:
    classes = task.num_classes
    columns = predictions.shape[1]
    if columns == classes:
        predicted = predictions.argmax(axis=1)
    elif columns == 1 and classes == 2:
        predicted = (predictions[:, 0] > 0.5).astype(np.int64)  # a sigmoid output
    else:
        raise ValueError(
            f"The model predicts {columns} value(s) per sample but the dataset has {classes} classes; "
            f"was the dataset changed after the run trained?")
    matrix = np.zeros((classes, classes), np.int64)
    np.add.at(matrix, (y, predicted), 1)
    correct, support, predicted_counts = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    names = task.class_names or tuple(str(i) for i in range(classes))
    rows = []
    for i, name in enumerate(names):
        precision = correct[i] / predicted_counts[i] if predicted_counts[i] else None
        recall = correct[i] / support[i] if support[i] else None
        f1 = None
        if precision is not None and recall is not None:
            f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        rows.append({"class": name, "precision": precision, "recall": recall, "f1": f1,
                     "support": support[i]})
    return {"kind": "classification", "class_names": list(names), "confusion_matrix": matrix,
            "accuracy": correct.sum() / len(y) if len(y) else None, "per_class": rows}


def _regression_scores(y, predictions) -> dict:
    targets = np.asarray(y, np.float64).reshape(len(y), -1)
    if predictions.shape[1] != targets.shape[1]:
        raise ValueError(
            f"The model predicts {predictions.shape[1]} value(s) per sample but the dataset has "
            f"{targets.shape[1]} target(s); was the dataset changed after the run trained?")
    errors = predictions - targets
    spread = ((targets - targets.mean(axis=0)) ** 2).sum(axis=0)
    r2 = float(np.mean(1 - (errors ** 2).sum(axis=0) / spread)) if len(y) and (spread > 0).all() else None
    count = len(targets)
    shown = (np.arange(count) if count <= MAX_PLOT_POINTS
             else np.sort(np.random.default_rng(0).choice(count, MAX_PLOT_POINTS, replace=False)))
    single = targets.shape[1] == 1
    return {"kind": "regression",
            "y_true": targets[shown, 0] if single else targets[shown],
            "y_pred": predictions[shown, 0] if single else predictions[shown],
            "mae": np.abs(errors).mean() if count else None,
            "rmse": math.sqrt((errors ** 2).mean()) if count else None, "r2": r2}
