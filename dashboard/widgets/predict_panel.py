"""The Runs page's Predict tab: a finished run's model on uploaded rows or its validation split.

The prediction runs in a child process (`services.predictions` -> `python -m core.predict`),
with the checks an upload gets; its refusal is shown as the page shows errors, and the
uploaded file stays in the uploader so a fixed one can replace it.
"""

from __future__ import annotations

import streamlit as st

from core.limits import format_bytes
from core.runs.bundle import bundle_name
from dashboard import formatting, services

SOURCES = ("Upload rows", "Validation split")
UPLOAD_KEY = "runs-predict-upload"
SHOWN_ROWS = 1000  # the table shows this many; the CSV download has every row


def columns_hint(card: dict | None) -> str:
    """What the model takes, in words, from the run's data card: "Columns: age (number), color
    (text); other columns are ignored." or "Samples of shape (28, 28, 1) as array x of an NPZ."."""
    if not card:
        return "A CSV with the training columns (named as in the training file), or an NPZ whose array x holds samples."
    inputs = card.get("inputs") or []
    if inputs:
        described = ", ".join(f"{item.get('name')} ({'text' if item.get('dtype') == 'string' else 'number'})"
                              for item in inputs)
        return f"A CSV with the columns {described}; other columns are ignored."
    shape = tuple(card.get("input_shape") or ())
    return f"An NPZ whose array x holds samples of shape {shape}."


def predict_tab(run, artifacts: dict) -> None:
    """The tab's content for `run` (its artifacts as `core.runs.artifacts` lists them)."""
    if "model.keras" not in artifacts or run.is_active:
        st.caption("Predictions need a finished run with a model.")
        return
    card = services.data_card(run.id)
    source = st.radio("Rows to predict", SOURCES, horizontal=True, key="runs-predict-source",
                      help="Your own rows (the same checks as an upload), or the validation samples the run "
                           "held out, with their true labels.")
    if source == SOURCES[0]:
        uploaded = st.file_uploader("A CSV or NPZ file of rows", type=["csv", "npz"], key=UPLOAD_KEY,
                                    help=columns_hint(card))
        if uploaded is None:
            st.caption(columns_hint(card))
            return
        data_ref = services.store_upload(uploaded)
        if data_ref is None:
            return
    else:
        data_ref = None
    with st.spinner("Predicting… (the model loads in a separate process)"):
        outcome, result = services.predictions(run.id, data_ref)
    if outcome == "error":
        st.error(result, icon=":material/error:")
        return
    show(result, run)


def show(result: dict, run) -> None:
    """The predictions: notes, accuracy or MAE for the validation split, the table, the download."""
    with st.container(key="runs-predict-result"):
        _show(result, run)


def _show(result: dict, run) -> None:
    for note in result.get("notes", []):
        st.caption(note)
    metrics = result.get("metrics") or {}
    if "accuracy" in metrics:
        st.metric("Accuracy on these samples", formatting.metric(metrics["accuracy"]))
    if "mae" in metrics:
        st.metric("MAE on these samples", formatting.metric(metrics["mae"]), help="Mean absolute error, in the "
                                                                                   "target's units")
    table = result["table"]
    probabilities = [name for name in result.get("class_names", []) if name in table.columns]
    st.dataframe(table.head(SHOWN_ROWS), hide_index=True, key="runs-predict-table",
                 column_config={name: st.column_config.ProgressColumn(name, min_value=0.0, max_value=1.0,
                                                                      format="%.3f")
                                for name in probabilities})
    shown = f"the first {SHOWN_ROWS:,} of " if len(table) > SHOWN_ROWS else ""
    st.caption(f"Showing {shown}{formatting.plural(len(table), 'prediction')}; the CSV has them all "
               f"({format_bytes(len(result['csv']))}).")
    stem = bundle_name(run.name, run.id)
    st.download_button("Download predictions (.csv)", data=result["csv"], file_name=f"{stem}-predictions.csv",
                       mime="text/csv", key="runs-predict-download", icon=":material/download:", on_click="ignore")
