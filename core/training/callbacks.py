"""The Keras callback that turns training into `core.spec.events`, stop requests and NaN checks.

`EventCallback` emits throttled batch progress, the training loss sampled at most once a
second (`StepSample`), and one epoch record (every metric, the learning rate, how much each
member's weights moved), stops at the next batch when asked,
and fails the run on a NaN or infinite loss while keeping the last good weights. The
callbacks the settings ask for (learning-rate schedules, early stopping) come from the
compile policy (`core.training.compile.fit_callbacks`).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, Callable

import keras
import numpy as np

from core.build.trainability import learnable_variables
from core.spec.events import (
    MIN_TIMED_STEPS,
    STEP_SAMPLE_INTERVAL_S,
    BatchProgress,
    EpochEnd,
    EventSink,
    StepSample,
    history_row,
)

# Batch progress at most 4 times a second: more costs the run without showing more.
PROGRESS_INTERVAL_S = 0.25


def current_learning_rate(model: keras.Model) -> float:
    """The optimizer's learning rate now (a schedule's value at the current step)."""
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class EventCallback(keras.callbacks.Callback):
    """Turns Keras callback hooks into events; handles stop requests and NaN losses.

    `async_safe`: batch-end hooks run on Keras's callback thread, so reading the batch
    counter never blocks the training loop. The loss is read only at the batches where
    progress (at most 4 a second, for the NaN check) or a step sample (at most 1 a second)
    is due, never every batch (on an accelerator that read is a device sync); the other
    metrics arrive once per epoch.

    Args:
        sink: receives the events.
        should_stop: polled every batch; True stops training at the next batch.
        members: names of the stack's members, whose weight updates each epoch reports.
        phase: "train" or "fine_tune", for the epoch records.
        steps: batches per epoch.
        history: the run's history rows; each finished epoch appends one.
    """

    async_safe = True

    def __init__(self, sink: EventSink, should_stop: Callable[[], bool], members: list[str],
                 phase: str, steps: int, history: list[dict[str, Any]]):
        super().__init__()
        self.sink = sink
        self.should_stop = should_stop
        self.members = members
        self.phase = phase
        self.steps = steps
        self.history = history  # shared with the caller: every phase appends to it
        self.stop_requested = False
        self.failure = ""
        self.good_weights: list[np.ndarray] | None = None
        self._lock = threading.Lock()
        self._last_progress = 0.0
        self._last_sample = 0.0  # set when training begins: the first sample comes a second in
        self._epoch_start = 0.0
        self._first_step_end = 0.0  # when the epoch's first batch ended: the clock for step times
        self._epoch = 0
        self._before: dict[str, list[np.ndarray]] = {}  # each member's weights when the epoch began

    def on_train_begin(self, logs=None):
        self.good_weights, self._before = self._snapshot()
        self._last_sample = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        # No copy of the weights here: the last epoch's end (or the start of training) took it.
        self._epoch = epoch + 1
        self._epoch_start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if self.should_stop():
            self.stop_requested = True
            self.model.stop_training = True
        now = time.perf_counter()
        if batch == 0:
            self._first_step_end = now
        with self._lock:
            progress_due = now - self._last_progress >= PROGRESS_INTERVAL_S
            sample_due = now - self._last_sample >= STEP_SAMPLE_INTERVAL_S
            if not (progress_due or sample_due):
                return
            if progress_due:
                self._last_progress = now
            if sample_due:
                self._last_sample = now
        # The loss is read only here, a few times a second: on a backend whose logs are still
        # device tensors, reading it is a device sync, which every batch must not pay.
        loss = (logs or {}).get("loss")
        if loss is not None:
            loss = float(loss)
            if not math.isfinite(loss):
                self._fail(f"loss became {loss} during epoch {self._epoch}")
                return
        if sample_due and loss is not None:
            self.sink(StepSample(epoch=self._epoch, step=batch + 1, steps=self.steps, loss=loss,
                                 recorded_at=time.time()))
        if progress_due:
            # Batches after the first, whose time includes tracing and compiling the step.
            timed = batch
            step_time = (now - self._first_step_end) / timed if timed >= MIN_TIMED_STEPS else None
            self.sink(BatchProgress(epoch=self._epoch, step=batch + 1, steps=self.steps,
                                    elapsed_s=now - self._epoch_start, step_time_s=step_time))

    def on_epoch_end(self, epoch, logs=None):
        ended_at = time.time()
        if self.stop_requested or self.failure:
            return  # an interrupted epoch is not a finished epoch
        metrics = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        bad = [k for k, v in metrics.items() if k.endswith("loss") and not math.isfinite(v)]
        if bad:
            self._fail(f"{bad[0]} became {metrics[bad[0]]} at epoch {epoch + 1}")
            return
        duration = time.perf_counter() - self._epoch_start
        weights, after = self._snapshot()
        updates = {name: relative_change(self._before[name], after[name]) for name in self.members}
        rate = current_learning_rate(self.model)
        event = EpochEnd(epoch=epoch + 1, phase=self.phase, metrics=metrics, duration_s=duration,
                         learning_rate=rate, member_updates=updates, ended_at=ended_at)
        # The row keeps every field of the event: a checkpoint carries this history, and a
        # resume that lacks an epoch's stored row rebuilds the row from it.
        self.history.append(history_row(event))
        self.good_weights, self._before = weights, after  # this epoch's end is the next one's start
        self.sink(event)

    def epoch_finished(self) -> bool:
        """Whether the epoch that just ended counts (no stop request, no failure)."""
        return not (self.stop_requested or self.failure)

    def _fail(self, what: str) -> None:
        self.failure = (
            f"{what}. Training diverged: lower the learning rate (e.g. x0.1), scale the inputs, "
            f"or check the data for extreme values. The model keeps its last good weights."
        )
        self.model.stop_training = True

    def _snapshot(self) -> tuple[list[np.ndarray], dict[str, list[np.ndarray]]]:
        """One copy of the model's weights (`get_weights()` order: what a stop or a NaN
        restores) and, as views of it, each member's learnable weights (for its update).

        One copy an epoch, on the training thread, instead of one for the good weights and
        two for every member (the epoch's start and end).
        """
        variables = self.model.weights
        # np.array copies: the training thread keeps updating the variables.
        weights = [np.array(keras.ops.convert_to_numpy(v)) for v in variables]
        position = {id(v): i for i, v in enumerate(variables)}
        members = {}
        for name in self.members:
            members[name] = [weights[position[id(v)]] if id(v) in position else np.array(keras.ops.convert_to_numpy(v))
                             for v in learnable_variables(self.model.get_layer(name))]
        return weights, members


def relative_change(before: list[np.ndarray], after: list[np.ndarray]) -> float:
    """||w_after - w_before|| / ||w_before|| over all of a member's learnable weights."""
    if not before:
        return 0.0
    # vdot: a sum of squares without an array of squares (the seed's stack: 0.7M weights).
    delta = math.sqrt(sum(float(np.vdot(d, d)) for d in (a - b for a, b in zip(after, before))))
    norm = math.sqrt(sum(float(np.vdot(b, b)) for b in before))
    return delta / norm if norm > 0 else delta
