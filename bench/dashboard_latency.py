"""Benchmark: what watching a run in the dashboard costs the run, and how fast an epoch shows.

Starts the real dashboard (`streamlit run dashboard/app.py`, as the e2e tests do) in a fresh
$STACKLAB_HOME and headless Debian Chromium, then trains the same spec (the seed's CNN on
10,000 28x28 digits, batch 64: ~1-2 s epochs; bench/run_overhead.py's data and spec) as
runs through `core.runs.start`, and prints:

1. the epoch-time ratio of a run watched live on the Train page by a browser over the same
   run with no browser open (the server idle, Chromium running with no page), in pairs
   whose order alternates, `--pairs` of them (target <= 1.03). Epoch time is the gap
   between consecutive epoch rows' `ended_at`; the first epoch (tracing) is skipped. Both
   the median gap and the minimum gap (the least disturbed epoch) are compared;
2. the server-side time of a page rerun while a run trains, two ways:
   - in this process, `streamlit.testing.v1.AppTest` runs the whole Train page (settings,
     the pre-flight check, the live view with its charts) once per POLL_S while a run
     trains; `at.run()` is timed (target <= 150 ms). An upper bound of the fragment
     rerun, which redraws only the live view;
   - on the real server, as the browser sees it: from the fragment's auto-rerun request
     leaving the browser to the server's "script finished" message arriving (WebSocket
     frames, decoded with Streamlit's protobufs), during the latency runs of 3;
3. epoch end -> point drawn: in `--latency-runs` watched runs, the live-chart component's
   loss chart (its trace "training", tests/e2e/ui.py `chart_points`) is read every 50 ms; the
   time a new point appears minus the epoch row's `ended_at` (target p95 <= 1 s);
4. the CPU that Chromium (all its processes) and the dashboard server (not the workers it
   starts) use while a run trains, watched and not, as a share of one core: where the
   epoch-time ratio comes from on a machine whose cores the browser shares with training;
5. with `--long-epochs N` and `--overlay-runs N` (bench/long_views.py): a watched run of N
   short epochs (the per-update cost late in it against early, target <= 1.2x) and the Runs
   page overlay of N finished runs of `--overlay-epochs` epochs (ticked -> drawn, <= 1 s);
6. with `--floor-runs N`: Chromium's CPU, while the same run trains, on a bare Streamlit page
   whose only content is a fragment rerunning every POLL_S with a caption and a progress bar
   (FLOOR_PAGE): the floor any 1 s fragment poll costs the browser, below which the live
   view cannot go without leaving Streamlit's rerun model.

Ratios are measured within one invocation because absolute times on a shared machine are
noise. Run from the repo root (about 5 minutes on 2 cores):

    .venv/bin/python bench/dashboard_latency.py [--pairs 7] [--epochs 8] [--latency-runs 2] \
        [--long-epochs 1000] [--overlay-runs 20]
"""

from __future__ import annotations

import argparse
import logging
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

from bench import long_views  # noqa: E402
from bench.run_overhead import bench_spec, epoch_times, make_digits_10k  # noqa: E402
from tests.e2e import ui  # noqa: E402
from tests.e2e.server import launch_chromium, start_dashboard  # noqa: E402

POLL_CHART_S = 0.05
# The reference page of point 6: what a fragment rerun every second costs Chromium, nothing else.
FLOOR_PAGE = """import time
import streamlit as st

st.title("A bare fragment, rerun every second")


@st.fragment(run_every={poll_s})
def poll():
    st.caption(f"now {{time.time():.1f}}")
    st.progress(time.time() % 10 / 10, text=f"Epoch {{int(time.time()) % 10}} of 10")


poll()
"""


def quiet_streamlit_without_runtime() -> None:
    """Here the dashboard's modules run without Streamlit's server: every cached function warns
    that it caches in memory. Streamlit sets a level on each of its loggers, so each is quieted."""
    from streamlit.logger import get_logger

    for name in ("streamlit.runtime.caching.cache_data_api", "streamlit.runtime.caching.cache_resource_api",
                 "streamlit.runtime.scriptrunner_utils.script_run_context"):
        get_logger(name).setLevel(logging.ERROR)


