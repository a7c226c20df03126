"""A stack as a graph: nodes (the input, members, merges, adapters, the output) and edges.

`GraphSpec` is data (frozen dataclasses that round-trip through JSON, like every spec). What
each node holds is checked when it is read (a member node has a member named like the node,
a dense adapter has units); whether the nodes make a stack (one input and one output, no
cycle, every node reached from the input and leading to the output, the right number of
incoming edges) is `GraphSpec.problems()`, asked when the stack is checked, so a canvas can
hold a half-drawn graph. No Keras import.

The order of the edges into a merge node is the order of its inputs (concatenate order).
A node's output may feed several edges (features reused by two branches).

Example:
    >>> graph = GraphSpec.from_dict({
    ...     "nodes": [{"id": "input", "kind": "input"},
    ...               {"id": "mlp", "kind": "member", "member": {"name": "mlp", "template": "mlp"}},
    ...               {"id": "output", "kind": "output"}],
    ...     "edges": [{"source": "input", "target": "mlp"}, {"source": "mlp", "target": "output"}]})
    >>> graph.problems()
    []
    >>> graph.inputs_of("output")
    ['mlp']
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any, Mapping

from core.spec.base import Range, SpecError, _choice, _SpecBase
from core.spec.names import INPUT, MEMBER_NAME, OUTPUT
from core.spec.parts import ADAPTER_KINDS, AdapterSpec, MemberSpec

NODE_KINDS = ("input", "output", "member", "merge", "adapter")
MERGE_KINDS = ("concatenate", "add", "average", "multiply", "maximum")
# Nodes that take exactly one incoming edge; a merge takes two or more, the input none.
SINGLE_INPUT_KINDS = ("member", "adapter", "output")
# The fields each kind of node may set (besides id and kind).
KIND_FIELDS = {
    "input": (), "output": (), "member": ("member",), "merge": ("merge",),
    "adapter": ("adapter", "units", "activation", "target_shape"),
}
ADAPTER_FIELDS = {"dense": ("units", "activation"), "reshape": ("target_shape",), "resizing": ("target_shape",)}


@dataclass(frozen=True)
class NodeSpec(_SpecBase):
    """One node of a graph.

    Example:
        NodeSpec("input", "input")
        NodeSpec("features", "member", member=MemberSpec("features", template="cnn_features"))
        NodeSpec("fusion", "merge", merge="concatenate")
        NodeSpec("proj", "adapter", adapter="dense", units=64)
    """

    id: str
    kind: str
    # kind "member": the member (its name is the node id), with its trainability as in a preset.
    member: MemberSpec | None = None
    # kind "merge": one of MERGE_KINDS.
    merge: str | None = None
    # kind "adapter": one of ADAPTER_KINDS, with units and activation (dense) or target_shape
    # (reshape; resizing takes (height, width)).
    adapter: str | None = None
    units: int = 0
    activation: str = "linear"
    target_shape: tuple[int, ...] = ()

    _choices: typing.ClassVar = {"kind": NODE_KINDS}
    _ranges: typing.ClassVar = {"target_shape": Range(1), "units": Range(0)}

    @classmethod
    def _read(cls, data: Mapping[str, Any], where: str):
        node = super()._read(data, where)
        prefix = f"{where}." if where else ""
        if node.merge is not None:
            _choice(node.merge, MERGE_KINDS, f"{prefix}merge")
        if node.adapter is not None:
            _choice(node.adapter, ADAPTER_KINDS, f"{prefix}adapter")
        return node

    def _check_rules(self, prefix: str) -> None:
        where = prefix.rstrip(".") or "node"
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        allowed = KIND_FIELDS.get(self.kind, ())
        if self.kind == "adapter" and self.adapter is not None:
            allowed = ("adapter",) + ADAPTER_FIELDS.get(self.adapter, ())
        for name in ("member", "merge", "adapter", "units", "activation", "target_shape"):
            if name not in allowed and getattr(self, name) != defaults[name]:
                raise SpecError(f"'{prefix}{name}' does not apply to node '{self.id}' ({self._what()}); "
                                f"remove it. A {self._what()} node takes {list(allowed) or 'no other keys'}.")
        needed = {"member": "member", "merge": "merge", "adapter": "adapter"}.get(self.kind)
        if needed and getattr(self, needed) is None:
            example = {"member": '{"name": "%s", "template": "mlp"}' % self.id,
                       "merge": f"one of {list(MERGE_KINDS)}", "adapter": f"one of {list(ADAPTER_KINDS)}"}[needed]
            article = "an" if self.kind[0] in "aeiou" else "a"
            raise SpecError(f"'{where}' is {article} {self.kind} node without '{needed}': node '{self.id}' needs one "
                            f"({example}).")
        if self.member is not None and self.member.name != self.id:
            raise SpecError(f"'{prefix}member.name' must be the node id '{self.id}', received "
                            f"'{self.member.name}': a member node is named after its member. Rename one of them.")
        if self.adapter == "dense" and self.units < 1:
            raise SpecError(f"'{prefix}units' must be at least 1 for a dense adapter, received {self.units}.")
        if self.adapter in ("reshape", "resizing") and not self.target_shape:
            size = "(height, width)" if self.adapter == "resizing" else "the shape without the batch axis"
            raise SpecError(f"'{prefix}target_shape' is needed by the {self.adapter} adapter '{self.id}': "
                            f"give {size}, e.g. [28, 28, 1].")

    def _what(self) -> str:
        return f"{self.adapter} adapter" if self.kind == "adapter" and self.adapter else self.kind

    def to_dict(self) -> dict[str, Any]:
        """The node as plain data, without the fields left at their defaults (compact JSON)."""
        full = super().to_dict()
        defaults = {f.name: f.default for f in dataclasses.fields(self)}
        return {key: value for key, value in full.items()
                if key in ("id", "kind") or _plain_default(defaults[key]) != value}

    @classmethod
    def from_adapter(cls, node_id: str, adapter: AdapterSpec) -> "NodeSpec":
        """An adapter (a preset's accepted one, or a fix) as a graph node: only the fields its kind uses."""
        fields = {"dense": {"units": adapter.units, "activation": adapter.activation},
                  "reshape": {"target_shape": tuple(adapter.target_shape)},
                  "resizing": {"target_shape": tuple(adapter.target_shape)}}.get(adapter.kind, {})
        return cls(node_id, "adapter", adapter=adapter.kind, **fields)

    def adapter_spec(self, after: str = "", before: str = "") -> AdapterSpec:
        """An adapter node as the AdapterSpec that core.build makes its layer from."""
        return AdapterSpec(after=after or self.id, before=before, kind=self.adapter or "flatten",
                           target_shape=self.target_shape, units=self.units, activation=self.activation)

    def label(self) -> str:
        """A short human name: "'features' (cnn_features)", "concatenate", "Flatten"."""
        if self.kind == "member" and self.member is not None:
            what = self.member.template or self.member.source
            return f"'{self.id}' ({what})"
        if self.kind == "merge":
            return f"'{self.id}' ({self.merge})"
        if self.kind == "adapter":
            return f"'{self.id}' ({self.adapter_spec().label()})"
        return self.kind


def _plain_default(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclass(frozen=True)
class EdgeSpec(_SpecBase):
    """An edge: the output of node `source` feeds an input of node `target`."""

    source: str
    target: str

    def pair(self) -> tuple[str, str]:
        return (self.source, self.target)


@dataclass(frozen=True)
class GraphProblem:
    """Why a graph is not a stack: the sentence, and the nodes (and edge) it is about."""

    message: str
    nodes: tuple[str, ...] = ()
    edge: tuple[str, str] | None = None


def _quoted(ids) -> str:
    return ", ".join(f"'{node_id}'" for node_id in ids)


@dataclass(frozen=True)
class GraphSpec(_SpecBase):
    """The nodes and edges of a stack drawn as a graph.

    Example:
        GraphSpec(nodes=(NodeSpec("input", "input"), NodeSpec("output", "output")),
                  edges=(EdgeSpec("input", "output"),))
    """

    nodes: tuple[NodeSpec, ...] = ()
    edges: tuple[EdgeSpec, ...] = ()

    # -- reading the graph --------------------------------------------------------------

    def node(self, node_id: str) -> NodeSpec | None:
        """The (first) node with id `node_id`, or None."""
        return next((node for node in self.nodes if node.id == node_id), None)

    def ids(self) -> list[str]:
        return [node.id for node in self.nodes]

    def inputs_of(self, node_id: str) -> list[str]:
        """The sources of the edges into `node_id`, in edge order (a merge's input order)."""
        return [edge.source for edge in self.edges if edge.target == node_id]

    def consumers_of(self, node_id: str) -> list[str]:
        """The targets of the edges out of `node_id`, in edge order."""
        return [edge.target for edge in self.edges if edge.source == node_id]

    def members(self) -> tuple[MemberSpec, ...]:
        """The members of the member nodes, in node order."""
        return tuple(node.member for node in self.nodes if node.kind == "member" and node.member is not None)

    def order(self) -> list[str]:
        """Node ids in an order where every node comes after the nodes that feed it, ties in
        node order; nodes on a cycle (or fed from one) are left out. Edges naming a missing
        node are ignored."""
        known = set(self.ids())
        edges = [edge for edge in self.edges if edge.source in known and edge.target in known]
        waiting = {node_id: 0 for node_id in known}
        for edge in edges:
            waiting[edge.target] += 1
        position = {node_id: index for index, node_id in reversed(list(enumerate(self.ids())))}
        ready = sorted((node_id for node_id, count in waiting.items() if count == 0), key=position.get)
        ordered: list[str] = []
        while ready:
            node_id = ready.pop(0)
            ordered.append(node_id)
            for edge in edges:
                if edge.source == node_id:
                    waiting[edge.target] -= 1
                    if waiting[edge.target] == 0:
                        ready.append(edge.target)
                        ready.sort(key=position.get)
        return ordered

    # -- what makes a graph a stack -------------------------------------------------------

    def problems(self) -> list[GraphProblem]:
        """Everything that keeps this graph from being a stack, each naming its nodes.

        Refused: duplicate ids, a node id that is not a name, no or two input/output nodes,
        an edge naming a node that does not exist, an edge into the input or out of the
        output, a member/adapter/output without exactly one incoming edge, a merge with
        fewer than two, a cycle, a node nothing reaches from the input, a node with no path
        to the output, no path from the input to the output.

        Returns:
            The problems, [] for a graph that can be built.
        """
        found: list[GraphProblem] = []
        ids = self.ids()
        for node_id in dict.fromkeys(ids):
            count = ids.count(node_id)
            if count > 1:
                found.append(GraphProblem(f"Node id '{node_id}' is used by {count} nodes; node ids must be "
                                          f"unique. Rename all but one.", (node_id,)))
        found += self._id_problems()
        known = set(ids)
        edges = []
        for edge in self.edges:
            missing = [end for end in edge.pair() if end not in known]
            if missing:
                found.append(GraphProblem(
                    f"The edge '{edge.source}' -> '{edge.target}' names {_quoted(missing)}, which "
                    f"{'is not a node' if len(missing) == 1 else 'are not nodes'} of the graph. Nodes: "
                    f"{sorted(known)}. Remove the edge or add the node.", tuple(missing), edge.pair()))
            else:
                edges.append(edge)
        found += self._degree_problems(edges)
        found += self._cycle_problems(edges)
        found += self._reach_problems(edges)
        return found

    def _id_problems(self) -> list[GraphProblem]:
        found = []
        for kind, fixed in (("input", INPUT), ("output", OUTPUT)):
            nodes = [node for node in self.nodes if node.kind == kind]
            if not nodes:
                found.append(GraphProblem(f"The graph has no {kind} node: add {{\"id\": \"{fixed}\", \"kind\": "
                                          f"\"{kind}\"}}.", ()))
            elif len(nodes) > 1:
                found.append(GraphProblem(f"The graph has {len(nodes)} {kind} nodes ({_quoted(n.id for n in nodes)}); "
                                          f"a stack has exactly one {kind}. Remove all but one.",
                                          tuple(n.id for n in nodes)))
        for node in self.nodes:
            fixed = {"input": INPUT, "output": OUTPUT}.get(node.kind)
            if fixed is not None and node.id != fixed:
                found.append(GraphProblem(f"The {node.kind} node must have id '{fixed}', received '{node.id}'. "
                                          f"Rename it to '{fixed}'.", (node.id,)))
            elif fixed is None and node.id in (INPUT, OUTPUT):
                found.append(GraphProblem(f"Node id '{node.id}' is reserved for the {node.id} node, but names a "
                                          f"{node.kind} node; choose another id.", (node.id,)))
            elif fixed is None and not MEMBER_NAME.match(node.id):
                found.append(GraphProblem(f"Node id '{node.id}' is not allowed: use a letter first, then letters, "
                                          f"digits or '_' (at most 64 characters).", (node.id,)))
        return found

    def _degree_problems(self, edges: list[EdgeSpec]) -> list[GraphProblem]:
        found = []
        for node in self.nodes:
            sources = [edge.source for edge in edges if edge.target == node.id]
            consumers = [edge.target for edge in edges if edge.source == node.id]
            if node.kind == "input" and sources:
                found.append(GraphProblem(f"The input takes no incoming edge, but {_quoted(sources)} feeds it. "
                                          f"Remove the edge.", (node.id, *sources), (sources[0], node.id)))
            if node.kind == "output" and consumers:
                found.append(GraphProblem(f"The output feeds nothing, but it feeds {_quoted(consumers)}. Remove "
                                          f"the edge.", (node.id, *consumers), (node.id, consumers[0])))
            what = f"{node.kind} '{node.id}'" if node.kind != "output" else "the output"
            if node.kind in SINGLE_INPUT_KINDS and not sources:
                found.append(GraphProblem(f"The input of {what} is not connected: nothing feeds it. Connect "
                                          f"the output of a node to it, or delete it.", (node.id,)))
            elif node.kind in SINGLE_INPUT_KINDS and len(sources) > 1:
                found.append(GraphProblem(
                    f"{what[0].upper()}{what[1:]} has {len(sources)} incoming edges (from {_quoted(sources)}), but "
                    f"takes exactly one. Combine them first with a merge node (concatenate, add, average, "
                    f"multiply, maximum), or remove all but one.", (node.id, *sources)))
            elif node.kind == "merge" and len(sources) < 2:
                fed = f"only {_quoted(sources)} feeds it" if sources else "nothing feeds it"
                found.append(GraphProblem(f"Merge '{node.id}' ({node.merge}) combines two or more inputs, but "
                                          f"{fed}. Connect another node to it, or delete it.",
                                          (node.id, *sources)))
        return found

    def _cycle_problems(self, edges: list[EdgeSpec]) -> list[GraphProblem]:
        """One problem per cycle found (each names the nodes on it, in order)."""
        following: dict[str, list[str]] = {}
        for edge in edges:
            following.setdefault(edge.source, []).append(edge.target)
        found, done, reported = [], set(), set()
        for start in self.ids():
            if start in done:
                continue
            path, on_path = [], set()
            stack = [(start, iter(following.get(start, ())))]
            path.append(start)
            on_path.add(start)
            while stack:
                node_id, children = stack[-1]
                child = next(children, None)
                if child is None:
                    stack.pop()
                    path.pop()
                    on_path.discard(node_id)
                    done.add(node_id)
                elif child in on_path:
                    cycle = path[path.index(child):]
                    key = frozenset(cycle)
                    if key not in reported:
                        reported.add(key)
                        loop = " -> ".join(f"'{n}'" for n in cycle + [child])
                        found.append(GraphProblem(f"The graph has a cycle: {loop}. A stack flows from the input "
                                                  f"to the output; remove one of these edges.", tuple(cycle)))
                elif child not in done:
                    stack.append((child, iter(following.get(child, ()))))
                    path.append(child)
                    on_path.add(child)
        return found

    def _reach_problems(self, edges: list[EdgeSpec]) -> list[GraphProblem]:
        """Nodes the input does not reach, nodes that reach no output, no path input -> output.

        A node whose input is not connected already has its problem (`_degree_problems`);
        it is not named again here.
        """
        forward: dict[str, list[str]] = {}
        backward: dict[str, list[str]] = {}
        for edge in edges:
            forward.setdefault(edge.source, []).append(edge.target)
            backward.setdefault(edge.target, []).append(edge.source)
        inputs = [node.id for node in self.nodes if node.kind == "input"]
        outputs = [node.id for node in self.nodes if node.kind == "output"]
        reached = _walk(inputs, forward)
        leads_out = _walk(outputs, backward)
        unconnected = {node.id for node in self.nodes
                       if node.kind in SINGLE_INPUT_KINDS + ("merge",) and node.id not in backward}
        found = []
        if inputs and outputs and not set(outputs) & reached:
            found.append(GraphProblem("There is no path from the input to the output: connect the input, "
                                      "through the members, to the output.", (inputs[0], outputs[0])))
        not_reached = [node.id for node in self.nodes
                       if node.kind not in ("input", "output") and node.id not in reached
                       and node.id not in unconnected]
        if not_reached:
            found.append(GraphProblem(f"Nothing from the input reaches {_quoted(not_reached)}: "
                                      f"{'it is' if len(not_reached) == 1 else 'they are'} fed only by nodes the "
                                      f"input does not feed. Connect the input to them, or delete them.",
                                      tuple(not_reached)))
        dead_ends = [node.id for node in self.nodes
                     if node.kind not in ("input", "output") and node.id not in leads_out
                     and node.id not in unconnected]
        if dead_ends:
            found.append(GraphProblem(f"{_quoted(dead_ends)} {'has' if len(dead_ends) == 1 else 'have'} no path to "
                                      f"the output: {'its' if len(dead_ends) == 1 else 'their'} result is never "
                                      f"used. Connect {'it' if len(dead_ends) == 1 else 'them'} onward to the "
                                      f"output, or delete {'it' if len(dead_ends) == 1 else 'them'}.",
                                      tuple(dead_ends)))
        return found


def _walk(starts: list[str], following: dict[str, list[str]]) -> set[str]:
    seen, pending = set(starts), list(starts)
    while pending:
        for child in following.get(pending.pop(), ()):
            if child not in seen:
                seen.add(child)
                pending.append(child)
    return seen
