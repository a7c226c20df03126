"""dashboard/figures.py as pure functions: data in, Plotly figure out, no Streamlit."""

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboard import figures


def rows(count=4, members=("encoder", "head"), fine_tune_at=None):
    """Epoch rows as runs.metrics returns them; the encoder is frozen until fine-tuning."""
    out = []
    for epoch in range(1, count + 1):
        frozen = epoch < (fine_tune_at or 99)
        out.append({"epoch": epoch, "phase": "train" if frozen else "fine_tune",
                    "metrics": {"loss": 1 / epoch, "val_loss": 1.5 / epoch, "accuracy": 0.5 + epoch / 10,
                                "val_accuracy": 0.4 + epoch / 10},
                    "member_updates": {name: 0.0 if name == "encoder" and frozen else 0.1 / epoch for name in members},
                    "duration_s": 1.0, "learning_rate": 1e-3})
    return out


def test_metric_curves_show_training_and_validation_together():
    fig = figures.metric_curves(rows(), [], "accuracy")
    assert isinstance(fig, go.Figure)
    assert [trace.name for trace in fig.data] == ["training", "validation"]
    assert list(fig.data[0].x) == [1, 2, 3, 4]
    assert list(fig.data[1].y) == pytest.approx([0.5, 0.6, 0.7, 0.8])
    assert "higher is better" in fig.layout.title.text
    assert fig.layout.shapes == ()  # no fine-tune phase, no marker


def test_metric_curves_mark_where_fine_tuning_starts():
    phases = [{"epoch": 3, "phase": "fine_tune", "learning_rate": 1e-4, "trainable_params": 10, "unfrozen_layers": []}]
    fig = figures.metric_curves(rows(fine_tune_at=3), phases, "loss")
    (marker,) = fig.layout.shapes
    assert marker.x0 == marker.x1 == 2.5  # between the last frozen epoch and the first fine-tune epoch
    assert "fine-tune from epoch 3" in fig.layout.annotations[0].text
    assert "lower is better" in fig.layout.title.text


def test_metric_curves_without_validation_have_one_line():
    only_train = [{**row, "metrics": {"loss": row["metrics"]["loss"]}} for row in rows()]
    assert [trace.name for trace in figures.metric_curves(only_train, [], "loss").data] == ["training"]


def test_member_updates_have_one_line_per_member_and_frozen_members_stay_at_zero():
    phases = [{"epoch": 3, "phase": "fine_tune"}]
    fig = figures.member_updates(rows(fine_tune_at=3), phases)
    assert [trace.name for trace in fig.data] == ["encoder", "head"]
    assert list(fig.data[0].y)[:2] == [0.0, 0.0] and fig.data[0].y[2] > 0
    assert len(fig.layout.shapes) == 1


def test_class_balance_labels_counts_and_shares():
    fig = figures.class_balance({"cat": 30, "dog": 10})
    bar = fig.data[0]
    assert list(bar.x) == ["cat", "dog"] and list(bar.y) == [30, 10]
    assert list(bar.text) == ["30 (75%)", "10 (25%)"]
    many = figures.class_balance({str(i): 10 for i in range(10)})
    assert many.data[0].text[0] == "10"  # shares only on hover when there are many classes


def test_target_histogram_for_regression():
    fig = figures.target_histogram(np.arange(100.0), "progression")
    assert isinstance(fig.data[0], go.Histogram) and len(fig.data[0].x) == 100
    assert "progression" in fig.layout.title.text


def test_image_grid_titles_each_image_with_its_label():
    images = np.random.default_rng(0).random((10, 8, 8, 1))
    fig = figures.image_grid(images, [f"label {i}" for i in range(10)], columns=5)
    assert len(fig.data) == 10
    assert sorted(a.text for a in fig.layout.annotations) == sorted(f"label {i}" for i in range(10))


def test_image_grid_refuses_what_is_not_an_image():
    with pytest.raises(ValueError, match="needs images of shape"):
        figures.image_grid(np.zeros((4, 5)), ["a"] * 4)


def test_sequence_samples_draw_one_small_chart_per_sequence():
    fig = figures.sequence_samples(np.zeros((6, 64, 1)), ["sine"] * 6, columns=3)
    assert len(fig.data) == 6 and len(fig.data[0].y) == 64
    assert [a.text for a in fig.layout.annotations] == ["sine"] * 6


def test_confusion_matrix_counts_true_rows_against_predicted_columns():
    fig = figures.confusion_matrix([[5, 1], [0, 4]], ["no", "yes"])
    heatmap = fig.data[0]
    assert heatmap.text.tolist() == [[5, 1], [0, 4]]
    assert heatmap.z[0][0] == pytest.approx(5 / 6)  # colour: share of the true class
    assert fig.layout.xaxis.title.text == "predicted" and fig.layout.yaxis.title.text == "true"


def test_predicted_vs_true_has_the_perfect_line():
    fig = figures.predicted_vs_true([1.0, 2.0, 3.0], [1.5, 2.0, 2.5])
    points, perfect = fig.data
    assert list(points.x) == [1.0, 2.0, 3.0]
    assert list(perfect.x) == list(perfect.y) == [1.0, 3.0]


def test_run_overlay_draws_one_line_per_run_and_skips_runs_without_the_metric():
    histories = {"run a": rows(3), "run b": rows(5), "run c": [{"epoch": 1, "metrics": {"loss": 1.0}}]}
    fig = figures.run_overlay(histories, "val_accuracy")
    assert [trace.name for trace in fig.data] == ["run a", "run b"]
    assert len(fig.data[1].x) == 5
