"""Rules of a stack that need no Keras: names, heads, the edges of a stack, fixes, fine-tuning.

Both sides use these: `core.build` when it builds a stack, the dashboard when it edits or
draws one, so the two never disagree. Each rule is written here once:

- member names: `MEMBER_NAME`, `RESERVED_NAMES`, `member_name_problem` (from `core.spec.names`);
- heads: `needs_head`, `allows_head`;
- how each mode wires its members: `stack_edges` (producer -> consumer, in the names
  adapters use), `on_edge` (which adapters sit on an edge), `adapter_placement_problem`,
  `node_label` (a node as messages name it);
- accepting a fix: `accept_fix` (a preset's AdapterSpec entries), `insert_on_edge` (adapter
  nodes on an edge of a graph);
- fine-tuning: `earliest_fine_tune_start`, `default_fine_tune_start`;
- trainability rules: `compile_layer_pattern`, `layer_pattern_matches`.

Example:
    >>> stack_edges(StackSpec(members=(MemberSpec("a"), MemberSpec("b"))))
    [('input', 'a'), ('a', 'b'), ('b', 'output')]
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping

from core.spec.graph import EdgeSpec, NodeSpec
from core.spec.names import (  # noqa: F401  (the names are rules too: re-exported for core.build and the dashboard)
    ENSEMBLE,
    ENSEMBLE_AVERAGE,
    ENSEMBLE_CONCAT,
    FUSION,
    FUSION_CONCAT,
    INPUT,
    MEMBER_NAME,
    OUTPUT,
    RAW_INPUT_FLATTEN,
    RESERVED_NAMES,
    STEP_LABELS,
    STEPS,
    member_name_problem,
    node_label,
)
from core.spec.schema import GRAPH_MODE, MODE_OPTIONS, AdapterSpec, FineTuneSpec, StackSpec

# ---- heads -----------------------------------------------------------------------------


def needs_head(mode: str, options: Mapping[str, Any]) -> bool:
    """Whether a mode requires a head: fusion, transfer, and ensemble with a meta-head."""
    if mode in ("fusion", "transfer"):
        return True
    return mode == "ensemble" and options.get("combine", MODE_OPTIONS["ensemble"]["combine"]) == "meta_head"


def allows_head(mode: str, options: Mapping[str, Any]) -> bool:
    """Whether a head is used at all: required ones, and the optional last step of a sequential
    stack. A head an averaging ensemble is given is not part of the stack."""
    return mode == "sequential" or needs_head(mode, options)


# ---- the edges of a stack --------------------------------------------------------------

# Fusion's raw input (include_raw_input) is flattened by the fusion step itself: no adapter
# sits on this edge.
RAW_INPUT_EDGE = (INPUT, FUSION)


def stack_edges(spec: StackSpec) -> list[tuple[str, str]]:
    """How the spec's mode wires its members: (producer, consumer) pairs, input to output.

    Nodes are named as adapters name them: member names, "input", "fusion", "ensemble",
    "output". `core.build` adapts a tensor on exactly these edges; the dashboard draws them.
    In mode "graph", the graph's edges (node ids), in their order.
    """
    if spec.mode == GRAPH_MODE:
        return [edge.pair() for edge in spec.graph.edges] if spec.graph is not None else []
    members = [member.name for member in spec.members]
    head = spec.head.name if spec.head is not None and allows_head(spec.mode, spec.options) else None
    top = [head, OUTPUT] if head else [OUTPUT]
    if spec.mode in ("sequential", "transfer"):
        chain = [INPUT, *members, *top]
        return list(zip(chain, chain[1:]))
    step = FUSION if spec.mode == "fusion" else ENSEMBLE
    edges = [(INPUT, member) for member in members] + [(member, step) for member in members]
    if spec.mode == "fusion" and spec.option("include_raw_input"):
        edges.append(RAW_INPUT_EDGE)
    chain = [step, *top]
    return edges + list(zip(chain, chain[1:]))


def on_edge(adapter: AdapterSpec, edge: tuple[str, str]) -> bool:
    """Whether `adapter` sits on `edge`: after its producer, before its consumer (or before
    any consumer when `adapter.before` is empty). None sits on the raw input's edge."""
    producer, consumer = edge
    return edge != RAW_INPUT_EDGE and adapter.after == producer and adapter.before in ("", consumer)


def adapter_placement_problem(spec: StackSpec, adapter: AdapterSpec) -> str | None:
    """Why an accepted adapter sits on no edge of the stack, as a sentence; None when it sits on one."""
    edges = [edge for edge in stack_edges(spec) if edge != RAW_INPUT_EDGE]
    if any(on_edge(adapter, edge) for edge in edges):
        return None
    producers = list(dict.fromkeys(producer for producer, _ in edges))
    if adapter.after not in producers:
        return (f"The accepted adapter {adapter.label()} is placed after '{adapter.after}', which is not a member "
                f"or a step that feeds another in mode '{spec.mode}' (adapters can follow {producers}). Remove it.")
    return (f"The adapter {adapter.label()} after '{adapter.after}' is never used: '{adapter.after}' does not "
            f"feed {adapter.before or 'anything'} in mode '{spec.mode}'. Remove it.")


# ---- accepting a fix -------------------------------------------------------------------


def accept_fix(spec: StackSpec, fix: Iterable[AdapterSpec]) -> StackSpec:
    """The spec with a problem's suggested adapters accepted, skipping any it already has.

    Accepting the same fix twice (a double click, a second tab) leaves one copy. In a graph
    spec the fix goes on its edge as adapter nodes (`insert_on_edge`): a graph's fix names
    the edge's nodes in `after` and `before`.
    """
    fix = list(fix)
    if spec.mode == GRAPH_MODE:
        if not fix:
            return spec
        return insert_on_edge(spec, fix[0].after, fix[0].before,
                              [NodeSpec.from_adapter("", adapter) for adapter in fix])
    adapters = list(spec.adapters)
    for adapter in fix:
        if adapter not in adapters:
            adapters.append(adapter)
    return spec.replace(adapters=tuple(adapters))


