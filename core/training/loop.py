"""train(spec, dataset, sink): compile from the TrainSpec, fit, and emit typed events.

Training talks through events (`core.spec.events`): started, throttled batch progress, epoch
end with every metric, phase change when fine-tuning starts, and the end (finished,
stopped or failed, with a reason). The caller decides where events go: the run store, the
CLI, a list in a test.

- A stop request (`should_stop()` returning True) takes effect at the next batch; the
  model keeps its weights as of the last finished epoch.
- A NaN or infinite loss fails the run with a reason and keeps the last good weights.
- The fine-tune phase continues the same history: epochs keep counting.
- The data comes through `core.build.preprocessing.prepare`: encoded by the preprocessing fitted on the
  training split. A regression stack ends in `Normalization(mean, variance, invert=True)`
  of the training targets (`with_target_units`), so it trains on standardized targets
  (the loss is weighted by 1 / variance: the standardized loss, a sane scale) while its
  outputs and every metric (mae, mse, rmse) are in the target's own units.

How to compile and which callbacks fit gets is the policy in `core.training.compile` (the
generated stack.py renders the same); the event callback is `core.training.callbacks`.

Example:
    >>> log = EventLog()
    >>> result = train(spec, load_dataset(spec.dataset), log)
    >>> result.status, result.history[-1]["val_accuracy"]
    ('finished', 0.91)
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import keras
import numpy as np

from core.build.preprocessing import Prepared, prepare, prepare_dataset
from core.build.stacking import ADAPT_SAMPLE_ROWS, build
from core.build.trainability import count_params, unfreeze_top
from core.data import Dataset
from core.data.encoding import TargetScaling
from core.spec import StackSpec, TrainSpec
from core.spec.distribution import batch_problem
from core.spec.events import PHASE_FINE_TUNE, PHASE_TRAIN, EventSink, PhaseChange, RunEnded, RunStarted
from core.spec.tasks import TaskInfo
from core.training import backend
from core.training.callbacks import EventCallback
from core.training.checkpoints import CheckpointState, CheckpointWriter, read_checkpoint, restore
from core.training.compile import (
    ONE_HOT_LOSSES,
    check_fine_tune,
    compile_model,
    decay_epochs,
    fine_tune_learning_rate,
    fit_callbacks,
    phases,
    resolve_compile_args,
)

# Importable from here as before: the compile policy's entry points the trainer uses.
__all__ = ["TrainResult", "compile_model", "resolve_compile_args", "train"]


@dataclass
class TrainResult:
    model: keras.Model
    # One row per finished epoch (`core.spec.events.history_row`): epoch, phase, the metrics,
    # learning_rate, duration_s, member_updates and ended_at.
    history: list[dict[str, Any]]
    status: str  # finished, stopped or failed
    reason: str = ""
    compile_args: dict[str, Any] = field(default_factory=dict)
    # The data as trained on: the preprocessing the end-to-end model.keras starts with.
    prepared: Prepared | None = None

    @property
    def epochs_done(self) -> int:
        return len(self.history)


def _targets(y: np.ndarray, loss: str, task: TaskInfo) -> np.ndarray:
    if loss in ONE_HOT_LOSSES:
        return keras.utils.to_categorical(y, task.num_classes)
    return y


def _never() -> bool:
    return False


TARGET_UNITS_LAYER = "target_units"


def with_target_units(model: keras.Model, target: TargetScaling) -> keras.Model:
    """The stack followed by Normalization(mean, variance, invert=True): outputs in the target's units.

    The stack's own layers stay the top-level layers (members keep their names for
    trainability and fine-tuning); the added layer has no trainable weights.
    """
    units = keras.layers.Normalization(axis=-1, mean=list(target.mean), variance=list(target.variance),
                                       invert=True, name=TARGET_UNITS_LAYER, dtype="float32")
    return keras.Model(model.inputs, units(model.outputs[0]), name=model.name)


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
        dataset: raw data (split and prepared with the spec's train settings and
            `spec.dataset.scaling`); `prepare(spec.dataset, spec.train)` (cached) if None.
        sink: receives `core.spec.events` records (on the training thread and Keras's
            callback thread, so it must be thread-safe). None: events are dropped.
        should_stop: polled every batch; True stops training at the next batch.
        extra_callbacks: more Keras callbacks.
        checkpoint_path: write a checkpoint here after every finished epoch.
        resume: continue from the checkpoint at `checkpoint_path`, if there is one.

    Returns:
        TrainResult with the model (weights of the last finished epoch; it takes the
        ENCODED inputs), the history (one row per finished epoch, including those before a
        resume), the status and `prepared` (the split and preprocessing it trained with).

    Raises:
        StackError: the stack does not build.
        ValueError: the training settings do not suit the data (a bad metric or loss,
            early stopping on validation metrics without a validation split, ...), or the
            checkpoint does not match the spec.
    """
    sink = sink or (lambda event: None)
    should_stop = should_stop or _never
    train_spec = spec.train
    # A multi-host run joins its cluster before anything computes (JAX's rule), the data
    # preparation included.
    backend.join_cluster_first(train_spec.distribution)
    if dataset is None:
        prepared = prepare(spec.dataset, train_spec)
    else:
        prepared = prepare_dataset(dataset, train_spec, spec.dataset.scaling, spec.dataset.target or "target")
    task = prepared.task
    _check_settings(train_spec, task)
    policy = keras.mixed_precision.dtype_policy().name
    if train_spec.mixed_precision:
        keras.mixed_precision.set_global_policy(backend.mixed_precision_policy())
    try:
        with backend.distributed(train_spec.distribution) as placement:
            check_batch(train_spec.batch_size, placement)
            state = None
            if resume and checkpoint_path is not None:
                backend.share_from_chief(Path(checkpoint_path))
                if Path(checkpoint_path).exists():
                    state = read_checkpoint(Path(checkpoint_path))
            backend.seed_everything(train_spec.seed)
            data = prepared.split
            model = build(spec, task, sample=data.x_train[:ADAPT_SAMPLE_ROWS])
            target = prepared.preprocessing.target
            if target is not None:
                model = with_target_units(model, target)
            if state is not None:
                # A resumed run must not replay the first epochs' shuffles.
                keras.utils.set_random_seed(train_spec.seed + state.epoch)
            loop = _TrainingLoop(model, spec, task, data, sink, should_stop, extra_callbacks or [],
                                 checkpoint_path, target, placement)
            return dataclasses.replace(loop.run(state), prepared=prepared)
    finally:
        keras.mixed_precision.set_global_policy(policy)


