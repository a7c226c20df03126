"""The live-chart component end to end: a real run watched in headless Chromium.

The charts grow by deltas (dashboard/live_chart.py) that the component fetches from the
live route (dashboard/live_api.py) with its progress line, survive a reload, smooth, switch to a
log scale and to wall time, download as PNG, and plotly.js comes from the dashboard itself,
once per page load. The Runs page overlays 20 runs of 200 epochs. Screenshots go to
test-artifacts/e2e/ (live-charts-*.png).
"""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import expect

from tests.e2e import ui

pytestmark = pytest.mark.e2e

EPOCHS = 12  # about a second each: the run still trains after the reload
PLOTLY_FILE = "stacklab.plotly/plotly.min.js"
SLIDER_JS = """(value) => {
    const slider = document.querySelector('.slc-smoothing');
    slider.value = String(value);
    slider.dispatchEvent(new Event('input', {bubbles: true}));
}"""


def loss_chart(page) -> dict:
    return next(chart for chart in ui.charts(page) if chart["id"] == "metric-loss")


def trace(chart: dict, name: str) -> dict:
    return next(t for t in chart["traces"] if t["name"] == name)


def test_the_live_charts_grow_survive_a_reload_smooth_and_download(tab, server, server_runs, artifacts, tmp_path):
    requested: list[str] = []
    tab.on("request", lambda request: requested.append(request.url))
    ui.open_app(tab, server.url)
    run_id = ui.start_training(tab, EPOCHS)
    ui.wait_for_chart_points(tab, 3)
    first = trace(loss_chart(tab), "training")
    # The component follows the run through the live route: its own progress line, no reruns.
    expect(tab.locator(".slc-status-text")).to_contain_text(f" of {EPOCHS}")
    assert tab.locator('[data-testid="stProgress"]').count() == 0
    ui.shot(tab, artifacts, "live-charts-3-epochs", focus=tab.locator(".slc-root"))
    assert first["x"][:3] == [1, 2, 3]

    tab.reload()
    ui.heading(tab, "Train").wait_for()
    ui.wait_for_chart_points(tab, 3, timeout_ms=ui.TIMEOUT_MS)  # the whole history at once
    again = trace(loss_chart(tab), "training")
    assert again["x"][:3] == [1, 2, 3] and again["y"][:3] == first["y"][:3]
    assert len(again["x"]) < EPOCHS and server_runs.get(run_id).is_active  # so what follows is new epochs
    ui.wait_for_chart_points(tab, EPOCHS)  # and it goes on with the deltas
    ui.wait_until_finished(tab, run_id)
    ui.wait_for_chart_points(tab, EPOCHS)
    chart = loss_chart(tab)
    assert trace(chart, "training")["x"] == list(range(1, EPOCHS + 1))
    assert [row["epoch"] for row in server_runs.metrics(run_id)] == list(range(1, EPOCHS + 1))
    assert sum(f"/api/runs/{run_id}/live" in url for url in requested) >= EPOCHS
    # plotly.js came from the dashboard, once per page load (two loads), and nothing left the machine.
    assert sum(PLOTLY_FILE in url for url in requested) == 2, [u for u in requested if "plotly" in u]
    # The component's own module and styles are not fetched per update either: an update
    # carries data only. (Two page loads; under load Streamlit may also remount the
    # component when the page reruns once for each status the run goes through: running,
    # finished. Against at least one route answer per epoch.)
    for name in ("live_chart.js", "live_chart.css"):
        assert sum(url.endswith(f"stacklab.live_chart/{name}") for url in requested) <= 4 < EPOCHS, \
            [url for url in requested if "live_chart" in url]
    assert all(url.startswith((server.url, "data:", "blob:")) for url in requested), \
        [url for url in requested if not url.startswith((server.url, "data:", "blob:"))]
    ui.shot(tab, artifacts, "live-charts-finished", focus=tab.locator(".slc-root"))

    tab.evaluate(SLIDER_JS, 0.8)
    expect(tab.locator(".slc-smoothing-value")).to_have_text("0.80")
    # The curves are smoothed in the next animation frame, in the browser alone (no rerun).
    tab.wait_for_function("() => document.querySelector('.js-plotly-plot').data.some("
                          "(t) => t.name === 'training (smoothed)' && t.visible === true)")
    chart = loss_chart(tab)
    raw, smoothed = trace(chart, "training"), trace(chart, "training (smoothed)")
    assert smoothed["visible"] is True and raw["opacity"] < 1
    assert smoothed["x"] == raw["x"] and smoothed["y"] != raw["y"]
    assert smoothed["y"][0] == pytest.approx(raw["y"][0])  # debiased: it starts at the data
    ui.shot(tab, artifacts, "live-charts-smoothed", focus=tab.locator(".slc-root"))

    with tab.expect_download() as download:
        tab.locator(".slc-card[data-chart=metric-loss] .slc-png").click()
    assert download.value.suggested_filename.endswith("metric-loss.png"), download.value.suggested_filename
    target = tmp_path / download.value.suggested_filename
    download.value.save_as(target)
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and target.stat().st_size > 5000

    tab.locator(".slc-log").check()
    assert tab.evaluate("() => document.querySelector('.js-plotly-plot').layout.yaxis.type") == "log"
    tab.locator(".slc-x").select_option("time")
    timed = trace(loss_chart(tab), "training")["x"]
    assert timed == sorted(timed) and timed != list(range(1, EPOCHS + 1))  # seconds since the start
    ui.shot(tab, artifacts, "live-charts-log-time", focus=tab.locator(".slc-root"))

    # Back from another page in the same session: the new component asks for the history
    # this session had sent the old one, and draws it whole.
    ui.go_to(tab, "Runs")
    ui.go_to(tab, "Train")
    ui.wait_for_chart_points(tab, EPOCHS, timeout_ms=ui.TIMEOUT_MS)
    assert trace(loss_chart(tab), "training")["x"] == list(range(1, EPOCHS + 1))
    ui.no_app_exception(tab)