def insert_on_edge(spec: StackSpec, source: str, target: str,
                   adapters: Iterable[NodeSpec | Mapping[str, Any]]) -> StackSpec:
    """The graph spec with adapter nodes inserted on its edge `source` -> `target`, in order.

    The edge keeps its place among the edges into `target` (a merge's input order). A node
    id already in the graph gets a number ("adapter_features_flatten_2"); a node without one
    is named "adapter_<source>_<kind>". Inserting the same fix twice (a double click, a
    second tab) leaves one copy: when the edge is gone and the same adapters already sit
    between `source` and `target`, the spec comes back unchanged. Inserted nodes get a
    position between the edge's ends when both have one in `spec.layout`.

    Args:
        spec: a spec in mode "graph".
        source, target: the edge's nodes.
        adapters: adapter nodes (NodeSpec or their dicts, as a report's edge `fix` holds them).

    Returns:
        The new spec.

    Raises:
        ValueError: the spec is not a graph, or has no edge `source` -> `target`; or an
            item is not an adapter node.
    """
    if spec.mode != GRAPH_MODE or spec.graph is None:
        raise ValueError(f"insert_on_edge works on a graph spec (mode 'graph'), received mode '{spec.mode}'. "
                         f"For a preset, accept the fix with accept_fix, or turn it into a graph first "
                         f"(core.spec.presets.to_graph_spec).")
    graph = spec.graph
    nodes = [item if isinstance(item, NodeSpec)
             else NodeSpec.from_dict({"id": "", "kind": "adapter", **item}, where="adapter") for item in adapters]
    for node in nodes:
        if node.kind != "adapter":
            raise ValueError(f"insert_on_edge inserts adapter nodes, received node '{node.id}' of kind "
                             f"'{node.kind}'.")
    position = next((index for index, edge in enumerate(graph.edges) if edge.pair() == (source, target)), None)
    if position is None:
        if _already_between(graph, source, target, nodes):
            return spec
        raise ValueError(f"The graph has no edge '{source}' -> '{target}' to insert "
                         f"{' + '.join(node.adapter_spec().label() for node in nodes)} on. "
                         f"Edges: {[edge.pair() for edge in graph.edges]}.")
    taken = set(graph.ids())
    named = []
    for node in nodes:
        base = node.id or f"adapter_{source}_{node.adapter}"
        node_id, number = base, 2
        while node_id in taken:
            node_id, number = f"{base}_{number}", number + 1
        taken.add(node_id)
        named.append(dataclasses.replace(node, id=node_id))
    chain = [source, *(node.id for node in named), target]
    edges = list(graph.edges)
    edges[position:position + 1] = [EdgeSpec(a, b) for a, b in zip(chain, chain[1:])]
    layout = dict(spec.layout)
    if source in layout and target in layout:
        (x0, y0), (x1, y1) = layout[source], layout[target]
        for step, node in enumerate(named, start=1):
            share = step / (len(named) + 1)
            layout[node.id] = [x0 + (x1 - x0) * share, y0 + (y1 - y0) * share]
    return spec.replace(graph=dataclasses.replace(graph, nodes=graph.nodes + tuple(named), edges=tuple(edges)),
                        layout=layout)


def _already_between(graph, source: str, target: str, nodes: list[NodeSpec]) -> bool:
    """Whether a chain of adapters like `nodes` (ids aside) already leads from `source` to `target`."""
    def same(node: NodeSpec, other: NodeSpec | None) -> bool:
        return other is not None and dataclasses.replace(other, id=node.id) == node

    for first in graph.consumers_of(source):
        current, matched = first, True
        for node in nodes:
            candidate = graph.node(current)
            if not same(node, candidate) or len(graph.consumers_of(current)) != 1:
                matched = False
                break
            current = graph.consumers_of(current)[0]
        if matched and current == target:
            return True
    return False


# ---- fine-tuning -----------------------------------------------------------------------


def earliest_fine_tune_start() -> int:
    """The first epoch a fine-tune phase may start at (FineTuneSpec's range on start_epoch)."""
    return int(FineTuneSpec.range_of("start_epoch").minimum)


def default_fine_tune_start(epochs: int) -> int:
    """The epoch a new fine-tune phase starts at: the second half of a run of `epochs`, so the
    head first trains on the frozen base, and never before `earliest_fine_tune_start()`.

    Example:
        >>> default_fine_tune_start(10), default_fine_tune_start(1)
        (6, 2)
    """
    return max(earliest_fine_tune_start(), int(epochs) // 2 + 1)


# ---- trainability rules ----------------------------------------------------------------


def compile_layer_pattern(pattern: str, where: str = "") -> re.Pattern:
    """A LayerRule's `layers` regex, compiled.

    Raises:
        ValueError: not a valid regular expression; the message starts with `where` if given.
    """
    try:
        return re.compile(pattern)
    except re.error as error:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}'{pattern}' is not a valid regular expression ({error}).") from None


def layer_pattern_matches(pattern: re.Pattern, path: str) -> bool:
    """Whether a LayerRule's regex selects the layer at `path` ("member/.../layer", relative to
    its member): it fully matches the path or the layer's own name."""
    return bool(pattern.fullmatch(path) or pattern.fullmatch(path.rsplit("/", 1)[-1]))
