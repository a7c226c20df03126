"""The run store and job manager without real training (fast): rows, reconcile, errors."""

import os
import sqlite3
import subprocess
import sys
import time

import pytest

from core import runs
from core.runs import scheduler
from core.runs import store as run_store
from core.runs.store import (
    RunNotFound,
    RunStore,
    RunStoreError,
    best_metric,
)
from core.spec import MemberSpec, StackSpec, TrainSpec
from core.spec.events import BatchProgress, EpochEnd, PhaseChange, RunStarted, epoch_from_history_row, history_row


def spec(name="demo") -> StackSpec:
    return StackSpec(name=name, members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="dense_head")),
                     train=TrainSpec(epochs=3))


@pytest.fixture(autouse=True)
def cpu_only_machine(monkeypatch):
    """These tests count worker slots: on a GPU machine the default would be one per GPU."""
    monkeypatch.setenv("STACKLAB_GPUS", "")


@pytest.fixture
def no_workers(monkeypatch):
    """Queue runs without spawning worker processes."""
    spawned = []
    monkeypatch.setattr(scheduler, "_spawn", spawned.append)
    return spawned


def test_a_run_is_a_row_and_a_folder(no_workers, stacklab_home):
    run_id = runs.start(spec())
    run = runs.get(run_id)
    assert run.status == "running" and no_workers == [run_id]
    assert run.folder == stacklab_home / "runs" / run_id
    assert (run.folder / "spec.json").read_text() == spec().to_json()
    assert run.spec == spec() and run.epochs_total == 3
    assert [r.id for r in runs.list_runs()] == [run_id]


def test_events_become_rows(no_workers):
    store = runs.current_store()
    run_id = runs.start(spec())
    store.record(run_id, RunStarted(epochs=3, steps_per_epoch=10, total_params=100, trainable_params=80))
    store.record(run_id, BatchProgress(epoch=1, step=4, steps=10, elapsed_s=0.5))
    store.record(run_id, EpochEnd(epoch=1, phase="train", metrics={"loss": 0.9, "val_accuracy": 0.5},
                                  duration_s=1.5, learning_rate=1e-3, member_updates={"a": 0.1, "b": 0.2}))
    store.record(run_id, PhaseChange(epoch=2, phase="fine_tune", learning_rate=1e-4, trainable_params=90,
                                     unfrozen_layers=("a/a_dense1",)))
    store.record(run_id, EpochEnd(epoch=2, phase="fine_tune", metrics={"loss": 0.7, "val_accuracy": 0.7},
                                  duration_s=1.4, learning_rate=1e-4))
    run = runs.get(run_id)
    assert (run.epochs_done, run.phase, run.total_params, run.trainable_params) == (2, "fine_tune", 100, 90)
    assert runs.progress(run_id).step == 4
    rows = runs.metrics(run_id)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert rows[0]["member_updates"] == {"a": 0.1, "b": 0.2}
    assert [r["epoch"] for r in runs.metrics(run_id, since_epoch=1)] == [2]
    assert runs.phases(run_id) == [{"epoch": 2, "phase": "fine_tune", "learning_rate": 1e-4,
                                    "trainable_params": 90, "unfrozen_layers": ["a/a_dense1"]}]
    assert run.best == {"name": "val_accuracy", "value": 0.7, "epoch": 2}


def epoch(number: int, **fields) -> EpochEnd:
    values = {"phase": "train", "metrics": {"loss": 1.0 / number}, "duration_s": 1.0 + number,
              "learning_rate": 1e-3, "member_updates": {"a": 0.1 * number, "b": 0.2}, "ended_at": 100.0 + number}
    return EpochEnd(epoch=number, **{**values, **fields})


def test_resume_keeps_the_stored_rows_and_drops_those_after_the_checkpoint(no_workers):
    store = runs.current_store()
    run_id = runs.start(spec())
    for number in (1, 2, 3):
        store.record(run_id, epoch(number))
    store.record(run_id, PhaseChange(epoch=4, phase="fine_tune", learning_rate=1e-4, trainable_params=9))
    before = runs.metrics(run_id)
    # A checkpoint after epoch 2 whose history lacks what the store has (an older checkpoint format).
    history = [{"epoch": n, "phase": "train", "loss": 9.0, "learning_rate": 1e-3, "duration_s": 0.0} for n in (1, 2)]
    store.resume_epochs(run_id, keep_through=2, history=history)
    assert runs.metrics(run_id) == before[:2]  # member updates, times and metrics as recorded
    assert runs.get(run_id).epochs_done == 2 and runs.phases(run_id) == []


