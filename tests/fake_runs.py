"""Runs as the run store holds them, written without a worker or Keras (for page tests)."""

from __future__ import annotations

import time

from core import runs
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec
from core.spec.events import EpochEnd, RunStarted

TINY = StackSpec(name="tiny", train=TrainSpec(epochs=2), dataset=DatasetSpec(name="iris"),
                 members=(MemberSpec("encoder", template="mlp"), MemberSpec("head", template="dense_head")))


def finished_run_with_artifacts() -> str:
    """A finished run as the store holds it, with artifact files (no worker, no Keras)."""
    store = runs.current_store()
    run_id = runs.start(TINY)
    store.record(run_id, RunStarted(epochs=2, steps_per_epoch=4, total_params=10, trainable_params=10))
    for epoch in (1, 2):
        store.record(run_id, EpochEnd(epoch=epoch, phase="train", duration_s=0.1, learning_rate=1e-3,
                                      metrics={"loss": 1 / epoch, "val_loss": 1.1 / epoch},
                                      member_updates={"encoder": 0.1, "head": 0.2}))
    folder = runs.get(run_id).folder
    for name in ("model.keras", "history.csv", "stack.py", "spec.json"):
        (folder / name).write_text("not used")
        store.add_artifact(run_id, name, folder / name)
    store.update(run_id, status="finished", ended_at=time.time())
    return run_id
