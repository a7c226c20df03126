"""The stack as a Graphviz DOT string: members as blocks with their shapes, frozen parts marked.

Why Graphviz: a stack is a small directed graph (a chain, or branches that meet at a
concatenation or an average), which is exactly what DOT lays out well. `st.graphviz_chart`
renders DOT in the browser (d3-graphviz), so no Graphviz install and no Python package is
needed; a Plotly figure would need a hand-written layout for every mode.

Pure: `stack_dot(spec, report)` needs only the draft spec and, when the inspector answered,
its pre-flight report (shapes, parameter counts, layers, adapters, problems). The canvas
(dashboard/widgets/canvas.py) draws the same stack as a graph to edit: `canvas_nodes` and
`canvas_edges` say what each node and edge shows there, with the same colours.

Example:
    >>> dot = stack_dot(spec, client.check(spec), expanded={"model_a"})
    >>> st.graphviz_chart(dot)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from core.spec import MODE_OPTIONS, AdapterSpec, MemberSpec, StackSpec, rules
from dashboard import formatting

TRAINABLE = {"fillcolor": "#dbeafe", "color": "#1d4ed8", "style": "filled,rounded"}
PARTLY = {"fillcolor": "#fef3c7", "color": "#b45309", "style": "filled,rounded"}
FROZEN = {"fillcolor": "#e5e7eb", "color": "#6b7280", "style": "filled,rounded,dashed"}
STEP = {"fillcolor": "#f3f4f6", "color": "#9ca3af", "style": "filled", "shape": "ellipse"}
ADAPTER = {"fillcolor": "#dcfce7", "color": "#15803d", "style": "filled", "shape": "hexagon"}
PROBLEM_COLOR = "#dc2626"
# Text drawn on the page's own background (edge labels): the diagram's background is
# transparent, so it follows the light or dark theme, and the nodes keep their own fills.
PAGE_TEXT = {"light": "#374151", "dark": "#d1d5db"}
MAX_LAYERS_SHOWN = 40


def _quote(text: str) -> str:
    """A DOT string literal; newlines become centred line breaks."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _attrs(values: Mapping[str, Any]) -> str:
    return ", ".join(f"{key}={_quote(value)}" for key, value in values.items())


def _node_id(kind: str, name: str) -> str:
    return _quote(f"{kind}:{name}")


def source_text(member: MemberSpec, display_name=None) -> str:
    """'template cnn_features', 'file encoder.keras (cut at flatten)', 'run 2026...-ab12'."""
    if member.source == "template":
        text = f"template {member.template or '?'}"
    elif member.source == "file":
        text = f"file {display_name(member.file) if display_name and member.file else member.file or '?'}"
    else:
        text = f"run {member.run_id or '?'}"
    return f"{text} (cut at {member.cut_at})" if member.cut_at else text


def trainability(report_member: Mapping[str, Any] | None, member: MemberSpec) -> str:
    """'trainable', 'partly frozen' or 'frozen', from the report when there is one.

    Only weights frozen by the stack's choices count (the report's `frozen_params`):
    statistics that never train (Normalization, BatchNormalization) leave a member trainable.
    """
    if report_member is not None and report_member.get("total_params"):
        frozen = report_member.get("frozen_params", 0)
        if not frozen:
            return "trainable"
        return "frozen" if report_member["trainable_params"] == 0 else "partly frozen"
    return "trainable" if member.trainable else "frozen"


def _member_label(member: MemberSpec, report_member: Mapping[str, Any] | None, role: str, state: str,
                  display_name) -> str:
    lines = [f"{member.name}{'  (head)' if role == 'head' else ''}", source_text(member, display_name)]
    if report_member is not None and report_member.get("output_shape") is not None:
        lines.append(f"{formatting.shape(report_member['input_shape'])} → "
                     f"{formatting.shape(report_member['output_shape'])}")
        total, trainable = report_member["total_params"], report_member["trainable_params"]
        lines.append(f"{formatting.count(total)} params" + ("" if state == "trainable" else
                                                             f" · {formatting.count(trainable)} trainable"))
    if state != "trainable":
        lines.append(state.upper())
    return "\n".join(lines)


def _style(state: str) -> dict[str, str]:
    return {"trainable": TRAINABLE, "partly frozen": PARTLY, "frozen": FROZEN}[state]


