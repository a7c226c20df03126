"""The Assemble page's canvas: the stack drawn as a graph, edited by drawing.

Drawn with `streamlit-flow-component` (React Flow, bundled in its wheel: nothing is loaded
from the network). The canvas shows the draft's graph (`dashboard.graph_edit.graph`) with
what the pre-flight report says of each node and edge (`dashboard.diagram.canvas_nodes`,
`canvas_edges`), and sends back what the user did: a click on a node or an edge (it
selects it: its panel opens, dashboard/widgets/node_panel.py), a node dragged to a new
place, an edge drawn from a node's bottom handle to another's top handle. The palette adds
nodes; the node panels delete them.

How the two sides stay in step:
- The component keeps its own copy of the drawing and replaces it only when it is given a
  newer timestamp. `draw` gives it one only when what it should show changed (a node, a
  label, a colour), never for a position the canvas itself reported: dragging a node sends
  nothing back to the browser and asks the inspector nothing (the check ignores the layout).
- Its answer is in session state under CANVAS_KEY before the page is drawn; `absorb` applies
  it to the draft first (once per answer, by its timestamp), so the whole page then shows
  the edit. An answer sent after a drawing was given but without it (it crossed the
  drawing on its way: the component drops a drawing older than its own last answer) makes
  the next run give the drawing again. Answers only add (a drawn edge, a position, a selection): deleting is done by
  the panels' buttons, so an answer that crosses an edit made here cannot undo it.
- Each new drawing makes the component answer twice (once given, once laid out) with what
  it was given: those answers change nothing. (Two drawings given in quick succession can
  race in the component: its layout of the first may put the first back; its answer then
  shows it, and the second is given again.) The canvas is drawn last on the page, so an
  answer interrupts no drawing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import streamlit as st
from streamlit_flow import streamlit_flow
from streamlit_flow.elements import StreamlitFlowEdge, StreamlitFlowNode
from streamlit_flow.layouts import ManualLayout
from streamlit_flow.state import StreamlitFlowState

from core.spec import ADAPTER_KINDS, MemberSpec, StackSpec
from core.spec.graph import MERGE_KINDS
from core.storage.uploads import display_name
from dashboard import diagram, graph_edit, graph_layout, state
from dashboard.widgets import forms, members

CANVAS_KEY = "asm-canvas"
# Edges drawn by the user get this id prefix from the component; the ones it is given have ours.
DRAWN_EDGE_PREFIX = "st-flow-edge_"
HEIGHT_PX = 640
NODE_TYPES = {"input": "input", "output": "output"}  # the input has no top handle, the output no bottom one
SELECTED_SHADOW = "0 0 0 3px #f59e0b"
PROBLEM_EDGE = {"stroke": diagram.PROBLEM_COLOR, "strokeWidth": 2}
PROBLEM_LABEL_BACKGROUND = {"fill": "#fee2e2"}
UNCHECKED_EDGE = {"strokeDasharray": "5 4"}
ACTIVATIONS = ("linear", "relu", "gelu", "tanh", "sigmoid", "softmax")
ADAPTER_LABELS = {"flatten": "Flatten", "global_average_pooling": "Global average pooling", "reshape": "Reshape",
                  "dense": "Dense projection", "resizing": "Resizing"}


@dataclass
class Shown:
    """What the canvas was last given: the component's state, the positions the canvas has (its
    own moves included), the edge ids and what they join, and the drawing's signature."""

    flow: StreamlitFlowState
    signature: str
    positions: dict[str, list[int]]
    edges: dict[str, tuple[str, str]] = field(default_factory=dict)
    fit: bool = True
    answers: int = 0  # the component's answers since it was given this drawing

    def fitting(self) -> bool:
        """Whether the component may still be about to fit this drawing in view: it fits after
        its (asynchronous) layout, which its second answer follows, and only if the drawing
        it has then still asks for it."""
        return self.fit and self.answers < 2


# ---- what the canvas sent back --------------------------------------------------------------


def absorb(spec: StackSpec) -> StackSpec:
    """Apply the canvas's latest answer to the draft (a drawn edge, moved nodes, a selection),
    once; returns the draft as it is now."""
    answer = state.widget_value(CANVAS_KEY)
    shown = state.canvas_shown()
    if not isinstance(answer, Mapping) or shown is None or answer.get("timestamp") == state.canvas_seen():
        return spec
    state.set_canvas_seen(answer.get("timestamp"))
    answers_this_drawing = (answer.get("timestamp") or 0) >= shown.flow.timestamp
    if answers_this_drawing:
        shown.answers += 1
    if answers_this_drawing and not answer_shows(answer, shown.flow):
        # Sent after the last drawing was given, without it: the component will drop (or has
        # dropped) that drawing as older than its own answer. Give it again, newer.
        shown.signature = ""
    returned = {node["id"]: (node["position"]["x"], node["position"]["y"]) for node in answer.get("nodes", [])
                if node.get("id") in shown.positions}
    drawn = {edge["id"]: (edge["source"], edge["target"]) for edge in answer.get("edges", [])
             if str(edge.get("id", "")).startswith(DRAWN_EDGE_PREFIX)}
    edits = graph_layout.canvas_edits(spec, shown.positions, returned, list(drawn.values()))
    _select(spec, answer.get("selectedId"), {**shown.edges, **drawn})
    updated = spec
    if edits.moved:
        shown.positions.update(edits.moved)  # the canvas has them already: nothing to send
        updated = graph_layout.move(updated, edits.moved)
    for source, target in edits.new_edges:
        try:
            updated = graph_edit.connect(updated, source, target)
        except ValueError as error:
            state.set_page_error(str(error))
            shown.signature = ""  # the canvas still shows the refused edge: draw it afresh
    if set(drawn.values()) - set(edits.new_edges) - set(graph_edit.edge_pairs(updated)):
        shown.signature = ""
    if updated != spec:
        state.set_draft(updated)
    return updated


