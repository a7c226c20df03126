"""dashboard/figures.py as pure functions: data in, Plotly figure out, no Streamlit."""

import numpy as np
import plotly.graph_objects as go
import pytest

from dashboard import figures


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
