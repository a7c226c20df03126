"""core/spec/graph.py: a stack as a graph; what each node holds, and what makes a graph a stack.

Also StackSpec's mode "graph", `graph` and `layout` (schema_version 2), and
core.spec.rules.insert_on_edge.
"""

import json

import pytest

from core.spec import (
    EdgeSpec,
    GraphSpec,
    MemberSpec,
    NodeSpec,
    SpecError,
    StackSpec,
    insert_on_edge,
)


def member_node(name, template="mlp", **params):
    return NodeSpec(name, "member", member=MemberSpec(name, template=template, params=params))


def merge_node(name, merge="concatenate"):
    return NodeSpec(name, "merge", merge=merge)


def adapter_node(name, adapter="flatten", **fields):
    return NodeSpec(name, "adapter", adapter=adapter, **fields)


INPUT, OUTPUT = NodeSpec("input", "input"), NodeSpec("output", "output")


def graph(nodes, edges) -> GraphSpec:
    return GraphSpec(nodes=tuple(nodes), edges=tuple(EdgeSpec(a, b) for a, b in edges))


TWO_TOWER = graph(
    [INPUT, member_node("features", "cnn_features", dense_units=64), adapter_node("flat"), merge_node("fusion"),
     member_node("head", "dense_head"), OUTPUT],
    [("input", "features"), ("input", "flat"), ("features", "fusion"), ("flat", "fusion"), ("fusion", "head"),
     ("head", "output")])


# ---- the data -------------------------------------------------------------------------------


def test_a_graph_spec_round_trips_and_writes_compact_nodes():
    spec = StackSpec(name="two tower", mode="graph", graph=TWO_TOWER, layout={"input": [0, 0], "head": [3.5, 1]})
    assert StackSpec.from_dict(spec.to_dict()) == spec
    assert StackSpec.from_json(spec.to_json()) == spec
    data = json.loads(spec.to_json())
    assert data["schema_version"] == 2
    nodes = data["graph"]["nodes"]
    assert nodes[0] == {"id": "input", "kind": "input"}
    assert nodes[2] == {"id": "flat", "kind": "adapter", "adapter": "flatten"}
    assert nodes[3] == {"id": "fusion", "kind": "merge", "merge": "concatenate"}
    assert data["graph"]["edges"][0] == {"source": "input", "target": "features"}
    dense = NodeSpec.from_dict({"id": "proj", "kind": "adapter", "adapter": "dense", "units": 64})
    assert dense.to_dict() == {"id": "proj", "kind": "adapter", "adapter": "dense", "units": 64}
    assert NodeSpec.from_dict(dense.to_dict()) == dense


def test_the_contracts_node_examples_read():
    for data in [
        {"id": "features", "kind": "member",
         "member": {"name": "features", "template": "cnn_features", "params": {"dense_units": 64}}},
        {"id": "flat", "kind": "adapter", "adapter": "flatten"},
        {"id": "proj", "kind": "adapter", "adapter": "dense", "units": 64, "activation": "linear"},
        {"id": "shape", "kind": "adapter", "adapter": "reshape", "target_shape": [169, 32]},
    ]:
        node = NodeSpec.from_dict(data)
        assert NodeSpec.from_dict(node.to_dict()) == node


@pytest.mark.parametrize("data, message", [
    ({"id": "a", "kind": "box"}, r"'kind' must be one of \['input', 'output', 'member', 'merge', 'adapter'\], "
                                 r"received 'box'"),
    ({"id": "m", "kind": "merge", "merge": "sum"}, r"'merge' must be one of \['concatenate', 'add', 'average', "
                                                   r"'multiply', 'maximum'\], received 'sum'"),
    ({"id": "a", "kind": "adapter", "adapter": "crop"}, r"'adapter' must be one of \['flatten'"),
    ({"id": "m", "kind": "member"}, r"'node' is a member node without 'member': node 'm' needs one"),
    ({"id": "m", "kind": "merge"}, r"is a merge node without 'merge': node 'm' needs one \(one of \['concatenate'"),
    ({"id": "a", "kind": "adapter"}, r"'node' is an adapter node without 'adapter'"),
    ({"id": "m", "kind": "member", "member": {"name": "other", "template": "mlp"}},
     r"'member.name' must be the node id 'm', received 'other'"),
    ({"id": "p", "kind": "adapter", "adapter": "dense"}, r"'units' must be at least 1 for a dense adapter, received 0"),
    ({"id": "r", "kind": "adapter", "adapter": "reshape"}, r"'target_shape' is needed by the reshape adapter 'r'"),
    ({"id": "f", "kind": "adapter", "adapter": "flatten", "units": 4},
     r"'units' does not apply to node 'f' \(flatten adapter\); remove it"),
    ({"id": "m", "kind": "merge", "merge": "add", "member": {"name": "m", "template": "mlp"}},
     r"'member' does not apply to node 'm' \(merge\)"),
])
def test_what_a_node_holds_is_checked_when_read(data, message):
    with pytest.raises(SpecError, match=message):
        NodeSpec.from_dict(data)