def _layer_cluster(member: MemberSpec, layers: Sequence[Mapping[str, Any]], label: str,
                   style: dict[str, str]) -> tuple[list[str], str, str]:
    """A subgraph listing a member's layers in order; returns its lines, first and last node ids."""
    node = f"layer:{member.name}:"
    # The member's own label is a node heading the cluster, not the cluster's label: edges
    # entering the cluster would otherwise run through the label's text.
    lines = [f"subgraph {_quote('cluster_' + member.name)} {{",
             f"  graph [{_attrs({k: v for k, v in style.items() if k != 'shape'})}];",
             f"  {_quote(node + 'head')} [label={_quote(label)}, shape=plaintext, style=\"\"];",
             "  node [shape=box, style=\"filled\", fontsize=12, height=0.3];"]
    ids: list[str] = [f"{node}head"]
    for index, layer in enumerate(layers[:MAX_LAYERS_SHOWN]):
        params = f" · {formatting.count(layer['params'])} params" if layer.get("params") else ""
        text = f"{layer['name']} ({layer['class']})\n{formatting.shape(layer.get('output_shape'))}{params}"
        frozen = layer.get("has_weights") and not layer.get("trainable")
        colors = {"fillcolor": "#e5e7eb", "color": "#6b7280", "style": "filled,dashed"} if frozen else \
            {"fillcolor": "white", "color": "#9ca3af"}
        if frozen:
            text += "\nfrozen"
        ids.append(f"{node}{index}")
        lines.append(f"  {_quote(ids[-1])} [label={_quote(text)}, {_attrs(colors)}];")
    if len(layers) > MAX_LAYERS_SHOWN or not layers:
        # Big backbones are cut short; unknown layers (no report yet) get a placeholder.
        text = f"… {len(layers) - MAX_LAYERS_SHOWN} more layers" if layers else "layers unknown"
        ids.append(f"{node}more")
        lines.append(f"  {_quote(ids[-1])} [label={_quote(text)}, shape=plaintext, style=\"\"];")
    for first, second in zip(ids, ids[1:]):
        lines.append(f"  {_quote(first)} -> {_quote(second)};")
    lines.append("}")
    return lines, ids[0], ids[-1]


def stack_dot(spec: StackSpec, report: Mapping[str, Any] | None = None, expanded: Sequence[str] = (),
              display_name=None, theme: str = "light") -> str:
    """The DOT source of the stack's diagram.

    Args:
        spec: the draft stack.
        report: `client.check(spec)` as a dict, or None (then shapes and counts are left out).
        expanded: names of members drawn with their layers.
        display_name: turns an upload reference into its file name (core.storage.uploads.display_name).
        theme: "light" or "dark", the page's theme (st.context.theme.type).

    Returns:
        A `digraph` string for `st.graphviz_chart`.
    """
    report_members = {m["name"]: m for m in (report or {}).get("members", [])}
    problems = {p["member"] for p in (report or {}).get("problems", [])}
    # The report lists every adapter in the model, accepted or inserted automatically.
    adapters = [AdapterSpec.from_dict(a) for a in report.get("adapters", [])] if report else list(spec.adapters)
    text_color = PAGE_TEXT.get(theme, PAGE_TEXT["light"])
    lines = ["digraph stack {", '  rankdir=TB; nodesep=0.3; ranksep=0.35; bgcolor="transparent";',
             '  node [shape=box, fontname="sans-serif", fontsize=14, margin="0.2,0.08"];',
             f'  edge [color="#6b7280", arrowsize=0.8, fontname="sans-serif", fontsize=12, '
             f'fontcolor={_quote(text_color)}];']
    dataset = spec.dataset.name if spec.dataset.source == "builtin" else spec.dataset.source.upper() + " upload"
    combine = spec.option("combine") or MODE_OPTIONS["ensemble"]["combine"]
    steps = {rules.INPUT: _with_shape(f"input: {dataset}", (report or {}).get("input_shape")),
             rules.OUTPUT: _with_shape("output", (report or {}).get("output_shape"))}
    if spec.mode == "fusion":
        steps[rules.FUSION] = "concatenate"
    if spec.mode == "ensemble":
        steps[rules.ENSEMBLE] = "average" if combine == "average" else "concatenate"
    for name, text in steps.items():
        lines.append(f"  {_node_id('step', name)} [label={_quote(text)}, {_attrs(STEP)}];")
    entry: dict[str, str] = {}
    exit_: dict[str, str] = {}
    head_name = spec.head.name if spec.head is not None else None
    for member in spec.all_members():
        report_member = report_members.get(member.name)
        state = trainability(report_member, member)
        if spec.mode == "transfer" and spec.option("freeze_base") and member.name != head_name and report is None:
            state = "frozen"
        role = "head" if member.name == head_name else "member"
        label = _member_label(member, report_member, role, state, display_name)
        style = dict(_style(state))
        if member.name in problems:
            style["color"] = PROBLEM_COLOR
            style["penwidth"] = "2"
        if member.name in expanded:
            cluster, first, last = _layer_cluster(member, (report_member or {}).get("layers", []), label, style)
            lines += ["  " + line for line in cluster]
            entry[member.name], exit_[member.name] = _quote(first), _quote(last)
        else:
            node = _node_id("member", member.name)
            lines.append(f"  {node} [label={_quote(label)}, {_attrs(style)}];")
            entry[member.name] = exit_[member.name] = node
    for name in rules.STEPS:
        entry.setdefault(name, _node_id("step", name))
        exit_.setdefault(name, _node_id("step", name))
    # The edges and the adapters on each are core.spec.rules': the ones core.build wires.
    for index, edge in enumerate(rules.stack_edges(spec)):
        producer, consumer = edge
        tail = exit_[producer]
        steps = [adapter for adapter in adapters if rules.on_edge(adapter, edge)]
        if edge == rules.RAW_INPUT_EDGE:
            # The raw input is fused as it is (flattened by the fusion step): a branch of the
            # stack, not an adapter the user accepted.
            lines.append(f"  {tail} -> {entry[consumer]} [label={_quote(' raw input, flattened')}, style=dashed];")
            continue
        for number, adapter in enumerate(steps):
            node = _quote(f"adapter:{index}:{number}")
            lines.append(f"  {node} [label={_quote(adapter.label())}, {_attrs(ADAPTER)}];")
            lines.append(f"  {tail} -> {node};")
            tail = node
        bad = consumer in problems and not steps
        style = f" [color={_quote(PROBLEM_COLOR)}, penwidth=2]" if bad else ""
        lines.append(f"  {tail} -> {entry[consumer]}{style};")
    lines.append("}")
    return "\n".join(lines)


