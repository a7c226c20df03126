"""Benchmark cases of the live charts at scale, used by bench/dashboard_latency.py:

1. a 1,000-epoch run (a tiny model, short epochs) watched live: per update, the server's
   side (the live route's answer, request to response as the browser times it, and its
   bytes; or, served without the route, the live-view fragment's rerun and the bytes it
   sends) and the browser's side (the component's own drawing time of the update), early in
   the run (epochs <= 10 % of it) against late (>= 90 %), and Chromium's CPU in the same two
   windows. Target: the per-update cost at epoch 1,000 is <= 1.2x the cost at epoch 10;
2. the Runs page overlay of many finished runs (20 x 200 epochs, written straight to a run
   store of their own): from ticking every row to every run's curve drawn, and from a click
   on the log-y switch to the charts redrawn (responsiveness). Target: drawn within 1 s.

Run alone with `.venv/bin/python bench/long_views.py [--epochs 1000] [--runs 20 --run-epochs 200]`.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import psutil  # noqa: E402

from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec  # noqa: E402
from tests.e2e import ui  # noqa: E402
from tests.e2e.server import launch_chromium, start_dashboard  # noqa: E402

SAMPLE_S = 0.25  # how often the CPU of Chromium is read during the long run
# The overlay chart holds every run's curve in full (a raw and a smoothed trace per run).
OVERLAY = ".slc-card[data-chart=overlay]"
OVERLAY_DRAWN_JS = """([runs, epochs]) => {
    const plot = document.querySelector('.slc-card[data-chart=overlay] .js-plotly-plot');
    return Boolean(plot && plot.data && plot.data.filter((t) => (t.x || []).length >= epochs).length >= runs);
}"""
OVERLAY_LOG_JS = """() => {
    const plot = document.querySelector('.slc-card[data-chart=overlay] .js-plotly-plot');
    return Boolean(plot && plot._fullLayout && plot._fullLayout.yaxis.type === 'log');
}"""


def tiny_spec(folder: Path, epochs: int) -> StackSpec:
    """A one-batch epoch: 256 random 8-feature rows, an MLP; Keras's own per-epoch work dominates."""
    rng = np.random.default_rng(0)
    path = folder / "tiny.npz"
    np.savez(path, x=rng.normal(size=(320, 8)).astype("float32"), y=rng.integers(0, 3, 320))
    return StackSpec(name="long", members=(MemberSpec("mlp", template="mlp", params={"hidden_units": [16]}),
                                           MemberSpec("head", template="dense_head", params={"hidden_units": []})),
                     train=TrainSpec(epochs=epochs, batch_size=256, validation_split=0.2),
                     dataset=DatasetSpec(source="npz", path=str(path), scaling="none"))


def chromium_seconds() -> float:
    total = 0.0
    for process in psutil.Process().children(recursive=True):
        try:
            if "chrom" in process.name().lower():
                times = process.cpu_times()
                total += times.user + times.system
        except psutil.Error:
            continue
    return total