def answer_shows(answer: Mapping[str, Any], flow: StreamlitFlowState) -> bool:
    """Whether the canvas's answer shows the drawing `flow`: the same nodes with the same text
    and colours, and the same edges (besides those the user just drew). Positions may differ:
    the user moves nodes."""
    given = {node.id: (node.data.get("content"), node.style) for node in flow.nodes}
    shown = {node.get("id"): ((node.get("data") or {}).get("content"), node.get("style")) for node in
             answer.get("nodes", [])}
    edges = {(edge.get("id"), edge.get("label", "")) for edge in answer.get("edges", [])
             if not str(edge.get("id", "")).startswith(DRAWN_EDGE_PREFIX)}
    return shown == given and edges == {(edge.id, edge.label) for edge in flow.edges}


def _select(spec: StackSpec, selected: Any, edges: Mapping[str, tuple[str, str]]) -> None:
    """A click selects a node or an edge. An answer without a selection (a drag, a click on
    the background, the canvas answering a new drawing) leaves the selection as it is."""
    if not selected:
        return
    if selected in graph_edit.node_ids(spec):
        state.set_canvas_selection(("node", selected))
    elif selected in edges:
        state.set_canvas_selection(("edge", *edges[selected]))


# ---- drawing --------------------------------------------------------------------------------


def flow_elements(spec: StackSpec, report: Mapping[str, Any] | None,
                  selection: tuple[str, ...] | None) -> tuple[list[StreamlitFlowNode], list[StreamlitFlowEdge],
                                                              dict[str, list[int]]]:
    """The component's nodes and edges for the draft and its report, and the positions used."""
    drawn_graph = graph_edit.graph(spec)
    positions = graph_layout.positions(spec)
    selected_node = selection[1] if selection and selection[0] == "node" else None
    selected_edge = tuple(selection[1:]) if selection and selection[0] == "edge" else None
    nodes = []
    for node in diagram.canvas_nodes(spec, drawn_graph, positions, report, display_name):
        style = dict(node.style)
        if node.id == selected_node:
            style["boxShadow"] = SELECTED_SHADOW
        nodes.append(StreamlitFlowNode(node.id, node.position, {"content": node.text},
                                       node_type=NODE_TYPES.get(node.kind, "default"), source_position="bottom",
                                       target_position="top", connectable=True, style=style))
    edges = []
    for edge in diagram.canvas_edges(drawn_graph, report):
        style = {} if edge.ok else dict(PROBLEM_EDGE) if edge.checked else dict(UNCHECKED_EDGE)
        if (edge.source, edge.target) == selected_edge:
            style["strokeWidth"] = 3
        edges.append(StreamlitFlowEdge(edge.id, edge.source, edge.target, edge_type="smoothstep",
                                       marker_end={"type": "arrowclosed"}, label=edge.label,
                                       label_show_bg=True,
                                       label_bg_style=PROBLEM_LABEL_BACKGROUND if edge.checked and not edge.ok else {},
                                       style=style, focusable=True))
    return nodes, edges, positions


def _signature(nodes: list[StreamlitFlowNode], edges: list[StreamlitFlowEdge]) -> str:
    """What is drawn, without the positions (compared on their own: the canvas moves nodes)."""
    plain = [{k: v for k, v in node.asdict().items() if k != "position"} for node in nodes]
    return json.dumps([plain, [edge.asdict() for edge in edges]], sort_keys=True, default=str)


