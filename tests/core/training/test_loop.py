import math

import keras
import numpy as np
import pytest

from core.data import Dataset
from core.spec import EarlyStoppingSpec, FineTuneSpec, MemberSpec, StackSpec, TrainSpec
from core.spec.events import EventLog, epoch_from_history_row
from core.spec.tasks import TaskInfo
from core.training.checkpoints import read_checkpoint
from core.training.loop import train


def tiny_dataset(n=96, kind="multiclass", seed=0) -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype("float32")
    if kind == "regression":
        y = (x @ rng.normal(size=6)).astype("float32")
        task = TaskInfo("regression", (6,))
    else:
        classes = 3 if kind == "multiclass" else 2
        y = (np.argmax(x[:, :classes], axis=1)).astype("int64")
        task = TaskInfo(kind, (6,), num_classes=classes, class_names=tuple(str(i) for i in range(classes)))
    return Dataset(name="tiny", x=x, y=y, task=task)


def tiny_spec(**train) -> StackSpec:
    return StackSpec(
        name="tiny",
        members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [8]}),
                 MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(**{"epochs": 3, "batch_size": 16, "validation_split": 0.25, **train}),
    )


def test_events_history_and_metrics():
    log = EventLog()
    result = train(tiny_spec(), tiny_dataset(), log)
    assert result.status == "finished"
    # Batch progress and loss samples follow the clock (a sample at most once a second: one
    # comes on a machine loaded enough for an epoch to take a second); test_step_samples has them.
    kinds = [e.kind for e in log.events if e.kind not in ("progress", "step")]
    assert kinds == ["started", "epoch", "epoch", "epoch", "ended"]
    started = log.of_kind("started")[0]
    assert started.epochs == 3 and started.steps_per_epoch == math.ceil(72 / 16)
    assert started.total_params == result.model.count_params()
    epochs = log.of_kind("epoch")
    assert [e.epoch for e in epochs] == [1, 2, 3]
    assert set(epochs[0].metrics) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(e.duration_s > 0 and e.learning_rate == pytest.approx(1e-3) for e in epochs)
    assert set(epochs[0].member_updates) == {"encoder", "head"}
    assert all(v > 0 for v in epochs[0].member_updates.values())
    assert [row["epoch"] for row in result.history] == [1, 2, 3]
    assert result.history[-1]["val_loss"] == epochs[-1].metrics["val_loss"]
    ended = log.of_kind("ended")[0]
    assert (ended.status, ended.epochs_done) == ("finished", 3)


def test_the_history_and_its_checkpoint_keep_every_field_of_each_epoch(tmp_path):
    checkpoint = tmp_path / "checkpoint.npz"
    log = EventLog()
    result = train(tiny_spec(epochs=2), tiny_dataset(), log, checkpoint_path=checkpoint)
    events = log.of_kind("epoch")
    # A resume rebuilds a row the store lacks from these: nothing of the epoch may be missing.
    assert [epoch_from_history_row(row) for row in result.history] == events
    assert read_checkpoint(checkpoint).history == result.history
    assert all(row["member_updates"] and row["ended_at"] > 0 for row in result.history)


def test_same_seed_same_history():
    first = train(tiny_spec(seed=3), tiny_dataset())
    second = train(tiny_spec(seed=3), tiny_dataset())
    other = train(tiny_spec(seed=4), tiny_dataset())
    assert [r["loss"] for r in first.history] == [r["loss"] for r in second.history]
    assert [r["loss"] for r in first.history] != [r["loss"] for r in other.history]


