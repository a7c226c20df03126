"""The four modes as presets: each produces the graph its stack is, and one builder builds graphs.

`graph_of(spec)` is the graph of any spec: a graph spec's own graph, or the graph a preset
(sequential, fusion, transfer, ensemble) wires, with its accepted adapters as adapter nodes
on their edges. Node ids keep the layer names a preset always had: members by name, the
fusion's "fusion_concat" (fed by the members and, with include_raw_input, by
`input -> "raw_input_flatten"`), the ensemble's "ensemble_average" or "ensemble_concat",
adapters "adapter_<after>_<kind>". `to_graph_spec(spec)` turns a preset into the same stack
in mode "graph" (what the canvas does on the first edit of the topology).

`stack_graph(spec)` is what the builder reads: the graph, plus how the preset names its
nodes in adapters and messages ("fusion_concat" is "the fusion"), which accepted adapter
each adapter node is, what the preset asks of a merge's inputs (feature vectors for a
fusion, predictions for an ensemble), and why an unfinished preset cannot be built yet
(the messages of the mode builders before graphs). No Keras import.

Example:
    >>> spec = StackSpec(mode="fusion", members=(MemberSpec("features", template="cnn_features"),),
    ...                  head=MemberSpec("head", template="dense_head"), options={"include_raw_input": True})
    >>> [edge.pair() for edge in graph_of(spec).edges]
    [('input', 'features'), ('features', 'fusion_concat'), ('input', 'raw_input_flatten'),
     ('raw_input_flatten', 'fusion_concat'), ('fusion_concat', 'head'), ('head', 'output')]
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from core.spec import rules
from core.spec.graph import EdgeSpec, GraphSpec, NodeSpec
from core.spec.parts import AdapterSpec, MemberSpec
from core.spec.schema import GRAPH_MODE, StackSpec

# What a preset asks of each input of its combining node (`StackGraph.input_needs`).
NEEDS_VECTOR, NEEDS_PREDICTIONS = "vector", "predictions"


@dataclass(frozen=True)
class StackGraph:
    """The graph of a spec and what its preset adds to it, for the builder.

    graph: the nodes and edges to build.
    steps: node id -> the name the preset's adapters and messages use for it, where the two
        differ ("fusion_concat" -> "fusion"); empty for a graph spec.
    adapter_indexes: adapter node id -> the index of its accepted adapter in `spec.adapters`.
    input_needs: merge node id -> NEEDS_VECTOR or NEEDS_PREDICTIONS: what the preset asks of
        every input of its combining step, beyond what the merge itself needs.
    problems: (where, message) for a preset that is not finished (too few members, no
        head); its graph then leaves out what is missing, and it is not built.
    """

    graph: GraphSpec
    steps: dict[str, str] = field(default_factory=dict)
    adapter_indexes: dict[str, int] = field(default_factory=dict)
    input_needs: dict[str, str] = field(default_factory=dict)
    problems: tuple[tuple[str, str], ...] = ()

    def name(self, node_id: str) -> str:
        """The node as adapters name it: its preset step ("fusion"), or its id."""
        return self.steps.get(node_id, node_id)


def graph_of(spec: StackSpec) -> GraphSpec:
    """The graph of `spec`: its own in mode "graph", the preset's graph otherwise.

    Example:
        >>> [edge.pair() for edge in graph_of(StackSpec(members=(MemberSpec("a"), MemberSpec("b")))).edges]
        [('input', 'a'), ('a', 'b'), ('b', 'output')]
    """
    return stack_graph(spec).graph


def to_graph_spec(spec: StackSpec) -> StackSpec:
    """The same stack as a spec in mode "graph": the preset's graph, with a transfer's frozen
    base as members that do not train (a graph has no freeze_base option).

    A graph spec comes back unchanged. Train settings, dataset, trainability rules (they name
    members, which keep their names), auto_adapters and layout carry over.
    """
    if spec.mode == GRAPH_MODE:
        return spec
    graph = graph_of(spec)
    if spec.mode == "transfer" and spec.option("freeze_base"):
        head = spec.head.name if spec.head is not None else None
        nodes = tuple(
            dataclasses.replace(node, member=dataclasses.replace(node.member, trainable=False))
            if node.member is not None and node.id != head else node
            for node in graph.nodes)
        graph = dataclasses.replace(graph, nodes=nodes)
    return spec.replace(mode=GRAPH_MODE, members=(), head=None, options={}, adapters=(), graph=graph)


def stack_graph(spec: StackSpec) -> StackGraph:
    """The graph of `spec` with what its preset says about it (see `StackGraph`)."""
    if spec.mode == GRAPH_MODE:
        return StackGraph(graph=spec.graph if spec.graph is not None else GraphSpec())
    return _PRESETS[spec.mode](spec)


# ---- the presets -------------------------------------------------------------------------


class _Wiring:
    """Collects a preset's nodes and edges in the order its stack is wired."""

    def __init__(self, spec: StackSpec):
        self.spec = spec
        self.nodes: list[NodeSpec] = [NodeSpec(rules.INPUT, "input")]
        self.edges: list[EdgeSpec] = []
        self.steps: dict[str, str] = {}
        self.adapter_indexes: dict[str, int] = {}
        self.input_needs: dict[str, str] = {}
        self.problems: list[tuple[str, str]] = []
        self.ids = {rules.INPUT, rules.OUTPUT}

    def add(self, node: NodeSpec) -> str:
        self.nodes.append(node)
        self.ids.add(node.id)
        return node.id

    def member(self, member: MemberSpec) -> str:
        return self.add(NodeSpec(member.name, "member", member=member))

    def step(self, node_id: str, merge: str, step: str, need: str) -> str:
        self.steps[node_id] = step
        self.input_needs[node_id] = need
        return self.add(NodeSpec(node_id, "merge", merge=merge))

    def connect(self, source: str, target: str) -> None:
        """The edge source -> target, through the accepted adapters the preset puts on it."""
        edge = (self.steps.get(source, source), self.steps.get(target, target))
        for index, adapter in enumerate(self.spec.adapters):
            if rules.on_edge(adapter, edge):
                node_id = self._adapter_id(adapter)
                self.add(NodeSpec.from_adapter(node_id, adapter))
                self.adapter_indexes[node_id] = index
                self.edges.append(EdgeSpec(source, node_id))
                source = node_id
        self.edges.append(EdgeSpec(source, target))

    def _adapter_id(self, adapter: AdapterSpec) -> str:
        base = f"adapter_{adapter.after}_{adapter.kind}"
        node_id, number = base, 2
        while node_id in self.ids:
            node_id, number = f"{base}_{number}", number + 1
        return node_id

    def chain(self, chain: list[MemberSpec], to_output: bool) -> None:
        previous = rules.INPUT
        for member in chain:
            self.member(member)
            self.connect(previous, member.name)
            previous = member.name
        if to_output:
            self.connect(previous, rules.OUTPUT)

    def head(self) -> MemberSpec | None:
        """The head if the mode uses one; a problem when it needs one and has none."""
        spec = self.spec
        if not rules.allows_head(spec.mode, spec.options):
            return None
        if spec.head is None and rules.needs_head(spec.mode, spec.options):
            self.problems.append(("head", f"Mode '{spec.mode}' needs a head on top of the members. "
                                          f"Add one, e.g. the 'dense_head' template."))
        return spec.head

    def done(self) -> StackGraph:
        graph = GraphSpec(nodes=tuple(self.nodes) + (NodeSpec(rules.OUTPUT, "output"),), edges=tuple(self.edges))
        return StackGraph(graph=graph, steps=self.steps, adapter_indexes=self.adapter_indexes,
                          input_needs=self.input_needs, problems=tuple(self.problems))