def draw(spec: StackSpec, report: Mapping[str, Any] | None) -> None:
    """The canvas, given a new drawing only when what it should show changed."""
    nodes, edges, positions = flow_elements(spec, report, state.canvas_selection())
    signature = _signature(nodes, edges)
    shown = state.canvas_shown()
    if shown is None or shown.signature != signature or shown.positions != positions:
        # The component takes a drawing only if its timestamp is newer than its own last
        # answer's (the browser's clock): never older than that answer, whatever this clock says.
        timestamp = max(int(time.time() * 1000), (state.canvas_seen() or 0) + 1,
                        (shown.flow.timestamp + 1) if shown else 0)
        # Fit the view to the drawing when nodes came, went or were placed here (auto layout, a
        # fix), not when only a label changed: the user's zoom stays while they edit. A drawing
        # given again (the component dropped it) fits if the dropped one did, and so does one
        # given before the component fitted the last (a report's labels coming right after a
        # node was placed would otherwise cancel that fit).
        fit = shown is None or shown.positions != positions or (not shown.signature and shown.fit) or shown.fitting()
        shown = Shown(flow=StreamlitFlowState(nodes, edges, timestamp=timestamp), signature=signature,
                      positions={k: list(v) for k, v in positions.items()},
                      edges={edge.id: (edge.source, edge.target) for edge in edges}, fit=fit)
        state.set_canvas_shown(shown)
    streamlit_flow(CANVAS_KEY, shown.flow, height=HEIGHT_PX, fit_view=shown.fit, show_controls=True,
                   allow_new_edges=True, get_node_on_click=True, get_edge_on_click=True, layout=ManualLayout(),
                   min_zoom=0.2, hide_watermark=True, style={"border": "1px solid #d1d5db", "borderRadius": "8px"})


def toolbar(spec: StackSpec) -> None:
    """Above the canvas: lay it out, start an empty stack."""
    with st.container(horizontal=True, vertical_alignment="center"):
        st.button("Auto layout", key="canvas-auto-layout", icon=":material/account_tree:",
                  on_click=members.edit, args=(graph_layout.auto_layout,),
                  help="Place every node again, in rows from the input down to the output.")
        st.button("Empty stack", key="canvas-empty", icon=":material/add_box:", on_click=_empty,
                  help="Start a new graph with only the input and the output (Undo brings this draft back).")
        st.caption("Drag from a node's bottom handle to another's top handle to connect them; click a node or "
                   "an edge to edit it; scroll or the + and − buttons zoom, the frame button fits the drawing in view.")


def _empty() -> None:
    state.propose_replacement(graph_edit.empty_graph(state.draft()), "an empty stack")
    state.set_canvas_selection(None)


# ---- the palette --------------------------------------------------------------------------


def _place(change, *args: Any, **settings: Any) -> None:
    """A palette button's callback: place a node and select it, so its panel opens."""
    before = set(graph_edit.node_ids(state.draft()))
    members.edit(lambda spec: change(spec, *args, **settings))
    added = [node_id for node_id in graph_edit.node_ids(state.draft()) if node_id not in before]
    if added:
        state.set_canvas_selection(("node", added[0]))


def _place_member(member: MemberSpec) -> None:
    _place(graph_edit.add_member, member)


def palette(templates: Mapping[str, dict]) -> None:
    """Add to the canvas: a member (template, model file, earlier run), a merge or an adapter."""
    with st.container(border=True, key="canvas-palette"):
        st.markdown("**Add to the canvas**")
        member_tab, merge_tab, adapter_tab = st.tabs(["Member", "Merge", "Adapter"])
        with member_tab:
            members.add_member_panel(templates, key_prefix="canvas-add", on_add=_place_member,
                                     action="Place on the canvas")
        with merge_tab:
            merge = st.selectbox("Merge", MERGE_KINDS, key="canvas-add-merge",
                                 help="Combines two or more inputs; concatenate keeps their order of connection.")
            st.button("Place on the canvas", key="canvas-add-merge-button", icon=":material/add:", on_click=_place,
                      args=(graph_edit.add_merge, merge))
        with adapter_tab:
            adapter = st.selectbox("Adapter", ADAPTER_KINDS, key="canvas-add-adapter",
                                   format_func=lambda kind: ADAPTER_LABELS.get(kind, kind))
            settings = adapter_settings(adapter, {}, ("canvas", "add", adapter))
            st.button("Place on the canvas", key="canvas-add-adapter-button", icon=":material/add:",
                      on_click=_place, args=(graph_edit.add_adapter, adapter), kwargs=settings,
                      disabled=settings is None)


def adapter_settings(adapter: str, current: Mapping[str, Any], key: tuple) -> dict[str, Any] | None:
    """The widgets of an adapter's settings (units and activation, or a target shape); None
    while a shape cannot be read (the error is shown)."""
    if adapter == "dense":
        columns = st.columns(2)
        units = columns[0].number_input("Units", min_value=1, value=int(current.get("units") or 64), step=1,
                                        key=state.widget_key(*key, "units"))
        choices = list(dict.fromkeys([current.get("activation") or "linear", *ACTIVATIONS]))
        activation = columns[1].selectbox("Activation", choices, key=state.widget_key(*key, "activation"))
        return {"units": int(units), "activation": activation}
    if adapter in ("reshape", "resizing"):
        example = "28, 28" if adapter == "resizing" else "28, 28, 1"
        text = st.text_input("Target shape" if adapter == "reshape" else "Height, width",
                             ", ".join(str(v) for v in current.get("target_shape", ())),
                             key=state.widget_key(*key, "target_shape"), placeholder=example,
                             help="Without the batch axis." if adapter == "reshape" else None)
        try:
            shape = forms.parse_int_list(text)
        except ValueError as error:
            st.error(str(error))
            return None
        if not shape:
            st.caption(f"Give the shape, e.g. {example}.")
            return None
        return {"target_shape": tuple(shape)}
    return {}
