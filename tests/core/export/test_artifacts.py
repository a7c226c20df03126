"""core.export.artifacts: artifacts are complete and atomic, and names from user files stay harmless."""

import csv
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from core.export.artifacts import export_run, write_history_csv
from core.spec import StackSpec
from tests.core.export.export_stacks import (
    COMPILE_ARGS,
    IMAGE,
    file_member_stack,
    import_script,
    member,
    sequential_stack,
    trainable_count,
    write_script,
)

HISTORY = [
    {"epoch": 1, "phase": "train", "loss": 1.2, "accuracy": 0.4, "val_loss": 1.3,
     "val_accuracy": 0.35, "learning_rate": 0.01, "duration_s": 0.5},
    {"epoch": 2, "phase": "fine_tune", "val_loss": 1.1, "loss": 1.0, "accuracy": 0.5,
     "auc": 0.7, "learning_rate": 0.001, "duration_s": 0.4},
]


def test_history_csv_has_one_row_per_epoch_and_a_stable_column_order(tmp_path):
    path = write_history_csv(HISTORY, tmp_path / "history.csv")
    with open(path, newline="") as file:
        rows = list(csv.reader(file))
    assert rows[0] == ["epoch", "phase", "loss", "accuracy", "auc", "val_loss", "val_accuracy",
                       "learning_rate", "duration_s"]
    assert rows[1] == ["1", "train", "1.2", "0.4", "", "1.3", "0.35", "0.01", "0.5"]
    assert rows[2] == ["2", "fine_tune", "1.0", "0.5", "0.7", "1.1", "", "0.001", "0.4"]


def test_history_csv_accepts_epoch_events_as_dicts(tmp_path):
    events = [{"kind": "epoch", "epoch": 1, "phase": "train", "metrics": {"loss": 0.5, "val_loss": 0.6},
               "duration_s": 1.0, "learning_rate": 0.1, "member_updates": {"a": 0.1}, "ended_at": 1.7e9}]
    path = write_history_csv(events, tmp_path / "history.csv")
    assert path.read_text().splitlines() == [
        "epoch,phase,loss,val_loss,learning_rate,duration_s", "1,train,0.5,0.6,0.1,1.0"]


def test_names_from_user_files_cannot_inject_code(tmp_path):
    hostile = 'x"""\nraise SystemExit("injected")\n"""'
    inputs = keras.Input((4,), name="evil_input")
    outputs = keras.layers.Dense(2, name=hostile + "\r#")(inputs)
    evil = keras.Model(inputs, outputs, name=hostile)
    stack_inputs = keras.Input((4,), name="input")
    model = keras.Model(stack_inputs, evil(stack_inputs), name="stack")
    spec = StackSpec(name=hostile, members=(member(hostile, source="file", file="evil.keras"),))
    source = tmp_path / "evil.keras"
    evil.save(source)
    paths = export_run(model, spec, HISTORY, tmp_path / "run", member_sources={hostile: source},
                       compile_args=COMPILE_ARGS)
    assert [p.name for p in (tmp_path / "run" / "members").iterdir()] == [
        "x____raise_SystemExit__injected.keras"]
    module = import_script(paths["stack.py"])  # would raise SystemExit if a name escaped
    assert module.build_model().count_params() == model.count_params()
    rebuilt = import_script(write_script(model, spec, tmp_path)).build_model()  # from layers
    assert rebuilt.get_layer(hostile).layers[-1].name == hostile + "\r#"


def test_export_run_writes_every_artifact_and_the_model_reloads(tmp_path):
    model, spec, source = file_member_stack(tmp_path)
    out = tmp_path / "run"
    paths = export_run(model, spec, HISTORY, out, member_sources={"base": source},
                       compile_args=COMPILE_ARGS)
    assert sorted(paths) == ["data.json", "history.csv", "members/base.keras", "model.keras", "spec.json",
                             "stack.keras", "stack.py"]
    assert all(path.is_file() and path.parent.is_relative_to(out) for path in paths.values())
    assert StackSpec.from_json(paths["spec.json"].read_text()) == spec
    assert paths["members/base.keras"].read_bytes() == source.read_bytes()
    reloaded = keras.saving.load_model(paths["model.keras"])
    x = np.random.default_rng(1).random((5, *IMAGE), dtype=np.float32)
    np.testing.assert_allclose(reloaded.predict(x, verbose=0), model.predict(x, verbose=0))
    leftovers = [p.name for p in out.rglob("*") if p.name.startswith(".") or p.suffix == ".tmp"]
    assert leftovers == []


def test_generated_script_trains_from_an_npz_file_and_keeps_the_runs_model(tmp_path):
    model, spec, source = file_member_stack(tmp_path)
    out = tmp_path / "run"
    export_run(model, spec, HISTORY, out, member_sources={"base": source}, compile_args=COMPILE_ARGS)
    run_model = (out / "model.keras").read_bytes()
    rng = np.random.default_rng(2)
    np.savez(tmp_path / "data.npz", x=rng.random((16, *IMAGE), dtype=np.float32),
             y=rng.integers(0, 3, 16))
    # Run inside the run folder, as from an unpacked bundle: model.keras there is the run's.
    result = subprocess.run(
        [sys.executable, str(out / "stack.py"), str(tmp_path / "data.npz")], cwd=out,
        capture_output=True, text=True, timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Saved trained.keras" in result.stdout
    assert (out / "model.keras").read_bytes() == run_model
    trained = keras.saving.load_model(out / "trained.keras")
    assert trained.count_params() == model.count_params()
    assert trainable_count(trained) == trainable_count(model)


def test_a_failed_save_leaves_the_previous_model_and_no_temporary_file(tmp_path, monkeypatch):
    model, spec = sequential_stack()
    out = tmp_path / "run"
    out.mkdir()
    (out / "model.keras").write_bytes(b"previous model")

    def crash_halfway(self, path, *args, **kwargs):
        Path(path).write_bytes(b"half a model")
        raise OSError("disk full")

    monkeypatch.setattr(keras.Model, "save", crash_halfway)
    with pytest.raises(OSError, match="disk full"):
        export_run(model, spec, HISTORY, out, compile_args=COMPILE_ARGS)
    assert (out / "model.keras").read_bytes() == b"previous model"
    assert sorted(p.name for p in out.iterdir()) == ["model.keras"]
