"""The one graph builder: presets build what they built before graphs, graphs build, edges are reported."""

import collections
from pathlib import Path

import keras
import numpy as np
import pytest

from core.build import budget
from core.build.stacking import build, check, member_files
from core.build.trainability import count_params, frozen_members, unfreeze_top
from core.spec import (
    AdapterSpec,
    EdgeSpec,
    FineTuneSpec,
    GraphSpec,
    LayerRule,
    MemberSpec,
    NodeSpec,
    StackSpec,
    insert_on_edge,
    load_spec,
    to_graph_spec,
)
from core.spec.rules import accept_fix
from core.spec.tasks import TaskInfo

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
IMAGES = TaskInfo("multiclass", (12, 12, 1), num_classes=3)
VECTORS = TaskInfo("multiclass", (6,), num_classes=3)
DIGITS = TaskInfo("multiclass", (28, 28, 1), num_classes=10)
WINE = TaskInfo("multiclass", (13,), num_classes=3)


def cnn(name="features", **params):
    return MemberSpec(name, template="cnn_features", params={"filters": [4], **params})


def head(name="head", **params):
    return MemberSpec(name, template="dense_head", params={"hidden_units": [8], **params})


def classifier(name, filters):
    return MemberSpec(name, template="cnn_classifier", params={"filters": [filters], "hidden_units": [4]})


