"""The live route's answers: the whole history once, then only what is new, from the cursor alone."""

import dataclasses
import json
import time

import pytest

from core import runs
from core.spec import DistributionSpec
from core.spec.events import BatchProgress, EpochEnd, PhaseChange, StepSample
from dashboard import live_api
from tests.dashboard.apptest import TINY, fake_run

pytestmark = pytest.mark.usefixtures("inspector_home")


def record_epoch(run_id: str, epoch: int) -> None:
    runs.current_store().record(run_id, EpochEnd(
        epoch=epoch, phase="train", duration_s=1.0, learning_rate=1e-3,
        metrics={"loss": 1 / epoch, "val_loss": 1.1 / epoch}, member_updates={"encoder": 0.1 / epoch}))


def test_a_cursor_brings_only_the_new_epochs_and_nothing_when_nothing_changed(no_workers):
    run_id = fake_run(epochs=3)
    first = live_api.live_answer(run_id, None)
    assert first["payload"]["reset"] and first["payload"]["points"]["loss"]["x"] == [1, 2, 3]
    assert [chart["id"] for chart in first["payload"]["charts"]] == ["metric-loss", "metric-accuracy", "updates"]
    same = live_api.live_answer(run_id, first["cursor"])
    assert same["payload"]["points"] == {} and same["payload"]["seq"] == first["payload"]["seq"]
    record_epoch(run_id, 4)
    runs.current_store().update(run_id, epochs_done=4)
    delta = live_api.live_answer(run_id, same["cursor"])
    payload = delta["payload"]
    assert not payload["reset"] and payload["base"] == first["payload"]["seq"]
    assert payload["points"]["loss"]["x"] == [4] and "charts" not in payload


def test_a_step_sample_alone_is_a_delta_of_the_step_line(no_workers):
    run_id = fake_run(epochs=1)
    cursor = live_api.live_answer(run_id, None)["cursor"]
    runs.current_store().record(run_id, StepSample(epoch=2, step=2, steps=4, loss=0.5, recorded_at=time.time()))
    payload = live_api.live_answer(run_id, cursor)["payload"]
    assert set(payload["points"]) == {"loss-steps"} and payload["points"]["loss-steps"]["x"] == [1.5]


@pytest.mark.parametrize("cursor", ["", "not json", json.dumps({"seq": 3}), "x" * 5000])
def test_a_cursor_that_is_not_ours_gets_the_whole_history(no_workers, cursor):
    run_id = fake_run(epochs=2)
    assert live_api.live_answer(run_id, cursor)["payload"]["reset"]


def test_new_charts_or_a_fine_tune_marker_reset_or_update_what_was_drawn(no_workers):
    run_id = fake_run(epochs=2, updates=False)
    first = live_api.live_answer(run_id, None)
    assert "updates" not in [chart["id"] for chart in first["payload"]["charts"]]
    store = runs.current_store()
    store.record(run_id, PhaseChange(epoch=3, phase="fine_tune", learning_rate=1e-4, trainable_params=67,
                                     unfrozen_layers=()))
    marked = live_api.live_answer(run_id, first["cursor"])["payload"]
    assert not marked["reset"] and marked["markers"][0]["text"] == "fine-tune from epoch 3"
    record_epoch(run_id, 3)  # a member-update chart appears: its charts changed, a reset
    assert live_api.live_answer(run_id, first["cursor"])["payload"]["reset"]


def test_the_status_says_epoch_batch_and_time_left_and_when_the_run_ended(no_workers):
    run_id = fake_run(epochs=2)
    runs.current_store().update(run_id, status="running", epochs_done=2, epochs_total=5)
    runs.current_store().record(run_id, BatchProgress(epoch=3, step=2, steps=4, elapsed_s=0.5))
    status = live_api.live_answer(run_id, None)["status"]
    assert status["active"] and status["text"].startswith("Epoch 3 of 5 · batch 2 of 4 · about ")
    assert 0.4 < status["fraction"] < 0.6
    runs.current_store().update(run_id, status="finished", ended_at=1.0)
    ended = live_api.live_answer(run_id, None)["status"]
    assert ended["status"] == "finished" and not ended["active"] and ended["note"] == ""


def test_the_status_says_where_the_run_trains_and_how_fast(no_workers, monkeypatch):
    monkeypatch.setenv("STACKLAB_GPUS", "0,1")  # the scheduler gives the data-parallel run both
    spec = TINY.replace(train=dataclasses.replace(TINY.train, distribution=DistributionSpec("data_parallel")))
    run_id = fake_run(spec, epochs=2, devices=("/device:GPU:0", "/device:GPU:1"), train_samples=120)
    assert runs.get(run_id).gpus == (0, 1)
    status = live_api.live_answer(run_id, None)["status"]
    assert status["text"].endswith(" · 2 × GPU (0, 1) · 60 samples/s"), status["text"]  # 120 samples in 2 s


def test_stopping_says_what_is_left_of_the_batch_that_was_running_when_progress_was_written():
    progress = {"step_time_s": 30.0, "updated_at": 1000.0}
    assert live_api.stopping_words(progress, now=1002.0).startswith(
        "Stopping after the current batch (about 28 s; a batch takes 30 s)")
    assert "(any moment now; a batch takes 30 s)" in live_api.stopping_words(progress, now=1100.0)  # overdue
    assert live_api.stopping_words(None, now=0.0) == (
        "Stopping after the current batch; the last finished epoch is kept.")


def test_a_queued_run_says_what_it_waits_for(no_workers):
    active = fake_run(epochs=1)  # holds the one worker slot
    queued = runs.start(runs.get(active).spec)
    status = live_api.live_answer(queued, None)["status"]
    assert status == {"status": "queued", "active": True, "fraction": None,
                      "text": live_api.queue_words(queued)}
    assert status["text"].startswith(f"Queued, first in line: it starts when run {active}")


def test_an_unknown_run_raises_not_found(no_workers):
    with pytest.raises(runs.RunNotFound):
        live_api.live_answer("20990101-000000-000000", None)


def test_rows_are_read_incrementally_per_run(no_workers, monkeypatch):
    run_id = fake_run(epochs=3)
    live_api.live_answer(run_id, None)
    reads = []
    original = runs.metrics
    monkeypatch.setattr(runs, "metrics", lambda rid, since_epoch=0: reads.append(since_epoch) or original(
        rid, since_epoch=since_epoch))
    record_epoch(run_id, 4)
    runs.current_store().update(run_id, epochs_done=4)
    live_api.live_answer(run_id, None)
    assert reads == [3]  # only the epochs after the last read


def test_served_with_the_route_the_train_page_mounts_a_following_component_and_no_fragment(no_workers, monkeypatch):
    from tests.dashboard.apptest import app, elements

    run_id = fake_run(epochs=2)
    monkeypatch.setattr(live_api, "_mounted", True)
    at = app()
    (chart,) = elements(at, "bidi_component")
    assert json.loads(chart.proto.json) == {"follow": {"url": f"/api/runs/{run_id}/live",
                                                       "interval_ms": live_api.POLL_MS, "run": run_id}}
    assert not elements(at, "progress")  # the component draws the progress line itself
    assert at.button(key="train-stop")  # the Stop button stays a Streamlit widget
    runs.current_store().update(run_id, status="finished", ended_at=2.0)
    (chart,) = elements(at.run(), "bidi_component")  # ended: the whole history, drawn once
    assert json.loads(chart.proto.json)["reset"]