def test_stop_request_keeps_the_last_finished_epoch():
    log = EventLog()
    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            snapshots.append([w.copy() for w in self.model.get_weights()])

    def should_stop() -> bool:
        # Ask to stop in the middle of epoch 2.
        return any(e.kind == "progress" and e.epoch == 2 for e in log.events) or len(snapshots) >= 2

    spec = tiny_spec(epochs=5, batch_size=4)
    import core.training.callbacks as callbacks
    old = callbacks.PROGRESS_INTERVAL_S
    callbacks.PROGRESS_INTERVAL_S = 0.0
    try:
        result = train(spec, tiny_dataset(n=400), log, should_stop=should_stop, extra_callbacks=[Snapshot()])
    finally:
        callbacks.PROGRESS_INTERVAL_S = old
    assert result.status == "stopped"
    assert [row["epoch"] for row in result.history] == [1]
    assert [e.epoch for e in log.of_kind("epoch")] == [1]
    for kept, saved in zip(result.model.get_weights(), snapshots[0]):
        np.testing.assert_array_equal(kept, saved)
    assert log.of_kind("ended")[0].status == "stopped"


def test_nan_loss_fails_with_a_reason_and_keeps_good_weights():
    data = tiny_dataset(kind="regression")
    spec = tiny_spec(optimizer="sgd", learning_rate=1e6, epochs=4)
    log = EventLog()
    result = train(spec, data, log)
    assert result.status == "failed"
    assert "lower the learning rate" in result.reason
    assert all(np.all(np.isfinite(w)) for w in result.model.get_weights())
    assert log.of_kind("ended")[0].reason == result.reason


def test_fine_tune_phase_continues_the_history():
    spec = StackSpec(
        name="transfer",
        mode="transfer",
        members=(MemberSpec("base", template="mlp", params={"hidden_units": [8, 8]}),),
        head=MemberSpec("head", template="dense_head", params={"hidden_units": []}),
        train=TrainSpec(epochs=4, batch_size=16, learning_rate=0.01,
                        fine_tune=FineTuneSpec(start_epoch=3, unfreeze_top_layers=1, learning_rate_factor=0.1)),
    )
    log = EventLog()
    result = train(spec, tiny_dataset(), log)
    assert [(row["epoch"], row["phase"]) for row in result.history] == [
        (1, "train"), (2, "train"), (3, "fine_tune"), (4, "fine_tune")]
    (change,) = log.of_kind("phase")
    assert change.epoch == 3 and change.learning_rate == pytest.approx(0.001)
    assert change.unfrozen_layers == ("base/base_dense2",)
    started = log.of_kind("started")[0]
    assert change.trainable_params == started.trainable_params + 8 * 8 + 8
    epochs = log.of_kind("epoch")
    assert epochs[0].member_updates["base"] == 0.0 and epochs[1].member_updates["base"] == 0.0
    assert epochs[2].member_updates["base"] > 0
    assert epochs[2].learning_rate == pytest.approx(0.001)


def test_early_stopping_ends_training():
    spec = tiny_spec(epochs=30, learning_rate=0.0, early_stopping=EarlyStoppingSpec(patience=1))
    result = train(spec, tiny_dataset())
    assert result.status == "finished"
    assert len(result.history) < 30


def test_early_stopping_on_validation_needs_validation_data():
    spec = tiny_spec(validation_split=0.0, early_stopping=EarlyStoppingSpec())
    with pytest.raises(ValueError, match="validation_split is 0"):
        train(spec, tiny_dataset())


def test_categorical_crossentropy_gets_one_hot_targets():
    result = train(tiny_spec(loss="categorical_crossentropy", epochs=1), tiny_dataset())
    assert result.status == "finished"


@pytest.mark.parametrize("schedule", ["cosine", "exponential", "reduce_on_plateau"])
def test_learning_rate_schedules_report_their_rate(schedule):
    log = EventLog()
    train(tiny_spec(lr_schedule=schedule, epochs=2), tiny_dataset(), log)
    rates = [e.learning_rate for e in log.of_kind("epoch")]
    assert all(0 <= r <= 1.000001e-3 for r in rates) and rates[0] > 0
    if schedule != "reduce_on_plateau":
        assert rates[1] < rates[0]


class _StopDuring:
    """should_stop() that turns True once a progress event of `epoch` was seen."""

    def __init__(self, log: EventLog, epoch: int):
        self.log, self.epoch = log, epoch

    def __call__(self) -> bool:
        return any(e.kind == "progress" and e.epoch == self.epoch for e in self.log.events)


