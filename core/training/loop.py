"""train(spec, dataset, sink): compile from the TrainSpec, fit, and emit typed events.

Training talks through events (`core.spec.events`): started, throttled batch progress, epoch
end with every metric, phase change when fine-tuning starts, and the end (finished,
stopped or failed, with a reason). The caller decides where events go: the run store, the
CLI, a list in a test.

- A stop request (`should_stop()` returning True) takes effect at the next batch; the
  model keeps its weights as of the last finished epoch.
- A NaN or infinite loss fails the run with a reason and keeps the last good weights.
- The fine-tune phase continues the same history: epochs keep counting.

Example:
    >>> log = EventLog()
    >>> result = train(spec, load_dataset(spec.dataset), log)
    >>> result.status, result.history[-1]["val_accuracy"]
    ('finished', 0.91)
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from core.training import backend
from core.training.checkpoints import CheckpointState, CheckpointWriter, read_checkpoint, restore
from core.data import Dataset, load_dataset, split
from core.spec.events import MIN_TIMED_STEPS, BatchProgress, EpochEnd, EventSink, PhaseChange, RunEnded, RunStarted
from core.runs.store import history_row
from core.spec import StackSpec, TrainSpec
from core.build.stacking import build
from core.spec.tasks import TaskInfo
from core.build.trainability import count_params, learnable_variables, unfreeze_top

PROGRESS_INTERVAL_S = 0.25
BINARY_ONLY_METRICS = ("auc", "precision", "recall")


@dataclass
class TrainResult:
    model: keras.Model
    # One row per finished epoch (`core.runs.store.history_row`): epoch, phase, the metrics,
    # learning_rate, duration_s, member_updates and ended_at.
    history: list[dict[str, Any]]
    status: str  # finished, stopped or failed
    reason: str = ""
    compile_args: dict[str, Any] = field(default_factory=dict)

    @property
    def epochs_done(self) -> int:
        return len(self.history)


def resolve_compile_args(train_spec: TrainSpec, task: TaskInfo) -> dict[str, Any]:
    """Optimizer, learning rate, loss and metrics with every "auto" resolved from the task.

    Raises:
        ValueError: a loss or metric does not suit the task (e.g. auc on 10 classes).
    """
    loss = task.default_loss if train_spec.loss == "auto" else train_spec.loss
    regression_losses = ("mse", "mae", "huber")
    if task.is_classification == (loss in regression_losses):
        raise ValueError(
            f"Loss '{loss}' does not suit a {task.kind} task. Use loss 'auto' "
            f"(= '{task.default_loss}')."
        )
    if loss == "binary_crossentropy" and task.kind != "binary":
        raise ValueError(f"Loss 'binary_crossentropy' needs a binary task, but this one is {task.kind} "
                         f"with {task.num_classes} classes. Use 'sparse_categorical_crossentropy'.")
    metrics: list[str] = []
    for name in train_spec.metrics:
        for resolved in task.default_metrics if name == "auto" else (name,):
            if resolved in BINARY_ONLY_METRICS and task.kind != "binary":
                raise ValueError(f"Metric '{resolved}' is computed for binary tasks only; this task is "
                                 f"{task.kind}. Use 'accuracy', or 'auto'.")
            if resolved == "accuracy" and not task.is_classification:
                raise ValueError("Metric 'accuracy' needs a classification task; for regression use 'mae', "
                                 "'mse' or 'rmse'.")
            if resolved not in metrics:
                metrics.append(resolved)
    return {
        "optimizer": train_spec.optimizer,
        "learning_rate": train_spec.learning_rate,
        "weight_decay": train_spec.weight_decay,
        "loss": loss,
        "metrics": metrics,
    }


def _metric_objects(names: list[str]) -> list:
    factories = {
        "auc": lambda: keras.metrics.AUC(name="auc"),
        "precision": lambda: keras.metrics.Precision(name="precision"),
        "recall": lambda: keras.metrics.Recall(name="recall"),
        "rmse": lambda: keras.metrics.RootMeanSquaredError(name="rmse"),
    }
    return [factories[n]() if n in factories else n for n in names]


def make_optimizer(train_spec: TrainSpec, learning_rate: float, decay_steps: int) -> keras.optimizers.Optimizer:
    """The optimizer named in the spec, with its learning-rate schedule."""
    rate: Any = learning_rate
    if train_spec.lr_schedule == "cosine":
        rate = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(decay_steps, 1))
    elif train_spec.lr_schedule == "exponential":
        # Decays by 10 % over each epoch's worth of steps.
        steps_per_epoch = max(decay_steps // max(train_spec.epochs, 1), 1)
        rate = keras.optimizers.schedules.ExponentialDecay(learning_rate, steps_per_epoch, decay_rate=0.9)
    decay = train_spec.weight_decay or None
    classes = {
        "adam": keras.optimizers.Adam,
        "adamw": keras.optimizers.AdamW,
        "sgd": lambda **kw: keras.optimizers.SGD(momentum=0.9, **kw),
        "rmsprop": keras.optimizers.RMSprop,
    }
    if train_spec.optimizer == "adamw":
        decay = train_spec.weight_decay or 0.004  # AdamW's own default
    return classes[train_spec.optimizer](learning_rate=rate, weight_decay=decay)


def compile_model(model: keras.Model, train_spec: TrainSpec, task: TaskInfo, *,
                  learning_rate: float | None = None, decay_steps: int = 1) -> dict[str, Any]:
    """Compile `model` from the spec; returns the resolved compile arguments."""
    args = resolve_compile_args(train_spec, task)
    rate = train_spec.learning_rate if learning_rate is None else learning_rate
    model.compile(
        optimizer=make_optimizer(train_spec, rate, decay_steps),
        loss=args["loss"],
        metrics=_metric_objects(args["metrics"]),
        jit_compile=train_spec.jit_compile,
    )
    return {**args, "learning_rate": rate}


def current_learning_rate(model: keras.Model) -> float:
    return float(keras.ops.convert_to_numpy(model.optimizer.learning_rate))


class _EventCallback(keras.callbacks.Callback):
    """Turns Keras callback hooks into events; handles stop requests and NaN losses.

    `async_safe`: batch-end hooks run on Keras's callback thread, so reading the batch
    counter never blocks the training loop. Progress reads no metric values (that would
    force a device sync every batch); metrics arrive once per epoch.
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
        self._epoch_start = 0.0
        self._first_step_end = 0.0  # when the epoch's first batch ended: the clock for step times
        self._epoch = 0
        self._before: dict[str, list[np.ndarray]] = {}

    def on_train_begin(self, logs=None):
        self.good_weights = self.model.get_weights()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch = epoch + 1
        self._epoch_start = time.perf_counter()
        self._before = {name: self._values(name) for name in self.members}

    def on_train_batch_end(self, batch, logs=None):
        if self.should_stop():
            self.stop_requested = True
            self.model.stop_training = True
        now = time.perf_counter()
        if batch == 0:
            self._first_step_end = now
        with self._lock:
            if now - self._last_progress < PROGRESS_INTERVAL_S:
                return
            self._last_progress = now
        loss = (logs or {}).get("loss")
        if loss is not None and not math.isfinite(float(loss)):
            self._fail(f"loss became {float(loss)} during epoch {self._epoch}")
            return
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
        updates = {name: _relative_change(self._before[name], self._values(name)) for name in self.members}
        rate = current_learning_rate(self.model)
        event = EpochEnd(epoch=epoch + 1, phase=self.phase, metrics=metrics, duration_s=duration,
                         learning_rate=rate, member_updates=updates, ended_at=ended_at)
        # The row keeps every field of the event: a checkpoint carries this history, and a
        # resume that lacks an epoch's stored row rebuilds the row from it.
        self.history.append(history_row(event))
        self.good_weights = self.model.get_weights()
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

    def _values(self, member: str) -> list[np.ndarray]:
        return [np.array(keras.ops.convert_to_numpy(v)) for v in learnable_variables(self.model.get_layer(member))]


