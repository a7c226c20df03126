"""The Train page: settings, the Train button, and the live view read from the run store.

Most tests write a run's events straight to the store (`no_workers`, `fake_run`), so the
live view is exercised in milliseconds; one test trains for real in a worker process.
AppTest does not fire `st.fragment(run_every=...)` timers, so tests call `at.run()` in a loop.
"""

import json
import re
import time

import pytest

from core import runs
from core.spec import AdapterSpec, DatasetSpec, EarlyStoppingSpec, FineTuneSpec, MemberSpec, StackSpec
from core.spec.events import BatchProgress
from dashboard import spec_edit, state
from dashboard.widgets import live
from tests.dashboard.apptest import TINY, app, elements, fake_run, texts

pytestmark = pytest.mark.usefixtures("inspector_home")


def draft(at):
    return at.session_state[state.DRAFT]


def payloads(at) -> list[dict]:
    """What each live-chart component on the page was sent in the last run (dashboard/live_chart.py)."""
    return [json.loads(chart.proto.json) for chart in elements(at, "bidi_component")]


def payload(at) -> dict:
    (sent,) = payloads(at)
    return sent


def test_opens_on_the_default_stack_ready_to_train():
    at = app()
    assert [t.value for t in at.title] == ["Train"]
    train = at.button(key="train-start")
    assert train.label == "Train" and not train.disabled
    assert "**Dataset** digits28" in texts(at)
    assert "**Parameters** 693,962 (all trainable)" in texts(at)
    assert "No runs yet" in texts(at)


def test_the_summary_of_a_fusion_stack_names_the_raw_input():
    fusion = StackSpec(name="fused", mode="fusion", members=(MemberSpec("encoder", template="mlp"),),
                       head=MemberSpec("head", template="dense_head"), options={"include_raw_input": True},
                       dataset=DatasetSpec(name="iris"))
    at = app(fusion)
    assert ("**Stack** fused · fusion: encoder read the input; their features and the raw input are "
            "concatenated into head") in texts(at)


def test_settings_edit_the_draft():
    at = app()
    at.number_input(key="draft-train-epochs").set_value(2).run()
    at.selectbox(key="draft-train-optimizer").set_value("sgd").run()
    at.toggle(key="draft-train-early-stopping").set_value(True).run()
    at.number_input(key="draft-train-patience").set_value(2).run()
    at.toggle(key="draft-train-fine-tune").set_value(True).run()
    train = draft(at).train
    assert (train.epochs, train.optimizer) == (2, "sgd")
    assert train.early_stopping == EarlyStoppingSpec(patience=2)
    assert train.fine_tune == FineTuneSpec(start_epoch=2)
    at.number_input(key="draft-train-fine-tune-start").set_value(4).run()
    assert "after the last epoch (2): start it earlier or train more epochs" in at.error[0].value
    assert not at.exception and at.button(key="train-start").disabled  # refused by the check, not a crash


def test_a_stack_that_does_not_build_cannot_be_trained():
    at = app(TINY.replace(dataset=DatasetSpec(name="digits28")))  # an MLP on images
    assert at.button(key="train-start").disabled
    assert "The stack does not build" in at.error[0].value


def test_the_live_view_shows_progress_curves_updates_and_stops(no_workers):
    run_id = fake_run(epochs=2)
    at = app()
    assert at.selectbox(key="train-run-picker").value == run_id
    (progress,) = elements(at, "progress")
    assert progress.proto.text == "Epoch 3 of 3 · batch 2 of 4 · about 1.0 s left"  # half an epoch of 2 s
    assert progress.proto.value == 83  # (2 epochs + half of the third) / 3
    sent = payload(at)
    assert [chart["title"] for chart in sent["charts"]] == ["Loss", "Accuracy", "Weight update per member"]
    assert sent["reset"] and sent["points"]["loss"]["x"] == [1, 2]
    at.button(key="train-stop").click().run()
    assert runs.get(run_id).status == "stopping"
    assert at.button(key="train-stop").disabled