@pytest.fixture
def progress_every_batch(monkeypatch):
    import core.training.callbacks as callbacks

    monkeypatch.setattr(callbacks, "PROGRESS_INTERVAL_S", 0.0)


class _WeightsAtStart(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
        self.weights = [w.copy() for w in self.model.get_weights()]


def test_resume_continues_from_the_last_checkpoint(tmp_path, progress_every_batch):
    spec = tiny_spec(epochs=4, batch_size=4)
    data = tiny_dataset(n=200)
    checkpoint = tmp_path / "checkpoint.npz"
    first_log = EventLog()
    first = train(spec, data, first_log, should_stop=_StopDuring(first_log, 3), checkpoint_path=checkpoint)
    assert first.status == "stopped" and [r["epoch"] for r in first.history] == [1, 2]
    assert not list(tmp_path.glob("*.tmp"))

    log = EventLog()
    at_start = _WeightsAtStart()
    resumed = train(spec, data, log, checkpoint_path=checkpoint, resume=True, extra_callbacks=[at_start])
    assert resumed.status == "finished"
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3, 4]
    assert resumed.history[:2] == first.history
    assert log.of_kind("started")[0].initial_epoch == 2
    assert [e.epoch for e in log.of_kind("epoch")] == [3, 4]
    for restored, kept in zip(at_start.weights, first.model.get_weights()):
        np.testing.assert_array_equal(restored, kept)


def test_resume_inside_the_fine_tune_phase_keeps_the_phase(tmp_path, progress_every_batch):
    spec = StackSpec(
        name="transfer", mode="transfer",
        members=(MemberSpec("base", template="mlp", params={"hidden_units": [8, 8]}),),
        head=MemberSpec("head", template="dense_head", params={"hidden_units": []}),
        train=TrainSpec(epochs=4, batch_size=4, fine_tune=FineTuneSpec(start_epoch=2, unfreeze_top_layers=1)),
    )
    data = tiny_dataset(n=200)
    checkpoint = tmp_path / "checkpoint.npz"
    first_log = EventLog()
    first = train(spec, data, first_log, should_stop=_StopDuring(first_log, 3), checkpoint_path=checkpoint)
    assert [(r["epoch"], r["phase"]) for r in first.history] == [(1, "train"), (2, "fine_tune")]
    log = EventLog()
    resumed = train(spec, data, log, checkpoint_path=checkpoint, resume=True)
    assert [(r["epoch"], r["phase"]) for r in resumed.history] == [
        (1, "train"), (2, "fine_tune"), (3, "fine_tune"), (4, "fine_tune")]
    assert log.of_kind("phase") == []
    assert log.of_kind("started")[0].trainable_params == first_log.of_kind("phase")[0].trainable_params
    assert log.of_kind("epoch")[0].learning_rate == pytest.approx(1e-4)


def test_a_checkpoint_from_another_stack_is_refused(tmp_path):
    checkpoint = tmp_path / "checkpoint.npz"
    train(tiny_spec(epochs=1), tiny_dataset(), checkpoint_path=checkpoint)
    bigger = tiny_spec(epochs=2).replace(members=(
        MemberSpec("encoder", template="mlp", params={"hidden_units": [8, 8]}),
        MemberSpec("head", template="dense_head", params={"hidden_units": []})))
    with pytest.raises(ValueError, match="the stack changed since the checkpoint"):
        train(bigger, tiny_dataset(), checkpoint_path=checkpoint, resume=True)


def test_batch_progress_times_the_batches_after_an_epochs_first(progress_every_batch):
    log = EventLog()
    train(tiny_spec(epochs=1), tiny_dataset(), log)
    progress = log.of_kind("progress")
    assert [p.step for p in progress] == list(range(1, len(progress) + 1))
    # The first batch also traces and compiles: it is never part of the batch time.
    assert [p.step_time_s for p in progress[:2]] == [None, None]
    timed = [p for p in progress if p.step_time_s is not None]
    assert timed and all(0 < p.step_time_s < p.elapsed_s for p in timed)