def test_resume_rebuilds_a_row_the_store_lacks_from_the_checkpoint(no_workers):
    store = runs.current_store()
    run_id = runs.start(spec())
    store.record(run_id, epoch(1))
    lost = epoch(2, phase="fine_tune", member_updates={"a": 0.5, "b": 0.0})
    store.resume_epochs(run_id, keep_through=2, history=[history_row(epoch(1, metrics={"loss": 9.0})),
                                                         history_row(lost)])
    first, second = runs.metrics(run_id)
    assert first["metrics"] == {"loss": 1.0}  # the stored row wins
    assert {key: second[key] for key in ("epoch", "phase", "duration_s", "learning_rate", "member_updates",
                                         "ended_at")} == {
        "epoch": 2, "phase": "fine_tune", "duration_s": 3.0, "learning_rate": 1e-3,
        "member_updates": {"a": 0.5, "b": 0.0}, "ended_at": 102.0}
    assert second["metrics"] == {"loss": 0.5}


def test_a_history_row_keeps_every_field_of_its_epoch():
    event = epoch(3, metrics={"loss": 0.2, "val_accuracy": 0.9})
    assert epoch_from_history_row(history_row(event)) == event
    old = {"epoch": 1, "phase": "train", "loss": 0.4, "learning_rate": 0.01, "duration_s": 2.0}
    assert epoch_from_history_row(old) == EpochEnd(epoch=1, phase="train", metrics={"loss": 0.4},
                                                   duration_s=2.0, learning_rate=0.01)


def test_queue_respects_the_worker_limit_in_order(no_workers, monkeypatch):
    monkeypatch.setenv("STACKLAB_MAX_WORKERS", "2")
    ids = [runs.start(spec(f"run{i}")) for i in range(4)]
    assert [runs.get(i).status for i in ids] == ["running", "running", "queued", "queued"]
    runs.current_store().update(ids[0], status="finished")
    assert runs.schedule() == [ids[2]]
    assert no_workers == ids[:3]


def test_stop_a_queued_run_and_resume_rules(no_workers, monkeypatch):
    first, second = runs.start(spec()), runs.start(spec())
    assert runs.stop(second).status == "stopped"
    assert runs.stop(first).status == "stopping"
    with pytest.raises(ValueError, match="is stopping; only stopped, failed, interrupted runs can be resumed"):
        runs.resume(first)
    with pytest.raises(ValueError, match="stop it before deleting it"):
        runs.delete(first)
    runs.current_store().update(first, status="stopped")
    assert runs.resume(second).status == "running"  # the slot is free again


def test_delete_removes_row_and_folder(no_workers):
    run_id = runs.start(spec())
    runs.current_store().update(run_id, status="finished")
    folder = runs.get(run_id).folder
    runs.delete(run_id)
    assert not folder.exists()
    with pytest.raises(RunNotFound, match=f"No run with id '{run_id}'"):
        runs.get(run_id)


def test_orphaned_runs_are_marked_interrupted_on_reconcile(no_workers, monkeypatch):
    run_id = runs.start(spec())
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    runs.current_store().update(run_id, worker_pid=dead.pid, heartbeat_at=time.time() - 60, epochs_done=2)
    monkeypatch.setenv("STACKLAB_MAX_WORKERS", "1")
    queued = runs.start(spec("next"))
    assert runs.get(queued).status == "queued"
    assert runs.reconcile() == [run_id]
    run = runs.get(run_id)
    assert run.status == "interrupted"
    assert "worker process" in run.error and "epoch 2" in run.error
    assert runs.get(queued).status == "running"  # its slot was freed


def test_a_live_worker_is_not_interrupted(no_workers):
    run_id = runs.start(spec())
    runs.current_store().update(run_id, worker_pid=os.getpid(), heartbeat_at=time.time() - 60)
    assert runs.reconcile() == []