def test_twenty_runs_of_200_epochs_are_overlaid_and_smoothed_together(tab, server, server_runs, artifacts):
    from core.spec.events import EpochEnd
    from tests.dashboard.apptest import TINY

    store = server_runs.current_store()
    start = time.time() - 3600
    with store.transaction():
        for index in range(20):
            run_id = store.create(TINY.replace(name=f"overlay{index:02d}"))
            store.update(run_id, status="finished", started_at=start, ended_at=start + 200, epochs_done=200,
                         epochs_total=200)
            for epoch in range(1, 201):
                store.record(run_id, EpochEnd(
                    epoch=epoch, phase="train", duration_s=1.0, learning_rate=1e-3, ended_at=start + epoch,
                    metrics={"loss": 1 / epoch + index / 100, "val_accuracy": 0.5 + 0.4 * epoch / 200 - index / 100}))
    ui.open_app(tab, server.url, "runs")
    # The table's header row marker ticks every row.
    box = tab.get_by_test_id("stDataFrame").first.bounding_box()
    tab.mouse.click(box["x"] + ui.ROW_MARKER_X, box["y"] + ui.ROW_PX / 2)
    overlay = tab.locator(".slc-card[data-chart=overlay]")
    overlay.wait_for()
    tab.wait_for_function("""() => {
        const plot = document.querySelector('.slc-card[data-chart=overlay] .js-plotly-plot');
        return plot && plot.data.filter((t) => t.x.length === 200).length >= 40;
    }""", polling=50)
    ui.wait_idle(tab)
    # Smoothing all 20 runs happens in the browser (how fast: bench/long_views.py, not here).
    root = overlay.locator("xpath=ancestor::div[contains(@class, 'slc-root')]")
    raw = tab.evaluate("""() => document.querySelector('.slc-card[data-chart=overlay] .js-plotly-plot').data
        .filter((t) => t.x.length === 200).map((t) => Array.from(t.y).slice(-3))""")
    tab.evaluate("""() => {
        const slider = document.querySelector('.slc-card[data-chart=overlay]').closest('.slc-root')
            .querySelector('.slc-smoothing');
        slider.value = '0.9';
        slider.dispatchEvent(new Event('input', {bubbles: true}));
    }""")
    tab.wait_for_function("""() => document.querySelector('.slc-card[data-chart=overlay]').closest('.slc-root')
        .dataset.smoothMs !== undefined""")
    smoothed = tab.evaluate("""() => document.querySelector('.slc-card[data-chart=overlay] .js-plotly-plot').data
        .filter((t) => t.x.length === 200).map((t) => Array.from(t.y).slice(-3))""")
    assert len(smoothed) == len(raw) >= 40 and smoothed != raw  # every run's smoothed curve changed
    assert root.get_attribute("data-draw-ms") is not None
    ui.shot(tab, artifacts, "live-charts-overlay-20-runs", focus=overlay)
    ui.no_app_exception(tab)
