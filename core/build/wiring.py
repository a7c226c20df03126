"""The one graph builder: walk a stack's graph from the input and wire each node.

`wire(assembler)` visits the nodes of `assembler.graph` so that every node comes after
the nodes that feed it (`GraphSpec.order`), and wires each by its kind:

- input: the stack's `keras.Input`;
- member: its incoming tensor adapted to what the member accepts, then the member built
  on it and called (`Assembler.call_member`);
- adapter: its layer (named after the node) on the incoming tensor; a preset's accepted
  adapter reports as it always did (an "adapter" problem with its index), a graph's adapter
  node checks its incoming edge like any consumer;
- merge: every input adapted to what the merge takes, then the Keras merge layer, named
  after the node: concatenate (inputs that agree on all but the last axis, or feature
  vectors), add / average / multiply / maximum (inputs of one shape: the first input's,
  or the predictions a preset's ensemble combines);
- output: its incoming tensor adapted to the dataset's task; the model's output.

A node whose inputs could not be built is skipped (its edges are reported as not
checked), so one problem does not hide the others and a half-drawn graph still shows the
shapes of what is connected. The four modes are presets that produce graphs
(`core.spec.presets`), so every stack goes through here.

Example:
    >>> assembler = Assembler(spec, task, None)
    >>> output = wire(assembler)
    >>> model = keras.Model(assembler.input, output)
"""

from __future__ import annotations

from typing import Callable

import keras

from core.build import adapters as adapter_lib
from core.build.adapters import Need
from core.build.assembler import Assembler, _shape
from core.spec import NodeSpec, rules
from core.spec.presets import NEEDS_PREDICTIONS, NEEDS_VECTOR
from core.spec.shapes import format_shape

MERGE_LAYERS: dict[str, Callable[..., keras.layers.Layer]] = {
    "concatenate": keras.layers.Concatenate,
    "add": keras.layers.Add,
    "average": keras.layers.Average,
    "multiply": keras.layers.Multiply,
    "maximum": keras.layers.Maximum,
}
FEATURE_VECTOR = "a feature vector"


def wire(assembler: Assembler):
    """Wire every node of the assembler's graph; returns the output tensor, or None.

    Problems (and an `EdgeReport` per edge) are recorded on the assembler.
    """
    graph = assembler.graph
    incoming: dict[str, list[int]] = {}
    for index, edge in enumerate(graph.edges):
        incoming.setdefault(edge.target, []).append(index)
    nodes = {node.id: node for node in reversed(graph.nodes)}  # a duplicate id: its first node
    for node_id in graph.order():
        node = nodes[node_id]
        edges = incoming.get(node_id, [])
        if node.kind == "input":
            assembler.outputs[node_id] = assembler.input
            continue
        if not _inputs_ready(assembler, node, edges):
            continue
        assembler.outputs[node_id] = _WIRE[node.kind](assembler, node, edges)
    for index, edge in enumerate(graph.edges):
        if index not in assembler.edge_reports:
            assembler.unchecked(index, _why_unchecked(assembler, edge.source, edge.target))
    return assembler.outputs.get(rules.OUTPUT)


def _inputs_ready(assembler: Assembler, node: NodeSpec, edges: list[int]) -> bool:
    """Whether `node` has the incoming edges its kind takes and a tensor on each (or, for a
    merge, on enough to report the ones that fit); the graph's problems say why not."""
    if node.kind == "merge":
        return len(edges) >= 2
    return len(edges) == 1 and assembler.outputs.get(assembler.graph.edges[edges[0]].source) is not None


def _why_unchecked(assembler: Assembler, source: str, target: str) -> str:
    if assembler.outputs.get(source) is None:
        if source not in assembler.graph.ids():
            return f"'{source}' is not a node of the graph."
        return f"{rules.node_label(assembler.name(source))} has no output (see its problem)."
    return f"{rules.node_label(assembler.name(target))} is not wired (see the problems of the graph)."


def _tensor_on(assembler: Assembler, edge_index: int):
    return assembler.outputs.get(assembler.graph.edges[edge_index].source)


# ---- nodes ------------------------------------------------------------------------------------


def _member(assembler: Assembler, node: NodeSpec, edges: list[int]):
    return assembler.call_member(node.member, _tensor_on(assembler, edges[0]), edges[0])


def _output(assembler: Assembler, node: NodeSpec, edges: list[int]):
    return assembler.adapt(_tensor_on(assembler, edges[0]), edges[0], assembler.output_need())


