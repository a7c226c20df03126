"""dashboard/live_chart.py: what the live-chart component is sent for a history and what it has drawn."""

import json

import pytest

from dashboard import live_chart


def rows(count=4, members=("encoder", "head"), fine_tune_at=None, start=1):
    """Epoch rows as runs.metrics returns them; the encoder is frozen until fine-tuning."""
    out = []
    for epoch in range(start, count + 1):
        frozen = epoch < (fine_tune_at or 99)
        out.append({"epoch": epoch, "phase": "train" if frozen else "fine_tune",
                    "metrics": {"loss": 1 / epoch, "val_loss": 1.5 / epoch, "accuracy": 0.5 + epoch / 10,
                                "val_accuracy": 0.4 + epoch / 10},
                    "member_updates": {name: 0.0 if name == "encoder" and frozen else 0.1 / epoch for name in members},
                    "duration_s": 1.0, "learning_rate": 1e-3, "recorded_at": 1000.0 + epoch,
                    "ended_at": 1000.0 + epoch})
    return out


def samples(count, steps=4, start_seq=1):
    """Step samples as core.runs.step_samples returns them, one every quarter second."""
    return [{"seq": seq, "epoch": (seq - 1) // steps + 1, "step": (seq - 1) % steps + 1, "steps": steps,
             "loss": 2.0 / seq, "recorded_at": 1000.0 + seq / 4} for seq in range(start_seq, start_seq + count)]


class FakeSteps:
    """A stand-in for core.runs.step_samples that records the cursors it is asked with."""

    def __init__(self, items):
        self.items, self.asked = list(items), []

    def __call__(self, run_id, after_seq):
        self.asked.append((run_id, after_seq))
        return [item for item in self.items if item["seq"] > after_seq]


def view(history, phases=(), steps=True):
    return live_chart.live_view("r1", history, list(phases), origin=1000.0, steps=steps)


def test_the_first_update_is_the_whole_history_with_the_charts():
    payload, drawn = live_chart.update(None, view(rows(3)), FakeSteps(samples(6)))
    assert payload["reset"] and payload["seq"] == 1 and payload["base"] == 0
    assert [chart["id"] for chart in payload["charts"]] == ["metric-loss", "metric-accuracy", "updates"]
    loss = payload["charts"][0]
    # The training epoch points first (the first trace of the chart), the step samples last.
    assert [s["id"] for s in loss["series"]] == ["loss", "val_loss", "loss-steps"]
    assert loss["subtitle"] == "(lower is better)" and payload["charts"][1]["subtitle"] == "(higher is better)"
    assert payload["points"]["loss"] == {"x": [1, 2, 3], "t": [1.0, 2.0, 3.0], "y": [1.0, 0.5, pytest.approx(1 / 3)]}
    assert payload["points"]["update-encoder"]["y"] == [0.0, 0.0, 0.0]  # frozen: no update
    # Step samples at fractional epochs: epoch 2, step 2 of 4 -> 1.5.
    assert payload["points"]["loss-steps"]["x"] == [0.25, 0.5, 0.75, 1.0, 1.25, 1.5]
    assert drawn.seq == 1 and drawn.rows["run"][0] == 3 and drawn.steps == {"r1": 6}
    json.dumps(payload)  # what goes to the browser is plain JSON


def test_an_update_sends_only_the_epochs_and_steps_not_drawn():
    steps = FakeSteps(samples(6))
    _, drawn = live_chart.update(None, view(rows(3)), steps)
    steps.items += samples(2, start_seq=7)
    payload, drawn = live_chart.update(drawn, view(rows(4)), steps)
    assert not payload["reset"] and (payload["base"], payload["seq"]) == (1, 2)
    assert "charts" not in payload and "markers" not in payload
    assert payload["points"]["loss"]["x"] == [4] and payload["points"]["val_accuracy"]["x"] == [4]
    assert payload["points"]["loss-steps"]["x"] == [1.75, 2.0]
    assert steps.asked[-1] == ("r1", 6)  # only the samples after the last one drawn are read
    assert drawn.rows["run"][0] == 4 and drawn.steps == {"r1": 8}


def test_nothing_new_is_an_empty_update_at_the_same_number():
    _, drawn = live_chart.update(None, view(rows(3)), FakeSteps(samples(6)))
    payload, again = live_chart.update(drawn, view(rows(3)), FakeSteps(samples(6)))
    assert payload == {"stream": "r1", "seq": 1, "base": 1, "reset": False, "points": {}}
    assert again == drawn