def _relative_change(before: list[np.ndarray], after: list[np.ndarray]) -> float:
    """||w_after - w_before|| / ||w_before|| over all of a member's learnable weights."""
    if not before:
        return 0.0
    delta = math.sqrt(sum(float(np.sum((a - b) ** 2)) for a, b in zip(after, before)))
    norm = math.sqrt(sum(float(np.sum(b ** 2)) for b in before))
    return delta / norm if norm > 0 else delta


def _targets(y: np.ndarray, loss: str, task: TaskInfo) -> np.ndarray:
    if loss == "categorical_crossentropy":
        return keras.utils.to_categorical(y, task.num_classes)
    return y


def _never() -> bool:
    return False


def train(
    spec: StackSpec,
    dataset: Dataset | None = None,
    sink: EventSink | None = None,
    *,
    should_stop: Callable[[], bool] | None = None,
    extra_callbacks: list[keras.callbacks.Callback] | None = None,
    checkpoint_path: Path | None = None,
    resume: bool = False,
) -> TrainResult:
    """Build the stack from `spec`, train it on `dataset`, and emit events to `sink`.

    Args:
        spec: the stack and its TrainSpec.
        dataset: the data; loaded from `spec.dataset` if None.
        sink: receives `core.spec.events` records (on the training thread and Keras's
            callback thread, so it must be thread-safe). None: events are dropped.
        should_stop: polled every batch; True stops training at the next batch.
        extra_callbacks: more Keras callbacks.
        checkpoint_path: write a checkpoint here after every finished epoch.
        resume: continue from the checkpoint at `checkpoint_path`, if there is one.

    Returns:
        TrainResult with the model (weights of the last finished epoch), the history
        (one row per finished epoch, including those before a resume) and the status.

    Raises:
        StackError: the stack does not build.
        ValueError: the training settings do not suit the data (a bad metric or loss,
            early stopping on validation metrics without a validation split, ...), or the
            checkpoint does not match the spec.
    """
    sink = sink or (lambda event: None)
    should_stop = should_stop or _never
    dataset = dataset or load_dataset(spec.dataset)
    train_spec = spec.train
    _check_settings(train_spec, dataset)
    state = None
    if resume and checkpoint_path is not None and Path(checkpoint_path).exists():
        state = read_checkpoint(Path(checkpoint_path))
    backend.seed_everything(train_spec.seed)
    policy = keras.mixed_precision.dtype_policy().name
    if train_spec.mixed_precision:
        keras.mixed_precision.set_global_policy(backend.mixed_precision_policy())
    try:
        data = split(dataset, train_spec.validation_split, train_spec.seed)
        model = build(spec, dataset.task, sample=data.x_train[:2000])
        if state is not None:
            # A resumed run must not replay the first epochs' shuffles.
            keras.utils.set_random_seed(train_spec.seed + state.epoch)
        loop = _TrainingLoop(model, spec, dataset.task, data, sink, should_stop, extra_callbacks or [],
                             checkpoint_path)
        return loop.run(state)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def _check_settings(train_spec: TrainSpec, dataset: Dataset) -> None:
    resolve_compile_args(train_spec, dataset.task)
    stopping = train_spec.early_stopping
    if stopping and stopping.monitor.startswith("val_") and train_spec.validation_split == 0:
        raise ValueError(f"Early stopping monitors '{stopping.monitor}', but validation_split is 0, so "
                         f"there is no validation data. Set validation_split > 0 or monitor 'loss'.")
    tune = train_spec.fine_tune
    if tune and tune.start_epoch < 2:
        raise ValueError(f"fine_tune.start_epoch must be 2 or later (received {tune.start_epoch}): the "
                         f"first epochs train the new head on the frozen base.")


