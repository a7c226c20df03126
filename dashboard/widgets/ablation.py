"""Member ablation on the Runs page: which member carries a finished fusion, ensemble or graph run.

`ablation_panel(run)` shows a button; pressed, it asks the inspector (`InspectorClient.ablation`,
which runs `core.training.ablation.ablate_run` in the Keras process) and draws the answer: a
bar per variant (the whole stack, then the stack without each member) with the drop written
on each bar, and the one-line reading core wrote ("Without 'encoder_a', val_accuracy drops
0.21 (0.94 -> 0.73): it carries the stack."). The answer is remembered for the tab, so the
chart stays on later reruns. A run core refuses (a sequential or transfer chain) shows core's
reason and what to do.

Example:
    >>> ablation_panel(runs.get(run_id))   # inside a page
    >>> ablation_figure(result)            # the figure alone, tested without Streamlit
"""

from __future__ import annotations

from typing import Any, Mapping

import plotly.graph_objects as go
import streamlit as st

from core.inspector import InspectorError
from core.spec.schema import ABLATION_MODES
from dashboard import services, state
from dashboard.figures import CHART_HEIGHT, MARKER_COLOR, TRAIN_COLOR

CARRIER_COLOR = "#d62728"
BUTTON_KEY = "runs-ablation"
CHART_KEY = "runs-ablation-chart"



def _label(member: str) -> str:
    return "without the raw input" if member == "raw input" else f"without {member}"


def ablation_figure(result: Mapping[str, Any]) -> go.Figure:
    """The whole stack's metric and the metric without each member, as bars; each member's bar
    says its drop, and the member that carries the stack is drawn in red."""
    metric = result["metric"]
    names = ["whole stack"] + [_label(row["member"]) for row in result["members"]]
    values = [result["full"]] + [row["value"] for row in result["members"]]
    texts = [f"{result['full']:.3f}" if result["full"] is not None else "-"]
    texts += [f"drop {row['drop']:+.3f}" if row["drop"] is not None else "-" for row in result["members"]]
    colors = [TRAIN_COLOR] + [CARRIER_COLOR if row["member"] == result.get("carrier") else MARKER_COLOR
                              for row in result["members"]]
    fig = go.Figure(go.Bar(
        x=names, y=values, text=texts, textposition="outside", marker_color=colors, cliponaxis=False,
        hovertemplate=f"%{{x}}: {metric} %{{y:.4f}} (%{{text}})<extra></extra>"))
    better = "higher" if result.get("higher_is_better", True) else "lower"
    fig.update_layout(
        title={"text": f"{metric} without each member <sup>(drop: how much worse; {better} is better)</sup>",
               "x": 0, "xanchor": "left"},
        height=CHART_HEIGHT, margin={"l": 10, "r": 10, "t": 60, "b": 10}, hovermode="closest", showlegend=False)
    fig.update_xaxes(type="category")
    fig.update_yaxes(title_text=metric)
    return fig


def ablation_panel(run) -> None:
    """The member ablation of a finished run: a button, then the bar chart and the reading.

    Args:
        run: a `core.runs` run (its id and status are read).
    """
    if run.mode not in ABLATION_MODES:
        st.caption(f"A {run.mode} stack chains its members: every prediction passes through each of them, so "
                   f"there is no merge to remove one from. Train the same members as fusion or ensemble (Compare "
                   f"modes on the Assemble page) and ablate that run.")
        return
    if run.status != "finished":
        st.caption("Member ablation needs a finished run.")
        return
    memo = state.ablations()
    key = run.id
    if key not in memo:
        st.caption("Which member carries the stack? Each member's contribution is removed in turn (zeroed at a "
                   "concatenate, dropped from an average) and the stack is scored again on its validation data.")
        if not st.button("Ablate the members", key=BUTTON_KEY, icon=":material/science:"):
            return
        try:
            with st.spinner("Scoring the stack without each member…"):
                memo[key] = services.client().ablation(run.id)
        except InspectorError as error:
            # "invalid": core's reason, e.g. a sequential chain has no merge to remove a member from.
            (st.warning if error.kind == "invalid" else st.error)(str(error))
            return
    result = memo[key]
    note = f" {result['note']}" if result.get("note") else ""
    st.caption(f"Scored on {result['num_samples']:,} {result['subset']} samples.{note}")
    st.plotly_chart(ablation_figure(result), key=CHART_KEY)
    st.markdown(result["reading"])
    for row in result.get("skipped", []):
        st.caption(f"Not ablated: {row['member']} ({row['reason']}).")