def test_the_live_view_reads_only_new_epochs_and_sends_only_them(no_workers, monkeypatch):
    run_id = fake_run(epochs=2)
    at = app()
    assert payload(at)["reset"] and payload(at)["points"]["loss"]["x"] == [1, 2]
    calls = []
    real = runs.metrics
    monkeypatch.setattr(runs, "metrics", lambda rid, since_epoch=0: calls.append(since_epoch) or real(rid, since_epoch))
    at.run()
    assert calls == [2]
    assert payload(at)["points"] == {} and not payload(at)["reset"]  # nothing new: an empty update
    from core.spec.events import EpochEnd

    runs.current_store().record(run_id, EpochEnd(epoch=3, phase="train", metrics={"loss": 0.2, "val_loss": 0.3},
                                         duration_s=0.5, learning_rate=1e-3))
    at.run()
    assert calls == [2, 2]
    sent = payload(at)
    # A delta on top of the update drawn: only epoch 3, no charts, no history.
    assert not sent["reset"] and sent["base"] == sent["seq"] - 1 and "charts" not in sent
    assert sent["points"]["loss"]["x"] == [3] and sent["points"]["val_loss"]["y"] == [0.3]


def test_the_progress_line_moves_while_the_charts_are_sent_nothing(no_workers):
    run_id = fake_run(epochs=2)
    at = app()
    first = payload(at)
    runs.current_store().record(run_id, BatchProgress(epoch=3, step=3, steps=4, elapsed_s=0.5))
    at.run()
    assert "batch 3 of 4" in elements(at, "progress")[0].proto.text
    assert payload(at) == {"stream": first["stream"], "seq": first["seq"], "base": first["seq"], "reset": False,
                           "points": {}}


def test_step_samples_are_a_thin_line_on_the_loss_chart_read_after_the_last_one_sent(no_workers, monkeypatch):
    fake_run(epochs=1)
    items = [{"seq": seq, "epoch": 2, "step": seq, "steps": 4, "loss": 0.5, "recorded_at": time.time()}
             for seq in (1, 2)]
    asked = []
    monkeypatch.setattr(live, "read_steps", lambda run_id, after=0: asked.append(after) or
                        [item for item in items if item["seq"] > after])
    at = app()
    loss = payload(at)["charts"][0]
    assert [s["id"] for s in loss["series"]] == ["loss", "val_loss", "loss-steps"]
    assert payload(at)["points"]["loss-steps"]["x"] == [1.25, 1.5]  # epoch 2, steps 1 and 2 of 4
    items.append({"seq": 3, "epoch": 2, "step": 3, "steps": 4, "loss": 0.4, "recorded_at": time.time()})
    at.run()
    assert payload(at)["points"] == {"loss-steps": payload(at)["points"]["loss-steps"]}
    assert payload(at)["points"]["loss-steps"]["x"] == [1.75] and asked[-1] == 2


def test_before_the_first_epoch_ends_the_step_samples_are_charted(no_workers, monkeypatch):
    fake_run(epochs=0)
    at = app()
    assert "The charts appear as the first batches train." in texts(at) and not payloads(at)
    monkeypatch.setattr(live, "read_steps", lambda run_id, after=0: [
        {"seq": 1, "epoch": 1, "step": 2, "steps": 4, "loss": 0.9, "recorded_at": time.time()}][after:])
    at.run()
    assert payload(at)["points"]["loss-steps"]["y"] == [0.9]


def test_a_second_tab_and_a_reload_show_the_same_active_run(no_workers):
    older = fake_run(epochs=3, status="finished")
    active = fake_run(epochs=1)
    first, second = app(), app()
    assert first.selectbox(key="train-run-picker").value == active
    assert second.selectbox(key="train-run-picker").value == active
    first.selectbox(key="train-run-picker").set_value(older).run()
    assert "Finished 3 epochs" in texts(first)
    first.run()  # a rerun (or the fragment) keeps this tab's choice
    assert first.selectbox(key="train-run-picker").value == older
    assert second.run().selectbox(key="train-run-picker").value == active


