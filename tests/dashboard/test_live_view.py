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



def blocks(node):
    for child in getattr(node, "children", {}).values():
        yield child
        yield from blocks(child)


def test_the_live_view_keeps_its_elements_still_while_it_polls(no_workers):
    """Streamlit fades a rerunning fragment's elements and glides the progress bar: CSS
    transitions that repaint the page on every frame of every poll (measured in Chromium
    while watching a run: 30 animations in 10 s before, none after). The live view sits in a
    keyed container whose CSS turns both off."""
    from dashboard.widgets import live

    fake_run(epochs=2)
    at = app()
    assert [html.proto.body for html in elements(at, "html")] == [live.LIVE_VIEW_CSS]
    assert f".st-key-{live.LIVE_VIEW_KEY} .stElementContainer" in live.LIVE_VIEW_CSS
    (view,) = [block for block in blocks(at.main) if str(getattr(block.proto, "id", "")).endswith(
        f"-{live.LIVE_VIEW_KEY}")]
    assert elements(view, "bidi_component") and elements(view, "progress")  # the charts and the progress line