def _phases(train_spec: TrainSpec) -> list[tuple[str, int]]:
    """(phase, last epoch) pairs; epochs are 1-based and inclusive."""
    tune = train_spec.fine_tune
    if tune is None or tune.start_epoch > train_spec.epochs:
        return [("train", train_spec.epochs)]
    return [("train", tune.start_epoch - 1), ("fine_tune", train_spec.epochs)]


class _TrainingLoop:
    """Runs the phases of one training: compile, fit, fine-tune transition, resume."""

    def __init__(self, model, spec, task, data, sink, should_stop, extra_callbacks, checkpoint_path):
        self.model = model
        self.spec = spec
        self.train_spec = spec.train
        self.task = task
        self.data = data
        self.sink = sink
        self.should_stop = should_stop
        self.extra_callbacks = extra_callbacks
        self.checkpoint_path = checkpoint_path
        self.steps = max(math.ceil(len(data.x_train) / self.train_spec.batch_size), 1)
        self.history: list[dict[str, Any]] = []

    def enter_fine_tune(self, done: int, announce: bool) -> None:
        """Unfreeze the top of the base and recompile with the smaller learning rate."""
        tune = self.train_spec.fine_tune
        rate = self.train_spec.learning_rate * tune.learning_rate_factor
        unfrozen = unfreeze_top(self.model, self.spec, tune)
        # New trainable weights need a new compile (and optimizer slots for them).
        compile_model(self.model, self.train_spec, self.task, learning_rate=rate,
                      decay_steps=self.steps * (self.train_spec.epochs - done))
        if announce:
            self.sink(PhaseChange(epoch=done + 1, phase="fine_tune", learning_rate=rate,
                                  trainable_params=count_params(self.model).trainable,
                                  unfrozen_layers=tuple(unfrozen)))

    def run(self, state: CheckpointState | None) -> TrainResult:
        model, train_spec = self.model, self.train_spec
        compile_args = compile_model(model, train_spec, self.task, decay_steps=self.steps * train_spec.epochs)
        phase_start = {"train": 0}
        if state is not None:
            self.history.extend(state.history)
            phase_start[state.phase] = state.phase_start
            if state.phase == "fine_tune":
                self.enter_fine_tune(state.phase_start, announce=False)
            restore(model, state)
        counts = count_params(model)
        self.sink(RunStarted(epochs=train_spec.epochs, steps_per_epoch=self.steps, total_params=counts.total,
                             trainable_params=counts.trainable, initial_epoch=len(self.history)))
        loss = compile_args["loss"]
        y_train = _targets(self.data.y_train, loss, self.task)
        validation = None
        if len(self.data.x_val):
            validation = (self.data.x_val, _targets(self.data.y_val, loss, self.task))
        members = [m.name for m in self.spec.all_members()]
        status, reason = "finished", ""
        for phase, last_epoch in _phases(train_spec):
            done = len(self.history)
            if done >= last_epoch:
                continue
            if phase == "fine_tune" and "fine_tune" not in phase_start:
                phase_start["fine_tune"] = done
                self.enter_fine_tune(done, announce=True)
            events = _EventCallback(self.sink, self.should_stop, members, phase, self.steps, self.history)
            callbacks = [events, *_schedule_callbacks(train_spec)]
            if self.checkpoint_path is not None:
                callbacks.append(CheckpointWriter(self.checkpoint_path, self.history, phase, phase_start[phase],
                                                  events.epoch_finished))
            model.fit(
                self.data.x_train, y_train, batch_size=train_spec.batch_size, epochs=last_epoch,
                initial_epoch=done, validation_data=validation, shuffle=True, verbose=0,
                callbacks=callbacks + self.extra_callbacks,
            )
            if events.failure or events.stop_requested:
                model.set_weights(events.good_weights)
                status, reason = ("failed", events.failure) if events.failure else ("stopped", "stopped by request")
                break
        self.sink(RunEnded(status=status, epochs_done=len(self.history), reason=reason))
        return TrainResult(model=model, history=self.history, status=status, reason=reason,
                           compile_args=compile_args)


def _schedule_callbacks(train_spec: TrainSpec) -> list[keras.callbacks.Callback]:
    callbacks: list[keras.callbacks.Callback] = []
    monitor = "val_loss" if train_spec.validation_split > 0 else "loss"
    if train_spec.lr_schedule == "reduce_on_plateau":
        callbacks.append(keras.callbacks.ReduceLROnPlateau(monitor=monitor, factor=0.5, patience=2))
    stopping = train_spec.early_stopping
    if stopping:
        callbacks.append(keras.callbacks.EarlyStopping(
            monitor=stopping.monitor, patience=stopping.patience, min_delta=stopping.min_delta,
            restore_best_weights=stopping.restore_best_weights,
        ))
    return callbacks