def run_epoch_times(run_id: str) -> tuple[float, float]:
    """(median, minimum) epoch time of a finished run (bench.run_overhead.epoch_times)."""
    from core import runs

    return epoch_times([row["ended_at"] for row in runs.metrics(run_id)])


def finished(run_id: str) -> None:
    from core import runs

    run = runs.wait(run_id, timeout_s=900, poll_s=0.5)
    if run.status != "finished":
        raise SystemExit(f"run {run_id} {run.status}: {run.error}")


class CpuMeter:
    """CPU used by Chromium (every process Playwright started) and by the dashboard server (its
    own process, not the run workers it starts) while a run trains, as a share of one core."""

    def __init__(self, server) -> None:
        self.server = psutil.Process(server.process.pid)
        self.samples: dict[str, list[float]] = {}

    @staticmethod
    def _seconds(processes: list[psutil.Process]) -> dict[int, float]:
        seconds = {}
        for process in processes:
            try:
                times = process.cpu_times()
            except psutil.Error:  # a renderer that just ended
                continue
            seconds[process.pid] = times.user + times.system
        return seconds

    def _chromium(self) -> list[psutil.Process]:
        return [p for p in psutil.Process().children(recursive=True) if "chrom" in p.name().lower()]

    def start(self) -> None:
        self._began = (time.monotonic(), self._seconds(self._chromium()), self._seconds([self.server]))

    def stop(self, kind: str, server_too: bool = True) -> None:
        """Record the share of a core used since `start`; a process that ended in between is
        not counted (Chromium ends a closed tab's renderer). `server_too=False`: Chromium only
        (the page shown was not the dashboard's)."""
        began, chromium, server = self._began
        wall = time.monotonic() - began
        measured = [("browser", chromium, self._seconds(self._chromium()))]
        if server_too:
            measured.append(("server", server, self._seconds([self.server])))
        for name, before, after in measured:
            used = sum(seconds - before.get(pid, 0.0) for pid, seconds in after.items())
            self.samples.setdefault(f"{kind}, {name}", []).append(used / wall)


def run_alone(spec, meter: CpuMeter) -> tuple[float, float]:
    from core import runs

    run_id = runs.start(spec)
    meter.start()
    finished(run_id)
    meter.stop("no browser")
    return run_epoch_times(run_id)