def test_a_corrupted_database_gives_a_clear_error(tmp_path):
    (tmp_path / "stacklab.db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(RunStoreError, match="cannot be read .* move it aside"):
        RunStore(tmp_path)


def test_a_locked_database_gives_a_clear_error(tmp_path):
    RunStore(tmp_path).close()
    holder = sqlite3.connect(tmp_path / "stacklab.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        store = RunStore.__new__(RunStore)
        with pytest.raises(RunStoreError, match="is locked by another process"):
            store.__init__(tmp_path, timeout_s=0.2)
            store.create(spec())
    finally:
        holder.execute("ROLLBACK")


def test_opening_retries_a_lock_sqlite_reports_without_waiting(tmp_path, monkeypatch):
    # Two processes creating a new store at once can deadlock on the switch to WAL, and
    # SQLite answers "locked" to one at once instead of waiting out the busy timeout.
    real_open, attempts = RunStore._open, []

    def deadlocked_once(self, timeout_s):
        attempts.append(timeout_s)
        if len(attempts) == 1:
            raise sqlite3.OperationalError("database is locked")
        real_open(self, timeout_s)

    monkeypatch.setattr(RunStore, "_open", deadlocked_once)
    store = RunStore(tmp_path, timeout_s=2.0)
    assert len(attempts) == 2 and store.list_runs() == []


def test_a_newer_schema_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "stacklab.db")
    db.execute("PRAGMA user_version = 99")
    db.close()
    with pytest.raises(RunStoreError, match="schema version 99, newer than this StackLab"):
        RunStore(tmp_path)


def test_best_metric_prefers_validation_accuracy():
    rows = [{"epoch": 1, "metrics": {"val_accuracy": 0.5, "val_loss": 1.0}},
            {"epoch": 2, "metrics": {"val_accuracy": 0.8, "val_loss": 1.2}}]
    assert best_metric(rows) == {"name": "val_accuracy", "value": 0.8, "epoch": 2}
    assert best_metric([{"epoch": 1, "metrics": {"loss": 2.0}}, {"epoch": 2, "metrics": {"loss": 1.0}}]) == {
        "name": "loss", "value": 1.0, "epoch": 2}


def test_invalid_worker_limit_is_explained(monkeypatch):
    monkeypatch.setenv("STACKLAB_MAX_WORKERS", "many")
    with pytest.raises(ValueError, match="STACKLAB_MAX_WORKERS must be a positive whole number"):
        runs.max_workers()


SCHEMA_5_COLUMNS = ("gpus", "devices", "strategy", "train_samples", "batch_size", "samples_per_s")


def test_a_store_of_schema_version_1_is_migrated_and_keeps_its_runs(no_workers, stacklab_home):
    run_id = runs.start(spec("old"))
    store = runs.current_store()
    for epoch in (1, 2):
        store.record(run_id, EpochEnd(epoch=epoch, phase="train", metrics={"val_loss": 1.0 / epoch}, duration_s=1.0,
                                      learning_rate=1e-3))
    store.close()
    run_store._stores.clear()
    with sqlite3.connect(stacklab_home / "stacklab.db") as old:  # the store as StackLab 1 made it
        old.execute("ALTER TABLE progress DROP COLUMN step_time_s")
        old.execute("ALTER TABLE runs DROP COLUMN best")
        old.execute("DROP TABLE steps")
        old.execute("ALTER TABLE runs DROP COLUMN step_seq")
        for column in SCHEMA_5_COLUMNS:
            old.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        old.execute("PRAGMA user_version = 1")
    store = RunStore(stacklab_home)
    migrated = store.get(run_id)
    assert migrated.name == "old"
    assert migrated.best == {"name": "val_loss", "value": 0.5, "epoch": 2}  # filled from the epoch rows
    store.record(run_id, BatchProgress(epoch=3, step=5, steps=10, elapsed_s=1.0, step_time_s=0.1))
    assert store.progress(run_id).step_time_s == 0.1
    assert store.execute("PRAGMA user_version").fetchone()[0] == run_store.SCHEMA_VERSION


def test_the_best_metric_is_kept_as_epochs_are_recorded_not_recomputed_when_listing(no_workers, monkeypatch):
    run_id = runs.start(spec("kept"))
    store = runs.current_store()
    for epoch, loss in ((1, 0.9), (2, 0.4), (3, 0.6)):
        store.record(run_id, EpochEnd(epoch=epoch, phase="train", metrics={"val_loss": loss}, duration_s=1.0,
                                      learning_rate=1e-3))
    monkeypatch.setattr(RunStore, "metrics", lambda *args, **kwargs: pytest.fail("listing read every epoch row"))
    assert [run.best for run in runs.list_runs()] == [{"name": "val_loss", "value": 0.4, "epoch": 2}]


def test_where_a_run_trains_is_recorded_from_its_events(no_workers):
    store = runs.current_store()
    run_id = runs.start(spec())
    assert (runs.get(run_id).devices, runs.get(run_id).strategy, runs.get(run_id).samples_per_s) == ((), "none", None)
    store.record(run_id, RunStarted(epochs=3, steps_per_epoch=10, total_params=100, trainable_params=80,
                                    devices=("cuda:0", "cuda:1"), strategy="data_parallel", train_samples=1000,
                                    batch_size=256))
    run = runs.get(run_id)
    assert (run.devices, run.strategy, run.train_samples, run.batch_size) == (
        ("cuda:0", "cuda:1"), "data_parallel", 1000, 256)
    assert run.device_label == "2 × GPU" and run.samples_per_s is None
    store.record(run_id, EpochEnd(epoch=1, phase="train", metrics={"loss": 1.0}, duration_s=4, learning_rate=1e-3))
    assert runs.get(run_id).samples_per_s == 250.0  # 1000 samples in 4 s (not 1000 // 4 in integers)
    store.record(run_id, EpochEnd(epoch=2, phase="train", metrics={"loss": 0.5}, duration_s=0.5, learning_rate=1e-3))
    info = runs.get(run_id).to_dict()
    assert info["samples_per_s"] == 2000.0
    assert {key: info[key] for key in ("gpus", "devices", "device_label", "strategy", "train_samples",
                                       "batch_size")} == {
        "gpus": [], "devices": ["cuda:0", "cuda:1"], "device_label": "2 × GPU", "strategy": "data_parallel",
        "train_samples": 1000, "batch_size": 256}
    # A resume on other devices: the old speed is not shown as the new run's.
    store.record(run_id, RunStarted(epochs=3, steps_per_epoch=10, total_params=100, trainable_params=80,
                                    initial_epoch=2, devices=("cpu:0",), train_samples=1000, batch_size=256))
    run = runs.get(run_id)
    assert (run.device_label, run.strategy, run.samples_per_s) == ("CPU", "none", None)


def test_a_worker_that_does_not_say_how_many_samples_leaves_samples_per_s_unknown(no_workers):
    store = runs.current_store()
    run_id = runs.start(spec())
    store.record(run_id, RunStarted(epochs=3, steps_per_epoch=10, total_params=100, trainable_params=80))
    store.record(run_id, EpochEnd(epoch=1, phase="train", metrics={"loss": 1.0}, duration_s=2.0, learning_rate=1e-3))
    run = runs.get(run_id)
    assert (run.train_samples, run.batch_size, run.samples_per_s, run.device_label) == (None, None, None, "")


@pytest.mark.parametrize("devices, label", [
    ((), ""), (("/device:GPU:0",), "GPU"), (("TFRT_CPU_0", "TFRT_CPU_1", "TFRT_CPU_2", "TFRT_CPU_3"), "4 × CPU"),
    (("/job:localhost/replica:0/task:0/device:CPU:0",), "CPU"), (("cuda:0", "cuda:1"), "2 × GPU"),
])
def test_device_labels(devices, label):
    assert runs.device_label(devices) == label


def test_a_store_of_schema_version_4_is_migrated_and_keeps_its_runs(no_workers, stacklab_home):
    run_id = runs.start(spec("four"))
    store = runs.current_store()
    store.record(run_id, EpochEnd(epoch=1, phase="train", metrics={"val_loss": 0.5}, duration_s=1.0,
                                  learning_rate=1e-3))
    store.close()
    run_store._stores.clear()
    with sqlite3.connect(stacklab_home / "stacklab.db") as old:  # the store as StackLab with schema 4 made it
        for column in SCHEMA_5_COLUMNS:
            old.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        old.execute("PRAGMA user_version = 4")
    store = RunStore(stacklab_home)
    migrated = store.get(run_id)
    assert (migrated.name, migrated.best["value"]) == ("four", 0.5)
    assert (migrated.gpus, migrated.devices, migrated.strategy, migrated.train_samples, migrated.batch_size,
            migrated.samples_per_s) == ((), (), "none", None, None, None)
    store.record(run_id, RunStarted(epochs=3, steps_per_epoch=10, total_params=100, trainable_params=80,
                                    devices=("cpu:0",), train_samples=100, batch_size=10))
    store.record(run_id, EpochEnd(epoch=2, phase="train", metrics={"val_loss": 0.4}, duration_s=2.0,
                                  learning_rate=1e-3))
    assert store.get(run_id).samples_per_s == 50.0
    assert store.execute("PRAGMA user_version").fetchone()[0] == 5 == run_store.SCHEMA_VERSION
