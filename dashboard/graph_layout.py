"""Where the nodes of a drawn stack sit, as pure functions: positions never change the model.

Positions live in `spec.layout` (canvas pixels, node id -> [x, y]); a node without one is
placed by `positions`, a layered layout computed from the graph alone, so an imported spec
is drawn without being changed. `canvas_edits` reads what the canvas sent back (edges drawn,
nodes moved) against what it was shown. dashboard/graph_edit.py keeps the edits of the
topology; both are free of Streamlit and of the canvas component.

Example:
    >>> layered_positions(["input", "features", "output"], [("input", "features"), ("features", "output")])
    {'input': [0, 0], 'features': [0, 150], 'output': [0, 300]}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterable, Mapping

from core.spec import StackSpec, rules
from core.spec.presets import graph_of

# The layered layout: rows from the input down to the output, this far apart (canvas pixels).
ROW_GAP = 150
COLUMN_GAP = 280
# The room a node takes on the canvas (it is drawn 230 pixels wide, about 90 high).
NODE_SIZE = (240, 100)


# ---- positions --------------------------------------------------------------------------


def move(spec: StackSpec, moved: Mapping[str, Iterable[float]]) -> StackSpec:
    """Nodes placed at new positions (whole canvas pixels). Only the layout changes, in any
    mode; positions of nodes the graph does not have are ignored."""
    known = set(graph_of(spec).ids())
    layout = dict(spec.layout)
    for node_id, position in moved.items():
        if node_id in known:
            layout[node_id] = [round(v) for v in position]
    return spec if layout == spec.layout else spec.replace(layout=layout)


def auto_layout(spec: StackSpec) -> StackSpec:
    """Forget every position: the drawing is laid out from the graph (`positions`)."""
    return spec.replace(layout={}) if spec.layout else spec


def pin_positions(spec: StackSpec) -> StackSpec:
    """Every node's current position written into the layout, so an edit of the topology
    does not move the nodes the user sees (the layered layout would follow the new graph)."""
    placed = positions(spec)
    return spec if placed == spec.layout else spec.replace(layout=placed)


def positions(spec: StackSpec) -> dict[str, list[int]]:
    """Each node's position: its place in `spec.layout`, else its place in a layered layout."""
    drawn = graph_of(spec)
    layered = layered_positions(drawn.ids(), [edge.pair() for edge in drawn.edges])
    return {node_id: [round(v) for v in spec.layout.get(node_id, layered[node_id])] for node_id in drawn.ids()}


def layered_positions(ids: list[str], edges: list[tuple[str, str]]) -> dict[str, list[int]]:
    """A top-down layered layout: each node one row below the lowest node that feeds it (the
    input on top, the output on the bottom row), each row ordered by where its feeders are.

    Cycles and unknown nodes are tolerated (a half-drawn graph is drawn too).
    """
    known = set(ids)
    edges = [(s, t) for s, t in edges if s in known and t in known and s != t]
    row = {node_id: 0 for node_id in ids}
    # Longest path by relaxation; len(ids) rounds bound it on a graph with a cycle.
    for _ in range(len(ids)):
        changed = False
        for source, target in edges:
            if target != rules.INPUT and row[target] < row[source] + 1 and row[source] + 1 < len(ids):
                row[target], changed = row[source] + 1, True
        if not changed:
            break
    if rules.OUTPUT in row:
        row[rules.OUTPUT] = max([row[n] for n in ids if n != rules.OUTPUT] + [0]) + 1
    rows: dict[int, list[str]] = {}
    for node_id in ids:
        rows.setdefault(row[node_id], []).append(node_id)
    column: dict[str, float] = {}
    for number in sorted(rows):
        members = rows[number]
        feeders = {n: [column[s] for s, t in edges if t == n and s in column] for n in members}
        members.sort(key=lambda n: (sum(feeders[n]) / len(feeders[n]) if feeders[n] else float("inf"),
                                    ids.index(n)))
        for index, node_id in enumerate(members):
            column[node_id] = index - (len(members) - 1) / 2
    return {node_id: [round(column[node_id] * COLUMN_GAP), row[node_id] * ROW_GAP] for node_id in ids}


# ---- what the canvas sends back -------------------------------------------------------------


@dataclass(frozen=True)
class CanvasEdits:
    """What the user did on the canvas since it was last drawn: edges drawn, nodes moved."""

    new_edges: tuple[tuple[str, str], ...] = ()
    moved: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.new_edges or self.moved)


def canvas_edits(spec: StackSpec, shown: Mapping[str, Iterable[float]],
                 returned_positions: Mapping[str, Iterable[float]], drawn_edges: Iterable[tuple[str, str]]
                 ) -> CanvasEdits:
    """Compare what the canvas sent back with what it was shown.

    Args:
        spec: the draft now.
        shown: node id -> the position the canvas was given.
        returned_positions: node id -> the position the canvas has now.
        drawn_edges: (source, target) of the edges the user drew (not those it was given).

    Returns:
        The edges drawn that `spec` does not have yet (in order, once each), and the nodes
        whose position changed by at least a pixel.
    """
    pairs = {edge.pair() for edge in graph_of(spec).edges}
    new_edges = tuple(dict.fromkeys(edge for edge in drawn_edges if tuple(edge) not in pairs))
    moved = {}
    for node_id, position in returned_positions.items():
        x, y = (float(v) for v in position)
        before = shown.get(node_id)
        if before is not None and (abs(x - before[0]) >= 1 or abs(y - before[1]) >= 1):
            moved[node_id] = [round(x), round(y)]
    return CanvasEdits(new_edges=new_edges, moved=moved)


def free_position(spec: StackSpec) -> list[int]:
    """Where a new node goes: below the nodes placed and not yet connected at the right of the
    drawing, or in a new column right of it, a row below its top (edges run downwards)."""
    placed = positions(spec)
    if not placed:
        return [0, 0]
    connected = {node_id for edge in graph_of(spec).edges for node_id in edge.pair()} | {rules.INPUT, rules.OUTPUT}
    right = max(x for x, _ in placed.values())
    waiting = [y for node_id, (x, y) in placed.items() if x == right and node_id not in connected]
    if waiting:
        return [right, max(waiting) + ROW_GAP]
    return [right + COLUMN_GAP, min(y for _, y in placed.values()) + ROW_GAP]
