"""The panel of what is selected on the canvas: a node's settings, or an edge and its fix.

A member node's panel is the member form of the Assemble page (dashboard/widgets/members.py:
the source and its parameters or the layer it is cut at, the trainable switch, the
per-layer trainability table); a merge's is its kind and the order of its inputs; an
adapter's its settings. Every panel lists the node's edges and deletes them or the node.
Edits go through dashboard.graph_edit, so a preset stays a preset until its topology changes.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import streamlit as st

from core.spec import ADAPTER_KINDS, MERGE_KINDS, StackSpec
from core.storage.uploads import display_name
from dashboard import diagram, formatting, graph_edit, state
from dashboard.widgets import canvas, members


def close() -> None:
    state.set_canvas_selection(None)


def _delete_node(node_id: str) -> None:
    members.edit(graph_edit.delete_node, node_id)
    close()


def _delete_edge(source: str, target: str) -> None:
    members.edit(graph_edit.delete_edge, source, target)
    close()


def _apply_edge_fix(source: str, target: str, fix: list) -> None:
    members.edit(lambda spec: graph_edit.apply_fix(graph_edit.as_graph(spec), fix, (source, target)))
    close()


def panel(spec: StackSpec, report: Mapping[str, Any] | None, templates: Mapping[str, dict]) -> StackSpec:
    """Draw the selected node's or edge's panel (nothing when nothing is selected); returns the
    draft with the panel's edits."""
    selection = state.canvas_selection()
    if selection is None:
        return spec
    drawn = graph_edit.graph(spec)
    if selection[0] == "node" and drawn.node(selection[1]) is None or (
            selection[0] == "edge" and tuple(selection[1:]) not in graph_edit.edge_pairs(spec)):
        state.set_canvas_selection(None)  # deleted meanwhile (another tab, an undo)
        return spec
    with st.container(border=True, key="canvas-panel"):
        if selection[0] == "edge":
            _edge_panel(spec, report, *selection[1:])
            return spec
        return _node_panel(spec, drawn.node(selection[1]), report, templates)


def _header(title: str, delete: tuple | None) -> None:
    with st.container(horizontal=True, vertical_alignment="center"):
        st.markdown(title)
        st.space("stretch")
        if delete is not None:
            callback, *args = delete
            st.button("Delete", key="canvas-delete", icon=":material/delete:", on_click=callback, args=tuple(args))
        st.button("", key="canvas-close", icon=":material/close:", help="Close this panel", on_click=close)


def _node_panel(spec: StackSpec, node, report: Mapping[str, Any] | None, templates: Mapping[str, dict]) -> StackSpec:
    fixed = node.id in ("input", "output")
    _header(f"**{node.id}** · {diagram.what_node_is(node, display_name)}",
            None if fixed else (_delete_node, node.id))
    shapes = diagram.output_shapes(report)
    if node.kind == "member" and node.member is not None:
        spec = _member_form(spec, node.member, report, templates)
    elif node.kind == "merge":
        spec = _merge_form(spec, node)
    elif node.kind == "adapter":
        spec = _adapter_form(spec, node)
    elif node.id == "input":
        st.caption(f"The dataset's samples: {formatting.shape(shapes.get('input'))} each. Drag from its bottom "
                   f"handle to feed a node.")
    else:
        st.caption(f"What the stack predicts: {formatting.shape(shapes.get('output'))}. Exactly one node feeds it.")
    if node.kind not in ("member",) and node.id in shapes and node.id not in ("input", "output"):
        st.caption(f"Output shape {formatting.shape(shapes[node.id])}.")
    _edges_list(spec, node.id)
    return spec