def test_a_history_that_no_longer_extends_what_was_drawn_is_sent_again_whole():
    _, drawn = live_chart.update(None, view(rows(4)))
    resumed = rows(2) + [{**row, "recorded_at": row["recorded_at"] + 50} for row in rows(3, start=3)]
    payload, drawn = live_chart.update(drawn, view(resumed))  # epoch 3 trained again, epoch 4 dropped
    assert payload["reset"] and payload["points"]["loss"]["x"] == [1, 2, 3]
    assert drawn.rows["run"][0] == 3


@pytest.mark.parametrize("change", ["stream", "series", "resync"])
def test_another_stream_new_series_or_the_browser_asking_resets(change):
    _, drawn = live_chart.update(None, view(rows(3)))
    later = view(rows(3))
    if change == "stream":
        later = live_chart.live_view("r2", rows(3), [], origin=1000.0)
    elif change == "series":  # a member appears
        later = view(rows(3, members=("encoder", "head", "extra")))
    payload, _ = live_chart.update(drawn, later, resync=change == "resync")
    assert payload["reset"] and payload["base"] == 0 and payload["charts"]
    assert payload["seq"] == drawn.seq + 1  # numbers keep growing: the browser tells updates apart


def test_the_fine_tune_marker_is_sent_with_the_history_and_when_it_appears():
    phases = [{"epoch": 3, "phase": "fine_tune"}]
    payload, drawn = live_chart.update(None, view(rows(2)))  # the phase is not reached yet
    assert payload["markers"] == []
    payload, drawn = live_chart.update(drawn, view(rows(3, fine_tune_at=3), phases))
    assert payload["markers"] == [{"x": 2.5, "t": 2.0, "text": "fine-tune from epoch 3"}]
    assert not payload["reset"]
    payload, _ = live_chart.update(drawn, view(rows(4, fine_tune_at=3), phases))
    assert "markers" not in payload  # unchanged: not sent again


def test_before_the_first_epoch_the_loss_chart_shows_the_step_samples():
    payload, _ = live_chart.update(None, view([]), FakeSteps(samples(3)))
    (chart,) = payload["charts"]
    assert chart["id"] == "metric-loss" and payload["points"] == {
        "loss-steps": {"x": [0.25, 0.5, 0.75], "t": [0.25, 0.5, 0.75], "y": [2.0, 1.0, pytest.approx(2 / 3)]}}
    assert live_chart.update(None, view([], steps=False))[0]["charts"] == []


def test_a_long_run_costs_the_same_per_update_whatever_its_length():
    """Epoch 1,000 sends one epoch and one step, as epoch 10 does: only deltas travel."""
    sizes = []
    for count in (10, 1000):
        history = rows(count, members=("encoder",))
        steps = FakeSteps(samples(count))
        _, drawn = live_chart.update(None, view(history[:-1]), steps)
        steps.items.append(samples(1, start_seq=count + 1)[0])
        payload, _ = live_chart.update(drawn, view(history), steps)
        assert payload["points"]["loss"]["x"] == [count] and len(payload["points"]["loss-steps"]["x"]) == 1
        sizes.append(len(json.dumps(payload)))
    assert sizes[1] <= sizes[0] * 1.2


def test_the_overlay_has_one_line_per_run_and_skips_runs_without_the_metric():
    histories = {"a": ("run a", rows(3), 1000.0), "b": ("run b", rows(5), 900.0),
                 "c": ("run c", [{"epoch": 1, "metrics": {"loss": 1.0}, "recorded_at": 5.0}], 0.0)}
    payload, drawn = live_chart.update(None, live_chart.overlay_view(histories, "val_accuracy"))
    (chart,) = payload["charts"]
    assert [s["name"] for s in chart["series"]] == ["run a", "run b"]
    assert chart["title"] == "val_accuracy by run" and chart["subtitle"] == "(higher is better)"
    assert len(payload["points"]["run-b"]["x"]) == 5
    assert payload["points"]["run-b"]["t"][0] == 101.0  # wall time from each run's own start
    other, _ = live_chart.update(drawn, live_chart.overlay_view(histories, "val_loss"))
    assert other["reset"]  # another metric is another stream