def open_live_view(browser, server, run_id: str):
    """A new tab on the Train page, showing `run_id` live."""
    context = browser.new_context(viewport=ui.VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(ui.TRAIN_TIMEOUT_MS)
    page.goto(f"{server.url}/")
    page.wait_for_function(
        "id => { const box = document.querySelector('[class*=st-key-train-run-picker] input');"
        " return box && box.value.startsWith(id); }", arg=run_id)
    return context, page


def run_watched(spec, browser, server, meter: CpuMeter) -> tuple[float, float]:
    from core import runs

    run_id = runs.start(spec)
    meter.start()
    context, _ = open_live_view(browser, server, run_id)
    try:
        finished(run_id)
        meter.stop("watched")
    finally:
        context.close()
    return run_epoch_times(run_id)


def run_floor(spec, browser, server, meter: CpuMeter) -> None:
    """A run trains while a tab shows the bare fragment page (FLOOR_PAGE) of `server`."""
    from core import runs

    run_id = runs.start(spec)
    meter.start()
    context = browser.new_context(viewport=ui.VIEWPORT)
    try:
        context.new_page().goto(server.url)
        finished(run_id)
        meter.stop("bare 1 s fragment page", server_too=False)
    finally:
        context.close()


def watch_fragment_reruns(page, durations: list[float]) -> None:
    """Time each fragment auto-rerun from its request frame to the server's script_finished frame."""
    from streamlit.proto.BackMsg_pb2 import BackMsg
    from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

    sent_at: list[float] = []

    def on_sent(payload) -> None:
        if isinstance(payload, bytes):
            message = BackMsg()
            message.ParseFromString(payload)
            if message.WhichOneof("type") == "rerun_script" and message.rerun_script.is_auto_rerun:
                sent_at.append(time.perf_counter())

    def on_received(payload) -> None:
        if isinstance(payload, bytes) and sent_at:
            message = ForwardMsg()
            message.ParseFromString(payload)
            if (message.WhichOneof("type") == "script_finished"
                    and message.script_finished == ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY):
                durations.append(time.perf_counter() - sent_at.pop(0))
                sent_at.clear()  # a request answered late is not matched to the next answer

    def on_websocket(socket) -> None:
        socket.on("framesent", on_sent)
        socket.on("framereceived", on_received)

    page.on("websocket", on_websocket)


def run_polled(spec, browser, server, latencies: dict[int, list[float]], reruns: list[float]) -> None:
    """A watched run whose chart is read every 50 ms: epoch end -> point drawn, by epoch."""
    from core import runs

    run_id = runs.start(spec)
    context = browser.new_context(viewport=ui.VIEWPORT)
    page = context.new_page()
    page.set_default_timeout(ui.TRAIN_TIMEOUT_MS)
    watch_fragment_reruns(page, reruns)
    page.goto(f"{server.url}/")
    drawn: dict[int, float] = {}
    deadline = time.monotonic() + 900
    try:
        while len(drawn) < spec.train.epochs and time.monotonic() < deadline:
            points = ui.chart_points(page)
            now = time.time()
            for epoch in range(1, points + 1):
                drawn.setdefault(epoch, now)
            page.wait_for_timeout(POLL_CHART_S * 1000)  # lets Playwright deliver the frame events
        finished(run_id)
    finally:
        context.close()
    rows = {row["epoch"]: row["ended_at"] for row in runs.metrics(run_id)}
    if len(drawn) < len(rows):
        raise SystemExit(f"run {run_id}: the chart showed {len(drawn)} of {len(rows)} epochs")
    for epoch, ended in rows.items():
        latencies.setdefault(epoch, []).append(drawn[epoch] - ended)


def apptest_reruns(spec, poll_s: float) -> list[float]:
    """Time whole Train-page reruns in this process (AppTest) while a run trains, one per poll_s."""
    from streamlit.testing.v1 import AppTest

    from core import runs
    from core.inspector import get_client

    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=180)
    at.run()  # starts this process's inspector and waits for its first answer: not timed
    durations = []
    try:
        run_id = runs.start(spec)
        while not runs.metrics(run_id):  # time reruns that draw the charts
            if not runs.get(run_id).is_active:
                break
            time.sleep(0.2)
        while runs.get(run_id).is_active:
            started = time.perf_counter()
            at.run()
            durations.append(time.perf_counter() - started)
            if at.exception:
                raise SystemExit(f"the Train page raised: {[e.value for e in at.exception]}")
            time.sleep(max(0.0, poll_s - durations[-1]))
        finished(run_id)
    finally:
        get_client().close()
    return durations