def _adapter(assembler: Assembler, node: NodeSpec, edges: list[int]):
    (edge_index,) = edges
    tensor = _tensor_on(assembler, edge_index)
    source = assembler.graph.edges[edge_index].source
    index = assembler.stack.adapter_indexes.get(node.id)
    if index is not None:
        # A preset's accepted adapter: it applies as it did before graphs; the node it feeds
        # checks the result (Assembler.adapt) and names the adapter if it no longer fits.
        consumer = assembler.name(assembler.chain_end(node.id))
        result = assembler.apply_adapter(tensor, assembler.spec.adapters[index], index=index, consumer=consumer,
                                         name=node.id, edge=(source, node.id))
        need = adapter_need(node)
        assembler.edge_report(edge_index, need, ok=result is not None,
                              message="" if result is not None else assembler.problems[-1].message)
        return result
    spec = node.adapter_spec(after=assembler.name(source))
    tensor = assembler.adapt(tensor, edge_index, adapter_need(node))
    if tensor is None:
        return None
    # The raw input's Flatten in a fusion is part of the fusion step, not an accepted adapter.
    record = assembler.is_graph()
    return assembler.apply_adapter(tensor, spec, record=record, name=node.id, edge=(source, node.id))


def adapter_need(node: NodeSpec) -> Need:
    """What an adapter node accepts (the adapter's own rule, `core.build.adapters.mismatch`)."""
    adapter = node.adapter_spec()
    description = {
        "flatten": "any shape", "dense": "any shape (Dense acts on the last axis)",
        "global_average_pooling": "a sequence or a feature map",
        "reshape": f"{format_shape(adapter.target_shape)} worth of values",
        "resizing": "an image (height, width, channels)",
    }[adapter.kind]

    def problem(shape: tuple) -> str | None:
        reason = adapter_lib.mismatch(adapter, shape)
        return f"({adapter.label()}) {reason}" if reason else None

    return Need(description=description, extra=problem)


def _merge(assembler: Assembler, node: NodeSpec, edges: list[int]):
    tensors = [_tensor_on(assembler, edge_index) for edge_index in edges]
    shapes = [_shape(tensor) if tensor is not None else None for tensor in tensors]
    adapted = []
    for position, (edge_index, tensor) in enumerate(zip(edges, tensors)):
        if tensor is None:
            adapted.append(None)
            continue
        adapted.append(assembler.adapt(tensor, edge_index, merge_need(assembler, node, position, shapes)))
    if any(tensor is None for tensor in adapted):
        return None
    try:
        return MERGE_LAYERS[node.merge](name=node.id)(adapted)
    except ValueError as error:
        assembler.problem("config", assembler.name(node.id), f"{node.merge.capitalize()} '{node.id}' cannot "
                          f"combine {', '.join(format_shape(_shape(t)) for t in adapted)}: {error}")
        return None


def merge_need(assembler: Assembler, node: NodeSpec, position: int, shapes: list[tuple | None]) -> Need:
    """What merge `node` takes on its input number `position`, given the shapes on all its inputs.

    A preset's combining step asks its own: feature vectors (fusion), predictions (ensemble).
    A concatenate takes inputs that agree on all but the last axis, else feature vectors;
    add, average, multiply and maximum take inputs of one shape: the output's when they feed
    it (predictions), else their first input's.
    """
    wanted = assembler.stack.input_needs.get(node.id)
    if wanted == NEEDS_VECTOR:
        return Need(description=FEATURE_VECTOR, ranks=(1,))
    if wanted == NEEDS_PREDICTIONS:
        return assembler.output_need()
    known = [shape for shape in shapes if shape is not None]
    if node.merge == "concatenate":
        leading = {shape[:-1] for shape in known}
        if len(leading) == 1 and len({len(shape) for shape in known}) == 1 and known and len(known[0]) > 1:
            (lead,) = leading
            return Need(description=f"{format_shape(lead + (None,))}, as its other inputs",
                        ranks=(len(lead) + 1,),
                        extra=lambda shape: None if shape[:-1] == lead else f"expects {format_shape(lead + (None,))}")
        return Need(description=FEATURE_VECTOR, ranks=(1,),
                    because="a concatenate joins feature vectors unless all its inputs agree on all but the "
                            "last axis")
    if rules.OUTPUT in assembler.graph.consumers_of(node.id):
        # An elementwise merge keeps its inputs' shape: feeding the output, it combines predictions.
        need = assembler.output_need()
        return Need(shape=need.shape, description=need.description, dense_activation=need.dense_activation,
                    because=f"{node.merge} keeps the shape of its inputs, and its result is the stack's output")
    reference = shapes[0]
    if reference is None:
        return Need(description="the shape of its first input")
    first = assembler.graph.inputs_of(node.id)[0]
    return Need(shape=tuple(reference), description=format_shape(reference),
                because=f"{node.merge} takes inputs of one shape: its first input "
                        f"{rules.node_label(assembler.name(first))} gives {format_shape(reference)}")


_WIRE = {"member": _member, "adapter": _adapter, "merge": _merge, "output": _output}
