"""The live view of a long run: an update at epoch 1,000 sends what one at epoch 10 sends."""

import json
import time

import pytest

from core import runs
from core.spec.events import EpochEnd
from tests.dashboard.apptest import app, elements, fake_run

pytestmark = pytest.mark.usefixtures("inspector_home")


def record_epochs(run_id: str, first: int, last: int) -> None:
    store = runs.current_store()
    with store.transaction():
        for epoch in range(first, last + 1):
            store.record(run_id, EpochEnd(epoch=epoch, phase="train", duration_s=0.1, learning_rate=1e-3,
                                          metrics={"loss": 1 / epoch, "val_loss": 1.1 / epoch,
                                                   "accuracy": 1 - 1 / epoch, "val_accuracy": 1 - 1.2 / epoch},
                                          member_updates={"encoder": 0.1 / epoch, "classifier": 0.2 / epoch}))


def sent(at) -> dict:
    (chart,) = elements(at, "bidi_component")
    return json.loads(chart.proto.json)


@pytest.mark.parametrize("epochs", [10, 1000])
def test_an_update_costs_one_epoch_whatever_the_run_length(no_workers, epochs, record_property):
    run_id = fake_run(epochs=0)
    runs.current_store().update(run_id, epochs_total=epochs + 5)
    record_epochs(run_id, 1, epochs)
    at = app()
    assert sent(at)["reset"] and len(sent(at)["points"]["loss"]["x"]) == epochs  # the whole history once
    sizes, seconds = [], []
    for epoch in range(epochs + 1, epochs + 4):
        record_epochs(run_id, epoch, epoch)
        started = time.perf_counter()
        at.run()
        seconds.append(time.perf_counter() - started)
        payload = sent(at)
        assert not payload["reset"] and payload["points"]["loss"]["x"] == [epoch]
        sizes.append(len(json.dumps(payload)))
    # One epoch of 4 metrics and 2 members: a few hundred bytes, at epoch 13 as at epoch 1,003.
    assert max(sizes) < 800, sizes
    record_property("update_seconds", seconds)
    print(f"{epochs} epochs: update payloads {sizes} bytes, script runs {[round(s * 1000) for s in seconds]} ms")
