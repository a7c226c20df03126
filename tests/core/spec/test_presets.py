"""core/spec/presets.py: each mode is a preset that produces the graph its stack is."""

from pathlib import Path

import pytest

from core.spec import (
    AdapterSpec,
    GraphSpec,
    MemberSpec,
    NodeSpec,
    StackSpec,
    graph_of,
    load_spec,
    stack_graph,
    to_graph_spec,
)
from core.spec.presets import NEEDS_PREDICTIONS, NEEDS_VECTOR

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def edges(spec):
    return [edge.pair() for edge in graph_of(spec).edges]


def kinds(spec):
    return {node.id: node.merge or node.adapter or node.kind for node in graph_of(spec).nodes}


def test_the_seeds_sequential_example():
    spec = load_spec(EXAMPLES / "seed_sequential.json")
    assert edges(spec) == [("input", "model_a"), ("model_a", "model_b"), ("model_b", "output")]
    assert kinds(spec) == {"input": "input", "model_a": "member", "model_b": "member", "output": "output"}
    assert graph_of(spec).node("model_a").member == spec.members[0]
    assert graph_of(spec).problems() == []


def test_the_seeds_fusion_example():
    spec = load_spec(EXAMPLES / "seed_fusion.json")
    assert edges(spec) == [("input", "model_a"), ("model_a", "fusion_concat"), ("input", "raw_input_flatten"),
                           ("raw_input_flatten", "fusion_concat"), ("fusion_concat", "model_b"),
                           ("model_b", "output")]
    assert kinds(spec) == {"input": "input", "model_a": "member", "fusion_concat": "concatenate",
                           "raw_input_flatten": "flatten", "model_b": "member", "output": "output"}
    wired = stack_graph(spec)
    assert wired.name("fusion_concat") == "fusion" and wired.input_needs == {"fusion_concat": NEEDS_VECTOR}
    assert wired.graph.problems() == [] and wired.problems == ()


def test_the_seeds_transfer_example():
    spec = load_spec(EXAMPLES / "seed_transfer.json")
    assert edges(spec) == [("input", "model_a"), ("model_a", "model_b"), ("model_b", "output")]
    assert graph_of(spec).node("model_a").member.source == "file"


def classifiers():
    return (MemberSpec("a", template="cnn_classifier"), MemberSpec("b", template="mlp_classifier"))


def test_an_averaging_ensemble():
    spec = StackSpec(mode="ensemble", members=classifiers(), head=MemberSpec("unused", template="dense_head"))
    assert edges(spec) == [("input", "a"), ("input", "b"), ("a", "ensemble_average"), ("b", "ensemble_average"),
                           ("ensemble_average", "output")]
    assert kinds(spec)["ensemble_average"] == "average" and "unused" not in kinds(spec)
    wired = stack_graph(spec)
    assert wired.name("ensemble_average") == "ensemble"
    assert wired.input_needs == {"ensemble_average": NEEDS_PREDICTIONS}


def test_a_meta_head_ensemble():
    spec = StackSpec(mode="ensemble", members=classifiers(), head=MemberSpec("meta", template="dense_head"),
                     options={"combine": "meta_head"})
    assert edges(spec) == [("input", "a"), ("input", "b"), ("a", "ensemble_concat"), ("b", "ensemble_concat"),
                           ("ensemble_concat", "meta"), ("meta", "output")]
    assert kinds(spec)["ensemble_concat"] == "concatenate"


def test_accepted_adapters_are_nodes_on_their_edge():
    spec = StackSpec(
        mode="fusion", members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="mlp")),
        head=MemberSpec("head", template="conv1d_encoder"),
        adapters=(AdapterSpec(after="input", kind="flatten"),
                  AdapterSpec(after="fusion", before="head", kind="reshape", target_shape=(10, 1)),
                  AdapterSpec(after="a", before="fusion", kind="dense", units=4, activation="relu")))
    assert edges(spec) == [
        ("input", "adapter_input_flatten"), ("adapter_input_flatten", "a"),
        ("input", "adapter_input_flatten_2"), ("adapter_input_flatten_2", "b"),
        ("a", "adapter_a_dense"), ("adapter_a_dense", "fusion_concat"), ("b", "fusion_concat"),
        ("fusion_concat", "adapter_fusion_reshape"), ("adapter_fusion_reshape", "head"), ("head", "output")]
    wired = stack_graph(spec)
    assert wired.adapter_indexes == {"adapter_input_flatten": 0, "adapter_input_flatten_2": 0,
                                     "adapter_fusion_reshape": 1, "adapter_a_dense": 2}
    assert wired.graph.node("adapter_a_dense") == NodeSpec("adapter_a_dense", "adapter", adapter="dense", units=4,
                                                           activation="relu")
    assert wired.graph.node("adapter_fusion_reshape").target_shape == (10, 1)
    assert wired.graph.problems() == []


