"""dashboard/formatting.py: how numbers, shapes, durations and the ETA read."""

import pytest

from dashboard import formatting


def test_counts_shapes_and_metrics():
    assert formatting.count(693962) == "693,962" and formatting.count(None) == "–"
    assert formatting.shape([28, 28, 1]) == "(28, 28, 1)"
    assert formatting.shape([10]) == "(10,)" and formatting.shape([None, 3]) == "(?, 3)"
    assert formatting.shape(None) == "?"
    assert formatting.metric(0.912345) == "0.9123"
    assert formatting.metric(1234.5) == "1,234.5"
    assert formatting.metric(0.00012) == "1.20e-04"
    assert formatting.metric(None) == "–"
    assert formatting.number(346.0) == "346" and formatting.number(0.123456) == "0.1235"


@pytest.mark.parametrize("seconds, text", [(0.84, "0.8 s"), (42.2, "42 s"), (75, "1 min 15 s"),
                                           (3725, "1 h 02 min"), (None, "–")])
def test_durations(seconds, text):
    assert formatting.duration(seconds) == text


def test_best_metric_text():
    assert formatting.best({"name": "val_accuracy", "value": 0.9443, "epoch": 5}) == "val_accuracy 0.9443 (epoch 5)"
    assert formatting.best({}) == "–"


def test_metric_names_put_loss_first_and_merge_validation():
    rows = [{"metrics": {"accuracy": 0.5, "loss": 1.0, "val_accuracy": 0.4, "val_loss": 1.1, "val_auc": 0.6}}]
    assert formatting.metric_names(rows) == ["loss", "accuracy", "auc"]


def test_eta_from_measured_epochs_and_the_current_one():
    progress = {"epoch": 3, "step": 5, "steps": 10, "elapsed_s": 1.0, "step_time_s": 0.2}
    # 2 of 5 epochs done, the second (steady) took 2 s; 5 batches of 0.2 s left in the third.
    assert formatting.eta_seconds(5, 2, [9.0, 2.0], progress) == pytest.approx(1.0 + 2 * 2.0)
    # The first epoch (it compiles) does not count once later ones are measured.
    assert formatting.eta_seconds(6, 4, [10.0, 1.0, 1.0, 1.0]) == pytest.approx(2.0)


def test_eta_waits_for_measured_batches_instead_of_extrapolating_the_first():
    # Batch 1 of 100 took 1 s (tracing and compiling): no estimate yet, not 100 s per epoch.
    first = {"epoch": 1, "step": 1, "steps": 100, "elapsed_s": 1.0, "step_time_s": None}
    assert formatting.eta_seconds(3, 0, [], first) is None
    timed = {"epoch": 1, "step": 11, "steps": 100, "elapsed_s": 1.1, "step_time_s": 0.01}
    assert formatting.eta_seconds(3, 0, [], timed) == pytest.approx(0.89 + 2 * 1.0)
    assert formatting.eta_seconds(3, 0, [], None) is None
    stale = {"epoch": 2, "step": 10, "steps": 10, "elapsed_s": 2.0}  # from the epoch that just ended
    assert formatting.eta_seconds(3, 2, [2.0, 2.0], stale) == pytest.approx(2.0)
    assert formatting.eta_seconds(3, 3, [2.0] * 3) == 0.0


def test_plural():
    assert (formatting.plural(1, "epoch"), formatting.plural(2, "epoch")) == ("1 epoch", "2 epochs")


def test_progress_fraction_counts_the_current_epoch():
    assert formatting.progress_fraction(4, 1, {"epoch": 2, "step": 5, "steps": 10}) == pytest.approx(0.375)
    assert formatting.progress_fraction(4, 4, None) == 1.0
    assert formatting.progress_fraction(0, 0, None) == 0.0


def test_ordinals():
    assert [formatting.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == \
        ["1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]


def test_throughput_and_where_a_run_trains():
    assert formatting.throughput(1234.4) == "1,234 samples/s" and formatting.throughput(56.78) == "56.8 samples/s"
    assert formatting.throughput(None) == "–"
    assert formatting.devices("2 × GPU", (0, 1)) == "2 × GPU (0, 1)"
    assert formatting.devices("4 × CPU") == "4 × CPU" and formatting.devices("CPU", ()) == "CPU"
    # Before the worker says where it trains: the GPUs the scheduler gave it.
    assert formatting.devices("", (3,)) == "GPU 3" and formatting.devices("", (0, 1)) == "GPUs 0, 1"
    assert formatting.devices("", ()) == "–"
