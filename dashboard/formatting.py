"""How numbers, shapes, durations and metrics read on the pages. Pure functions.

Example:
    >>> count(693962), shape([28, 28, 1]), duration(75)
    ('693,962', '(28, 28, 1)', '1 min 15 s')
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

from core.spec.shapes import format_shape

# Metrics where larger is better; everything else (loss, mae, ...) is better smaller.
HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall")


def count(value: int | None) -> str:
    """693962 -> '693,962'; None -> '–'."""
    return "–" if value is None else f"{int(value):,}"


def shape(dims: Sequence[Any] | None) -> str:
    """[28, 28, 1] -> '(28, 28, 1)'; [10] -> '(10,)'; None -> '?'. The batch axis is implied."""
    return format_shape(dims, batch=False)


def duration(seconds: float | None) -> str:
    """Seconds as a person reads them: '0.8 s', '42 s', '3 min 05 s', '1 h 02 min'."""
    if seconds is None or not math.isfinite(seconds):
        return "–"
    seconds = max(float(seconds), 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def metric(value: float | None) -> str:
    """A metric value with four significant digits: 0.91234 -> '0.9123', 1234.5 -> '1234.5'."""
    if value is None:
        return "–"
    if not math.isfinite(value):
        return str(value)
    if value != 0 and abs(value) < 1e-3:
        return f"{value:.2e}"
    return f"{value:.4f}" if abs(value) < 10 else f"{value:,.1f}"


def number(value: float | None) -> str:
    """A plain number with up to four significant digits: 346.0 -> '346', 0.12345 -> '0.1235'."""
    return "–" if value is None else f"{value:,.4g}"


def throughput(samples_per_s: float | None) -> str:
    """Training speed: 1234.5 -> '1,234 samples/s', 56.78 -> '56.8 samples/s'; None -> '–'."""
    if samples_per_s is None or not math.isfinite(samples_per_s):
        return "–"
    return f"{samples_per_s:,.0f} samples/s" if samples_per_s >= 100 else f"{samples_per_s:.3g} samples/s"


def devices(label: str, gpus: Sequence[int] = ()) -> str:
    """Where a run trains: its device label (core.runs.device_label) with the GPUs it was given:
    ('2 × GPU', (0, 1)) -> '2 × GPU (0, 1)', ('CPU', ()) -> 'CPU'. Before its worker said
    (label ''): the GPUs given, ('', (3,)) -> 'GPU 3', or '–'."""
    given = ", ".join(str(index) for index in gpus)
    if not label:
        return f"GPU {given}" if len(gpus) == 1 else f"GPUs {given}" if gpus else "–"
    return f"{label} ({given})" if gpus and "GPU" in label else label


def ordinal(number: int) -> str:
    """1 -> '1st', 2 -> '2nd', 11 -> '11th', 23 -> '23rd'."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def learning_rate(value: float | None) -> str:
    return "–" if value is None else f"{value:.3g}"


def timestamp(value: float | None) -> str:
    """A Unix time as local 'YYYY-MM-DD HH:MM'."""
    return "–" if value is None else datetime.fromtimestamp(value).strftime("%Y-%m-%d %H:%M")


def best(best_metric: Mapping[str, Any] | None) -> str:
    """The run store's best metric: 'val_accuracy 0.9123 (epoch 4)'."""
    if not best_metric:
        return "–"
    return f"{best_metric['name']} {metric(best_metric['value'])} (epoch {best_metric['epoch']})"


def base_metric(name: str) -> str:
    """'val_accuracy' -> 'accuracy'."""
    return name[4:] if name.startswith("val_") else name


def metric_names(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """Base metric names found in epoch rows, loss first, then in order of appearance."""
    seen: dict[str, None] = {}
    for row in rows:
        for name in row["metrics"]:
            seen.setdefault(base_metric(name), None)
    names = list(seen)
    return sorted(names, key=lambda n: n != "loss")


def eta_seconds(epochs_total: int, epochs_done: int, durations: Sequence[float],
                progress: Mapping[str, Any] | None = None) -> float | None:
    """Seconds left in a run, from measured batch and epoch times only.

    The first batch of a run also traces and compiles the step, and the first epoch holds
    that batch: an estimate from them is minutes off for a run of seconds. So the current
    epoch's rest is its batches left times the measured seconds per batch (the worker times
    the batches after the first), and each epoch after it takes as long as the finished
    epochs after the first (or, while there are none, the current epoch's batches at the
    measured rate).

    Args:
        epochs_total: epochs the run will train (early stopping may end it sooner).
        epochs_done: finished epochs.
        durations: seconds each finished epoch took.
        progress: the current epoch's batch progress: epoch, step, steps, elapsed_s and
            step_time_s (None until a few batches were timed).

    Returns:
        The estimate, or None while nothing has been measured yet ("estimating").
    """
    remaining_epochs = max(epochs_total - epochs_done, 0)
    if remaining_epochs == 0:
        return 0.0
    current = progress if progress and progress["epoch"] == epochs_done + 1 and progress["step"] > 0 else None
    step_time = current.get("step_time_s") if current else None
    steady = [d for d in durations[1:][-3:] if d > 0]
    if steady:
        per_epoch = sum(steady) / len(steady)
    elif step_time is not None and current["steps"]:
        per_epoch = step_time * current["steps"]
    elif len(durations) == 1 and durations[0] > 0:
        per_epoch = durations[0]  # only the first epoch is measured: too long by its compile time
    else:
        return None
    if current is None:
        left_in_current = per_epoch
    elif step_time is not None:
        left_in_current = step_time * max(current["steps"] - current["step"], 0)
    else:
        left_in_current = per_epoch * (1 - min(current["step"] / current["steps"], 1.0)) if current["steps"] else 0.0
    return left_in_current + per_epoch * (remaining_epochs - 1)


def plural(count: int, word: str) -> str:
    """plural(1, "epoch") -> '1 epoch'; plural(5, "epoch") -> '5 epochs'."""
    return f"{count:,} {word}" if count == 1 else f"{count:,} {word}s"


def progress_fraction(epochs_total: int, epochs_done: int, progress: Mapping[str, Any] | None = None) -> float:
    """How far a run is, 0..1, counting the current epoch's finished batches."""
    if epochs_total <= 0:
        return 0.0
    fraction = float(epochs_done)
    if progress and progress["epoch"] == epochs_done + 1 and progress["steps"]:
        fraction += min(progress["step"] / progress["steps"], 1.0)
    return min(fraction / epochs_total, 1.0)
