"""The device choice end to end: a dashboard whose CPU is split in two (STACKLAB_CPU_DEVICES=2,
no GPU: STACKLAB_GPUS=""), a run trained data parallel over both CPU devices from the Train
page, and the devices and samples/s it reports on the page and in the run store.

The server is this module's own (the session's `server` has no CPU split). Screenshots go to
test-artifacts/e2e/ (devices-*.png).
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from core.spec import DistributionSpec
from tests.e2e import ui
from tests.e2e.conftest import SERVER_ERROR
from tests.e2e.server import ServerError, start_dashboard

pytestmark = pytest.mark.e2e

EPOCHS = 2
SPLIT = "CPU (2 devices)"


@pytest.fixture(scope="module")
def split_server(tmp_path_factory, artifacts):
    """The dashboard on a machine without GPUs whose CPU is split into 2 devices."""
    try:
        running = start_dashboard(tmp_path_factory.mktemp("e2e-devices-home"), artifacts / "server-devices.log",
                                  env={"STACKLAB_CPU_DEVICES": "2", "STACKLAB_GPUS": ""})
    except ServerError as error:
        pytest.fail(str(error))
    yield running
    running.stop()


@pytest.fixture
def split_tab(split_server, chromium, artifacts, request):
    context = chromium.new_context(viewport=ui.VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(ui.TIMEOUT_MS)
    log_start = split_server.log_size()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        page.screenshot(path=artifacts / f"{request.node.name}-failure.png")
    context.close()
    log = split_server.log_text(log_start)
    assert not SERVER_ERROR.search(log), f"The dashboard logged an error during the test:\n{log[-4000:]}"


def test_a_run_trains_data_parallel_over_the_split_cpu_and_says_so(split_tab, split_server, artifacts, monkeypatch):
    page = split_tab
    ui.open_app(page, split_server.url)
    choice = ui.keyed(page, "draft-train-devices")
    expect(choice.get_by_text("CPU", exact=True)).to_be_visible()
    choice.get_by_text(SPLIT, exact=True).click()
    ui.wait_idle(page)
    expect(page.get_by_text(re.compile(r"^Batch \d+ = 2 devices × \d+ per device; the learning rate is not scaled"
                                       r"\.$"))).to_be_visible()
    expect(page.get_by_text("data parallel over 2 CPU devices")).to_be_visible()
    ui.shot(page, artifacts, "devices-train-page", focus=ui.keyed(page, "train-devices"))

    run_id = ui.start_training(page, EPOCHS)
    ui.wait_until_finished(page, run_id)
    expect(page.get_by_text(re.compile(rf"Finished {EPOCHS} epochs in .* on 2 × CPU at [\d,.]+ samples/s\."))
           ).to_be_visible()
    ui.shot(page, artifacts, "devices-finished", focus=page.get_by_text(f"Finished {EPOCHS} epochs"))

    monkeypatch.setenv("STACKLAB_HOME", str(split_server.home))
    from core import runs

    run = runs.get(run_id)
    assert run.spec.train.distribution == DistributionSpec("data_parallel", accelerator="cpu")
    assert (run.strategy, run.device_label, run.gpus) == ("data_parallel", "2 × CPU", ())
    assert run.samples_per_s is not None and run.samples_per_s > 0
