"""Typed records that training emits, and the sink protocol that receives them.

`core.training.callbacks` turns Keras callback hooks into these events; the run store writes
them to SQLite, the CLI prints them. No Keras import here, so the store and the dashboard
can use the types without loading TensorFlow.

Epochs are counted from 1, as a user reads them, and keep counting across the fine-tune
phase: a run of 5 + 3 epochs emits epochs 1..8.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

# Batches timed (after an epoch's first) before a batch time is reported: one is noisy.
MIN_TIMED_STEPS = 2
# The phases of a run (EpochEnd.phase, PhaseChange.phase): training, then fine-tuning.
PHASE_TRAIN, PHASE_FINE_TUNE = "train", "fine_tune"


@dataclass(frozen=True)
class RunStarted:
    epochs: int
    steps_per_epoch: int
    total_params: int
    trainable_params: int
    initial_epoch: int = 0  # epochs already done (a resumed run starts after them)
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


Event = RunStarted | BatchProgress | EpochEnd | PhaseChange | RunEnded


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
