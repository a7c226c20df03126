"""Edits of a stack drawn as a graph, as pure functions: spec in, new spec out.

The canvas (dashboard/widgets/canvas.py) calls these from its palette, its node panel and
what the drawing sends back (a new edge, a moved node); keeping them free of Streamlit and
of the canvas component means each is tested on its own, like dashboard/spec_edit.py.

- The first edit of a preset's topology (adding, connecting or deleting a node or edge)
  turns the spec into mode "graph" (`core.spec.presets.to_graph_spec`): the graph the
  preset builds, with the same node ids, so positions and names carry over.
- Edits that leave the topology alone keep a preset a preset: a member's parameters, a
  rename, a move. Positions go in `spec.layout`, which never changes the model (nor asks
  the inspector again: dashboard.services.check ignores it).
- Nodes without a position in `spec.layout` are placed by dashboard/graph_layout.py, a
  layered layout computed from the graph alone, so an imported spec is drawn unchanged.

Example:
    >>> spec = add_member(empty_graph(default_spec()), MemberSpec("features", template="cnn_features"))
    >>> spec = connect(spec, "input", "features")
    >>> [edge.pair() for edge in spec.graph.edges]
    [('input', 'features')]
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping

from core.spec import GRAPH_MODE, AdapterSpec, MemberSpec, StackSpec, rules
from core.spec.graph import SINGLE_INPUT_KINDS, EdgeSpec, GraphSpec, NodeSpec
from core.spec.presets import graph_of, to_graph_spec
from dashboard import spec_edit
from dashboard.graph_layout import COLUMN_GAP, NODE_SIZE, ROW_GAP, free_position, pin_positions

# Default settings of adapters placed from the palette (edited in the node panel afterwards).
DEFAULT_ADAPTER_UNITS = 64


# ---- reading the graph ------------------------------------------------------------------


def graph(spec: StackSpec) -> GraphSpec:
    """The graph of any spec: a graph spec's own, or the one its preset builds."""
    return graph_of(spec)


def is_graph(spec: StackSpec) -> bool:
    return spec.mode == GRAPH_MODE


def as_graph(spec: StackSpec) -> StackSpec:
    """`spec` in mode "graph" (a preset becomes the graph it builds; the layout is kept)."""
    return spec if is_graph(spec) else to_graph_spec(spec)


def node_ids(spec: StackSpec) -> list[str]:
    return graph(spec).ids()


def edge_pairs(spec: StackSpec) -> list[tuple[str, str]]:
    return [edge.pair() for edge in graph(spec).edges]


def named_for_graph(before: StackSpec, after: StackSpec) -> StackSpec:
    """`after` (a graph) named 'graph_<dataset>' if `before`'s name was generated; a chosen name stays."""
    if spec_edit.has_generated_name(before):
        return after.replace(name=spec_edit.generated_name(GRAPH_MODE, after.dataset.name))
    return after


def empty_graph(spec: StackSpec) -> StackSpec:
    """A graph with only the input and the output, keeping the spec's dataset, training (without
    a fine-tune phase, which names members) and chosen name (a generated one follows the mode)."""
    nodes = (NodeSpec(rules.INPUT, "input"), NodeSpec(rules.OUTPUT, "output"))
    return StackSpec(name=named_for_graph(spec, spec).name, mode=GRAPH_MODE, graph=GraphSpec(nodes=nodes),
                     layout={rules.INPUT: [0, 0], rules.OUTPUT: [0, 3 * ROW_GAP]},
                     train=dataclasses.replace(spec.train, fine_tune=None), dataset=spec.dataset)