def test_node_errors_name_their_key_path_in_a_stack():
    data = {"mode": "graph", "graph": {"nodes": [{"id": "input", "kind": "input"},
                                                 {"id": "p", "kind": "adapter", "adapter": "dense"}]}}
    with pytest.raises(SpecError, match=r"'graph.nodes\[1\].units' must be at least 1"):
        StackSpec.from_dict(data)


@pytest.mark.parametrize("data, message", [
    ({"mode": "graph", "members": [{"name": "a", "template": "mlp"}]},
     r"'members' must be empty in mode 'graph', received 1 members: a graph describes its members"),
    ({"mode": "graph", "head": {"name": "h", "template": "dense_head"}}, r"'head' must be empty in mode 'graph'"),
    ({"mode": "graph", "adapters": [{"after": "a", "kind": "flatten"}]}, r"'adapters' must be empty in mode 'graph'"),
    ({"mode": "sequential", "graph": {"nodes": []}}, r"'graph' is read only in mode 'graph', but the mode is "
                                                     r"'sequential'"),
    ({"layout": {"a": [1]}}, r"'layout.a' must be a position \[x, y\] of two numbers, received \[1\]"),
    ({"layout": {"a": ["1", 2]}}, r"'layout.a' must be a position"),
    ({"schema_version": 3}, r"'schema_version' 3 is not supported: this StackLab reads schema_version 1 and 2"),
])
def test_stack_level_rules_of_graphs(data, message):
    with pytest.raises(SpecError, match=message):
        StackSpec.from_dict(data)


def test_a_version_1_document_is_upgraded_and_written_as_version_2():
    v1 = {"schema_version": 1, "name": "old", "mode": "fusion",
          "members": [{"name": "a", "template": "cnn_features"}],
          "head": {"name": "b", "template": "dense_head"}, "options": {"include_raw_input": True}}
    spec = StackSpec.from_dict(v1)
    assert spec.graph is None and spec.layout == {}
    written = spec.to_dict()
    assert written["schema_version"] == 2
    assert {key: value for key, value in written.items() if key not in ("graph", "layout", "schema_version")} == {
        key: value for key, value in StackSpec.from_dict({**v1, "schema_version": 2}).to_dict().items()
        if key not in ("graph", "layout", "schema_version")}
    assert StackSpec.from_dict(written) == spec
    assert StackSpec.from_dict({key: value for key, value in v1.items() if key != "schema_version"}) == spec


def test_the_layout_never_changes_the_model_key():
    spec = StackSpec(mode="graph", graph=TWO_TOWER)
    moved = spec.replace(layout={"features": [10, 20]})
    assert moved.model_key() == spec.model_key() and moved != spec


def test_a_graph_specs_members_are_its_member_nodes():
    spec = StackSpec(mode="graph", graph=TWO_TOWER)
    assert [member.name for member in spec.all_members()] == ["features", "head"]
    assert StackSpec(mode="graph").all_members() == ()


def test_reading_nodes_and_edges():
    assert TWO_TOWER.inputs_of("fusion") == ["features", "flat"]
    assert TWO_TOWER.consumers_of("input") == ["features", "flat"]
    assert TWO_TOWER.node("flat").adapter == "flatten" and TWO_TOWER.node("ghost") is None
    assert TWO_TOWER.order() == ["input", "features", "flat", "fusion", "head", "output"]


def test_the_order_leaves_out_a_cycle():
    cyclic = graph([INPUT, member_node("a"), member_node("b"), OUTPUT],
                   [("input", "a"), ("a", "b"), ("b", "a"), ("b", "output")])
    assert cyclic.order() == ["input"]


# ---- what makes a graph a stack ---------------------------------------------------------------


