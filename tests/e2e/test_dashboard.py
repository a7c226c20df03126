"""The dashboard end to end: a real Streamlit server, headless Chromium, real training runs.

Each test opens a fresh browser session on the one server of the test session. Runs train
one at a time (STACKLAB_MAX_WORKERS=1) and each test waits for its own, so the newest run
is always the test's own. Screenshots of the key moments go to test-artifacts/e2e/.
The last test checks that the server process, after all that, never loaded TensorFlow.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import psutil
import pytest
from playwright.sync_api import expect

from tests.e2e import ui
from tests.e2e.server import start_dashboard

pytestmark = pytest.mark.e2e

EPOCHS = 2
# Shared objects of machine-learning runtimes; Keras itself is pure Python and shows up
# through its backend's (TensorFlow by default, JAX with KERAS_BACKEND=jax).
ML_LIBRARIES = re.compile(r"tensorflow|keras|jaxlib|torch", re.IGNORECASE)


def digits_shaped_model(folder: Path, name: str, lambda_layer: bool = False) -> Path:
    """A model file made by plain Keras, for 28x28x1 inputs: a small CNN feature extractor
    (Conv2D, pooling, Flatten, Dense features), or one that doubles its input in a Lambda layer."""
    import keras

    keras.utils.set_random_seed(7)
    inputs = keras.Input((28, 28, 1), name="pixels")
    if lambda_layer:
        x = keras.layers.Lambda(lambda t: t * 2.0, name="double")(inputs)
        x = keras.layers.Flatten(name="flatten")(x)
    else:
        x = keras.layers.Conv2D(8, 3, activation="relu", name="conv")(inputs)
        x = keras.layers.MaxPooling2D(2, name="pool")(x)
        x = keras.layers.Flatten(name="flatten")(x)
        x = keras.layers.Dense(32, activation="relu", name="features")(x)
    path = folder / f"{name}.keras"
    keras.Model(inputs, x, name=name).save(path)
    return path


def train_to_the_end(page, artifacts: Path, name: str) -> str:
    """Train the draft for EPOCHS epochs from the Train page; returns the finished run's id."""
    run_id = ui.start_training(page, EPOCHS)
    live = page.get_by_test_id("stProgress").or_(page.get_by_text(f"Finished {EPOCHS} epochs"))
    live.first.wait_for(timeout=ui.TRAIN_TIMEOUT_MS)
    ui.shot(page, artifacts, f"{name}-training", focus=live.first)
    ui.wait_until_finished(page, run_id)
    ui.wait_for_chart_points(page, EPOCHS)
    assert ui.chart_points(page) == EPOCHS
    expect(page.get_by_text(f"Finished {EPOCHS} epochs")).to_be_visible()
    ui.no_app_exception(page)
    ui.shot(page, artifacts, f"{name}-finished", focus=page.locator(".js-plotly-plot").first)
    return run_id


def download_from_runs_page(page, run_id: str, folder: Path, artifacts: Path, name: str) -> Path:
    ui.go_to(page, "Runs")
    # With nothing selected the page details the newest run: this test's.
    expect(page.get_by_role("heading", name=re.compile(re.escape(run_id)))).to_be_visible()
    path = ui.download_model(page, folder)
    ui.shot(page, artifacts, f"{name}-runs-page")
    return path


def test_train_the_default_stack_and_download_the_model(tab, server, server_runs, artifacts, tmp_path):
    ui.open_app(tab, server.url)
    expect(tab.get_by_text("sequential_digits28 · sequential: model_a → model_b")).to_be_visible()
    ui.shot(tab, artifacts, "default-stack-train-page")

    run_id = train_to_the_end(tab, artifacts, "default-stack")
    run = server_runs.get(run_id)
    assert (run.status, run.epochs_total, run.epochs_done) == ("finished", EPOCHS, EPOCHS)

    path = download_from_runs_page(tab, run_id, tmp_path, artifacts, "default-stack")
    assert run_id in path.name

    import keras

    from core.data import load_dataset
    from core.spec import DatasetSpec

    model = keras.saving.load_model(path)
    digits = load_dataset(DatasetSpec(name="digits28"))
    assert model.input_shape == (None, 28, 28, 1)
    predictions = model.predict(digits.x, verbose=0)
    assert predictions.shape == (digits.num_samples, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-4)
    # Trained, not freshly initialised (chance is 0.1; two epochs reach ~0.9).
    assert (predictions.argmax(axis=1) == digits.y).mean() > 0.6


