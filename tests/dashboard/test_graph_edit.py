"""dashboard.graph_edit: the canvas's edits as pure functions, tested without Streamlit."""

import dataclasses

import pytest

from core.spec import (
    GRAPH_MODE,
    FineTuneSpec,
    LayerRule,
    MemberSpec,
    NodeSpec,
    StackSpec,
    to_graph_spec,
)
from core.spec.rules import insert_on_edge
from dashboard import graph_edit, graph_layout
from dashboard.spec_edit import default_spec

CNN = MemberSpec("features", template="cnn_features", params={"dense_units": 64})
HEAD = MemberSpec("head", template="dense_head")


def two_tower() -> StackSpec:
    """The issue's canvas test, drawn with the edit functions: input -> features, input ->
    Flatten -> concatenate <- features, -> head -> output."""
    spec = graph_edit.empty_graph(default_spec())
    spec = graph_edit.add_member(spec, CNN)
    spec = graph_edit.add_adapter(spec, "flatten")
    spec = graph_edit.add_merge(spec, "concatenate")
    spec = graph_edit.add_member(spec, HEAD)
    for source, target in [("input", "features"), ("input", "flatten"), ("features", "concatenate"),
                           ("flatten", "concatenate"), ("concatenate", "head"), ("head", "output")]:
        spec = graph_edit.connect(spec, source, target)
    return spec


def test_an_empty_graph_keeps_the_dataset_and_training_and_has_only_the_input_and_output():
    start = default_spec()
    empty = graph_edit.empty_graph(start)
    assert empty.mode == GRAPH_MODE and empty.graph.ids() == ["input", "output"] and not empty.graph.edges
    assert (empty.name, empty.dataset, empty.train) == ("graph_digits28", start.dataset, start.train)
    assert graph_edit.empty_graph(start.replace(name="mine")).name == "mine"  # a chosen name stays
    assert empty.members == () and empty.head is None


def test_a_two_tower_graph_drawn_with_the_edit_functions_is_a_stack_and_round_trips():
    spec = two_tower()
    assert spec.graph.problems() == []
    assert spec.graph.inputs_of("concatenate") == ["features", "flatten"]  # the order they were connected
    assert spec.graph.node("features").member == CNN
    assert StackSpec.from_json(spec.to_json()) == spec
    assert set(spec.layout) == set(spec.graph.ids())  # drawing pins what the user sees


def test_placed_nodes_get_unique_valid_ids_and_a_free_place_right_of_the_drawing():
    spec = graph_edit.empty_graph(default_spec())
    spec = graph_edit.add_member(spec, MemberSpec("cnn", template="cnn_features"))
    spec = graph_edit.add_member(spec, MemberSpec("cnn", template="cnn_features"))
    spec = graph_edit.add_merge(spec, "add")
    spec = graph_edit.add_adapter(spec, "dense")
    spec = graph_edit.add_member(spec, MemberSpec("input", template="mlp"))  # a reserved name
    assert spec.graph.ids() == ["input", "output", "cnn", "cnn_2", "add", "dense", "input_2"]
    assert spec.graph.node("cnn_2").member.name == "cnn_2"
    assert spec.graph.node("dense").units == graph_edit.DEFAULT_ADAPTER_UNITS
    # Nodes not connected yet wait in a column right of the drawing, one below the other.
    column, row = graph_layout.COLUMN_GAP, graph_layout.ROW_GAP
    assert [spec.layout[node_id] for node_id in ("cnn", "cnn_2", "add")] == [[column, row], [column, 2 * row],
                                                                             [column, 3 * row]]
    connected = graph_edit.connect(graph_edit.connect(spec, "input", "cnn"), "input", "cnn_2")
    connected = graph_edit.connect(graph_edit.connect(connected, "input", "input_2"), "input", "dense")
    connected = graph_edit.connect(connected, "cnn", "add")
    assert graph_layout.free_position(connected) == [2 * column, row]  # a new column
    placed = graph_edit.add_merge(spec, "concatenate", position=(10.4, 20.6))
    assert placed.layout["concatenate"] == [10, 21]


def test_the_first_topology_edit_turns_a_preset_into_the_graph_it_builds():
    preset = default_spec()
    moved = graph_layout.move(preset, {"model_a": [300, 40]})
    assert moved.mode == "sequential" and moved.layout == {"model_a": [300, 40]}  # a move is no topology edit
    edited = graph_edit.add_merge(moved, "add")
    assert edited.mode == GRAPH_MODE
    assert edited.graph.nodes[:-1] == to_graph_spec(preset).graph.nodes
    assert edited.layout["model_a"] == [300, 40]
    cut = graph_edit.delete_edge(preset, "model_a", "model_b")
    assert cut.mode == GRAPH_MODE and ("model_a", "model_b") not in graph_edit.edge_pairs(cut)


@pytest.mark.parametrize("source, target, message", [
    ("output", "features", "the output feeds nothing"),
    ("features", "input", "the input takes no incoming edge"),
    ("features", "features", "to itself"),
    ("input", "nowhere", "there is no node 'nowhere'"),
    ("input", "features", "already feeds 'features'"),
    ("flatten", "features", "already takes its input from 'input'"),
    ("flatten", "output", "The output already takes its input from 'head'"),
])
def test_edges_no_stack_can_have_are_refused_with_the_reason(source, target, message):
    with pytest.raises(ValueError, match=message):
        graph_edit.connect(two_tower(), source, target)


