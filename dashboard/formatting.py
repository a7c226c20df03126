"""How numbers, shapes, durations and metrics read on the pages. Pure functions.

Example:
    >>> count(693962), shape([28, 28, 1]), duration(75)
    ('693,962', '(28, 28, 1)', '1 min 15 s')
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any, Iterable, Mapping, Sequence

# Metrics where larger is better; everything else (loss, mae, ...) is better smaller.
HIGHER_IS_BETTER = ("accuracy", "auc", "precision", "recall")


def count(value: int | None) -> str:
    """693962 -> '693,962'; None -> '–'."""
    return "–" if value is None else f"{int(value):,}"


def shape(dims: Sequence[Any] | None) -> str:
    """[28, 28, 1] -> '(28, 28, 1)'; [10] -> '(10,)'; None -> '?'. The batch axis is implied."""
    if dims is None:
        return "?"
    items = ["?" if d is None else str(d) for d in dims]
    return f"({items[0]},)" if len(items) == 1 else f"({', '.join(items)})"


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
    """Seconds left in a run, from the durations of finished epochs and the current epoch's progress.

    Args:
        epochs_total: epochs the run will train (early stopping may end it sooner).
        epochs_done: finished epochs.
        durations: seconds each finished epoch took (the last three are averaged, so a
            slow first epoch, which compiles, weighs less as the run goes on).
        progress: the current epoch's batch progress: epoch, step, steps, elapsed_s.

    Returns:
        The estimate, or None while nothing is known yet.
    """
    remaining_epochs = max(epochs_total - epochs_done, 0)
    if remaining_epochs == 0:
        return 0.0
    current = progress if progress and progress["epoch"] == epochs_done + 1 and progress["step"] > 0 else None
    recent = [d for d in durations[-3:] if d > 0]
    if recent:
        per_epoch = sum(recent) / len(recent)
    elif current is not None:
        per_epoch = current["elapsed_s"] / current["step"] * current["steps"]
    else:
        return None
    done_in_current = 0.0
    if current is not None and current["steps"]:
        done_in_current = min(current["step"] / current["steps"], 1.0)
    return per_epoch * (remaining_epochs - done_in_current)


def progress_fraction(epochs_total: int, epochs_done: int, progress: Mapping[str, Any] | None = None) -> float:
    """How far a run is, 0..1, counting the current epoch's finished batches."""
    if epochs_total <= 0:
        return 0.0
    fraction = float(epochs_done)
    if progress and progress["epoch"] == epochs_done + 1 and progress["steps"]:
        fraction += min(progress["step"] / progress["steps"], 1.0)
    return min(fraction / epochs_total, 1.0)