def _with_shape(text: str, dims) -> str:
    return f"{text}\n{formatting.shape(dims)}" if dims else text


# ---- the canvas: the stack's graph as nodes and edges to draw ----------------------------

MERGE = {"background": "#ede9fe", "border": "1px solid #6d28d9"}
CANVAS_STEP = {"background": "#f3f4f6", "border": "1px solid #6b7280"}
CANVAS_ADAPTER = {"background": "#dcfce7", "border": "1px solid #15803d"}
CANVAS_STATES = {
    "trainable": {"background": TRAINABLE["fillcolor"], "border": f"1px solid {TRAINABLE['color']}"},
    "partly frozen": {"background": PARTLY["fillcolor"], "border": f"2px solid {PARTLY['color']}"},
    "frozen": {"background": FROZEN["fillcolor"], "border": f"2px dashed {FROZEN['color']}"},
}
NODE_WIDTH_PX = 230
# Characters that mean something to the canvas's Markdown (and its math and raw HTML): a file
# or run name is shown as written, never as markup.
MARKDOWN_SPECIAL = re.compile(r"([\\`*_{}\[\]<>#|~$&])")


def markdown_text(text: str) -> str:
    r"""Text shown literally in Markdown: 'a_b <x>' -> 'a\_b \<x\>'."""
    return MARKDOWN_SPECIAL.sub(r"\\\1", str(text))


@dataclass(frozen=True)
class CanvasNode:
    """One node as the canvas draws it: its Markdown text, colours and place."""

    id: str
    kind: str  # "input", "output", "member", "merge", "adapter"
    text: str
    style: dict
    position: tuple[int, int]
    state: str = ""  # a member's "trainable", "partly frozen" or "frozen"
    problem: bool = False


@dataclass(frozen=True)
class CanvasEdge:
    """One edge as the canvas draws it; `id` is unique (an edge drawn twice gets '#2')."""

    id: str
    source: str
    target: str
    label: str
    ok: bool = True
    message: str = ""
    checked: bool = True  # False: an edge after a node that could not be wired (no shape to check)


def what_node_is(node, display_name=None) -> str:
    """'template cnn_features', 'file encoder.keras', 'run 2026...', 'concatenate', 'Flatten'."""
    if node.kind == "member" and node.member is not None:
        return source_text(node.member, display_name)
    if node.kind == "merge":
        return node.merge or "merge"
    if node.kind == "adapter":
        return node.adapter_spec().label()
    return node.kind


def output_shapes(report: Mapping[str, Any] | None) -> dict[str, Any]:
    """Node id -> the shape it produces, from the report: each node's (`node_shapes`), else the
    shape on an edge leaving it; members' own, the input's and the output's."""
    if not report:
        return {}
    shapes = {edge["source"]: edge["shape"] for edge in report.get("edges", []) if edge.get("shape") is not None}
    shapes.update(report.get("node_shapes", {}))
    shapes.update({m["name"]: m["output_shape"] for m in report.get("members", []) if m.get("output_shape")})
    shapes[rules.INPUT] = report.get("input_shape") or shapes.get(rules.INPUT)
    shapes[rules.OUTPUT] = report.get("output_shape")
    return {node_id: shape for node_id, shape in shapes.items() if shape is not None}