def test_a_half_drawn_graph_and_a_merge_fed_twice_are_allowed():
    spec = graph_edit.connect(two_tower(), "features", "concatenate")
    assert spec.graph.inputs_of("concatenate") == ["features", "flatten", "features"]
    half = graph_edit.add_member(graph_edit.empty_graph(default_spec()), CNN)
    assert graph_edit.connect(half, "input", "features").graph.problems()  # no path to the output yet


def test_deleting_a_node_drops_its_edges_position_rules_and_fine_tune_entry():
    spec = two_tower().replace(trainability=(LayerRule("features", ".*conv.*"), LayerRule("head")))
    spec = spec.replace(train=dataclasses.replace(spec.train, fine_tune=FineTuneSpec(2, members=("features", "head"))))
    gone = graph_edit.delete_node(spec, "features")
    assert "features" not in gone.graph.ids() and "features" not in gone.layout
    assert all("features" not in edge.pair() for edge in gone.graph.edges)
    assert gone.trainability == (LayerRule("head"),) and gone.train.fine_tune.members == ("head",)
    with pytest.raises(ValueError, match="every stack has one input and one output"):
        graph_edit.delete_node(spec, "output")
    with pytest.raises(ValueError, match="no node 'ghost'"):
        graph_edit.delete_node(spec, "ghost")


def test_deleting_an_edge_and_reordering_a_merge_s_inputs():
    spec = graph_edit.delete_edge(two_tower(), "flatten", "concatenate")
    assert ("flatten", "concatenate") not in graph_edit.edge_pairs(spec)
    with pytest.raises(ValueError, match="no edge 'flatten' -> 'concatenate'"):
        graph_edit.delete_edge(spec, "flatten", "concatenate")
    swapped = graph_edit.move_input(two_tower(), "concatenate", 1, -1)
    assert swapped.graph.inputs_of("concatenate") == ["flatten", "features"]


def test_renaming_a_node_follows_every_reference():
    spec = two_tower().replace(trainability=(LayerRule("features", ".*conv.*"),))
    renamed = graph_edit.rename_node(spec, "features", "tower")
    assert renamed.graph.node("tower").member.name == "tower" and renamed.graph.node("features") is None
    assert renamed.graph.inputs_of("concatenate") == ["tower", "flatten"]
    assert renamed.layout["tower"] == spec.layout["features"] and "features" not in renamed.layout
    assert renamed.trainability == (LayerRule("tower", ".*conv.*"),)
    for taken, message in (("head", "already exists"), ("output", "reserved"), ("9lives", "not allowed")):
        with pytest.raises(ValueError, match=message):
            graph_edit.rename_node(spec, "features", taken)


def test_a_preset_s_member_is_renamed_and_changed_in_place():
    preset = graph_layout.move(default_spec(), {"model_a": [1, 2]})
    renamed = graph_edit.rename_node(preset, "model_a", "features")
    assert renamed.mode == "sequential" and [m.name for m in renamed.members] == ["features", "model_b"]
    assert renamed.layout == {"features": [1, 2]}
    wider = graph_edit.replace_member(renamed, "features", MemberSpec("features", template="cnn_features",
                                                                      params={"dense_units": 64}))
    assert wider.mode == "sequential" and wider.members[0].params == {"dense_units": 64}


def test_replacing_a_graph_member_and_a_merge():
    spec = graph_edit.replace_member(two_tower(), "features", MemberSpec("features", template="cnn_features",
                                                                        trainable=False))
    assert spec.graph.node("features").member.trainable is False
    merged = graph_edit.replace_node(spec, NodeSpec("concatenate", "merge", merge="maximum"))
    assert merged.graph.node("concatenate").merge == "maximum"


def test_a_fix_is_inserted_on_its_edge_of_a_graph_and_accepted_as_an_adapter_of_a_preset():
    spec = graph_layout.move(graph_edit.delete_node(two_tower(), "flatten"), {"concatenate": [0, 0]})
    spec = graph_edit.connect(spec, "input", "concatenate")
    fixed = graph_edit.apply_fix(spec, [{"id": "", "kind": "adapter", "adapter": "flatten"}], ("input", "concatenate"))
    inserted = insert_on_edge(graph_layout.pin_positions(spec), "input", "concatenate",
                              [{"id": "", "kind": "adapter", "adapter": "flatten"}])
    assert fixed.graph == inserted.graph and fixed.graph.inputs_of("concatenate")[1] == "adapter_input_flatten"
    # Placed on its edge, or where it covers no other node.
    placed = fixed.layout["adapter_input_flatten"]
    assert all(abs(placed[0] - x) >= graph_layout.NODE_SIZE[0] or abs(placed[1] - y) >= graph_layout.NODE_SIZE[1]
               for node_id, (x, y) in fixed.layout.items() if node_id != "adapter_input_flatten")
    # A problem's fix holds AdapterSpec dicts (as a preset's do): the same adapter, on the edge.
    from_problem = graph_edit.apply_fix(spec, [{"after": "input", "kind": "flatten", "before": "concatenate",
                                                "target_shape": [], "units": 0, "activation": "linear"}],
                                        ["input", "concatenate"])
    assert from_problem == fixed
    preset = graph_edit.apply_fix(default_spec(), [{"after": "model_a", "kind": "flatten"}])
    assert preset.mode == "sequential" and preset.adapters[0].kind == "flatten"
