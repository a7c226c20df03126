"""Run artifacts: model.keras, stack.keras, data.json, history.csv, spec.json, and stack.py.

- model.keras: the END-TO-END model users download: raw inputs (a dict of CSV columns, or
  the raw array) -> the preprocessing layers fitted on the training split -> the trained
  stack; class probabilities, or values in the target's units. Built-in Keras layers only:
  it loads with plain `keras.saving.load_model(path, safe_mode=True)`.
- stack.keras: the trained stack on the encoded arrays training fed; a run used as a member
  of a later stack loads this one.
- data.json: the data card (`core.data.encoding.data_card`): task, class names, raw
  inputs and vocabularies, target statistics, the split and the scalers' statistics.

`export_run` writes each artifact atomically, so a crash halfway leaves the previous file
(or none), never half a file. The script, `stack.py`, comes from `generate_script`
(`core.export.script`): one `build_<member>()` per member with its layers written out
in the functional API, a `load_<member>()` for members shipped as model files, a
`build_model()` that wires them like the trained stack and re-applies every
`trainable=False`, a `compile_model()` and a `__main__` block that trains on an NPZ file.

Example:
    >>> paths = export_run(result.model, spec, result.history, "runs/42",
    ...                    compile_args=result.compile_args)
    >>> sorted(paths)
    ['data.json', 'history.csv', 'model.keras', 'spec.json', 'stack.keras', 'stack.py']
"""

from __future__ import annotations

import csv
import io
import json
import re
import shutil
from pathlib import Path
from typing import Any, Mapping

import keras

from core.build.preprocessing import Prepared, end_to_end_model, prepare
from core.export.script import generate_script
from core.spec import StackSpec
from core.spec.events import PHASE_TRAIN
from core.storage.atomic import atomic_target, write_text_atomically

__all__ = ["export_run", "generate_script", "write_history_csv"]

# Keys of an epoch record that are bookkeeping, not metrics; they go after the metrics.
TRAILING_HISTORY_KEYS = ("learning_rate", "duration_s")
# Bookkeeping that is not a column: the event kind, and the wall-clock time an epoch ended
# (the run store keeps it; a CSV of metrics would carry a Unix timestamp among them).
SKIPPED_HISTORY_KEYS = ("kind", "ended_at")


def write_history_csv(history: list[Mapping[str, Any]], path: str | Path) -> Path:
    """Write one row per epoch: epoch, phase, then every metric seen in any epoch.

    Records may be flat (`{"epoch": 1, "phase": "train", "loss": 0.3, ...}`) or epoch
    events as dicts, whose metrics sit under "metrics". Metric columns come in a stable
    order: loss, the other metrics, then their val_* counterparts, then learning rate and
    duration when present. An epoch without a metric leaves its cell empty.

    Returns:
        The path written (atomically).
    """
    rows = [_flat_history_row(record) for record in history]
    seen: list[str] = []
    for row in rows:
        seen += [key for key in row if key not in seen and key not in ("epoch", "phase")]
    trailing = [key for key in TRAILING_HISTORY_KEYS if key in seen]
    metrics = [key for key in seen if key not in trailing]
    train_metrics = [key for key in metrics if not key.startswith("val_")]
    val_metrics = [key for key in metrics if key.startswith("val_")]
    columns = ["epoch", "phase"] + _loss_first(train_metrics) + _loss_first(val_metrics) + trailing
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, restval="", lineterminator="\n")
    writer.writeheader()
    for index, row in enumerate(rows):
        writer.writerow({"epoch": index + 1, "phase": PHASE_TRAIN, **row})
    return write_text_atomically(Path(path), buffer.getvalue())


def _flat_history_row(record: Mapping[str, Any]) -> dict[str, Any]:
    row = {}
    for key, value in record.items():
        if key == "metrics" and isinstance(value, Mapping):
            row.update(value)
        elif key in SKIPPED_HISTORY_KEYS or isinstance(value, (Mapping, list, tuple)):
            continue  # event bookkeeping (kind, per-member updates), not a column
        else:
            row[key] = value
    return row