def watch_reruns(page, reruns: list[tuple[float, float, int]]) -> None:
    """(time, duration, bytes received) of each fragment auto-rerun: from its request frame to
    the server's script_finished frame, with the bytes of the frames in between."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    pending: list[list[float]] = []

    def on_sent(payload) -> None:
        if isinstance(payload, bytes):
            message = BackMsg()
            message.ParseFromString(payload)
            if message.WhichOneof("type") == "rerun_script" and message.rerun_script.is_auto_rerun:
                pending[:] = [[time.perf_counter(), 0]]

    def on_received(payload) -> None:
        if not isinstance(payload, bytes) or not pending:
            return
        pending[0][1] += len(payload)
        message = ForwardMsg()
        message.ParseFromString(payload)
        if (message.WhichOneof("type") == "script_finished"
                and message.script_finished == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY):
            began, size = pending.pop()
            reruns.append((time.time(), time.perf_counter() - began, int(size)))

    page.on("websocket", lambda socket: (socket.on("framesent", on_sent), socket.on("framereceived", on_received)))


def watch_answers(page, answers: list[tuple[float, float, int]]) -> None:
    """(time, duration, bytes) of each answer of the live route, as the browser timed it."""

    def on_finished(request) -> None:
        if "/api/runs/" in request.url:
            timing = request.timing
            answers.append((time.time(), (timing["responseEnd"] - timing["requestStart"]) / 1000,
                            request.sizes()["responseBodySize"]))

    page.on("requestfinished", on_finished)


# The component marks the update it drew last and how long drawing it took.
DRAWN_JS = "() => { const r = document.querySelector('.slc-root'); return r && [r.dataset.seq, r.dataset.drawMs]; }"


def long_run(browser, server, home: Path, epochs: int) -> dict[str, float]:
    """Watch a run of `epochs` short epochs; per-update costs early and late in it."""
    from core import runs

    run_id = runs.start(tiny_spec(home, epochs))
    context = browser.new_context(viewport=ui.VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(ui.TRAIN_TIMEOUT_MS)
    reruns: list[tuple[float, float, int]] = []
    watch_reruns(page, reruns)
    answers: list[tuple[float, float, int]] = []
    watch_answers(page, answers)
    page.goto(f"{server.url}/")
    cpu: list[tuple[float, float]] = []
    draws: dict[str, tuple[float, float]] = {}  # update seq -> (time seen, the component's drawing ms)
    deadline = time.monotonic() + 1800
    try:
        while runs.get(run_id).is_active and time.monotonic() < deadline:
            cpu.append((time.time(), chromium_seconds()))
            seen = page.evaluate(DRAWN_JS)
            if seen and seen[0] and seen[1] and seen[0] not in draws:
                draws[seen[0]] = (time.time(), float(seen[1]))
            page.wait_for_timeout(SAMPLE_S * 1000)
        run = runs.wait(run_id, timeout_s=60, poll_s=0.5)
        if run.status != "finished":
            raise SystemExit(f"run {run_id} {run.status}: {run.error}")
        page.wait_for_timeout(1500)  # the last update
        drawn = ui.chart_points(page)
    finally:
        context.close()
    ends = [row["ended_at"] for row in runs.metrics(run_id)]
    early_end, late_start = ends[max(len(ends) // 10 - 1, 0)], ends[len(ends) * 9 // 10]
    updates = answers or reruns  # the live route's answers when it is served, else the fragment's reruns
    early = [(d, b) for t, d, b in updates if ends[0] <= t <= early_end]
    late = [(d, b) for t, d, b in updates if late_start <= t <= ends[-1]]
    early_draw = [ms for t, ms in draws.values() if ends[0] <= t <= early_end]
    late_draw = [ms for t, ms in draws.values() if late_start <= t <= ends[-1]]

    def share(start: float, end: float) -> float:
        inside = [(t, s) for t, s in cpu if start <= t <= end]
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0]) if len(inside) > 1 else float("nan")

    def median(values) -> float:
        values = list(values)
        return statistics.median(values) if values else float("nan")

    result = {"epochs": len(ends), "drawn": drawn, "epoch_s": statistics.median(np.diff(ends)),
              "early_ms": median(d for d, _ in early) * 1000, "late_ms": median(d for d, _ in late) * 1000,
              "early_bytes": median(b for _, b in early), "late_bytes": median(b for _, b in late),
              "early_cpu": share(ends[0], early_end), "late_cpu": share(late_start, ends[-1]),
              "early_reruns": len(early), "late_reruns": len(late), "kind": "route answer" if answers else
              "fragment rerun", "early_draw_ms": median(early_draw), "late_draw_ms": median(late_draw),
              "early_draws": len(early_draw), "late_draws": len(late_draw)}
    return result


def fill_store(home: Path, count: int, epochs: int) -> list[str]:
    """`count` finished runs of `epochs` epochs each, written as a worker writes them."""
    from core.runs.store import RunStore
    from core.spec.events import EpochEnd, RunStarted
    from dashboard.spec_edit import default_spec

    store = RunStore(home)
    rng = np.random.default_rng(1)
    ids = []
    for number in range(count):
        spec = default_spec().replace(name=f"overlay_{number}")
        run_id = store.create(spec)
        store.update(run_id, status="running", started_at=time.time() - epochs)
        store.record(run_id, RunStarted(epochs=epochs, steps_per_epoch=10, total_params=1, trainable_params=1))
        loss = 2.0 + rng.random()
        for epoch in range(1, epochs + 1):
            loss *= 0.99 + 0.005 * rng.random()
            store.record(run_id, EpochEnd(epoch=epoch, phase="train", duration_s=1.0, learning_rate=1e-3,
                                          metrics={"loss": loss, "val_loss": loss * 1.1, "accuracy": 1 - loss / 3,
                                                   "val_accuracy": 1 - loss / 2.8}, member_updates={}))
        store.update(run_id, status="finished", ended_at=time.time())
        ids.append(run_id)
    store.close()
    return ids


def overlay(browser, count: int, epochs: int) -> dict[str, float]:
    """The Runs page overlay of `count` runs x `epochs` epochs, in a store of its own."""
    with tempfile.TemporaryDirectory(prefix="stacklab-overlay-") as tmp:
        home = Path(tmp)
        before = os.environ.get("STACKLAB_HOME")
        os.environ["STACKLAB_HOME"] = str(home)  # where the store puts each run's folder
        try:
            fill_store(home, count, epochs)
        finally:
            if before is not None:
                os.environ["STACKLAB_HOME"] = before
        server = start_dashboard(home, home / "server.log")
        context = browser.new_context(viewport=ui.VIEWPORT)
        page = context.new_page()
        page.set_default_timeout(ui.TRAIN_TIMEOUT_MS)
        try:
            ui.open_app(page, server.url, "runs")
            table = page.get_by_test_id("stDataFrame").first
            table.wait_for()
            # The page has loaded when the newest run's own curves are drawn (plotly.js, 3.5 MB,
            # parsed): a user ticks rows on a loaded page, so that load is not the overlay's time.
            page.wait_for_function("() => [...document.querySelectorAll('.slc-root')].some((r) => r.dataset.seq)")
            box = table.bounding_box()
            started = time.perf_counter()
            page.mouse.click(box["x"] + ui.ROW_MARKER_X, box["y"] + ui.ROW_PX / 2)  # the header: every row
            page.wait_for_function(OVERLAY_DRAWN_JS, arg=[count, epochs], polling="raf", timeout=120_000)
            drawn_s = time.perf_counter() - started
            root = page.locator(OVERLAY).locator("xpath=ancestor::div[contains(@class, 'slc-root')]")
            draw_ms = float(root.get_attribute("data-draw-ms") or "nan")
            ui.shot(page, ROOT / "test-artifacts", "bench-overlay")
            started = time.perf_counter()
            root.locator(".slc-log").click()
            page.wait_for_function(OVERLAY_LOG_JS, polling="raf", timeout=60_000)
            log_s = time.perf_counter() - started
        finally:
            context.close()
            server.stop()
    return {"drawn_s": drawn_s, "draw_ms": draw_ms, "log_s": log_s}


def report_long(result: dict[str, float]) -> None:
    ratio = result["late_ms"] / result["early_ms"]
    kind = result["kind"]
    print(f"{result['epochs']}-epoch run ({result['epoch_s'] * 1000:.0f} ms epochs), {result['drawn']} points drawn: "
          f"{kind} median {result['early_ms']:.0f} ms early ({result['early_reruns']} of them, epochs <= 10 %) "
          f"vs {result['late_ms']:.0f} ms late ({result['late_reruns']}, epochs >= 90 %): {ratio:.2f}x "
          f"(target <= 1.2); bytes per {kind} {result['early_bytes']:.0f} vs {result['late_bytes']:.0f}; "
          f"the component drawing an update {result['early_draw_ms']:.1f} ms early ({result['early_draws']}) vs "
          f"{result['late_draw_ms']:.1f} ms late ({result['late_draws']}): "
          f"{result['late_draw_ms'] / result['early_draw_ms']:.2f}x; "
          f"Chromium {result['early_cpu'] * 100:.1f} % vs {result['late_cpu'] * 100:.1f} % of a core")


def report_overlay(result: dict[str, float], count: int, epochs: int) -> None:
    print(f"Runs overlay of {count} runs x {epochs} epochs: every curve drawn {result['drawn_s'] * 1000:.0f} ms after "
          f"the rows were ticked, the page's rerun included (target <= 1000 ms); the component's own drawing "
          f"{result['draw_ms']:.0f} ms; log-y switched and redrawn in {result['log_s'] * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--run-epochs", type=int, default=200)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="stacklab-bench-") as tmp:
        home = Path(tmp)
        os.environ["STACKLAB_HOME"] = str(home)
        server = start_dashboard(home, home / "server.log")
        playwright = sync_playwright().start()
        try:
            browser = launch_chromium(playwright)
            long = long_run(browser, server, home, args.epochs) if args.epochs else None
            lots = overlay(browser, args.runs, args.run_epochs) if args.runs else None
            browser.close()
        finally:
            playwright.stop()
            server.stop()
    if long:
        report_long(long)
    if lots:
        report_overlay(lots, args.runs, args.run_epochs)


if __name__ == "__main__":
    main()
