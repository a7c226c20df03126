"""Runs written straight to the store (no training, no worker) and a local MLflow store to log them to."""

from __future__ import annotations

import time

import pytest

from core import runs
from core.runs import scheduler
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec
from core.spec.events import EpochEnd, RunStarted

SPEC = StackSpec(
    name="tiny", members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [8]}),
                          MemberSpec("classifier", template="dense_head", params={"hidden_units": []})),
    train=TrainSpec(epochs=3, batch_size=32, learning_rate=0.002), dataset=DatasetSpec(name="iris"))
# What a finished worker leaves in the run folder (export_run's names), as small stand-in files.
ARTIFACT_FILES = {"model.keras": b"PK end-to-end model", "stack.keras": b"PK stack alone",
                  "data.json": b'{"inputs": []}\n', "history.csv": b"epoch,loss\n1,1.0\n",
                  "stack.py": b"print('stack')\n", "spec.json": SPEC.to_json().encode() + b"\n"}


@pytest.fixture
def no_workers(monkeypatch):
    """Runs are queued and claimed but no worker process starts; the tests write their events."""
    monkeypatch.setattr(scheduler, "_spawn", lambda run_id: None)


def epoch_end(epoch: int, val_accuracy: float | None = None) -> EpochEnd:
    return EpochEnd(epoch=epoch, phase="train", duration_s=2.0 + epoch, learning_rate=0.002 / epoch,
                    metrics={"loss": 1.0 / epoch, "accuracy": 0.5 + 0.1 * epoch, "val_loss": 1.2 / epoch,
                             "val_accuracy": val_accuracy if val_accuracy is not None else 0.45 + 0.1 * epoch},
                    member_updates={"encoder": 0.1 / epoch, "classifier": 0.2 / epoch},
                    ended_at=1_700_000_000.0 + 10 * epoch)


def make_run(epochs: int = 3, status: str = "finished", artifacts: bool = True) -> str:
    """A run with `epochs` epoch rows, ended with `status`, and (if `artifacts`) the files of a finished run."""
    store = runs.current_store()
    run_id = runs.start(SPEC)
    store.record(run_id, RunStarted(epochs=3, steps_per_epoch=4, total_params=67, trainable_params=67,
                                    devices=("cpu:0",), strategy="none", train_samples=120, batch_size=32))
    for epoch in range(1, epochs + 1):
        store.record(run_id, epoch_end(epoch))
    if artifacts:
        folder = runs.get(run_id).folder
        for name, data in ARTIFACT_FILES.items():
            (folder / name).write_bytes(data)
            store.add_artifact(run_id, name, folder / name)
    if status not in runs.ACTIVE_STATUSES:
        store.update(run_id, status=status, ended_at=time.time(),
                     error="" if status == "finished" else f"{status} for the test")
    return run_id


@pytest.fixture(scope="session")
def tracking_uri(tmp_path_factory) -> str:
    """One local SQLite tracking store for the session (creating one takes ~1.5 s); each test's
    runs have their own ids, so they never meet in it."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