def test_transfer_stack_on_an_uploaded_model_keeps_its_weights(tab, server, server_runs, artifacts, tmp_path):
    base_path = digits_shaped_model(tmp_path, "cnn_base")
    ui.open_app(tab, server.url, "assemble")
    ui.choose(tab, "draft-mode", "transfer")
    freeze = ui.keyed(tab, "draft-options-transfer-freeze_base").locator("input")
    if not freeze.is_checked():
        freeze.check()
        ui.wait_idle(tab)
    expect(freeze).to_be_checked()

    # The members form's add panel, not the canvas's palette.
    ui.keyed(tab, "asm-add-member").get_by_role("tab", name="Model file (.keras, .h5)").click()
    ui.upload(tab, "add-file-upload", base_path)
    ui.button(tab, "add-file-button").click()  # waits for the inspected file's "Add member"
    ui.keyed(tab, "card-cnn_base").wait_for()
    ui.wait_idle(tab)
    # The switch to transfer made the chain's dense head, model_b, the head; the
    # template feature extractor goes, the uploaded model is the base.
    ui.button(tab, "remove-model_a").click()
    expect(ui.keyed(tab, "card-model_a")).to_have_count(0)
    ui.wait_idle(tab)
    expect(tab.get_by_text("The stack builds: (28, 28, 1) → (10,).")).to_be_visible()
    base_params = 8 * (9 + 1) + 13 * 13 * 8 * 32 + 32  # conv + features
    expect(tab.get_by_test_id("stMetric").filter(has_text="Non-trainable")).to_contain_text(f"{base_params:,}")
    ui.shot(tab, artifacts, "transfer-assembled")

    ui.go_to(tab, "Train")
    expect(tab.get_by_text("transfer: cnn_base → model_b")).to_be_visible()
    run_id = train_to_the_end(tab, artifacts, "transfer")
    rows = server_runs.metrics(run_id)
    assert [row["epoch"] for row in rows] == [1, 2]
    assert all(row["member_updates"]["cnn_base"] == 0 for row in rows), rows
    assert all(row["member_updates"]["model_b"] > 0 for row in rows), rows

    path = download_from_runs_page(tab, run_id, tmp_path, artifacts, "transfer")
    bundle = ui.download(tab, "Download everything (.zip)", tmp_path)
    check_bundle_runs_anywhere(bundle, tmp_path)
    import keras

    uploaded = keras.saving.load_model(base_path)
    trained = keras.saving.load_model(path)
    base_in_stack = trained.get_layer("cnn_base")
    compared = 0
    for layer in uploaded.layers:
        for before, after in zip(layer.get_weights(), base_in_stack.get_layer(layer.name).get_weights(), strict=True):
            np.testing.assert_array_equal(after, before, err_msg=f"layer {layer.name} changed")
            compared += 1
    assert compared == 4  # conv and features: kernel and bias each
    assert trained.predict(np.zeros((2, 28, 28, 1), "float32"), verbose=0).shape == (2, 10)