def unique_id(spec: StackSpec, base: str) -> str:
    """`base` made a valid node id that no node of `spec` has yet: base, base_2, ..."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", base).strip("_")[:60] or "node"
    if not cleaned[0].isalpha():
        cleaned = f"n_{cleaned}"
    taken = set(node_ids(spec)) | set(rules.RESERVED_NAMES) | set(spec_edit.names(spec))
    candidate, counter = cleaned, 2
    while candidate in taken:
        candidate, counter = f"{cleaned}_{counter}", counter + 1
    return candidate


# ---- adding nodes -----------------------------------------------------------------------


def add_node(spec: StackSpec, node: NodeSpec, position: Iterable[float] | None = None) -> StackSpec:
    """Add `node` (unconnected; its id made unique) at `position`, or at a free place.

    The current positions of the drawing are kept in the layout, so nothing else moves.
    """
    node_id = unique_id(spec, node.id)
    if node.member is not None:
        node = dataclasses.replace(node, member=dataclasses.replace(node.member, name=node_id))
    node = dataclasses.replace(node, id=node_id)
    where = [round(v) for v in position] if position is not None else free_position(spec)
    spec = pin_positions(as_graph(spec))
    return spec.replace(graph=dataclasses.replace(spec.graph, nodes=spec.graph.nodes + (node,)),
                        layout={**spec.layout, node_id: where})


def add_member(spec: StackSpec, member: MemberSpec, position: Iterable[float] | None = None) -> StackSpec:
    """Add a member node named after `member` (renamed if the name is taken)."""
    return add_node(spec, NodeSpec(member.name, "member", member=member), position)


def add_merge(spec: StackSpec, merge: str, position: Iterable[float] | None = None) -> StackSpec:
    """Add a merge node ("concatenate", "add", ...), named after its kind."""
    return add_node(spec, NodeSpec(merge, "merge", merge=merge), position)


def adapter_node(node_id: str, adapter: str, units: int = 0, activation: str = "linear",
                 target_shape: Iterable[int] = ()) -> NodeSpec:
    """An adapter node with only the settings its kind takes (a dense one gets units)."""
    if adapter == "dense":
        return NodeSpec(node_id, "adapter", adapter=adapter, units=units or DEFAULT_ADAPTER_UNITS,
                        activation=activation)
    if adapter in ("reshape", "resizing"):
        return NodeSpec(node_id, "adapter", adapter=adapter, target_shape=tuple(target_shape))
    return NodeSpec(node_id, "adapter", adapter=adapter)


def add_adapter(spec: StackSpec, adapter: str, position: Iterable[float] | None = None, **settings: Any) -> StackSpec:
    """Add an adapter node (flatten, global_average_pooling, reshape, dense, resizing)."""
    return add_node(spec, adapter_node(adapter, adapter, **settings), position)


# ---- edges ----------------------------------------------------------------------------


def connect(spec: StackSpec, source: str, target: str) -> StackSpec:
    """Add the edge `source` -> `target` (after the edges already into `target`: a merge's
    next input).

    A half-drawn graph is fine (the pre-flight check names what is missing, a cycle too);
    only edges no stack can have are refused.

    Raises:
        ValueError: a node does not exist, the edge leaves the output or enters the input,
            joins a node to itself, exists already, or enters a member, adapter or the
            output that already has its one input.
    """
    drawn = graph(spec)
    for end in (source, target):
        if drawn.node(end) is None:
            raise ValueError(f"Cannot connect '{source}' -> '{target}': there is no node '{end}'. "
                             f"Nodes: {drawn.ids()}.")
    if source == target:
        raise ValueError(f"Cannot connect '{source}' to itself: a stack flows from the input to the output.")
    if drawn.node(source).kind == "output":
        raise ValueError(f"Cannot connect the output to '{target}': the output feeds nothing. Drag from the "
                         f"bottom handle of a node to the top handle of another.")
    if drawn.node(target).kind == "input":
        raise ValueError(f"Cannot connect '{source}' to the input: the input takes no incoming edge.")
    if (source, target) in edge_pairs(spec) and drawn.node(target).kind != "merge":
        raise ValueError(f"'{source}' already feeds '{target}'.")
    fed_by = drawn.inputs_of(target)
    if drawn.node(target).kind in SINGLE_INPUT_KINDS and fed_by:
        what = "The output" if target == rules.OUTPUT else f"'{target}'"
        raise ValueError(f"{what} already takes its input from '{fed_by[0]}' and takes only one. Delete that "
                         f"edge first, or combine both with a merge node (concatenate, add, ...).")
    spec = pin_positions(as_graph(spec))
    return spec.replace(graph=dataclasses.replace(spec.graph, edges=spec.graph.edges + (EdgeSpec(source, target),)))


def delete_edge(spec: StackSpec, source: str, target: str) -> StackSpec:
    """Remove the edge `source` -> `target` (its last copy, if a merge takes it twice).

    Raises:
        ValueError: there is no such edge.
    """
    pairs = edge_pairs(spec)
    if (source, target) not in pairs:
        raise ValueError(f"There is no edge '{source}' -> '{target}' to delete (it may have been deleted "
                         f"already). Edges: {pairs}.")
    spec = pin_positions(as_graph(spec))
    index = len(pairs) - 1 - pairs[::-1].index((source, target))
    edges = spec.graph.edges[:index] + spec.graph.edges[index + 1:]
    return spec.replace(graph=dataclasses.replace(spec.graph, edges=edges))


def move_input(spec: StackSpec, target: str, position: int, offset: int) -> StackSpec:
    """Move the `position`-th edge into `target` (a merge's input order) `offset` places."""
    spec = as_graph(spec)
    edges = list(spec.graph.edges)
    into = [index for index, edge in enumerate(edges) if edge.target == target]
    if not 0 <= position < len(into):
        return spec
    other = min(max(position + offset, 0), len(into) - 1)
    first, second = into[position], into[other]
    edges[first], edges[second] = edges[second], edges[first]
    return spec.replace(graph=dataclasses.replace(spec.graph, edges=tuple(edges)))


def apply_fix(spec: StackSpec, fix: Iterable[Mapping[str, Any]], edge: Iterable[str] | None = None) -> StackSpec:
    """Accept a pre-flight fix: adapter nodes inserted on `edge` of a graph
    (`core.spec.rules.insert_on_edge`), or a preset's AdapterSpec entries (spec_edit.apply_fix)."""
    if is_graph(spec) and edge is not None:
        source, target = edge
        spec = pin_positions(spec)
        fixed = rules.insert_on_edge(spec, source, target, [_adapter_item(item) for item in fix])
        return _clear_of_others(fixed, [node_id for node_id in fixed.graph.ids() if node_id not in spec.layout],
                                source)
    return spec_edit.apply_fix(spec, fix)


def _adapter_item(item: Mapping[str, Any]) -> Mapping[str, Any] | NodeSpec:
    """A fix's item as an adapter node: a problem's fix holds AdapterSpec dicts (after, kind,
    ...), an edge's fix adapter node dicts; the node is named on insertion."""
    return NodeSpec.from_adapter("", AdapterSpec.from_dict(item)) if "after" in item else item


def _clear_of_others(spec: StackSpec, placed: list[str], near: str) -> StackSpec:
    """Nodes just inserted between two others, moved where they cover no other node: their
    place on the edge, else a row below `near`, else further right on that row."""
    layout = {key: list(value) for key, value in spec.layout.items()}
    for node_id in placed:
        others = [position for other, position in layout.items() if other != node_id]
        x, y = layout.get(node_id, layout.get(near, [0, 0]))
        near_x, near_y = layout.get(near, [x, y])
        candidates = [[x, y]] + [[near_x + step * COLUMN_GAP, near_y + ROW_GAP] for step in range(len(layout) + 1)]
        layout[node_id] = [round(v) for v in next(c for c in candidates if all(
            abs(c[0] - ox) >= NODE_SIZE[0] or abs(c[1] - oy) >= NODE_SIZE[1] for ox, oy in others))]
    return spec.replace(layout=layout)


# ---- deleting and changing nodes ------------------------------------------------------


def delete_node(spec: StackSpec, node_id: str) -> StackSpec:
    """Remove a node, its edges, its position, and the trainability and fine-tune entries
    that name it.

    Raises:
        ValueError: `node_id` is the input or the output (a stack has one of each), or no node.
    """
    if node_id in (rules.INPUT, rules.OUTPUT):
        raise ValueError(f"The {node_id} cannot be deleted: every stack has one input and one output.")
    if node_id not in node_ids(spec):
        raise ValueError(f"There is no node '{node_id}' to delete (it may have been deleted already).")
    spec = pin_positions(as_graph(spec))
    drawn = spec.graph
    tune = spec.train.fine_tune
    if tune is not None and node_id in tune.members:
        tune = dataclasses.replace(tune, members=tuple(m for m in tune.members if m != node_id))
    return spec.replace(
        graph=dataclasses.replace(drawn, nodes=tuple(n for n in drawn.nodes if n.id != node_id),
                                  edges=tuple(e for e in drawn.edges if node_id not in e.pair())),
        layout={key: value for key, value in spec.layout.items() if key != node_id},
        trainability=tuple(r for r in spec.trainability if r.member != node_id),
        train=dataclasses.replace(spec.train, fine_tune=tune),
    )


def replace_node(spec: StackSpec, node: NodeSpec) -> StackSpec:
    """Put `node` where the graph node of the same id is (a merge's kind, an adapter's settings).

    Raises:
        ValueError: no node has that id.
    """
    spec = as_graph(spec)
    if spec.graph.node(node.id) is None:
        raise ValueError(f"There is no node '{node.id}' to change (it may have been deleted).")
    nodes = tuple(node if n.id == node.id else n for n in spec.graph.nodes)
    return spec.replace(graph=dataclasses.replace(spec.graph, nodes=nodes))


def check_id(spec: StackSpec, new: str, current: str) -> None:
    """Raise ValueError saying why `new` cannot be the id of node `current`."""
    others = [node_id for node_id in node_ids(spec) if node_id != current]
    if is_graph(spec):
        if new in (rules.INPUT, rules.OUTPUT) or not rules.MEMBER_NAME.match(new):
            raise ValueError(rules.member_name_problem(new) or f"Node id '{new}' is reserved; choose another.")
        if new in others:
            raise ValueError(f"A node named '{new}' already exists; node names must be unique, so choose another.")
    else:
        spec_edit.check_name(spec, new, current)


def rename_node(spec: StackSpec, old: str, new: str) -> StackSpec:
    """Rename a node and every reference to it: edges, its position, trainability rules and
    fine-tune members (a member node's member follows). A preset's member is renamed in place.

    Raises:
        ValueError: `new` is not a valid name, is taken, or `old` is the input or output.
    """
    if old == new:
        return spec
    if old in (rules.INPUT, rules.OUTPUT):
        raise ValueError(f"The {old} keeps its name.")
    check_id(spec, new, old)
    layout = {new if key == old else key: value for key, value in spec.layout.items()}
    if not is_graph(spec):
        return spec_edit.rename_member(spec, old, new).replace(layout=layout)

    def swap(value: str) -> str:
        return new if value == old else value

    def renamed(node: NodeSpec) -> NodeSpec:
        if node.id != old:
            return node
        member = dataclasses.replace(node.member, name=new) if node.member is not None else None
        return dataclasses.replace(node, id=new, member=member)

    drawn = spec.graph
    tune = spec.train.fine_tune
    if tune is not None:
        tune = dataclasses.replace(tune, members=tuple(swap(m) for m in tune.members))
    return spec.replace(
        graph=dataclasses.replace(drawn, nodes=tuple(renamed(n) for n in drawn.nodes),
                                  edges=tuple(EdgeSpec(swap(e.source), swap(e.target)) for e in drawn.edges)),
        layout=layout,
        trainability=tuple(dataclasses.replace(r, member=swap(r.member)) for r in spec.trainability),
        train=dataclasses.replace(spec.train, fine_tune=tune),
    )


def replace_member(spec: StackSpec, name: str, member: MemberSpec) -> StackSpec:
    """Put `member` where the member `name` is (its parameters, source, trainability); a new
    name renames the node and every reference. A preset stays a preset."""
    if member.name != name:
        spec = rename_node(spec, name, member.name)
    if not is_graph(spec):
        return spec_edit.replace_member(spec, member.name, member)
    node = spec.graph.node(member.name)
    return replace_node(spec, dataclasses.replace(node, member=member))
