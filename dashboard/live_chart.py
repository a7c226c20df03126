"""What the live-chart component is sent: only the points the browser has not drawn.

The component (dashboard/components/live_chart/) keeps its Plotly charts in the page and
appends what each update brings with `Plotly.extendTraces`. This module is its Python side,
plain data in and out (no Streamlit), so the protocol is tested alone:

- A `Source` is an append-only list of epoch rows (`runs.metrics`) of one run; a `Chart` has
  `Series`, each reading one value of a source's rows (a metric, a member's update) or the
  run's step samples (`runs.step_samples`).
- `Drawn` is what this session last sent the component: per source how many rows and the
  identity of the last one, per run the last step sample's seq, the update number.
- `update(drawn, view, read_steps)` returns the payload and the new `Drawn`. The payload is
  a delta on top of update `base`; the component applies it only if it is at `base`, else it
  asks for the whole history again (a remounted component, a missed update), and then the
  next update is a reset. Nothing new: a payload with no points (the browser does nothing).

Payload (JSON):
    {"stream": "...", "seq": 7, "base": 6, "reset": false,
     "charts": [...],            # reset only: the charts and their series
     "points": {"loss": {"x": [3], "t": [12.5], "y": [0.41]}, ...},   # x epoch, t seconds
     "markers": [{"x": 2.5, "t": 8.1, "text": "fine-tune from epoch 3"}]}  # when changed

Example:
    >>> view = live_view(run.id, rows, phases, origin=run.started_at)
    >>> payload, drawn = update(None, view, lambda run_id, after: runs.step_samples(run_id, after))
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

from dashboard import formatting

TRAIN_COLOR = "#1f77b4"
VALIDATION_COLOR = "#ff7f0e"
MARKER_COLOR = "#7f7f7f"
# Plotly's default qualitative palette, for members and runs in order.
PALETTE = ("#636EFA", "#EF553B", "#00CC96", "#AB63FA", "#FFA15A", "#19D3F3", "#FF6692", "#B6E880",
           "#FF97FF", "#FECB52")

StepReader = Callable[[str, int], Sequence[Mapping[str, Any]]]  # (run_id, after_seq) -> samples


@dataclass(frozen=True)
class Series:
    """One line of a chart: a value of its source's epoch rows, or the run's step samples.

    Attributes:
        id: unique in the view; the payload's points are keyed by it.
        name: the legend's name.
        source: the `Source.id` whose rows (or, for kind "step", whose run's samples) it reads.
        metric: the metric key in each row's "metrics" ("loss", "val_accuracy").
        member: instead of a metric, the member whose "member_updates" value it reads.
        kind: "epoch" (a point per epoch, markers) or "step" (a thin line under them).
    """

    id: str
    name: str
    color: str
    source: str
    metric: str | None = None
    member: str | None = None
    kind: str = "epoch"

    def value(self, row: Mapping[str, Any]) -> float | None:
        if self.member is not None:
            return (row.get("member_updates") or {}).get(self.member)
        return row["metrics"].get(self.metric)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "color": self.color, "kind": self.kind}


@dataclass(frozen=True)
class Chart:
    id: str
    title: str
    y_title: str
    series: tuple[Series, ...]
    subtitle: str = ""
    y_from_zero: bool = False
    height: int = 300  # pixels

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "title": self.title, "subtitle": self.subtitle, "y_title": self.y_title,
                "y_from_zero": self.y_from_zero, "height": self.height,
                "series": [series.to_dict() for series in self.series]}


@dataclass(frozen=True)
class Source:
    """Epoch rows of one run, oldest first; `origin` is the unix time wall-time x counts from."""

    id: str
    rows: Sequence[Mapping[str, Any]]
    origin: float
    run_id: str | None = None


@dataclass(frozen=True)
class View:
    """Everything the component should show: `stream` names it (a different one starts afresh)."""

    stream: str
    charts: tuple[Chart, ...]
    sources: tuple[Source, ...]
    markers: tuple[tuple[float, float, str], ...] = ()  # (x, t, text): vertical lines on every chart


@dataclass(frozen=True)
class Drawn:
    """What the component was last sent (kept per session and component key)."""

    stream: str
    seq: int
    charts: tuple[Chart, ...]
    rows: Mapping[str, tuple[int, Any]] = field(default_factory=dict)  # source -> (count, last row's identity)
    steps: Mapping[str, int] = field(default_factory=dict)  # run id -> last step sample's seq
    markers: tuple[tuple[float, float, str], ...] = ()


def _identity(row: Mapping[str, Any]) -> Any:
    # An epoch row trained again (a resumed run) is written anew: a new recorded_at.
    return (row["epoch"], row.get("recorded_at"))


def _time(row: Mapping[str, Any]) -> float | None:
    return row.get("ended_at") or row.get("recorded_at")


def _still_drawn(drawn: Drawn, view: View) -> bool:
    """Whether what was sent is a prefix of what the view holds (else the update is a reset)."""
    if drawn.stream != view.stream or drawn.charts != view.charts:
        return False
    for source in view.sources:
        count, last = drawn.rows.get(source.id, (0, None))
        if count > len(source.rows) or (count and _identity(source.rows[count - 1]) != last):
            return False
    return True


def _step_x(sample: Mapping[str, Any]) -> float:
    """The fractional epoch of a step sample: epoch 2, step 5 of 10 -> 1.5 (epoch 2 ends at x = 2)."""
    steps = sample.get("steps")
    fraction = min(sample["step"] / steps, 1.0) if steps else 0.5
    return round(sample["epoch"] - 1 + fraction, 6)


def update(drawn: Drawn | None, view: View, read_steps: StepReader | None = None,
           resync: bool = False) -> tuple[dict[str, Any], Drawn]:
    """The payload that brings the component from `drawn` to `view`, and what it then shows.

    Args:
        drawn: what this session last sent the component, or None (nothing yet).
        view: what it should show now.
        read_steps: `(run_id, after_seq) -> samples` for the charts' step series (only samples
            with seq > after_seq are read: a delta costs the new samples only).
        resync: the component asked for the whole history (it was remounted or missed an update).

    Returns:
        (payload, drawn): the JSON-ready payload, and the `Drawn` to pass next time.
    """
    reset = resync or drawn is None or not _still_drawn(drawn, view)
    seq = 1 if drawn is None else drawn.seq + 1
    by_source = {source.id: source for source in view.sources}
    points: dict[str, dict[str, list]] = {}
    rows_drawn: dict[str, tuple[int, Any]] = {}
    new_rows: dict[str, Sequence[Mapping[str, Any]]] = {}
    for source in view.sources:
        start = 0 if reset else drawn.rows.get(source.id, (0, None))[0]
        new_rows[source.id] = source.rows[start:]
        rows_drawn[source.id] = (len(source.rows), _identity(source.rows[-1]) if source.rows else None)
    steps_drawn = {} if reset else dict(drawn.steps)
    for chart in view.charts:
        for series in chart.series:
            source = by_source[series.source]
            if series.kind == "step":
                if read_steps is None or source.run_id is None:
                    continue
                after = steps_drawn.get(source.run_id, 0)
                samples = [s for s in read_steps(source.run_id, after) if s["seq"] > after]
                if samples:
                    steps_drawn[source.run_id] = samples[-1]["seq"]
                    points[series.id] = {"x": [_step_x(s) for s in samples],
                                         "t": [round(s["recorded_at"] - source.origin, 3) for s in samples],
                                         "y": [s["loss"] for s in samples]}
                continue
            values = [(row["epoch"], _time(row), series.value(row)) for row in new_rows[source.id]]
            values = [(x, t, y) for x, t, y in values if y is not None]
            if values:
                points[series.id] = {"x": [x for x, _, _ in values],
                                     "t": [round((t or source.origin) - source.origin, 3) for _, t, _ in values],
                                     "y": [y for _, _, y in values]}
    changed = reset or bool(points) or drawn.markers != view.markers
    if not changed:  # nothing new: the same update number, nothing to apply
        return {"stream": view.stream, "seq": drawn.seq, "base": drawn.seq, "reset": False, "points": {}}, drawn
    payload: dict[str, Any] = {"stream": view.stream, "seq": seq, "base": 0 if reset else drawn.seq,
                               "reset": reset, "points": points}
    if reset:
        payload["charts"] = [chart.to_dict() for chart in view.charts]
    if reset or drawn.markers != view.markers:
        payload["markers"] = [{"x": x, "t": t, "text": text} for x, t, text in view.markers]
    return payload, Drawn(stream=view.stream, seq=seq, charts=view.charts, rows=rows_drawn, steps=steps_drawn,
                          markers=view.markers)


# ---- the views the dashboard shows ---------------------------------------------------------------


def metric_title(name: str) -> str:
    return {"loss": "Loss", "accuracy": "Accuracy", "auc": "AUC", "mae": "Mean absolute error",
            "mse": "Mean squared error", "rmse": "Root mean squared error", "precision": "Precision",
            "recall": "Recall"}.get(name, name.replace("_", " ").capitalize())


def _better(metric: str) -> str:
    base = formatting.base_metric(metric)
    return "higher is better" if base in formatting.HIGHER_IS_BETTER else "lower is better"


def fine_tune_marker(rows: Sequence[Mapping[str, Any]], phases: Sequence[Mapping[str, Any]],
                     origin: float) -> tuple[tuple[float, float, str], ...]:
    """The dotted line between the first phase and the fine-tune phase, if the run reached it."""
    start = next((int(phase["epoch"]) for phase in phases if phase["phase"] == "fine_tune"), None)
    if start is None:
        return ()
    before = [row for row in rows if row["epoch"] == start - 1]
    t = (_time(before[0]) or origin) - origin if before else 0.0
    return ((start - 0.5, round(t, 3), f"fine-tune from epoch {start}"),)


def live_view(run_id: str, rows: Sequence[Mapping[str, Any]], phases: Sequence[Mapping[str, Any]],
              origin: float, stream: str | None = None, steps: bool = True) -> View:
    """One chart per metric (training, validation, and the loss's step samples), then the member updates.

    Args:
        run_id: the run (its step samples are read for the loss chart when `steps`).
        rows: its epoch rows; phases: its phase changes (`runs.phases`).
        origin: unix time the wall-time axis counts from (the run's start).
        stream: names what is drawn; a different one redraws (default: the run id).
    """
    source = Source("run", rows, origin, run_id)
    charts = []
    keys = {key for row in rows for key in row["metrics"]} or ({"loss"} if steps else set())
    # Before the first epoch ends, the loss chart already shows the step samples.
    for name in formatting.metric_names(rows) or sorted(keys):
        series = [Series(key, label, color, "run", metric=key)
                  for key, label, color in ((name, "training", TRAIN_COLOR), (f"val_{name}", "validation",
                                                                                VALIDATION_COLOR))
                  if key in keys]
        if name == "loss" and steps:  # last: the first trace stays the training epoch points
            series.append(Series("loss-steps", "training, per step", TRAIN_COLOR, "run", kind="step"))
        charts.append(Chart(f"metric-{name}", metric_title(name), name, tuple(series), f"({_better(name)})"))
    members = list(dict.fromkeys(name for row in rows for name in row.get("member_updates") or {}))
    if members:
        charts.append(Chart("updates", "Weight update per member", "relative update",
                            tuple(Series(f"update-{name}", name, PALETTE[index % len(PALETTE)], "run", member=name)
                                  for index, name in enumerate(members)),
                            "(‖Δw‖ / ‖w‖ per epoch; frozen = 0)", y_from_zero=True))
    return View(stream or run_id, tuple(charts), (source,), fine_tune_marker(rows, phases, origin))


def overlay_view(histories: Mapping[str, tuple[str, Sequence[Mapping[str, Any]], float]], metric: str) -> View:
    """One metric of several runs, one line per run.

    Args:
        histories: run id -> (label, epoch rows, the run's start time).
        metric: the metric key, e.g. "val_accuracy".
    """
    # Runs without the metric (another task, no validation split) get no line.
    histories = {run_id: entry for run_id, entry in histories.items()
                 if any(metric in row["metrics"] for row in entry[1])}
    sources = tuple(Source(run_id, rows, origin, run_id) for run_id, (_, rows, origin) in histories.items())
    series = tuple(Series(f"run-{run_id}", label, PALETTE[index % len(PALETTE)], run_id, metric=metric)
                   for index, (run_id, (label, _, _)) in enumerate(histories.items()))
    chart = Chart("overlay", f"{metric} by run", metric, series, f"({_better(metric)})", height=380)
    return View(f"overlay:{metric}:{','.join(histories)}", (chart,), sources)