def _sequential(spec: StackSpec) -> StackGraph:
    wiring = _Wiring(spec)
    head = wiring.head()
    chain = list(spec.members) + ([head] if head is not None else [])
    if len(chain) < 2:
        wiring.problems.append(("members", f"Mode 'sequential' chains two or more members; this stack has "
                                           f"{len(chain)}. Add a member (e.g. a 'dense_head' after a feature "
                                           f"extractor)."))
    wiring.chain(chain, to_output=len(chain) >= 2)
    return wiring.done()


def _transfer(spec: StackSpec) -> StackGraph:
    wiring = _Wiring(spec)
    head = wiring.head()
    if not spec.members:
        wiring.problems.append(("members", "Mode 'transfer' needs a pretrained member (an uploaded model file "
                                           "or an earlier run) under the head."))
    chain = list(spec.members) + ([head] if head is not None else [])
    wiring.chain(chain, to_output=head is not None and bool(spec.members))
    return wiring.done()


def _fusion(spec: StackSpec) -> StackGraph:
    wiring = _Wiring(spec)
    head = wiring.head()
    if not spec.members:
        wiring.problems.append(("members", "Mode 'fusion' needs at least one member whose features are fused."))
        return wiring.done()
    for member in spec.members:
        wiring.member(member)
        wiring.connect(rules.INPUT, member.name)
    wiring.step(rules.FUSION_CONCAT, "concatenate", rules.FUSION, NEEDS_VECTOR)
    for member in spec.members:
        wiring.connect(member.name, rules.FUSION_CONCAT)
    raw = spec.option("include_raw_input")
    if raw:
        # The fusion flattens the raw input itself: no accepted adapter sits on this edge.
        wiring.add(NodeSpec(rules.RAW_INPUT_FLATTEN, "adapter", adapter="flatten"))
        wiring.edges += [EdgeSpec(rules.INPUT, rules.RAW_INPUT_FLATTEN),
                         EdgeSpec(rules.RAW_INPUT_FLATTEN, rules.FUSION_CONCAT)]
    if head is not None and len(spec.members) + bool(raw) < 2:
        wiring.problems.append(("members", "Fusion concatenates two or more feature vectors: add a member, or "
                                           "turn on include_raw_input to fuse a member's features with the raw "
                                           "input."))
    if head is not None:
        wiring.member(head)
        wiring.connect(rules.FUSION_CONCAT, head.name)
        wiring.connect(head.name, rules.OUTPUT)
    return wiring.done()


def _ensemble(spec: StackSpec) -> StackGraph:
    wiring = _Wiring(spec)
    if len(spec.members) < 2:
        wiring.problems.append(("members", f"Mode 'ensemble' combines two or more complete models; this stack "
                                           f"has {len(spec.members)}. Add members such as 'cnn_classifier' or "
                                           f"'mlp_classifier'."))
    head = wiring.head() if len(spec.members) >= 2 else None
    for member in spec.members:
        wiring.member(member)
        wiring.connect(rules.INPUT, member.name)
    average = spec.option("combine") == "average"
    step = rules.ENSEMBLE_AVERAGE if average else rules.ENSEMBLE_CONCAT
    wiring.step(step, "average" if average else "concatenate", rules.ENSEMBLE, NEEDS_PREDICTIONS)
    for member in spec.members:
        wiring.connect(member.name, step)
    complete = len(spec.members) >= 2
    if average and complete:
        wiring.connect(step, rules.OUTPUT)
    elif head is not None and complete:
        wiring.member(head)
        wiring.connect(step, head.name)
        wiring.connect(head.name, rules.OUTPUT)
    return wiring.done()


_PRESETS = {"sequential": _sequential, "fusion": _fusion, "transfer": _transfer, "ensemble": _ensemble}
