"""Helpers for the dashboard's AppTests: the app, its pages, what they show, runs without workers."""

from __future__ import annotations

import time
from pathlib import Path

from streamlit.testing.v1 import AppTest

from core import runs
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec
from core.spec.events import BatchProgress, EpochEnd, PhaseChange, RunStarted
from dashboard import state

ROOT = Path(__file__).resolve().parents[2]
APP = str(ROOT / "dashboard" / "app.py")
# The first script run waits for the inspector to import Keras.
TIMEOUT_S = 90

TINY = StackSpec(
    name="tiny", members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [8]}),
                          MemberSpec("classifier", template="dense_head", params={"hidden_units": []})),
    train=TrainSpec(epochs=3, batch_size=32), dataset=DatasetSpec(name="iris"))


def app(draft: StackSpec | None = None) -> AppTest:
    """The dashboard, run once (it opens on the Train page), optionally with `draft` as the draft spec.

    The draft is set before the first run: set later, it would disagree with the widgets
    already showing the old draft (the app itself replaces drafts with state.replace_draft).
    """
    at = AppTest.from_file(APP, default_timeout=TIMEOUT_S)
    if draft is not None:
        at.session_state[state.DRAFT] = draft
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def open_page(at: AppTest, name: str) -> AppTest:
    at.switch_page(f"app_pages/{name}.py")
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest) -> str:
    """Everything written as markdown, captions, alerts and titles, for `in` checks."""
    parts = []
    for kind in ("markdown", "caption", "info", "success", "warning", "error", "title", "subheader"):
        parts += [str(element.value) for element in getattr(at, kind)]
    return "\n".join(parts)


def elements(at: AppTest, kind: str) -> list:
    """Elements AppTest has no accessor for (plotly_chart, graphviz_chart, progress...), in the
    whole app or, given a block of it, inside that block."""
    found = []

    def walk(node):
        for child in getattr(node, "children", {}).values():
            if getattr(child, "type", None) == kind:
                found.append(child)
            walk(child)

    walk(getattr(at, "_tree", at))
    return found


def fake_run(spec: StackSpec = TINY, epochs: int = 0, status: str | None = None, fine_tune_at: int | None = None,
             updates: bool = True, devices: tuple[str, ...] = (), train_samples: int = 0) -> str:
    """A run written straight to the store (use with `no_workers`): events as a worker writes them.

    `devices`, `train_samples`: where the worker says it trains and the samples of an epoch
    (each epoch takes 2 s, so samples/s is train_samples / 2).
    """
    store = runs.current_store()
    run_id = runs.start(spec)
    store.record(run_id, RunStarted(epochs=spec.train.epochs, steps_per_epoch=4, total_params=67,
                                    trainable_params=67, devices=devices, strategy=spec.train.distribution.strategy,
                                    train_samples=train_samples, batch_size=spec.train.batch_size))
    for epoch in range(1, epochs + 1):
        phase = "fine_tune" if fine_tune_at and epoch >= fine_tune_at else "train"
        if fine_tune_at == epoch:
            store.record(run_id, PhaseChange(epoch=epoch, phase="fine_tune", learning_rate=1e-4,
                                             trainable_params=67, unfrozen_layers=("encoder/encoder_dense1",)))
        store.record(run_id, EpochEnd(
            epoch=epoch, phase=phase, duration_s=2.0, learning_rate=1e-3,
            metrics={"loss": 1.0 / epoch, "accuracy": 0.5 + 0.1 * epoch,
                     "val_loss": 1.2 / epoch, "val_accuracy": 0.45 + 0.1 * epoch},
            member_updates={"encoder": 0.1 / epoch, "classifier": 0.2 / epoch} if updates else {}))
    store.record(run_id, BatchProgress(epoch=epochs + 1, step=2, steps=4, elapsed_s=0.25))
    if status is not None:
        store.update(run_id, status=status, ended_at=time.time(),
                     error="" if status == "finished" else f"{status} for the test")
    return run_id