def ms(values: list[float]) -> str:
    return (f"median {statistics.median(values) * 1000:.0f} ms, p95 {np.percentile(values, 95) * 1000:.0f} ms, "
            f"max {max(values) * 1000:.0f} ms over {len(values)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--latency-runs", type=int, default=2)
    parser.add_argument("--no-apptest", action="store_true", help="skip the in-process AppTest reruns")
    parser.add_argument("--long-epochs", type=int, default=0, help="also watch a run of this many short epochs")
    parser.add_argument("--overlay-runs", type=int, default=0, help="also overlay this many runs on the Runs page")
    parser.add_argument("--overlay-epochs", type=int, default=200)
    parser.add_argument("--floor-runs", type=int, default=0,
                        help="also measure Chromium on a bare 1 s fragment page during this many runs")
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    quiet_streamlit_without_runtime()
    from dashboard.widgets.live import POLL_S

    with tempfile.TemporaryDirectory(prefix="stacklab-bench-") as tmp:
        home = Path(tmp)
        os.environ["STACKLAB_HOME"] = str(home)  # this process and the server share the run store
        spec = bench_spec(make_digits_10k(home), args.epochs)
        server = start_dashboard(home, home / "server.log")
        playwright = sync_playwright().start()
        try:
            browser = launch_chromium(playwright)
            meter = CpuMeter(server)
            ratios, min_ratios = [], []
            for pair in range(args.pairs):
                order = ("alone", "watched") if pair % 2 == 0 else ("watched", "alone")
                times = {kind: run_alone(spec, meter) if kind == "alone" else run_watched(spec, browser, server, meter)
                         for kind in order}
                (alone, alone_min), (watched, watched_min) = times["alone"], times["watched"]
                ratios.append(watched / alone)
                min_ratios.append(watched_min / alone_min)
                print(f"pair {pair + 1} ({' then '.join(order)}): no browser {alone:.3f} s/epoch (min {alone_min:.3f}),"
                      f" watched {watched:.3f} s/epoch (min {watched_min:.3f}), ratio {ratios[-1]:.3f} "
                      f"(of minima {min_ratios[-1]:.3f})", flush=True)
            latencies: dict[int, list[float]] = {}
            fragment_reruns: list[float] = []
            for _ in range(args.latency_runs):
                run_polled(spec, browser, server, latencies, fragment_reruns)
                print("latency run: epoch end -> point drawn, by epoch: " + ", ".join(
                    f"{epoch}: {values[-1] * 1000:.0f} ms" for epoch, values in sorted(latencies.items())), flush=True)
            long = long_views.long_run(browser, server, home, args.long_epochs) if args.long_epochs else None
            lots = long_views.overlay(browser, args.overlay_runs, args.overlay_epochs) if args.overlay_runs else None
            if args.floor_runs:
                script = home / "floor_page.py"
                script.write_text(FLOOR_PAGE.format(poll_s=POLL_S))
                floor_server = start_dashboard(home, home / "floor.log", script=str(script))
                try:
                    for _ in range(args.floor_runs):
                        run_floor(spec, browser, floor_server, meter)
                finally:
                    floor_server.stop()
            page_reruns = [] if args.no_apptest else apptest_reruns(spec, POLL_S)
            if page_reruns:
                print(f"AppTest Train-page reruns: {ms(page_reruns)}", flush=True)
            browser.close()
        finally:
            playwright.stop()
            server.stop()

    print(f"\nepoch time, watched live / no browser: median of pair ratios {statistics.median(ratios):.3f} "
          f"(pairs {min(ratios):.3f}-{max(ratios):.3f}); of the fastest epochs {statistics.median(min_ratios):.3f} "
          f"(pairs {min(min_ratios):.3f}-{max(min_ratios):.3f}); target <= 1.03")
    for kind, values in meter.samples.items():
        print(f"CPU while a run trains, {kind}: median {statistics.median(values) * 100:.1f}% of a core "
              f"(runs {min(values) * 100:.1f}-{max(values) * 100:.1f}%)")
    if page_reruns:
        print(f"Train page rerun while a run trains, AppTest in-process (whole page, one per {POLL_S:g} s): "
              f"{ms(page_reruns)} (target <= 150 ms)")
    if fragment_reruns:
        print(f"live-view fragment rerun on the real server, request sent -> script finished received in the "
              f"browser: {ms(fragment_reruns)}")
    every = [value for values in latencies.values() for value in values]
    later = [value for epoch, values in latencies.items() if epoch > 1 for value in values]
    print(f"epoch end -> point drawn in the browser, every epoch: {ms(every)} epochs (target p95 <= 1000 ms)")
    print(f"  epochs after the first (the first also creates the charts): {ms(later)} epochs")
    if long:
        long_views.report_long(long)
    if lots:
        long_views.report_overlay(lots, args.overlay_runs, args.overlay_epochs)


if __name__ == "__main__":
    main()