def test_a_run_that_will_queue_says_so_and_names_the_run_it_waits_for(no_workers):
    active = fake_run(epochs=1)
    at = app()
    assert f"Run {active} (tiny) is training: a new run queues and starts when a worker is free" in texts(at)
    at.button(key="train-start").click().run()
    (queued,) = runs.list_runs(("queued",))
    assert at.selectbox(key="train-run-picker").value == queued.id
    assert f"Queued, first in line: it starts when run {active} (tiny, epoch 1/3) ends." in texts(at)
    assert f"Run {active} (tiny) is training, 1 run waiting" in texts(at.run())


def test_the_fine_tune_phase_is_marked_on_the_curves(no_workers):
    fake_run(epochs=3, fine_tune_at=3, status="finished")
    at = app()
    assert payload(at)["markers"] == [{"x": 2.5, "t": payload(at)["markers"][0]["t"], "text": "fine-tune from epoch 3"}]


def test_the_page_reruns_once_when_the_run_ends(no_workers, monkeypatch):
    run_id = fake_run(epochs=2)
    at = app()
    ended = []

    def reconcile():  # the run ends while the fragment polls
        ended.append(True)
        runs.current_store().update(run_id, status="finished", ended_at=time.time())
        return []

    monkeypatch.setattr(runs, "reconcile", reconcile)
    at.run()
    assert ended == [True]  # the app rerun saw a finished run: it does not poll again
    assert "Finished 2 epochs" in texts(at)
    assert not [b for b in at.button if b.key == "train-stop"]


def test_a_failed_run_shows_its_reason(no_workers):
    fake_run(epochs=1, status="failed")
    at = app()
    assert "The run failed after 1 epoch: failed for the test" in at.error[0].value


def test_train_starts_a_real_run_and_the_page_follows_it_to_the_end():
    at = app(TINY)
    at.button(key="train-start").click().run()
    run_id = state.WATCHED_RUN in at.session_state and at.session_state[state.WATCHED_RUN]
    assert run_id and runs.get(run_id).spec == TINY
    deadline = time.monotonic() + 180
    while runs.get(run_id).is_active and time.monotonic() < deadline:
        time.sleep(0.5)
        at.run()  # what the fragment's timer does in a browser
    at.run()
    assert runs.get(run_id).status == "finished", runs.get(run_id).error
    assert "Finished 3 epochs" in texts(at)
    reloaded = app(TINY)  # a reload: the whole history once
    points = {key: value["x"] for key, value in payload(reloaded)["points"].items() if key != "loss-steps"}
    assert len(points) >= 3 and all(x == [1, 2, 3] for x in points.values()), points


def test_an_accepted_adapter_that_no_longer_fits_is_shown_with_its_remove_button():
    reshape = AdapterSpec(after="model_a", kind="reshape", before="model_b", target_shape=(5408,))
    spec = spec_edit.default_spec().replace(adapters=(reshape,), dataset=DatasetSpec(name="digits8"))
    at = app(spec)  # accepted on digits28; on 8x8 digits model_a gives fewer values
    assert at.button(key="train-start").disabled
    stale = "The accepted adapter Reshape(5408) between 'model_a' and 'model_b' no longer fits"
    assert any(stale in str(md.value) for md in at.markdown)
    at.button(key="train-fix-0").click().run()
    assert draft(at).adapters == () and not at.button(key="train-start").disabled


def test_stopping_says_how_long_the_current_batch_takes(no_workers):
    run_id = fake_run(epochs=1)
    runs.current_store().record(run_id, BatchProgress(epoch=2, step=3, steps=4, elapsed_s=60.0, step_time_s=30.0))
    at = app()
    # One batch of 30 s left in this epoch, and the last epoch at 4 batches of 30 s.
    assert "batch 3 of 4 · about 2 min 30 s left" in elements(at, "progress")[0].proto.text
    at.button(key="train-stop").click().run()
    # What is left of the 30 s batch that started when the progress was written: the page runs
    # in wall time, so a slow machine has spent a few seconds of it (the exact sum is in test_live_api).
    said = re.search(r"Stopping after the current batch \(about (\d+) s; a batch takes 30 s\)", texts(at))
    assert said and 15 <= int(said.group(1)) <= 30, texts(at)