def canvas_nodes(spec: StackSpec, graph, positions: Mapping[str, Sequence[int]],
                 report: Mapping[str, Any] | None = None, display_name=None) -> list[CanvasNode]:
    """The nodes of `graph` (the spec's, `dashboard.graph_edit.graph`) with what the report
    says of each: its name, what it is, its output shape, its trainable / total parameters,
    frozen or partly frozen marked, a red border when a problem names it (not an edge's)."""
    members = {m["name"]: m for m in (report or {}).get("members", [])}
    shapes = output_shapes(report)
    problems = {p["member"] for p in (report or {}).get("problems", []) if not p.get("edge")}
    dataset = spec.dataset.name if spec.dataset.source == "builtin" else spec.dataset.source.upper() + " upload"
    drawn = []
    for node in graph.nodes:
        title = f"**{markdown_text(node.id)}**"
        lines = [f"{title} · {markdown_text(what_node_is(node, display_name))}" if node.kind != node.id else title]
        state = ""
        style = dict({"input": CANVAS_STEP, "output": CANVAS_STEP, "merge": MERGE,
                      "adapter": CANVAS_ADAPTER}.get(node.kind, CANVAS_STEP))
        if node.kind == "input":
            lines[0] = f"{title} · {markdown_text(dataset)}"
        if node.kind == "member" and node.member is not None:
            report_member = members.get(node.id)
            state = trainability(report_member, node.member)
            style = dict(CANVAS_STATES[state])
            if report_member is not None and report_member.get("output_shape") is not None:
                lines.append(markdown_text(f"{formatting.shape(report_member['input_shape'])} → "
                                           f"{formatting.shape(report_member['output_shape'])}"))
                lines.append(markdown_text(f"{formatting.count(report_member['trainable_params'])} / "
                                           f"{formatting.count(report_member['total_params'])} params trainable"))
            if state != "trainable":
                lines.append(f"**{state.upper()}**")
        elif node.id in shapes:
            lines.append(markdown_text(formatting.shape(shapes[node.id])))
        if node.id in problems:
            style["border"] = f"2px solid {PROBLEM_COLOR}"
        style["width"] = f"{NODE_WIDTH_PX}px"
        x, y = positions.get(node.id, (0, 0))
        drawn.append(CanvasNode(id=node.id, kind=node.kind, text="  \n".join(lines), style=style,
                                position=(int(x), int(y)), state=state, problem=node.id in problems))
    return drawn


def edge_checked(entry: Mapping[str, Any]) -> bool:
    """Whether the report checked an edge: one after a node that could not be wired has no
    consumer's need to compare with (`accepts` is empty) and says "Not checked"."""
    return entry.get("ok", True) or bool(entry.get("accepts")) or not str(entry.get("message", "")).startswith(
        "Not checked")


def canvas_edges(graph, report: Mapping[str, Any] | None = None) -> list[CanvasEdge]:
    """The edges of `graph`, each labelled with the shape on it; red, with the reason, where
    the report says it does not fit (its per-edge entries, in the graph's edge order);
    marked "not checked" where a node before it could not be wired."""
    entries: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for entry in (report or {}).get("edges", []):
        entries.setdefault((entry["source"], entry["target"]), []).append(entry)
    seen: dict[tuple[str, str], int] = {}
    drawn = []
    for edge in graph.edges:
        pair = edge.pair()
        seen[pair] = seen.get(pair, 0) + 1
        found = entries.get(pair, [])
        entry = found[seen[pair] - 1] if len(found) >= seen[pair] else None
        edge_id = f"{edge.source}->{edge.target}" + (f"#{seen[pair]}" if seen[pair] > 1 else "")
        if entry is None:
            drawn.append(CanvasEdge(edge_id, edge.source, edge.target, ""))
            continue
        shape = formatting.shape(entry["shape"]) if entry.get("shape") is not None else "?"
        if entry.get("ok", True):
            drawn.append(CanvasEdge(edge_id, edge.source, edge.target, shape))
        elif not edge_checked(entry):
            drawn.append(CanvasEdge(edge_id, edge.source, edge.target, f"{shape} · not checked", ok=False,
                                    message=entry.get("message", ""), checked=False))
        else:
            label = f"✗ {shape}, needs {entry['accepts']}" if entry.get("accepts") else f"✗ {shape}"
            drawn.append(CanvasEdge(edge_id, edge.source, edge.target, label, ok=False,
                                    message=entry.get("message", "")))
    return drawn