def _loss_first(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda key: key not in ("loss", "val_loss"))


def export_run(
    model: keras.Model,
    spec: StackSpec,
    history: list[Mapping[str, Any]],
    out_dir: str | Path,
    member_sources: Mapping[str, Path] = {},
    compile_args: Mapping[str, Any] | None = None,
    prepared: Prepared | None = None,
) -> dict[str, Path]:
    """Write a run's downloadable artifacts into `out_dir`, each one atomically.

    Args:
        model: the trained stack (on encoded inputs; for regression it ends in the
            de-standardizing layer, `core.training.loop.with_target_units`).
        spec: the spec it was built from; stored as spec.json.
        history: one record per epoch (see `write_history_csv`).
        out_dir: the run folder; created if missing.
        member_sources: member name -> model file the member was loaded from; each is
            copied to `members/<member><suffix>` and `stack.py` loads it from there.
        compile_args: optimizer, learning_rate, weight_decay, loss and metrics with "auto"
            resolved, as the trainer compiled with (`TrainResult.compile_args`);
            without it, "auto" is guessed from the model's output activation.
        prepared: the data the stack trained on (`TrainResult.prepared`): its
            preprocessing goes in front of the stack in model.keras and into data.json.
            None: `core.build.preprocessing.prepare(spec.dataset, spec.train)` (cached in the process
            that trained).

    Returns:
        Artifact paths keyed by their path relative to `out_dir`, e.g. "model.keras",
        "stack.keras", "data.json", "history.csv", "spec.json", "stack.py",
        "members/base.keras".

    Raises:
        ValueError: a member in `member_sources` is not a nested model of `model`, or the
            stack does not take the prepared data's encoded samples (checked where there
            is preprocessing to put in front of it).
        DataError: `prepared` is None and the spec's data cannot be prepared.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    member_files: dict[str, str] = {}
    for name, source in member_sources.items():
        # Member names are user text: keep the file name inside members/ and unique.
        stem = re.sub(r"[^\w-]", "_", name).strip("_") or "member"
        suffix = re.sub(r"[^\w.]", "", Path(source).suffix.lower())
        relative = f"members/{stem}{suffix}"
        counter = 2
        while relative in member_files.values():
            relative, counter = f"members/{stem}_{counter}{suffix}", counter + 1
        member_files[name] = relative
    script = generate_script(model, spec, member_files, compile_args)
    prepared = prepared if prepared is not None else prepare(spec.dataset, spec.train)
    expected = tuple(prepared.task.input_shape)
    received = tuple(model.input_shape[1:]) if not isinstance(model.input_shape, list) else None
    if prepared.preprocessing.has_layers and received != expected:
        raise ValueError(
            f"The stack '{model.name}' takes inputs of shape {model.input_shape}, but the data it was trained "
            f"on gives encoded samples of shape {expected}: pass the `prepared` data it trained with "
            f"(TrainResult.prepared).")
    paths: dict[str, Path] = {}
    paths["stack.keras"] = _atomic_save_model(model, out_dir / "stack.keras")
    paths["model.keras"] = _atomic_save_model(end_to_end_model(prepared.preprocessing, model), out_dir / "model.keras")
    paths["data.json"] = write_text_atomically(out_dir / "data.json", json.dumps(prepared.data_card(), indent=2) + "\n")
    paths["history.csv"] = write_history_csv(history, out_dir / "history.csv")
    paths["spec.json"] = write_text_atomically(out_dir / "spec.json", spec.to_json() + "\n")
    for name, relative in member_files.items():
        target = out_dir / relative
        target.parent.mkdir(exist_ok=True)
        with atomic_target(target) as temporary:
            shutil.copyfile(member_sources[name], temporary)
        paths[relative] = target
    paths["stack.py"] = write_text_atomically(out_dir / "stack.py", script)
    return paths


def _atomic_save_model(model: keras.Model, path: Path) -> Path:
    # Keras picks the format from the suffix, so the temporary file ends in .keras too.
    with atomic_target(path, suffix=".keras") as temporary:
        model.save(temporary)
    return path
