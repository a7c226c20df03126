"""Step samples in the run store (no training): numbering, the reader's cursor, resume, delete, migration."""

import sqlite3

import pytest

from core import runs
from core.runs import scheduler
from core.runs import store as run_store
from core.runs.store import RunNotFound, RunStore
from core.spec import MemberSpec, StackSpec, TrainSpec
from core.spec.events import EpochEnd, StepSample


def spec(name="demo") -> StackSpec:
    return StackSpec(name=name, members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="dense_head")),
                     train=TrainSpec(epochs=3))


@pytest.fixture
def run_id(monkeypatch):
    """A queued run without a worker process."""
    monkeypatch.setattr(scheduler, "_spawn", lambda run_id: None)
    return runs.start(spec())


def sample(epoch: int, step: int, loss: float = 0.5) -> StepSample:
    return StepSample(epoch=epoch, step=step, steps=10, loss=loss, recorded_at=1000.0 + 10 * epoch + step)


def test_samples_are_numbered_from_1_and_read_after_a_cursor(run_id):
    store = runs.current_store()
    store.record(run_id, sample(1, 3, loss=0.9))
    assert store.add_step_sample(run_id, epoch=1, step=7, steps=10, loss=0.8, recorded_at=1017.0) == 2
    store.record(run_id, StepSample(epoch=2, step=4, steps=None, loss=0.6, recorded_at=1024.0))
    assert runs.step_samples(run_id) == [
        {"seq": 1, "epoch": 1, "step": 3, "steps": 10, "loss": 0.9, "recorded_at": 1013.0},
        {"seq": 2, "epoch": 1, "step": 7, "steps": 10, "loss": 0.8, "recorded_at": 1017.0},
        {"seq": 3, "epoch": 2, "step": 4, "steps": None, "loss": 0.6, "recorded_at": 1024.0},
    ]
    assert [s["seq"] for s in runs.step_samples(run_id, after_seq=1)] == [2, 3]
    assert runs.step_samples(run_id, after_seq=3) == []


def test_each_run_numbers_its_own_samples(run_id):
    other = runs.start(spec("other"))
    store = runs.current_store()
    store.record(run_id, sample(1, 1))
    store.record(other, sample(1, 1))
    store.record(run_id, sample(1, 2))
    assert [s["seq"] for s in runs.step_samples(run_id)] == [1, 2]
    assert [s["seq"] for s in runs.step_samples(other)] == [1]


def test_a_sample_of_an_unknown_run_is_refused(run_id):
    with pytest.raises(RunNotFound, match="No run with id 'nope'"):
        runs.current_store().add_step_sample("nope", epoch=1, step=1, steps=1, loss=0.1, recorded_at=1.0)


def test_a_resume_drops_the_samples_after_the_checkpoint_and_never_reuses_a_number(run_id):
    store = runs.current_store()
    for epoch in (1, 2, 3):
        store.record(run_id, sample(epoch, 5))
        store.record(run_id, EpochEnd(epoch=epoch, phase="train", metrics={"loss": 1.0}, duration_s=1.0,
                                      learning_rate=1e-3))
    store.resume_epochs(run_id, keep_through=1, history=[])
    assert [(s["seq"], s["epoch"]) for s in runs.step_samples(run_id)] == [(1, 1)]
    # Epoch 2 trained again: a reader whose cursor is at 3 still sees the new sample.
    assert store.add_step_sample(run_id, epoch=2, step=5, steps=10, loss=0.4, recorded_at=2000.0) == 4
    assert [(s["seq"], s["epoch"]) for s in runs.step_samples(run_id, after_seq=3)] == [(4, 2)]
    store.truncate_epochs(run_id, 0)  # a run started again from scratch
    assert runs.step_samples(run_id) == []


def test_deleting_a_run_deletes_its_samples(run_id):
    store = runs.current_store()
    store.record(run_id, sample(1, 1))
    store.update(run_id, status="finished")
    runs.delete(run_id)
    assert store.execute("SELECT COUNT(*) FROM steps").fetchone()[0] == 0


def test_a_store_of_schema_version_3_gets_the_steps_table_and_keeps_its_runs(run_id, stacklab_home):
    store = runs.current_store()
    store.record(run_id, EpochEnd(epoch=1, phase="train", metrics={"val_loss": 0.5}, duration_s=1.0,
                                  learning_rate=1e-3))
    store.close()
    run_store._stores.clear()
    with sqlite3.connect(stacklab_home / "stacklab.db") as old:  # the store as StackLab 3 made it
        old.execute("DROP TABLE steps")
        old.execute("ALTER TABLE runs DROP COLUMN step_seq")
        for column in ("gpus", "devices", "strategy", "train_samples", "batch_size", "samples_per_s"):  # schema 5's
            old.execute(f"ALTER TABLE runs DROP COLUMN {column}")
        old.execute("PRAGMA user_version = 3")
    store = RunStore(stacklab_home)
    run = store.get(run_id)
    assert run.name == "demo" and run.best == {"name": "val_loss", "value": 0.5, "epoch": 1}
    assert [row["epoch"] for row in store.metrics(run_id)] == [1]
    assert store.step_samples(run_id) == []
    assert store.add_step_sample(run_id, epoch=2, step=1, steps=4, loss=0.3, recorded_at=5.0) == 1
    assert store.execute("PRAGMA user_version").fetchone()[0] == run_store.SCHEMA_VERSION
    store.close()