def test_the_two_tower_graph_and_a_residual_add_are_stacks():
    assert TWO_TOWER.problems() == []
    residual = graph([INPUT, member_node("mlp"), adapter_node("proj", "dense", units=8), merge_node("add", "add"),
                      OUTPUT],
                     [("input", "mlp"), ("input", "proj"), ("mlp", "add"), ("proj", "add"), ("add", "output")])
    assert residual.problems() == []
    # A member's features reused by two branches.
    shared = graph([INPUT, member_node("enc"), member_node("left"), member_node("right"), merge_node("both", "add"),
                    OUTPUT],
                   [("input", "enc"), ("enc", "left"), ("enc", "right"), ("left", "both"), ("right", "both"),
                    ("both", "output")])
    assert shared.problems() == []


SIMPLE = [INPUT, member_node("a"), OUTPUT]

REFUSED = {
    "duplicate id": (graph([INPUT, member_node("a"), member_node("a"), OUTPUT],
                           [("input", "a"), ("a", "output")]),
                     "Node id 'a' is used by 2 nodes; node ids must be unique", ("a",)),
    "bad id": (graph([INPUT, merge_node("9 lives"), OUTPUT], []),
               "Node id '9 lives' is not allowed: use a letter first", ("9 lives",)),
    "reserved id": (graph([INPUT, merge_node("output"), NodeSpec("out", "output")], []),
                    "Node id 'output' is reserved for the output node, but names a merge node", ("output",)),
    "input id": (graph([NodeSpec("source", "input"), member_node("a"), OUTPUT],
                       [("source", "a"), ("a", "output")]),
                 "The input node must have id 'input', received 'source'", ("source",)),
    "no input": (graph([member_node("a"), OUTPUT], [("a", "output")]),
                 'The graph has no input node: add {"id": "input", "kind": "input"}', ()),
    "two inputs": (graph([INPUT, NodeSpec("input2", "input"), member_node("a"), OUTPUT],
                         [("input", "a"), ("a", "output")]),
                   "The graph has 2 input nodes ('input', 'input2'); a stack has exactly one input",
                   ("input", "input2")),
    "two outputs": (graph([INPUT, member_node("a"), OUTPUT, NodeSpec("output2", "output")],
                          [("input", "a"), ("a", "output"), ("a", "output2")]),
                    "The graph has 2 output nodes ('output', 'output2'); a stack has exactly one output",
                    ("output", "output2")),
    "missing node": (graph(SIMPLE, [("input", "a"), ("a", "output"), ("a", "ghost")]),
                     "The edge 'a' -> 'ghost' names 'ghost', which is not a node of the graph", ("ghost",)),
    "edge into the input": (graph(SIMPLE, [("input", "a"), ("a", "output"), ("a", "input")]),
                            "The input takes no incoming edge, but 'a' feeds it", ("input", "a")),
    "edge out of the output": (graph([INPUT, member_node("a"), member_node("b"), OUTPUT],
                                     [("input", "a"), ("a", "output"), ("output", "b")]),
                               "The output feeds nothing, but it feeds 'b'", ("output", "b")),
    "dangling member": (graph([INPUT, member_node("a"), member_node("b"), OUTPUT],
                              [("input", "a"), ("a", "output"), ("b", "output")]),
                        "The input of member 'b' is not connected: nothing feeds it", ("b",)),
    "dangling output": (graph(SIMPLE, [("input", "a")]),
                        "The input of the output is not connected: nothing feeds it", ("output",)),
    "two edges into a member": (graph([INPUT, member_node("a"), member_node("b"), member_node("c"), OUTPUT],
                                      [("input", "a"), ("input", "b"), ("a", "c"), ("b", "c"), ("c", "output")]),
                                "Member 'c' has 2 incoming edges (from 'a', 'b'), but takes exactly one. Combine "
                                "them first with a merge node", ("c", "a", "b")),
    "two edges into the output": (graph([INPUT, member_node("a"), member_node("b"), OUTPUT],
                                        [("input", "a"), ("input", "b"), ("a", "output"), ("b", "output")]),
                                  "The output has 2 incoming edges (from 'a', 'b')", ("output", "a", "b")),
    "merge with one input": (graph([INPUT, member_node("a"), merge_node("m"), OUTPUT],
                                   [("input", "a"), ("a", "m"), ("m", "output")]),
                             "Merge 'm' (concatenate) combines two or more inputs, but only 'a' feeds it",
                             ("m", "a")),
    "cycle": (graph([INPUT, member_node("a"), merge_node("m", "add"), member_node("b"), OUTPUT],
                    [("input", "m"), ("b", "m"), ("m", "a"), ("a", "b"), ("a", "output")]),
              "The graph has a cycle: 'm' -> 'a' -> 'b' -> 'm'", ("m", "a", "b")),
    "not reached": (graph([INPUT, member_node("a"), member_node("b"), member_node("c"), merge_node("m", "add"),
                           OUTPUT],
                          [("input", "a"), ("b", "c"), ("a", "m"), ("c", "m"), ("m", "output")]),
                    "Nothing from the input reaches 'c': it is fed only by nodes the input does not feed", ("c",)),
    "no path to the output": (graph([INPUT, member_node("a"), member_node("b"), OUTPUT],
                                    [("input", "a"), ("input", "b"), ("a", "output")]),
                              "'b' has no path to the output: its result is never used", ("b",)),
    "no path from input to output": (graph([INPUT, member_node("a"), member_node("b"), OUTPUT],
                                           [("input", "a"), ("b", "output")]),
                                     "There is no path from the input to the output", ("input", "output")),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_every_refused_graph_names_its_nodes(name):
    refused, message, nodes = REFUSED[name]
    problems = refused.problems()
    matching = [problem for problem in problems if message in problem.message]
    assert matching, [problem.message for problem in problems]
    assert matching[0].nodes == nodes


def test_a_dangling_node_is_named_once():
    alone = graph([INPUT, member_node("a"), member_node("b"), OUTPUT], [("input", "a"), ("a", "output")])
    (problem,) = alone.problems()
    assert problem.message.startswith("The input of member 'b' is not connected") and problem.nodes == ("b",)


def test_an_edge_into_the_input_names_that_edge():
    refused, _, _ = REFUSED["edge into the input"]
    (problem,) = [p for p in refused.problems() if "input takes no" in p.message]
    assert problem.edge == ("a", "input")


def test_a_graph_module_imports_no_keras():
    import subprocess
    import sys
    from pathlib import Path

    code = ("import sys, core.spec.graph, core.spec.presets\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[3],
                            capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


# ---- inserting a fix on an edge -----------------------------------------------------------------


def test_insert_on_edge_keeps_the_merge_input_order_and_places_the_nodes():
    drawn = graph([INPUT, member_node("features", "cnn_features"), merge_node("fusion"),
                   member_node("head", "dense_head"), OUTPUT],
                  [("input", "features"), ("input", "fusion"), ("features", "fusion"), ("fusion", "head"),
                   ("head", "output")])
    spec = StackSpec(mode="graph", graph=drawn, layout={"input": [0, 0], "fusion": [2, 4]})
    fixed = insert_on_edge(spec, "input", "fusion", [{"id": "adapter_input_flatten", "kind": "adapter",
                                                      "adapter": "flatten"}])
    assert fixed.graph.inputs_of("fusion") == ["adapter_input_flatten", "features"]
    assert fixed.graph.inputs_of("adapter_input_flatten") == ["input"]
    assert fixed.graph.problems() == []
    assert fixed.layout["adapter_input_flatten"] == [1.0, 2.0]
    # The same fix twice (a double click) leaves one copy.
    assert insert_on_edge(fixed, "input", "fusion", [{"id": "adapter_input_flatten", "kind": "adapter",
                                                      "adapter": "flatten"}]) == fixed
    # Two nodes in order, ids made unique, a node without an id named after its edge.
    twice = insert_on_edge(fixed, "features", "fusion", [
        NodeSpec("adapter_input_flatten", "adapter", adapter="flatten"), {"adapter": "dense", "units": 4}])
    assert twice.graph.inputs_of("fusion") == ["adapter_input_flatten", "adapter_features_dense"]
    assert twice.graph.inputs_of("adapter_features_dense") == ["adapter_input_flatten_2"]
    assert StackSpec.from_dict(twice.to_dict()) == twice


def test_insert_on_edge_refuses_a_preset_a_missing_edge_and_other_nodes():
    with pytest.raises(ValueError, match="insert_on_edge works on a graph spec .*received mode 'sequential'.*"
                                         "accept_fix"):
        insert_on_edge(StackSpec(), "input", "a", [{"adapter": "flatten"}])
    spec = StackSpec(mode="graph", graph=TWO_TOWER)
    with pytest.raises(ValueError, match=r"The graph has no edge 'head' -> 'features' to insert Flatten on"):
        insert_on_edge(spec, "head", "features", [{"adapter": "flatten"}])
    with pytest.raises(ValueError, match="inserts adapter nodes, received node 'm' of kind 'merge'"):
        insert_on_edge(spec, "input", "features", [merge_node("m")])
