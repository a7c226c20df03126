"""The Runs page's export buttons: ONNX, SavedModel and LiteRT, exported on click, verified, offered."""

import pytest

from core import runs
from dashboard import services
from tests.dashboard.apptest import app, fake_run, open_page, texts

pytestmark = pytest.mark.usefixtures("inspector_home")
MISSING = ("LiteRT export needs ai-edge-litert, not installed here: run `pip install -r requirements-export.txt` "
           "in StackLab's checkout (about 180 MB) to add them.")
FORMATS = {"saved_model": {"label": "SavedModel", "file_name": "saved_model.zip", "missing": None},
           "onnx": {"label": "ONNX", "file_name": "model.onnx", "missing": None},
           "litert": {"label": "LiteRT", "file_name": "model.tflite", "missing": MISSING}}


@pytest.fixture
def finished(no_workers) -> str:
    run_id = fake_run(epochs=2, status="finished")
    folder = runs.get(run_id).folder
    (folder / "model.keras").write_bytes(b"a model")
    runs.current_store().add_artifact(run_id, "model.keras", folder / "model.keras")
    return run_id


@pytest.fixture
def exporter(monkeypatch):
    """services.export as the CLI answers it: the file in the run's folder, listed as an artifact."""
    asked = []

    def export(run_id, format):  # noqa: A002
        asked.append((run_id, format))
        if format == "saved_model":
            return "error", "SavedModel export failed at layer 'lookup' (Hashing): replace the layer."
        path = runs.get(run_id).folder / FORMATS[format]["file_name"]
        path.write_bytes(b"onnx bytes")
        runs.current_store().add_artifact(run_id, path.name, path)
        return "ok", {"path": str(path), "summary": "ONNX: model.onnx (10 B), max |ONNX - Keras| = 1.2e-07 on 100 "
                                                    "samples (limit 1e-04)"}

    monkeypatch.setattr(services, "export_formats", lambda: ("ok", FORMATS))
    monkeypatch.setattr(services, "export", export)
    return asked


def button(at, key):
    (found,) = [b for b in at.button if b.key == key]
    return found


def test_export_runs_on_click_shows_its_verification_and_offers_the_file(finished, exporter):
    at = open_page(app(), "runs")
    assert [b.key for b in at.button if b.key.startswith("runs-export-")] == [
        "runs-export-onnx", "runs-export-saved_model", "runs-export-litert"]
    assert exporter == []  # nothing exported before a click
    at = button(at, "runs-export-onnx").click().run()
    assert exporter == [(finished, "onnx")]
    assert "max |ONNX - Keras| = 1.2e-07 on 100 samples" in at.success[0].value
    assert "Download ONNX (.onnx)" in [b.label for b in at.download_button]
    at.run()  # later: the file is one of the run's downloads, not exported again
    assert "ONNX (.onnx)" in [b.label for b in at.download_button]
    assert "runs-export-onnx" not in [b.key for b in at.button] and exporter == [(finished, "onnx")]


def test_a_failed_export_says_why_and_the_keras_download_stays(finished, exporter):
    at = button(open_page(app(), "runs"), "runs-export-saved_model").click().run()
    assert "failed at layer 'lookup' (Hashing)" in at.error[0].value
    assert "Download model (.keras)" in [b.label for b in at.download_button]


def test_a_format_without_its_packages_says_which_command_adds_them(finished, exporter):
    at = open_page(app(), "runs")
    litert = button(at, "runs-export-litert")
    assert litert.disabled and litert.help == MISSING
    assert "pip install -r requirements-export.txt" in texts(at)


def test_the_formats_are_asked_of_core_export_in_a_child():
    outcome, formats = services.export_formats()
    assert outcome == "ok", formats
    assert {name: info["file_name"] for name, info in formats.items()} == {
        "saved_model": "saved_model.zip", "onnx": "model.onnx", "litert": "model.tflite"}
