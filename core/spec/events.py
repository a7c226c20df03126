"""Typed records that training emits, and the sink protocol that receives them.

`core.training.callbacks` turns Keras callback hooks into these events; the run store writes
them to SQLite, the CLI prints them. No Keras import here, so the store and the dashboard
can use the types without loading TensorFlow.

Epochs are counted from 1, as a user reads them, and keep counting across the fine-tune
phase: a run of 5 + 3 epochs emits epochs 1..8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

# Batches timed (after an epoch's first) before a batch time is reported: one is noisy.
MIN_TIMED_STEPS = 2
# Seconds of training between two step samples of the loss: a long epoch's curve stays
# alive between its epoch points, and the worker writes at most one row a second for it.
STEP_SAMPLE_INTERVAL_S = 1.0
# The phases of a run (EpochEnd.phase, PhaseChange.phase): training, then fine-tuning.
PHASE_TRAIN, PHASE_FINE_TUNE = "train", "fine_tune"


@dataclass(frozen=True)
class RunStarted:
    epochs: int
    steps_per_epoch: int
    total_params: int
    trainable_params: int
    initial_epoch: int = 0  # epochs already done (a resumed run starts after them)
    # Where it trains: the backend's device names ("/device:GPU:0", "cuda:0", "cpu:1"), the
    # strategy (core.spec.distribution.STRATEGIES), the samples of an epoch and the global
    # batch (split across the devices).
    devices: tuple[str, ...] = ()
    strategy: str = "none"
    train_samples: int = 0
    batch_size: int = 0
    kind: str = "started"


@dataclass(frozen=True)
class BatchProgress:
    """Throttled progress inside an epoch: a counter and a clock, no metrics.

    Reading metric values every batch would force a device sync; metrics come at epoch end.
    """

    epoch: int
    step: int
    steps: int
    elapsed_s: float
    # Seconds per batch over this epoch's batches after its first (which also traces and
    # compiles the step function), from the batch clock; None until MIN_TIMED_STEPS were
    # timed. What the time left and "stopping after the current batch" are based on.
    step_time_s: float | None = None
    kind: str = "progress"


@dataclass(frozen=True)
class StepSample:
    """The training loss at one batch, sampled at most once a second (`STEP_SAMPLE_INTERVAL_S`).

    What a long epoch shows between its epoch points. `loss` is the value Keras reports at
    that batch: the running mean over the epoch's batches so far, not the batch's own loss.
    """

    epoch: int
    step: int  # 1-based batch within the epoch
    steps: int | None  # batches per epoch, when known
    loss: float
    recorded_at: float  # wall-clock time (time.time()) of the batch's end
    kind: str = "step"


@dataclass(frozen=True)
class EpochEnd:
    epoch: int
    phase: str
    metrics: dict[str, float]  # loss, metrics and their val_* counterparts
    duration_s: float
    learning_rate: float
    # Relative weight update per member over this epoch, ||w_end - w_start|| / ||w_start||.
    member_updates: dict[str, float] = field(default_factory=dict)
    ended_at: float = 0.0  # wall-clock time (time.time()) when the epoch ended
    kind: str = "epoch"


@dataclass(frozen=True)
class PhaseChange:
    """The fine-tune phase begins: layers were unfrozen and the learning rate changed."""

    epoch: int  # first epoch of the new phase
    phase: str
    learning_rate: float
    trainable_params: int
    unfrozen_layers: tuple[str, ...] = ()
    kind: str = "phase"


@dataclass(frozen=True)
class RunEnded:
    status: str  # "finished", "stopped" or "failed"
    epochs_done: int
    reason: str = ""
    kind: str = "ended"


Event = RunStarted | BatchProgress | StepSample | EpochEnd | PhaseChange | RunEnded


class EventSink(Protocol):
    """Receives training events. Called on the training thread; keep it quick."""

    def __call__(self, event: Event) -> None: ...


class EventLog:
    """A sink that keeps every event in a list, in order (tests, the CLI, notebooks)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)

    def of_kind(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


# The fields of an epoch row that are not metrics; every other key of a history row is one.
HISTORY_FIELDS = ("epoch", "phase", "learning_rate", "duration_s", "member_updates", "ended_at")


def history_row(event: EpochEnd) -> dict[str, Any]:
    """An epoch as one flat row, the form of `TrainResult.history` and a checkpoint's history.

    Every field of the event is kept, so `epoch_from_history_row` gives the event back.

    Example:
        >>> event = EpochEnd(epoch=1, phase="train", metrics={"loss": 0.5}, duration_s=1.0,
        ...                  learning_rate=0.01, member_updates={"a": 0.1}, ended_at=5.0)
        >>> history_row(event)["loss"], epoch_from_history_row(history_row(event)) == event
        (0.5, True)
    """
    return {"epoch": event.epoch, "phase": event.phase, **event.metrics, "learning_rate": event.learning_rate,
            "duration_s": event.duration_s, "member_updates": dict(event.member_updates),
            "ended_at": event.ended_at}


def epoch_from_history_row(row: dict[str, Any]) -> EpochEnd:
    """The epoch event behind a `history_row` (rows of older checkpoints lack the newer fields)."""
    return EpochEnd(
        epoch=row["epoch"], phase=row["phase"],
        metrics={key: value for key, value in row.items() if key not in HISTORY_FIELDS},
        duration_s=row.get("duration_s", 0.0), learning_rate=row.get("learning_rate"),
        member_updates=dict(row.get("member_updates") or {}), ended_at=row.get("ended_at") or 0.0)