def check_batch(batch_size: int, placement: backend.Placement) -> None:
    """The global batch must split evenly where the backend shards it across devices.

    Raises:
        ValueError: it does not (`core.spec.distribution.batch_problem`), with the nearest
            batch sizes that do.
    """
    if placement.strategy == "none":
        return
    problem = batch_problem(batch_size, placement.replicas)
    if problem:
        raise ValueError(problem)


def _check_settings(train_spec: TrainSpec, task: TaskInfo) -> None:
    resolve_compile_args(train_spec, task)
    stopping = train_spec.early_stopping
    if stopping and stopping.monitor.startswith("val_") and train_spec.validation_split == 0:
        raise ValueError(f"Early stopping monitors '{stopping.monitor}', but validation_split is 0, so "
                         f"there is no validation data. Set validation_split > 0 or monitor 'loss'.")
    if train_spec.fine_tune is not None:
        check_fine_tune(train_spec.fine_tune)


class _TrainingLoop:
    """Runs the phases of one training: compile, fit, fine-tune transition, resume."""

    def __init__(self, model, spec, task, data, sink, should_stop, extra_callbacks, checkpoint_path, target=None,
                 placement: backend.Placement | None = None):
        self.model = model
        self.placement = placement or backend.Placement("none", ())
        self.target = target
        self.spec = spec
        self.train_spec = spec.train
        if self.placement.needs_jit and not self.train_spec.jit_compile:
            # JAX runs a step that is not jitted op by op, and the devices' collectives (the
            # gradient all-reduce) then wait for each other forever.
            self.train_spec = dataclasses.replace(self.train_spec, jit_compile=True)
        self.task = task
        self.data = data
        self.sink = sink
        self.should_stop = should_stop
        self.extra_callbacks = extra_callbacks
        self.checkpoint_path = checkpoint_path
        self.train_samples = _usable(len(data.x_train), self.placement)
        batch = self.train_spec.batch_size
        if self.placement.multi_process:  # whole global batches only (each process takes its share)
            self.steps = max(self.train_samples // batch, 1)
            self.train_samples = self.steps * batch
        else:
            self.steps = max(math.ceil(self.train_samples / batch), 1)
        self.history: list[dict[str, Any]] = []

    def enter_fine_tune(self, done: int, announce: bool) -> None:
        """Unfreeze the top of the base and recompile with the smaller learning rate."""
        rate = fine_tune_learning_rate(self.train_spec)
        unfrozen = unfreeze_top(self.model, self.spec, self.train_spec.fine_tune)
        # New trainable weights need a new compile (and optimizer slots for them).
        compile_model(self.model, self.train_spec, self.task, learning_rate=rate,
                      epochs=decay_epochs(self.train_spec, done), steps_per_epoch=self.steps, target=self.target)
        if announce:
            self.sink(PhaseChange(epoch=done + 1, phase=PHASE_FINE_TUNE, learning_rate=rate,
                                  trainable_params=count_params(self.model).trainable,
                                  unfrozen_layers=tuple(unfrozen)))

    def run(self, state: CheckpointState | None) -> TrainResult:
        model, train_spec = self.model, self.train_spec
        compile_args = compile_model(model, train_spec, self.task, epochs=decay_epochs(train_spec, 0),
                                     steps_per_epoch=self.steps, target=self.target)
        phase_start = {PHASE_TRAIN: 0}
        if state is not None:
            self.history.extend(state.history)
            phase_start[state.phase] = state.phase_start
            if state.phase == PHASE_FINE_TUNE:
                self.enter_fine_tune(state.phase_start, announce=False)
            restore(model, state)
        counts = count_params(model)
        placement = self.placement
        self.sink(RunStarted(epochs=train_spec.epochs, steps_per_epoch=self.steps, total_params=counts.total,
                             trainable_params=counts.trainable, initial_epoch=len(self.history),
                             devices=placement.devices, strategy=placement.strategy,
                             train_samples=self.train_samples, batch_size=train_spec.batch_size))
        inputs = self.fit_inputs(compile_args["loss"])
        members = [m.name for m in self.spec.all_members()]
        status, reason = "finished", ""
        for phase, last_epoch in phases(train_spec):
            done = len(self.history)
            if done >= last_epoch:
                continue
            if phase == PHASE_FINE_TUNE and PHASE_FINE_TUNE not in phase_start:
                phase_start[PHASE_FINE_TUNE] = done
                self.enter_fine_tune(done, announce=True)
            # The processes of a multi-host run must stop at the same step: a stop request is
            # agreed on at the end of an epoch (AgreedStop) instead of taken at the next batch.
            per_batch_stop = _never if placement.multi_process else self.should_stop
            events = EventCallback(self.sink, per_batch_stop, members, phase, self.steps, self.history)
            events.async_safe = placement.async_callbacks
            callbacks = [events, *fit_callbacks(train_spec)]
            if self.checkpoint_path is not None:
                callbacks.append(CheckpointWriter(self.checkpoint_path, self.history, phase, phase_start[phase],
                                                  events.epoch_finished))
            if placement.multi_process:
                callbacks.append(AgreedStop(self.should_stop, events, placement))
            model.fit(
                inputs.x, inputs.y, batch_size=inputs.batch_size, epochs=last_epoch,
                initial_epoch=done, validation_data=inputs.validation, shuffle=inputs.shuffle, verbose=0,
                steps_per_epoch=inputs.steps_per_epoch, validation_steps=inputs.validation_steps,
                callbacks=callbacks + self.extra_callbacks,
            )
            if events.failure or events.stop_requested:
                model.set_weights(events.good_weights)
                status, reason = ("failed", events.failure) if events.failure else ("stopped", "stopped by request")
                break
        self.sink(RunEnded(status=status, epochs_done=len(self.history), reason=reason))
        return TrainResult(model=model, history=self.history, status=status, reason=reason,
                           compile_args=compile_args)

    def fit_inputs(self, loss: str) -> FitInputs:
        """The training and validation data as `fit` takes them on this placement.

        One device, or TensorFlow's MirroredStrategy: the arrays, which Keras's own input
        pipeline (a `tf.data` dataset over one copy, prefetched) splits across the replicas.
        JAX data parallel: the arrays cut to a multiple of the device count (at most
        devices - 1 samples left out), since JAX shards every batch evenly. Several
        processes: a shuffled, prefetched `tf.data` pipeline of whole global batches, which
        Keras shards across the processes.
        """
        data, batch, placement = self.data, self.train_spec.batch_size, self.placement
        y_train = _targets(data.y_train, loss, self.task)
        val_samples = _usable(len(data.x_val), placement)
        y_val = _targets(data.y_val, loss, self.task) if len(data.x_val) else None
        if placement.multi_process:
            if 0 < len(data.x_val) < batch:
                raise ValueError(
                    f"The validation split has {len(data.x_val)} samples, fewer than one global batch "
                    f"({batch}); a multi-host run validates whole batches. Lower batch_size or raise "
                    f"validation_split.")
            validation = (backend.batched_dataset(data.x_val, y_val, batch, shuffle_seed=None)
                          if len(data.x_val) else None)
            # Counted steps over repeated pipelines: Keras cannot count a sharded dataset's batches.
            return FitInputs(backend.batched_dataset(data.x_train, y_train, batch, shuffle_seed=self.train_spec.seed),
                             None, validation, None, shuffle=False, steps_per_epoch=self.steps,
                             validation_steps=len(data.x_val) // batch if validation is not None else None)
        n = self.train_samples
        validation = (data.x_val[:val_samples], y_val[:val_samples]) if val_samples else None
        return FitInputs(data.x_train[:n], y_train[:n], validation, batch, shuffle=True)


@dataclass(frozen=True)
class FitInputs:
    x: Any
    y: Any
    validation: Any
    batch_size: int | None  # None when x is a dataset, which is batched already
    shuffle: bool
    steps_per_epoch: int | None = None
    validation_steps: int | None = None


def _usable(samples: int, placement: backend.Placement) -> int:
    """How many of `samples` a placement uses: all, or a multiple of the devices for JAX."""
    if placement.trims_batches and not placement.multi_process:
        return samples - samples % placement.replicas
    return samples


class AgreedStop(keras.callbacks.Callback):
    """Stops every process of a multi-host run after the epoch in which any of them was asked to."""

    def __init__(self, should_stop: Callable[[], bool], events: EventCallback, placement: backend.Placement):
        super().__init__()
        self.should_stop, self.events, self.placement = should_stop, events, placement

    def on_epoch_end(self, epoch, logs=None):
        if backend.any_process(self.should_stop(), self.placement):
            # After the epoch's checkpoint (this callback comes last): the epoch counts.
            self.events.stop_requested = True
            self.model.stop_training = True