def test_an_adapter_on_no_edge_is_left_out():
    spec = StackSpec(members=(MemberSpec("a"), MemberSpec("b")), adapters=(AdapterSpec(after="ghost", kind="flatten"),))
    assert edges(spec) == [("input", "a"), ("a", "b"), ("b", "output")]


@pytest.mark.parametrize("spec, problem, wired", [
    (StackSpec(members=(MemberSpec("a"),)),
     ("members", "Mode 'sequential' chains two or more members; this stack has 1."), [("input", "a")]),
    (StackSpec(mode="transfer", head=MemberSpec("h", template="dense_head")),
     ("members", "Mode 'transfer' needs a pretrained member"), [("input", "h")]),
    (StackSpec(mode="transfer", members=(MemberSpec("a"),)),
     ("head", "Mode 'transfer' needs a head on top of the members."), [("input", "a")]),
    (StackSpec(mode="fusion", members=(MemberSpec("a"),)),
     ("head", "Mode 'fusion' needs a head"), [("input", "a"), ("a", "fusion_concat")]),
    (StackSpec(mode="fusion", head=MemberSpec("h")), ("members", "Mode 'fusion' needs at least one member"), []),
    (StackSpec(mode="fusion", members=(MemberSpec("a"),), head=MemberSpec("h")),
     ("members", "Fusion concatenates two or more feature vectors"),
     [("input", "a"), ("a", "fusion_concat"), ("fusion_concat", "h"), ("h", "output")]),
    (StackSpec(mode="ensemble", members=(MemberSpec("a"),)),
     ("members", "Mode 'ensemble' combines two or more complete models; this stack has 1."),
     [("input", "a"), ("a", "ensemble_average")]),
    (StackSpec(mode="ensemble", members=classifiers(), options={"combine": "meta_head"}),
     ("head", "Mode 'ensemble' needs a head"), [("input", "a"), ("input", "b"), ("a", "ensemble_concat"),
                                                ("b", "ensemble_concat")]),
])
def test_an_unfinished_preset_says_why_and_leaves_out_what_is_missing(spec, problem, wired):
    preset = stack_graph(spec)
    assert any(where == problem[0] and problem[1] in message for where, message in preset.problems), preset.problems
    assert [edge.pair() for edge in preset.graph.edges] == wired


def test_a_graph_spec_is_its_own_graph():
    graph = GraphSpec(nodes=(NodeSpec("input", "input"), NodeSpec("output", "output")))
    spec = StackSpec(mode="graph", graph=graph)
    assert graph_of(spec) is graph and stack_graph(spec).problems == ()
    assert graph_of(StackSpec(mode="graph")) == GraphSpec()
    assert to_graph_spec(spec) is spec


@pytest.mark.parametrize("name", ["seed_sequential", "seed_fusion", "seed_transfer"])
def test_to_graph_spec_is_the_same_stack_in_mode_graph(name):
    spec = load_spec(EXAMPLES / f"{name}.json")
    graph_spec = to_graph_spec(spec)
    assert graph_spec.mode == "graph" and graph_spec.members == () and graph_spec.head is None
    assert graph_spec.options == {} and graph_spec.adapters == ()
    graph_spec.check_values()
    assert StackSpec.from_dict(graph_spec.to_dict()) == graph_spec
    assert [edge.pair() for edge in graph_spec.graph.edges] == edges(spec)
    assert (graph_spec.train, graph_spec.dataset) == (spec.train, spec.dataset)


def test_to_graph_spec_freezes_a_transfer_base_on_its_member_node():
    spec = StackSpec(mode="transfer", members=(MemberSpec("base", template="mlp"),),
                     head=MemberSpec("head", template="dense_head"))
    graph = to_graph_spec(spec).graph
    assert graph.node("base").member.trainable is False and graph.node("head").member.trainable is True
    unfrozen = to_graph_spec(spec.replace(options={"freeze_base": False})).graph
    assert unfrozen.node("base").member.trainable is True
