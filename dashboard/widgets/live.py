"""A run's live view: status, epoch progress with ETA, one chart per metric, member updates, Stop.

Everything shown is read from the run store, so a reload or a second tab shows the same
run. Served by dashboard/server.py, an active run's charts and progress line are the
live-chart component following the run through dashboard/live_api.py's route by itself:
nothing here reruns until the run changes status or ends (`run_view`). Served without the
route (`streamlit run dashboard/app.py`, AppTest), the view is a fragment that reruns every POLL_S seconds and
reads only the epochs (and step samples) it has not seen; the charts are the live-chart
component (dashboard/components/live_chart/), sent only the points it has not drawn, and
nothing when nothing is new, so the progress line moves without redrawing them. When the
run ends the whole page reruns once, so widgets outside the fragment (the Train button,
the run picker) catch up.
"""

from __future__ import annotations

import time
from typing import Any, Mapping, Sequence

import streamlit as st

from core import runs
from dashboard import formatting, live_api, live_chart, services, state
from dashboard.components import live_chart as chart_component

POLL_S = 1.0  # seconds between the live view's reads of the run store
LIVE_VIEW_KEY = "live-view"
# Each poll is a fragment rerun, and Streamlit fades the elements of a rerunning fragment
# (a 1 s opacity transition on each element) and glides the progress bar (0.5 s): CSS
# transitions that repaint the page on every frame, on the cores that train (measured while
# watching a run: Chromium's GPU process 3.2 -> 0.4 % of a core, its renderer 22 -> 18 %).
# A poll is not news, so the live view's elements stay opaque and the bar moves in one step.
LIVE_VIEW_CSS = f"""<style>
.st-key-{LIVE_VIEW_KEY} .stElementContainer {{ opacity: 1 !important; transition: none !important; }}
.st-key-{LIVE_VIEW_KEY} [data-testid="stProgress"] * {{ transition: none !important; }}
</style>"""
STATUS_ICONS = {
    "queued": ":material/schedule:", "running": ":material/play_circle:", "stopping": ":material/pause_circle:",
    "finished": ":material/check_circle:", "stopped": ":material/stop_circle:", "failed": ":material/error:",
    "interrupted": ":material/warning:",
}
STATUS_COLORS = {"queued": "gray", "running": "blue", "stopping": "orange", "finished": "green",
                 "stopped": "gray", "failed": "red", "interrupted": "orange"}


def status_badge(status: str) -> None:
    st.badge(status, icon=STATUS_ICONS.get(status), color=STATUS_COLORS.get(status, "gray"))