def check_bundle_runs_anywhere(bundle: Path, folder: Path) -> None:
    """The downloaded zip, unpacked, holds a stack.py that rebuilds the stack with its uploaded
    base from members/, whatever the working directory."""
    import subprocess
    import sys
    import zipfile

    unpacked = folder / "unpacked"
    with zipfile.ZipFile(bundle) as archive:
        archive.extractall(unpacked)
    (script,) = unpacked.glob("*/stack.py")
    assert (script.parent / "members" / "cnn_base.keras").exists()
    code = ("import importlib.util, sys; spec = importlib.util.spec_from_file_location('stack', sys.argv[1]); "
            "module = importlib.util.module_from_spec(spec); spec.loader.exec_module(module); "
            "print(module.build_model().count_params())")
    done = subprocess.run([sys.executable, "-c", code, str(script)], cwd=folder, capture_output=True, text=True,
                          timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    assert int(done.stdout.strip().splitlines()[-1]) > 0


def test_a_refused_upload_shows_why_and_training_still_works(tab, server, server_runs, artifacts, tmp_path):
    refused_path = digits_shaped_model(tmp_path, "lambda_model", lambda_layer=True)
    ui.open_app(tab, server.url, "assemble")
    # The members form's add panel, not the canvas's palette.
    ui.keyed(tab, "asm-add-member").get_by_role("tab", name="Model file (.keras, .h5)").click()
    ui.upload(tab, "add-file-upload", refused_path)
    refusal = tab.get_by_test_id("stAlertContentError").filter(has_text="lambda_model.keras")
    expect(refusal).to_contain_text("Lambda layer")
    ui.wait_idle(tab)
    expect(ui.keyed(tab, "add-file-button")).to_have_count(0)
    ui.shot(tab, artifacts, "refused-upload", focus=refusal)

    ui.go_to(tab, "Train")
    expect(tab.get_by_text("sequential: model_a → model_b")).to_be_visible()  # the draft is untouched
    run_id = train_to_the_end(tab, artifacts, "after-refusal")
    assert server_runs.get(run_id).status == "finished"


def finished_runs_without_training(server_runs, monkeypatch, count: int) -> list[str]:
    """Finished runs written straight to the server's run store (no worker, no training)."""
    from core.runs import scheduler
    from tests.fake_runs import finished_run_with_artifacts

    monkeypatch.setattr(scheduler, "_spawn", lambda run_id: None)
    return [finished_run_with_artifacts() for _ in range(count)]


def test_deleting_the_bottom_run_leaves_no_run_selected_in_its_place(tab, server, server_runs, artifacts,
                                                                    monkeypatch):
    oldest, middle, newest = finished_runs_without_training(server_runs, monkeypatch, 3)
    ui.open_app(tab, server.url, "runs")
    ui.tick_row(tab, 2)  # the bottom row: the oldest run
    expect(tab.get_by_role("heading", name=re.compile(oldest))).to_be_visible()
    ui.button(tab, "runs-delete").click()
    expect(tab.get_by_test_id("stAlertContentWarning")).to_contain_text(f"Delete run {oldest} (tiny)")
    ui.button(tab, "runs-delete-confirm").click()
    expect(tab.get_by_text(f"Deleted run {oldest} (tiny).")).to_be_visible()
    ui.wait_idle(tab)
    ui.no_app_exception(tab)
    expect(ui.button(tab, "runs-delete")).to_have_count(0)  # no other run's Delete in its place
    ui.shot(tab, artifacts, "runs-after-delete")
    ui.tick_row(tab, 1)  # the bottom row now: the middle run
    expect(tab.get_by_role("heading", name=re.compile(middle))).to_be_visible()
    left = [run.id for run in server_runs.list_runs()]
    assert oldest not in left and {newest, middle} <= set(left)


def test_the_draft_comes_back_after_a_reload(tab, server):
    ui.open_app(tab, server.url, "assemble")
    name = ui.keyed(tab, "draft-name").locator("input")
    name.fill("kept_after_reload")
    name.press("Enter")
    ui.wait_idle(tab)
    # Saved before the reload (the rerun may start after the page looked idle).
    draft = server.home / "draft.json"
    deadline = time.monotonic() + ui.TIMEOUT_MS / 1000
    while "kept_after_reload" not in (draft.read_text() if draft.exists() else "") and time.monotonic() < deadline:
        tab.wait_for_timeout(100)
    tab.reload()
    ui.heading(tab, "Assemble").wait_for()
    ui.wait_idle(tab)
    expect(ui.keyed(tab, "draft-name").locator("input")).to_have_value("kept_after_reload")
    expect(tab.get_by_text("Saved as you edit")).to_be_visible()


def test_a_first_visit_to_a_page_address_shows_the_whole_app(tmp_path, chromium, artifacts):
    """A bookmark such as /runs, opened first after the server started, runs dashboard/app.py
    (navigation, page config, start-up), not the page file alone."""
    server = start_dashboard(tmp_path / "home", tmp_path / "server.log")
    context = chromium.new_context(viewport=ui.VIEWPORT)
    try:
        page = context.new_page()
        ui.open_app(page, server.url, "runs")
        expect(page.get_by_text("No runs yet. Start one on the Train page.")).to_be_visible()
        ui.shot(page, artifacts, "first-visit-to-runs")
        ui.go_to(page, "Assemble")
    finally:
        context.close()
        server.stop()


def mapped_ml_libraries(pid: int) -> set[str]:
    return {region.path for region in psutil.Process(pid).memory_maps() if ML_LIBRARIES.search(region.path)}


def inspector_process(server_pid: int) -> psutil.Process:
    for child in psutil.Process(server_pid).children():
        try:
            if "core.inspector.server" in child.cmdline():
                return child
        except psutil.Error:  # a worker that just ended (a zombie until the server reaps it)
            continue
    raise AssertionError("The server's inspector process is not running.")


def test_the_server_process_never_loads_tensorflow(tab, server, artifacts):
    """After every page was opened in the browser (and the tests before trained, uploaded and
    downloaded through it), the server has mapped no TensorFlow, Keras or JAX library. The
    inspector, its child, has: the check sees them where they are."""
    ui.open_app(tab, server.url)
    for title in ("Data", "Assemble", "Runs", "Train"):
        ui.go_to(tab, title)
        ui.no_app_exception(tab)
    ui.shot(tab, artifacts, "every-page-opened")

    assert mapped_ml_libraries(server.process.pid) == set()
    inspector = inspector_process(server.process.pid)
    assert any("tensorflow" in path for path in mapped_ml_libraries(inspector.pid))