def _member_form(spec: StackSpec, member, report: Mapping[str, Any] | None,
                 templates: Mapping[str, dict]) -> StackSpec:
    report_member = {m["name"]: m for m in (report or {}).get("members", [])}.get(member.name)
    key = ("draft", "node", member.name)
    columns = st.columns([3, 2], vertical_alignment="bottom")
    name = columns[0].text_input("Name", member.name, key=state.widget_key(*key, "name"))
    with columns[1]:
        spec, trainable = members.trainable_switch(spec, member, report_member, key)
    updated = members.source_form(member, templates, key)
    if trainable != member.trainable:
        updated = dataclasses.replace(updated, trainable=trainable)
    if updated != member:
        spec = graph_edit.replace_member(spec, member.name, updated)
    st.caption(f"Layers and trainability{members.counts_text(report_member)}")
    spec = members.layer_trainability_editor(spec, member, report_member)
    if name != member.name:
        try:
            spec = graph_edit.rename_node(spec, member.name, name.strip())
            state.set_canvas_selection(("node", name.strip()))
        except ValueError as error:
            st.error(str(error))
    return spec


def _merge_form(spec: StackSpec, node) -> StackSpec:
    merge = st.selectbox("Merge", MERGE_KINDS, index=MERGE_KINDS.index(node.merge) if node.merge in MERGE_KINDS else 0,
                         key=state.widget_key("draft", "node", node.id, "merge"),
                         help="concatenate joins the inputs' features in the order below; add, average, "
                              "multiply and maximum need inputs of one shape.")
    if merge != node.merge:
        spec = graph_edit.replace_node(spec, dataclasses.replace(node, merge=merge))
    inputs = graph_edit.graph(spec).inputs_of(node.id)
    if len(inputs) > 1:
        st.caption("Inputs, in order:")
        for position, source in enumerate(inputs):
            left, right = st.columns([5, 1], vertical_alignment="center")
            left.write(f"{position + 1}. {source}")
            right.button("", icon=":material/arrow_upward:", key=f"canvas-input-up-{position}",
                         disabled=position == 0, help="Earlier in the order",
                         on_click=members.edit, args=(graph_edit.move_input, node.id, position, -1))
    return spec


def _adapter_form(spec: StackSpec, node) -> StackSpec:
    kind = st.selectbox("Adapter", ADAPTER_KINDS, index=ADAPTER_KINDS.index(node.adapter),
                        format_func=lambda k: canvas.ADAPTER_LABELS.get(k, k),
                        key=state.widget_key("draft", "node", node.id, "adapter"))
    current = {"units": node.units, "activation": node.activation, "target_shape": node.target_shape}
    settings = canvas.adapter_settings(kind, current, ("draft", "node", node.id, kind))
    if settings is None:
        return spec
    updated = graph_edit.adapter_node(node.id, kind, **settings)
    if updated != node:
        spec = graph_edit.replace_node(spec, updated)
    return spec


def _edges_list(spec: StackSpec, node_id: str) -> None:
    """The node's edges in and out, each with a button that deletes it."""
    pairs = [pair for pair in graph_edit.edge_pairs(spec) if node_id in pair]
    if not pairs:
        st.caption("Not connected yet: drag from a bottom handle to a top handle on the canvas.")
        return
    st.caption("Edges")
    for index, (source, target) in enumerate(pairs):
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.write(f"{source} → {target}")
        right.button("", icon=":material/link_off:", key=f"canvas-edge-delete-{index}", help="Delete this edge",
                     on_click=members.edit, args=(graph_edit.delete_edge, source, target))


def _edge_panel(spec: StackSpec, report: Mapping[str, Any] | None, source: str, target: str) -> None:
    _header(f"**{source} → {target}**", (_delete_edge, source, target))
    entry = next((e for e in (report or {}).get("edges", []) if (e["source"], e["target"]) == (source, target)), None)
    if entry is None:
        st.caption("Shapes appear once the stack has been checked.")
        return
    shape = formatting.shape(entry["shape"]) if entry.get("shape") is not None else "unknown"
    st.write(f"Carries {shape}; {target} accepts {entry.get('accepts') or 'it'}.")
    if entry.get("ok", True):
        st.success("The shapes fit.", icon=":material/check_circle:")
        return
    if not diagram.edge_checked(entry):
        st.info(entry.get("message") or "Not checked yet.", icon=":material/info:")
        return
    st.error(entry.get("message") or "The shapes do not fit.", icon=":material/error:")
    if entry.get("fix"):
        st.button(f"Insert {entry['fix_label']} on this edge", key="canvas-edge-fix", icon=":material/build:",
                  type="primary", on_click=_apply_edge_fix, args=(source, target, list(entry["fix"])))