def read_steps(run_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
    """The run's step samples with seq > after_seq (`core.runs.step_samples`), oldest first;
    the one place the live view reads them, so a test can fake it."""
    return runs.step_samples(run_id, after_seq)


def _origin(run: runs.Run | None, rows: Sequence[Mapping[str, Any]]) -> float:
    if run is not None and (run.started_at or run.created_at):
        return float(run.started_at or run.created_at)
    return float(rows[0].get("recorded_at") or 0.0) if rows else 0.0


def curves(rows: Sequence[Mapping[str, Any]], phases: Sequence[Mapping[str, Any]], key: str,
           run: runs.Run | None = None) -> None:
    """One chart per metric (training and validation together, the loss's step samples under
    them), then the member updates: the live-chart component, sent only what it has not drawn.

    Args:
        rows: the run's epoch rows; phases: its phase changes.
        key: the component's key on this page.
        run: the run, for its step samples and its start (the wall-time axis counts from it).
    """
    # A resumed or ended run starts a new stream: epochs and steps after its checkpoint were
    # dropped, so the browser draws it afresh once.
    stream = f"{run.id}@{run.ended_at}" if run is not None else None
    view = live_chart.live_view(run.id if run is not None else key, rows, phases, _origin(run, rows),
                                stream=stream, steps=run is not None)
    chart_component.draw(f"{key}-charts", view, read_steps if run is not None else None)


def _has_charts(run: runs.Run, rows: Sequence[Mapping[str, Any]], key: str) -> bool:
    """Whether there is anything to chart: an epoch, or (between epochs) a step sample."""
    if rows:
        return True
    drawn = state.chart_cache().get(f"{key}-charts")
    return bool(isinstance(drawn, live_chart.Drawn) and drawn.steps) or bool(read_steps(run.id, 0))


def _progress(run: runs.Run, rows: Sequence[Mapping[str, Any]]) -> None:
    fraction, text = live_api.progress_line(run, rows, services.progress_dict(run.id))
    st.progress(fraction, text=text)


def _speed(run: runs.Run) -> str:
    """' on 2 × GPU (0, 1) at 1,234 samples/s' (the last epoch's), or what of it is known."""
    where = f" on {formatting.devices(run.device_label, run.gpus)}" if run.device_label else ""
    speed = f" at {formatting.throughput(run.samples_per_s)}" if run.samples_per_s is not None else ""
    return where + speed


def _outcome(run: runs.Run) -> None:
    if run.status == "finished":
        st.success(f"Finished {formatting.plural(run.epochs_done, 'epoch')} in {formatting.duration(run.duration_s)}"
                   f"{_speed(run)}. Best: {formatting.best(run.best)}. Download the model on the Runs page.",
                   icon=":material/check_circle:")
        st.page_link("app_pages/runs.py", label="Open the Runs page", icon=":material/history:")
    elif run.status == "stopped":
        st.info(f"Stopped after {formatting.plural(run.epochs_done, 'epoch')}; the model of the last finished epoch "
                f"is kept. Resume it on the Runs page.", icon=":material/stop_circle:")
    elif run.status in ("failed", "interrupted"):
        st.error(f"The run {run.status} after {formatting.plural(run.epochs_done, 'epoch')}: {run.error}",
                 icon=":material/error:")


def stop(run_id: str) -> None:
    """The Stop button: the run stops at its next batch, keeping its last finished epoch."""
    try:
        runs.stop(run_id)
    except (runs.RunNotFound, runs.RunStoreError) as error:
        st.toast(str(error), icon=":material/error:")
        return
    st.toast(live_api.stopping_words(services.progress_dict(run_id), time.time()), icon=":material/stop:")


def _header(run: runs.Run) -> None:
    header = st.columns([4, 1], vertical_alignment="center")
    with header[0]:
        status_badge(run.status)
        where = f" · on {formatting.devices(run.device_label, run.gpus)}" if run.device_label or run.gpus else ""
        st.caption(f"Run {run.id} · {run.name} · {run.mode} · dataset {run.dataset.name}{where} · "
                   f"started {formatting.timestamp(run.started_at or run.created_at)}")
    if run.status in ("running", "stopping"):
        header[1].button("Stop", key="train-stop", icon=":material/stop:", disabled=run.status == "stopping",
                         on_click=stop, args=(run.id,), width="stretch")


def run_view(run_id: str) -> None:
    """The live view of one run. While it is active and the dashboard serves the live route
    (dashboard/server.py), the charts' component fetches what is new by itself and nothing here
    reruns; otherwise a fragment polls every POLL_S."""
    run = runs.get(run_id)
    was_active = run.is_active
    if was_active and live_api.mounted():
        _header(run)
        chart_component.follow("train-charts", run.id)
        return

    @st.fragment(run_every=POLL_S if was_active else None)
    def view() -> None:
        with st.container(key=LIVE_VIEW_KEY):
            _view()

    def _view() -> None:
        try:
            if was_active:
                runs.reconcile()  # a worker that died is marked interrupted; queued runs get a slot
            run = runs.get(run_id)
        except runs.RunNotFound:
            st.rerun(scope="app")  # deleted in another tab: the page picks the run to show again
        except runs.RunStoreError as error:
            st.error(str(error))  # a locked store: the next poll tries again
            return
        rows = services.new_epoch_rows(run)
        _header(run)
        if run.is_active:
            if run.status == "queued":
                st.info(live_api.queue_words(run.id), icon=":material/schedule:")
            else:
                _progress(run, rows)
            if run.status == "stopping":
                st.info(live_api.stopping_words(services.progress_dict(run.id), time.time()),
                        icon=":material/pause_circle:")
        else:
            _outcome(run)
        if _has_charts(run, rows, "train"):
            curves(rows, runs.phases(run.id), "train", run)
        elif run.is_active:
            st.caption("The charts appear as the first batches train.")
        if was_active and not run.is_active:
            st.rerun(scope="app")  # once: the page (Train button, run list) shows the end

    st.html(LIVE_VIEW_CSS)
    view()