def leaves(model) -> collections.Counter:
    """(layer type, output shape) of every non-model layer."""
    found = collections.Counter()
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found += leaves(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            found[(type(layer).__name__, tuple(layer.output.shape[1:]))] += 1
    return found


def trainable_count(model) -> int:
    return sum(int(keras.ops.size(weight)) for weight in model.trainable_weights)


# ---- each preset's graph is the model the mode builders built ---------------------------------

# Built by the mode builders before graphs (core/build at the commit before this file):
# parameters, trainable parameters and top-level layer names.
PRESETS = {
    "sequential": (StackSpec(members=(cnn(), head())), IMAGES, (875, 875, ("features", "head", "input"))),
    "sequential_head": (
        StackSpec(members=(cnn("a", dense_units=6), MemberSpec("b", template="mlp", params={"hidden_units": [5]})),
                  head=head()), IMAGES, (756, 756, ("a", "b", "head", "input"))),
    "fusion_raw": (StackSpec(mode="fusion", members=(cnn(dense_units=4),), head=head(),
                             options={"include_raw_input": True}), IMAGES,
                   (1663, 1663, ("features", "fusion_concat", "head", "input", "raw_input_flatten"))),
    "fusion_two": (StackSpec(mode="fusion", members=(cnn("a", dense_units=4), cnn("b", pooling="global_average")),
                             head=head()), IMAGES, (583, 583, ("a", "b", "fusion_concat", "head", "input"))),
    "fusion_accepted": (
        StackSpec(mode="fusion", members=(cnn("a", dense_units=4), MemberSpec("seq", template="conv1d_encoder")),
                  head=head(), adapters=(AdapterSpec(after="input", before="seq", kind="reshape",
                                                     target_shape=(144, 1)),)), IMAGES,
        (7359, 7359, ("a", "adapter_input_reshape", "fusion_concat", "head", "input", "seq"))),
    "transfer": (StackSpec(mode="transfer", members=(cnn(),), head=head()), IMAGES,
                 (875, 835, ("features", "head", "input"))),
    "transfer_rules": (StackSpec(mode="transfer", members=(cnn(),), head=head(), options={"freeze_base": False},
                                 trainability=(LayerRule(member="features", layers=".*conv.*"),)), IMAGES,
                       (875, 835, ("features", "head", "input"))),
    "ensemble_average": (StackSpec(mode="ensemble", members=(classifier("a", 4), classifier("b", 2))), IMAGES,
                         (962, 962, ("a", "b", "ensemble_average", "input"))),
    "ensemble_meta": (StackSpec(mode="ensemble", members=(classifier("a", 4), classifier("b", 2)), head=head("meta"),
                                options={"combine": "meta_head"}), IMAGES,
                      (1045, 1045, ("a", "b", "ensemble_concat", "input", "meta"))),
    "ensemble_auto": (StackSpec(mode="ensemble", auto_adapters=True, members=(
        MemberSpec("a", template="mlp_classifier"), MemberSpec("b", template="mlp", params={"hidden_units": [5]}))),
                      VECTORS,
                      (696, 696, ("a", "adapter_b_dense", "b", "ensemble_average", "input"))),
    "sequential_auto": (StackSpec(members=(cnn(pooling="global_average"),
                                           MemberSpec("seq", template="rnn_encoder", params={"units": [4]}), head()),
                                  auto_adapters=True), IMAGES,
                        (191, 191, ("adapter_features_reshape", "features", "head", "input", "seq"))),
    "sequential_accepted": (
        StackSpec(members=(cnn(pooling="flatten"), MemberSpec("seq", template="conv1d_encoder"), head()),
                  adapters=(AdapterSpec(after="features", before="seq", kind="reshape", target_shape=(100, 1)),)),
        IMAGES, (6923, 6923, ("adapter_features_reshape", "features", "head", "input", "seq"))),
}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_each_preset_builds_the_model_it_built_before_graphs(name):
    spec, task, (params, trainable, top) = PRESETS[name]
    model = build(spec, task)
    assert (model.count_params(), trainable_count(model)) == (params, trainable)
    assert tuple(sorted(layer.name for layer in model.layers)) == top
    # The same stack as a graph spec builds the same model.
    drawn = build(to_graph_spec(spec), task)
    assert leaves(drawn) == leaves(model)
    assert drawn.output_shape == model.output_shape
    assert (drawn.count_params(), trainable_count(drawn)) == (params, trainable)
    assert sorted(layer.name for layer in drawn.layers) == sorted(layer.name for layer in model.layers)


# ---- graphs ---------------------------------------------------------------------------------


def member(name, template, **params):
    return NodeSpec(name, "member", member=MemberSpec(name, template=template, params=params))


def graph_spec(nodes, edges, **fields) -> StackSpec:
    nodes = (NodeSpec("input", "input"), *nodes, NodeSpec("output", "output"))
    return StackSpec(name=fields.pop("name", "graph"), mode="graph",
                     graph=GraphSpec(nodes=nodes, edges=tuple(EdgeSpec(a, b) for a, b in edges)), **fields)


def seed_fusion_drawn() -> StackSpec:
    """The issue's end-to-end graph: cnn_features (64 dense units) and the flattened input,
    concatenated into a dense_head: the seed's fusion."""
    return graph_spec(
        [member("features", "cnn_features", dense_units=64), NodeSpec("flat", "adapter", adapter="flatten"),
         NodeSpec("concat", "merge", merge="concatenate"), member("head", "dense_head")],
        [("input", "features"), ("input", "flat"), ("features", "concat"), ("flat", "concat"), ("concat", "head"),
         ("head", "output")])


def fit_changes_weights(model, task, samples=16) -> None:
    x = np.random.rand(samples, *task.input_shape).astype("float32")
    y = np.random.randint(0, task.num_classes, samples)
    model.compile("adam", "sparse_categorical_crossentropy")
    before = [weight.copy() for weight in model.get_weights()]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.predict(x, verbose=0).shape == (samples, task.num_classes)


def test_the_seed_fusion_drawn_as_a_graph_has_456_458_parameters_and_trains():
    spec = seed_fusion_drawn()
    report = check(spec, DIGITS)
    assert report.ok, [problem.message for problem in report.problems]
    assert report.total_params == 456_458 == report.trainable_params
    model = build(spec, DIGITS)
    assert model.count_params() == 456_458
    assert isinstance(model.get_layer("concat"), keras.layers.Concatenate)
    assert isinstance(model.get_layer("flat"), keras.layers.Flatten)
    fit_changes_weights(model, DIGITS)


def test_the_two_tower_example_builds_and_trains():
    spec = load_spec(EXAMPLES / "two_tower_fusion.json")
    report = check(spec, DIGITS)
    assert report.ok, [problem.message for problem in report.problems]
    # cnn_features(64): 320 + 346,176; mlp(64) on 784 pixels: 50,240; dense_head(128) on 128: 17,802.
    assert report.total_params == 414_538
    assert [member.name for member in report.members] == ["features", "pixels", "head"]
    assert report.node_shapes["fusion"] == (128,) and report.node_shapes["flat"] == (784,)
    fit_changes_weights(build(spec, DIGITS), DIGITS)


def test_the_residual_example_adds_a_projection_of_the_input():
    spec = load_spec(EXAMPLES / "residual_stack.json")
    model = build(spec, WINE)
    assert model.count_params() == 2_531
    x = np.random.rand(4, 13).astype("float32")
    residual = model.get_layer("block")(x) + model.get_layer("shortcut")(x)
    np.testing.assert_allclose(model.predict(x, verbose=0),
                               keras.ops.convert_to_numpy(model.get_layer("head")(residual)), rtol=1e-5)
    fit_changes_weights(model, WINE)


def test_features_reused_by_two_branches_are_computed_once():
    spec = graph_spec(
        [member("encoder", "mlp", hidden_units=[8]), member("left", "mlp", hidden_units=[4]),
         member("right", "mlp", hidden_units=[4]), NodeSpec("both", "merge", merge="concatenate"),
         member("head", "dense_head", hidden_units=[])],
        [("input", "encoder"), ("encoder", "left"), ("encoder", "right"), ("left", "both"), ("right", "both"),
         ("both", "head"), ("head", "output")])
    model = build(spec, VECTORS)
    assert [layer.name for layer in model.layers].count("encoder") == 1
    assert len(model.get_layer("encoder")._inbound_nodes) == 1
    assert model.get_layer("head").input_shape == (None, 8)


# ---- refusals, through check() --------------------------------------------------------------

REFUSED = {
    "cycle": (graph_spec([member("a", "mlp"), member("b", "mlp"), NodeSpec("m", "merge", merge="add")],
                         [("input", "m"), ("b", "m"), ("m", "a"), ("a", "b"), ("a", "output")]),
              "The graph has a cycle: 'm' -> 'a' -> 'b' -> 'm'", ("m", "a", "b")),
    "dangling input": (graph_spec([member("a", "mlp"), member("b", "mlp_classifier")],
                                  [("input", "a"), ("b", "output")]),
                       "The input of member 'b' is not connected", ("b",)),
    "no path to the output": (graph_spec([member("a", "mlp_classifier"), member("b", "mlp")],
                                         [("input", "a"), ("input", "b"), ("a", "output")]),
                              "'b' has no path to the output", ("b",)),
    "no path from input to output": (graph_spec([member("a", "mlp"), member("b", "mlp_classifier")],
                                                [("input", "a"), ("b", "output"), ("a", "b")][:2]),
                                     "There is no path from the input to the output", ("input", "output")),
    "two outputs": (StackSpec(mode="graph", graph=GraphSpec(
        nodes=(NodeSpec("input", "input"), member("a", "mlp_classifier"), NodeSpec("output", "output"),
               NodeSpec("second", "output")),
        edges=(EdgeSpec("input", "a"), EdgeSpec("a", "output"), EdgeSpec("a", "second")))),
                    "The graph has 2 output nodes ('output', 'second')", ("output", "second")),
    "missing node": (graph_spec([member("a", "mlp_classifier")], [("input", "a"), ("a", "output"), ("ghost", "a")]),
                     "The edge 'ghost' -> 'a' names 'ghost', which is not a node", ("ghost",)),
    "two edges into a member": (graph_spec([member("a", "mlp"), member("b", "mlp"), member("c", "mlp_classifier")],
                                           [("input", "a"), ("input", "b"), ("a", "c"), ("b", "c"),
                                            ("c", "output")]),
                                "Member 'c' has 2 incoming edges (from 'a', 'b')", ("c", "a", "b")),
    "merge with one input": (graph_spec([member("a", "mlp_classifier"), NodeSpec("m", "merge", merge="average")],
                                        [("input", "a"), ("a", "m"), ("m", "output")]),
                             "Merge 'm' (average) combines two or more inputs, but only 'a' feeds it", ("m", "a")),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_every_graph_refusal_is_a_problem_of_check(name):
    spec, message, nodes = REFUSED[name]
    report = check(spec, VECTORS)
    assert not report.ok
    found = [problem for problem in report.problems if problem.kind == "graph" and message in problem.message]
    assert found, [problem.message for problem in report.problems]
    assert found[0].nodes == nodes and found[0].member == (nodes[0] if nodes else "graph")
    assert report.to_dict()["problems"][report.problems.index(found[0])]["nodes"] == list(nodes)
    with pytest.raises(ValueError, match="cannot be built"):
        build(spec, VECTORS)


def test_a_preset_with_two_members_of_one_name_is_one_config_problem_not_a_graph_one_too():
    report = check(StackSpec(members=(cnn("same"), head("same"))), IMAGES)
    assert [(problem.kind, problem.member) for problem in report.problems] == [("config", "same")] * 2
    assert all("A member named 'same' already exists" in problem.message for problem in report.problems)


def test_a_half_drawn_graph_still_shows_what_is_connected():
    spec = graph_spec([member("features", "cnn_features", filters=[4]), member("head", "dense_head")],
                      [("input", "features")])
    report = check(spec, IMAGES)
    assert not report.ok
    assert report.node_shapes["features"] == (100,)
    assert report.members[0].output_shape == (100,) and report.members[1].output_shape is None
    (edge,) = report.edges
    assert edge.ok and edge.shape == (12, 12, 1) and edge.accepts == "an image (height, width, channels)"


# ---- the report per edge --------------------------------------------------------------------


def test_a_mismatched_edge_names_both_nodes_the_shapes_and_the_fix_on_that_edge():
    spec = graph_spec([member("head", "dense_head", hidden_units=[8])], [("input", "head"), ("head", "output")])
    report = check(spec, IMAGES)
    (problem,) = report.problems
    assert problem.kind == "shape" and problem.member == "head" and problem.edge == ("input", "head")
    assert ("Cannot feed the input into 'head': the input outputs shape (batch, 12, 12, 1) but 'head' expects "
            "a feature vector. Add Flatten between the input and 'head'") in problem.message
    into_head, into_output = report.edges
    assert (into_head.source, into_head.target, into_head.shape) == ("input", "head", (12, 12, 1))
    assert into_head.accepts == "a feature vector" and not into_head.ok
    assert into_head.message == problem.message
    assert into_head.fix == (NodeSpec("adapter_input_flatten", "adapter", adapter="flatten"),)
    assert into_output.ok and into_output.shape == (3,)  # checked as if the fix were there
    data = report.to_dict()
    assert data["edges"][0] == {"source": "input", "target": "head", "shape": [12, 12, 1],
                                "accepts": "a feature vector", "ok": False, "message": problem.message,
                                "fix": [{"id": "adapter_input_flatten", "kind": "adapter", "adapter": "flatten"}],
                                "fix_label": "Flatten"}
    assert data["problems"][0]["edge"] == ["input", "head"]
    # The fix goes on that edge: from the edge report, from the problem, or by auto adapters.
    for fixed in (insert_on_edge(spec, "input", "head", data["edges"][0]["fix"]), accept_fix(spec, problem.fix)):
        assert fixed.graph.inputs_of("head") == ["adapter_input_flatten"]
        after = check(fixed, IMAGES)
        assert after.ok and all(edge.ok for edge in after.edges)
        assert isinstance(build(fixed, IMAGES).get_layer("adapter_input_flatten"), keras.layers.Flatten)
    auto = check(spec.replace(auto_adapters=True), IMAGES)
    assert auto.ok and auto.edges[0].ok and auto.edges[0].message == "Auto adapters insert Flatten on this edge."


def test_an_add_of_mismatched_shapes_gets_a_dense_projection_on_that_edge():
    spec = graph_spec([member("block", "mlp", hidden_units=[32]), NodeSpec("residual", "merge", merge="add"),
                       member("head", "dense_head", hidden_units=[16])],
                      [("input", "block"), ("block", "residual"), ("input", "residual"), ("residual", "head"),
                       ("head", "output")])
    report = check(spec, WINE)
    (problem,) = report.problems
    assert problem.edge == ("input", "residual")
    assert ("'residual' expects (batch, 32) (add takes inputs of one shape: its first input 'block' gives "
            "(batch, 32))") in problem.message
    edge = report.edges[2]
    assert (edge.source, edge.target, edge.shape, edge.accepts) == ("input", "residual", (13,), "(batch, 32)")
    assert edge.fix == (NodeSpec("adapter_input_dense", "adapter", adapter="dense", units=32),)
    fixed = insert_on_edge(spec, "input", "residual", edge.fix)
    assert fixed.graph.inputs_of("residual") == ["block", "adapter_input_dense"]  # the input order kept
    # block 13*32+32, the projection 13*32+32, head 32*16+16 + 16*3+3.
    assert build(fixed, WINE).count_params() == 448 + 448 + 579


def test_a_concatenate_of_an_image_and_features_flattens_the_image():
    spec = graph_spec([member("features", "cnn_features", filters=[4], dense_units=6),
                       NodeSpec("both", "merge", merge="concatenate"), member("head", "dense_head")],
                      [("input", "features"), ("input", "both"), ("features", "both"), ("both", "head"),
                       ("head", "output")])
    (problem,) = check(spec, IMAGES).problems
    assert problem.edge == ("input", "both") and problem.fix[0].kind == "flatten"
    assert "a concatenate joins feature vectors unless all its inputs agree" in problem.message
    assert check(accept_fix(spec, problem.fix), IMAGES).ok


def test_an_average_that_feeds_the_output_takes_predictions():
    spec = graph_spec([member("a", "mlp_classifier"), member("b", "mlp", hidden_units=[5]),
                       NodeSpec("vote", "merge", merge="average")],
                      [("input", "a"), ("input", "b"), ("a", "vote"), ("b", "vote"), ("vote", "output")])
    (problem,) = check(spec, VECTORS).problems
    assert "'b' outputs shape (batch, 5) but 'vote' expects (batch, 3)" in problem.message
    assert problem.fix == (AdapterSpec(after="b", before="vote", kind="dense", units=3, activation="softmax"),)


def test_an_adapter_node_that_does_not_fit_says_so_on_its_edge():
    spec = graph_spec([NodeSpec("pool", "adapter", adapter="global_average_pooling"),
                       member("head", "dense_head")],
                      [("input", "pool"), ("pool", "head"), ("head", "output")])
    (problem,) = check(spec, VECTORS).problems
    assert problem.edge == ("input", "pool")
    assert ("Cannot feed the input into 'pool': the input outputs shape (batch, 6) but 'pool' "
            "(GlobalAveragePooling) needs a sequence or a feature map") in problem.message
    assert "Change 'pool' (GlobalAveragePooling) or remove it." in problem.message
    assert check(spec, IMAGES).ok  # on images it pools


# ---- members of a graph: trainability, fine-tuning, files, the budget ---------------------------


def test_a_frozen_graph_member_is_frozen_and_fine_tunes():
    spec = graph_spec([member("base", "mlp", hidden_units=[4, 4]), member("head", "dense_head")],
                      [("input", "base"), ("base", "head"), ("head", "output")])
    spec = spec.replace(graph=spec.graph.__class__(
        nodes=tuple(node if node.id != "base" else NodeSpec("base", "member", member=MemberSpec(
            "base", template="mlp", params={"hidden_units": [4, 4]}, trainable=False)) for node in spec.graph.nodes),
        edges=spec.graph.edges))
    report = check(spec, VECTORS)
    assert report.members[0].trainable_params == 0 and report.members[0].frozen_params == 48
    assert any("random weights; frozen" in warning for warning in report.warnings)
    model = build(spec, VECTORS)
    assert frozen_members(model, spec) == ["base"]
    assert unfreeze_top(model, spec, FineTuneSpec(unfreeze_top_layers=1)) == ["base/base_dense2"]
    ruled = spec.replace(trainability=(LayerRule(member="head", layers=".*"),))
    assert count_params(build(ruled, VECTORS)).trainable == 0


def test_a_file_member_in_a_graph_is_cut_and_exported(tmp_path):
    base = keras.Sequential([keras.Input((6,)), keras.layers.Dense(5, name="hidden"),
                             keras.layers.Dense(3, name="top")])
    path = tmp_path / "base.keras"
    base.save(path)
    node = NodeSpec("base", "member", member=MemberSpec("base", source="file", file=str(path), cut_at="hidden"))
    spec = graph_spec([node, member("head", "dense_head")], [("input", "base"), ("base", "head"), ("head", "output")])
    report = check(spec, VECTORS)
    assert report.ok and report.members[0].output_shape == (5,)
    assert member_files(spec) == {"base": path}


def test_a_graph_over_the_budget_is_refused_before_any_weight(monkeypatch):
    monkeypatch.setenv(budget.PARAMS_ENV, "1000")
    report = check(seed_fusion_drawn(), DIGITS)
    (problem,) = report.problems
    assert problem.kind == "budget" and "456,458 parameters" in problem.message
