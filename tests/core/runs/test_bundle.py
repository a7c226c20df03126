"""core.runs.bundle: a run's files as one zip whose stack.py runs from anywhere once unpacked."""

import io
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import pytest

from core import runs
from core.export.artifacts import export_run
from core.runs.bundle import bundle_name, run_bundle
from tests.core.export.export_stacks import COMPILE_ARGS, IMAGE, file_member_stack, import_script

ROOT = Path(__file__).resolve().parents[3]
HISTORY = [{"epoch": 1, "phase": "train", "loss": 1.2, "val_loss": 1.3, "learning_rate": 0.01, "duration_s": 0.5}]


def exported_run(tmp_path, status="finished"):
    """A transfer run over an uploaded model file, exported as the worker exports it."""
    model, spec, source = file_member_stack(tmp_path)
    store = runs.current_store()
    run_id = store.create(spec)
    for name, path in export_run(model, spec, HISTORY, runs.get(run_id).folder, member_sources={"base": source},
                                 compile_args=COMPILE_ARGS).items():
        store.add_artifact(run_id, name, path)
    store.update(run_id, status=status)
    return run_id, model, source


def unpacked(tmp_path, data: bytes) -> Path:
    target = tmp_path / "unpacked"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        archive.extractall(target)
    return target


def test_the_bundle_holds_one_folder_with_every_file_of_the_run(tmp_path):
    run_id, _, source = exported_run(tmp_path)
    name, data = run_bundle(run_id)
    assert name == f"transfer-{run_id}.zip"
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        assert sorted(archive.namelist()) == sorted(f"transfer-{run_id}/{file}" for file in (
            "model.keras", "stack.keras", "data.json", "stack.py", "spec.json", "history.csv", "members/base.keras"))
        assert archive.read(f"transfer-{run_id}/members/base.keras") == source.read_bytes()


def test_the_unpacked_script_loads_its_member_from_next_to_itself(tmp_path, monkeypatch):
    run_id, model, source = exported_run(tmp_path)
    folder = unpacked(tmp_path, run_bundle(run_id)[1]) / f"transfer-{run_id}"
    source.unlink()  # only the bundle's copy is left
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    built = subprocess.run([sys.executable, str(folder / "stack.py")], cwd=elsewhere, capture_output=True,
                           text=True, timeout=120, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert built.returncode == 0, built.stderr[-3000:]
    assert "base" in built.stdout and f"{model.count_params():,}" in built.stdout  # the summary
    monkeypatch.chdir(elsewhere)
    rebuilt = import_script(folder / "stack.py").build_model()
    assert rebuilt.count_params() == model.count_params()
    # The base's weights come from the member file, so they are the pretrained ones.
    for loaded, pretrained in zip(rebuilt.get_layer("base").get_weights(), model.get_layer("base").get_weights()):
        np.testing.assert_array_equal(loaded, pretrained)
    trained = keras.saving.load_model(folder / "model.keras")
    x = np.random.default_rng(0).random((2, *IMAGE), dtype=np.float32)
    np.testing.assert_allclose(trained.predict(x, verbose=0), model.predict(x, verbose=0), rtol=1e-6)


def test_a_run_without_files_or_still_active_or_too_large_is_refused(tmp_path, monkeypatch):
    with pytest.raises(ValueError, match="No run with id 'nope'"):
        run_bundle("nope")
    run_id, _, _ = exported_run(tmp_path, status="running")
    with pytest.raises(ValueError, match="is running: its files are written when it ends"):
        run_bundle(run_id)
    runs.current_store().update(run_id, status="stopped")
    with pytest.raises(ValueError, match=r"are [\d,]+ bytes together .* over the bundle limit of 1,000 bytes"):
        run_bundle(run_id, max_bytes=1000)
    monkeypatch.setenv("STACKLAB_MAX_BUNDLE_BYTES", "1000")
    with pytest.raises(ValueError, match="over the bundle limit of 1,000 bytes"):
        run_bundle(run_id)
    monkeypatch.setenv("STACKLAB_MAX_BUNDLE_BYTES", "lots")
    with pytest.raises(ValueError, match="STACKLAB_MAX_BUNDLE_BYTES must be a positive whole number"):
        run_bundle(run_id)
    monkeypatch.delenv("STACKLAB_MAX_BUNDLE_BYTES")
    failed = runs.current_store().create(runs.get(run_id).spec)
    runs.current_store().update(failed, status="failed", error="Cannot feed the input into 'base'")
    with pytest.raises(ValueError, match="has no model.keras, stack.py, spec.json, history.csv.*Cannot feed"):
        run_bundle(failed)


def test_the_name_is_safe_and_the_module_needs_no_keras(tmp_path):
    assert bundle_name("my stack/v2 ..", "20260101-120000-abc123") == "my_stack_v2-20260101-120000-abc123"
    assert bundle_name("../..", "x1") == "run-x1"
    code = "import sys, core.runs.bundle; print([m for m in ('keras', 'tensorflow') if m in sys.modules])"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
