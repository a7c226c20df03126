"""Pure functions that return Plotly figures; no Streamlit here, so each is tested alone.

Inputs are plain data as `core` returns it: class counts from `Dataset.summary`, arrays for
previews, and `client.evaluate` results. The training curves (live and on the Runs page) are
the live-chart component's (dashboard/live_chart.py, dashboard/components/live_chart/).

Example:
    >>> fig = confusion_matrix(result["confusion_matrix"], result["class_names"])
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import plotly.express as px
import plotly.graph_objects as go

TRAIN_COLOR = "#1f77b4"
MARKER_COLOR = "#7f7f7f"
# Distinct colours for members and runs, in order (Plotly's default qualitative palette).
PALETTE = px.colors.qualitative.Plotly
CHART_HEIGHT = 300


def _layout(fig: go.Figure, title: str, x_title: str, y_title: str, height: int = CHART_HEIGHT) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "xanchor": "left"},
        height=height,
        margin={"l": 10, "r": 10, "t": 60, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "xanchor": "right", "x": 1},
        hovermode="x unified",
    )
    fig.update_xaxes(title_text=x_title)
    fig.update_yaxes(title_text=y_title)
    return fig


def class_balance(class_counts: Mapping[str, int]) -> go.Figure:
    """Samples per class, as bars labelled with their count and share."""
    names = [str(name) for name in class_counts]
    counts = [int(value) for value in class_counts.values()]
    total = sum(counts) or 1
    fig = go.Figure(go.Bar(
        x=names, y=counts, marker_color=TRAIN_COLOR,
        # Shares fit above a few bars; with many classes the hover tells them.
        text=[f"{c:,} ({c / total:.0%})" if len(counts) <= 6 else f"{c:,}" for c in counts],
        textposition="outside", cliponaxis=False,
        hovertemplate="%{x}: %{y:,} samples (%{customdata:.1%})<extra></extra>",
        customdata=[c / total for c in counts],
    ))
    fig.update_xaxes(type="category")
    fig = _layout(fig, "Class balance", "class", "samples")
    fig.update_layout(hovermode="closest")
    return fig


def target_histogram(values: np.ndarray, name: str = "target") -> go.Figure:
    """Distribution of a regression target."""
    fig = go.Figure(go.Histogram(x=np.asarray(values, dtype=float).ravel(), nbinsx=30, marker_color=TRAIN_COLOR,
                                 hovertemplate="%{x}: %{y} samples<extra></extra>"))
    fig = _layout(fig, f"Distribution of the {name}", name, "samples")
    fig.update_layout(hovermode="closest")
    return fig


def image_grid(images: np.ndarray, labels: Sequence[str], columns: int = 8) -> go.Figure:
    """Sample images in a grid, each titled with its label.

    Args:
        images: shape (n, height, width, channels) with 1 or 3 channels, or (n, height, width).
        labels: one label per image.
        columns: images per row.
    """
    images = np.asarray(images, dtype=float)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim not in (3, 4) or len(images) == 0:
        raise ValueError(f"image_grid needs images of shape (n, h, w[, 1 or 3]), received {images.shape}.")
    low, high = float(images.min()), float(images.max())
    scaled = (images - low) / (high - low) if high > low else np.zeros_like(images)
    pixels = (scaled * 255).astype(np.uint8)
    columns = min(columns, len(pixels))
    rows = -(-len(pixels) // columns)
    fig = px.imshow(pixels, facet_col=0, facet_col_wrap=columns, binary_string=pixels.ndim == 3,
                    facet_row_spacing=0.06, facet_col_spacing=0.01)
    for annotation in fig.layout.annotations:  # facet titles read "facet_col=3": show the label
        index = int(annotation.text.split("=")[1])
        annotation.text = str(labels[index])
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.update_layout(height=40 + 100 * rows, margin={"l": 0, "r": 0, "t": 30, "b": 0}, hovermode=False)
    return fig


def sequence_samples(sequences: np.ndarray, labels: Sequence[str], columns: int = 4) -> go.Figure:
    """A few sequences (n, steps, channels) as small line charts, each titled with its label."""
    sequences = np.asarray(sequences, dtype=float)
    if sequences.ndim == 2:
        sequences = sequences[..., None]
    from plotly.subplots import make_subplots

    columns = min(columns, len(sequences))
    rows = -(-len(sequences) // columns)
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=[str(label) for label in labels[: len(sequences)]],
                        shared_yaxes=True, vertical_spacing=0.12, horizontal_spacing=0.03)
    for index, sequence in enumerate(sequences):
        for channel in range(sequence.shape[1]):
            fig.add_trace(go.Scatter(y=sequence[:, channel], mode="lines", showlegend=False,
                                     line={"color": PALETTE[channel % len(PALETTE)], "width": 1.5}),
                          row=index // columns + 1, col=index % columns + 1)
    fig.update_xaxes(showticklabels=False)
    fig.update_layout(height=60 + 150 * rows, margin={"l": 10, "r": 10, "t": 40, "b": 10}, hovermode=False)
    return fig


def confusion_matrix(matrix: Sequence[Sequence[int]], class_names: Sequence[str]) -> go.Figure:
    """Counts of true (rows) against predicted (columns) classes, each cell labelled."""
    values = np.asarray(matrix, dtype=int)
    names = [str(name) for name in class_names]
    totals = values.sum(axis=1, keepdims=True)
    shares = np.divide(values, totals, out=np.zeros(values.shape, float), where=totals > 0)
    fig = go.Figure(go.Heatmap(
        z=shares, x=names, y=names, colorscale="Blues", zmin=0, zmax=1, showscale=False,
        text=values, texttemplate="%{text}", customdata=shares,
        hovertemplate="true %{y}, predicted %{x}: %{text} (%{customdata:.0%} of %{y})<extra></extra>",
    ))
    fig.update_xaxes(type="category", side="bottom")
    fig.update_yaxes(type="category", autorange="reversed")
    size = max(300, min(40 * len(names) + 120, 700))
    fig = _layout(fig, "Confusion matrix <sup>(colour: share of each true class)</sup>", "predicted", "true", size)
    fig.update_layout(hovermode="closest")
    return fig


def predicted_vs_true(y_true: Sequence[float], y_pred: Sequence[float]) -> go.Figure:
    """Predictions against targets, with the y = x line a perfect model would sit on."""
    true = np.asarray(y_true, dtype=float).ravel()
    pred = np.asarray(y_pred, dtype=float).ravel()
    low = float(min(true.min(), pred.min())) if true.size else 0.0
    high = float(max(true.max(), pred.max())) if true.size else 1.0
    fig = go.Figure([
        go.Scatter(x=true, y=pred, mode="markers", name="samples", marker={"color": TRAIN_COLOR, "opacity": 0.6},
                   hovertemplate="true %{x:.3g}, predicted %{y:.3g}<extra></extra>"),
        go.Scatter(x=[low, high], y=[low, high], mode="lines", name="perfect (y = x)",
                   line={"color": MARKER_COLOR, "dash": "dash"}, hoverinfo="skip"),
    ])
    fig = _layout(fig, "Predicted vs true", "true value", "predicted value", 400)
    fig.update_layout(hovermode="closest")
    return fig
