"""The live view's own HTTP route: the browser asks for what is new, no script reruns.

Watching a run through a Streamlit fragment that reruns every second costs the browser a
re-render of the fragment's elements each time, news or not (a bare page doing only that
costs Chromium 14 % of a core on this 2-core machine while a run trains: bench/
dashboard_latency.py --floor-runs). When the dashboard is served by `dashboard/server.py`
(`st.App` with this module's ROUTES), the live-chart component instead fetches

    GET /api/runs/<run_id>/live?cursor=<what it has drawn>

every POLL_MS, and draws what comes back: the chart delta (dashboard.live_chart's payload),
the progress line and the run's status. An answer with nothing new changes nothing in the
page. When the run ends the component asks Streamlit for one rerun, so the page shows the end.

The cursor is the component's own record of what it drew (echoed from the last answer), so
the route keeps no per-tab state; the epoch rows it reads are kept per run in this process
and only the epochs after the last read are read again (the cost of an answer does not grow
with the run's length).

Plain data in and out (`live_answer`); Starlette only in the route itself.

Example:
    >>> answer = live_answer(run_id, cursor=None)      # the whole history, then
    >>> answer = live_answer(run_id, answer["cursor"])  # only what is new
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import threading
import time
from typing import Any, Mapping, Sequence

from core import runs
from dashboard import formatting, live_chart

POLL_MS = 500  # between the component's requests while a run is active
ROUTE = "/api/runs/{run_id}/live"
MAX_CURSOR_CHARS = 2000  # a cursor is ~200 characters; anything longer is not one of ours

_rows: dict[str, tuple[float | None, list[dict[str, Any]]]] = {}  # run id -> (ended_at, epoch rows)
_rows_lock = threading.Lock()
_mounted = False


def mounted() -> bool:
    """Whether this process serves ROUTES (the dashboard runs as `dashboard/server.py`)."""
    return _mounted


def url(run_id: str) -> str:
    return ROUTE.format(run_id=run_id)


# ---- what the progress line says ---------------------------------------------------------------


def queue_words(run_id: str) -> str:
    """What a queued run waits for: 'Queued, first in line: it starts when run X (name) ends ...'."""
    waiting = [run.id for run in reversed(runs.list_runs(("queued",)))]  # oldest first: the order they start in
    place = waiting.index(run_id) + 1 if run_id in waiting else 1
    active = runs.list_runs(("running", "stopping"))
    ahead = " and ".join(f"run {run.id} ({run.name}, epoch {run.epochs_done}/{run.epochs_total})" for run in active)
    line = "first in line" if place == 1 else f"{formatting.ordinal(place)} in line"
    before = f" and the {formatting.plural(place - 1, 'run')} queued before it have trained" if place > 1 else ""
    return (f"Queued, {line}: it starts when {ahead or 'a worker slot'} ends{before}. At most "
            f"{formatting.plural(runs.max_workers(), 'run')} train at once (STACKLAB_MAX_WORKERS).")


def stopping_words(progress: Mapping[str, Any] | None, now: float) -> str:
    """'Stopping after the current batch (about 25 s)': a batch is not interrupted, and on a slow
    model it can take long, so say how long from the measured batch time."""
    step_time = (progress or {}).get("step_time_s")
    if step_time is None:
        return "Stopping after the current batch; the last finished epoch is kept."
    left = step_time - (now - progress["updated_at"])
    when = f"about {formatting.duration(left)}" if left >= 1.0 else "any moment now"
    return (f"Stopping after the current batch ({when}; a batch takes "
            f"{formatting.duration(step_time)}); the last finished epoch is kept.")


def progress_line(run: runs.Run, rows: Sequence[Mapping[str, Any]],
                  progress: Mapping[str, Any] | None) -> tuple[float, str]:
    """The progress bar's fraction and text: 'Epoch 3 of 10 · batch 20 of 157 · about 1 min left',
    then where the run trains and how fast once its worker said: ' · 2 × GPU (0, 1) · 1,234 samples/s'."""
    durations = [row["duration_s"] for row in rows]
    fraction = formatting.progress_fraction(run.epochs_total, run.epochs_done, progress)
    text = f"Epoch {min(run.epochs_done + 1, run.epochs_total)} of {run.epochs_total}"
    if progress and progress["epoch"] == run.epochs_done + 1:
        text += f" · batch {progress['step']} of {progress['steps']}"
    eta = formatting.eta_seconds(run.epochs_total, run.epochs_done, durations, progress)
    if eta is not None:
        text += f" · about {formatting.duration(eta)} left" if eta >= 0.5 else " · finishing"
    elif progress is None:
        text += " · starting: the worker loads TensorFlow and builds the stack…"
    else:
        text += " · estimating the time left…"
    if run.phase == "fine_tune":
        text += " · fine-tuning"
    if run.device_label:
        text += f" · {formatting.devices(run.device_label, run.gpus)}"
    if run.samples_per_s is not None:
        text += f" · {formatting.throughput(run.samples_per_s)}"
    return fraction, text


def _progress(run_id: str) -> dict[str, Any] | None:
    progress = runs.progress(run_id)
    return dataclasses.asdict(progress) if progress is not None else None


def status_line(run: runs.Run, rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """What the component shows above the charts while the run is active, as plain data."""
    if run.status == "queued":
        return {"status": run.status, "active": True, "text": queue_words(run.id), "fraction": None}
    progress = _progress(run.id)
    fraction, text = progress_line(run, rows, progress)
    note = stopping_words(progress, time.time()) if run.status == "stopping" else ""
    return {"status": run.status, "active": run.is_active, "text": text, "fraction": fraction, "note": note}


# ---- the chart delta ---------------------------------------------------------------------------


def epoch_rows(run: runs.Run) -> list[dict[str, Any]]:
    """Every epoch row of `run`, reading from the store only the epochs after the last read
    (all of them again when the run was resumed or ended since, or holds fewer than read)."""
    with _rows_lock:
        ended_at, rows = _rows.get(run.id, (None, []))
        if ended_at != run.ended_at or run.epochs_done < len(rows):
            rows = []
        rows = rows + runs.metrics(run.id, since_epoch=rows[-1]["epoch"] if rows else 0)
        _rows[run.id] = (run.ended_at, rows)
        if len(_rows) > 32:  # runs watched long ago: the oldest entry goes
            _rows.pop(next(iter(_rows)))
        return rows


def _digest(value: Any) -> str:
    return hashlib.sha1(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cursor(drawn: live_chart.Drawn, run_id: str) -> str:
    count, last = drawn.rows.get("run", (0, None))
    return json.dumps({"stream": drawn.stream, "seq": drawn.seq, "rows": [count, last],
                       "steps": drawn.steps.get(run_id, 0),
                       "charts": _digest([chart.to_dict() for chart in drawn.charts]),
                       "markers": _digest(drawn.markers)}, separators=(",", ":"))


def _drawn(cursor: str | None, view: live_chart.View, run_id: str) -> live_chart.Drawn | None:
    """What the component drew, from its cursor; None (the whole history) for no cursor or a
    cursor that is not one of ours."""
    if not cursor or len(cursor) > MAX_CURSOR_CHARS:
        return None
    try:
        seen = json.loads(cursor)
        count, last = seen["rows"]
        last = tuple(last) if isinstance(last, list) else last
        charts = view.charts if seen["charts"] == _digest([c.to_dict() for c in view.charts]) else ()
        # Markers it has not drawn: anything unequal to the view's, so the update sends them.
        markers = view.markers if seen["markers"] == _digest(view.markers) else (("not drawn",),)
        return live_chart.Drawn(stream=str(seen["stream"]), seq=int(seen["seq"]), charts=charts,
                                rows={"run": (int(count), last)}, steps={run_id: int(seen["steps"])},
                                markers=markers)
    except (ValueError, TypeError, KeyError):
        return None


def live_answer(run_id: str, cursor: str | None) -> dict[str, Any]:
    """What the component at `cursor` has not drawn of run `run_id`, and the run's status.

    Returns:
        {"payload": the live-chart delta (dashboard.live_chart.update), "cursor": to send next
        time, "status": status_line(...)}.

    Raises:
        runs.RunNotFound: no such run.
    """
    runs.reconcile()  # a worker that died is marked interrupted; queued runs get a slot
    run = runs.get(run_id)
    rows = epoch_rows(run)
    origin = float(run.started_at or run.created_at or 0.0)
    view = live_chart.live_view(run.id, rows, runs.phases(run.id), origin, stream=f"{run.id}@{run.ended_at}")
    payload, drawn = live_chart.update(_drawn(cursor, view, run.id), view, runs.step_samples)
    return {"payload": payload, "cursor": _cursor(drawn, run.id), "status": status_line(run, rows)}


# ---- the route ---------------------------------------------------------------------------------


def _endpoint(request):
    from starlette.responses import JSONResponse

    run_id = request.path_params["run_id"]
    try:
        answer = live_answer(run_id, request.query_params.get("cursor"))
    except runs.RunNotFound:
        return JSONResponse({"error": f"There is no run {run_id!r}: it was deleted."}, status_code=404)
    except runs.RunStoreError as error:  # a locked store: the next request tries again
        return JSONResponse({"error": str(error)}, status_code=503)
    return JSONResponse(answer, headers={"Cache-Control": "no-store"})


def routes() -> list[Any]:
    """The Starlette routes `dashboard/server.py` adds to Streamlit's; serving them makes the
    live view fetch its updates (`mounted()`)."""
    from starlette.routing import Route

    global _mounted
    _mounted = True
    return [Route(ROUTE, _endpoint, methods=["GET"])]
