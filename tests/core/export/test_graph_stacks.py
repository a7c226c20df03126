"""stack.py for graph stacks built by core.build: merges, adapters, reused features, residual adds."""

from pathlib import Path

import keras
import pytest

from core.build.stacking import build
from core.spec import EdgeSpec, GraphSpec, MemberSpec, NodeSpec, StackSpec, load_spec
from core.spec.tasks import TaskInfo
from tests.core.export.export_stacks import assert_same_stack, import_script, write_script

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
IMAGES = TaskInfo("multiclass", (12, 12, 1), num_classes=3)
VECTORS = TaskInfo("multiclass", (6,), num_classes=3)


def member(name, template, trainable=True, **params):
    return NodeSpec(name, "member", member=MemberSpec(name, template=template, params=params, trainable=trainable))


def graph_spec(name, nodes, edges, **fields) -> StackSpec:
    nodes = (NodeSpec("input", "input"), *nodes, NodeSpec("output", "output"))
    return StackSpec(name=name, mode="graph", graph=GraphSpec(nodes=nodes, edges=tuple(EdgeSpec(*e) for e in edges)),
                     **fields)


def two_tower():
    spec = load_spec(EXAMPLES / "two_tower_fusion.json")
    small = {"features": {"filters": [4], "dense_units": 8}, "pixels": {"hidden_units": [8]},
             "head": {"hidden_units": [8]}}
    nodes = tuple(node if node.member is None else NodeSpec(node.id, "member", member=MemberSpec(
        node.id, template=node.member.template, params=small[node.id])) for node in spec.graph.nodes)
    return spec.replace(graph=GraphSpec(nodes=nodes, edges=spec.graph.edges)), IMAGES


def residual():
    return load_spec(EXAMPLES / "residual_stack.json"), TaskInfo("multiclass", (13,), num_classes=3)


def shared_features_and_every_merge():
    """One encoder read by three branches; their outputs multiplied, maxed and averaged."""
    branches = [member(name, "mlp", hidden_units=[4]) for name in ("left", "middle", "right")]
    merges = [NodeSpec("product", "merge", merge="multiply"), NodeSpec("largest", "merge", merge="maximum"),
              NodeSpec("mean", "merge", merge="average")]
    spec = graph_spec("shared", [member("encoder", "mlp", hidden_units=[8]), *branches, *merges,
                                 member("head", "dense_head", hidden_units=[])],
                      [("input", "encoder"), ("encoder", "left"), ("encoder", "middle"), ("encoder", "right"),
                       ("left", "product"), ("middle", "product"), ("middle", "largest"), ("right", "largest"),
                       ("product", "mean"), ("largest", "mean"), ("mean", "head"), ("head", "output")])
    return spec, VECTORS


def auto_adapters_and_a_frozen_member():
    """A frozen encoder whose features reach a sequence encoder through an auto-inserted
    Reshape, and a reshape adapter node from the input into another; both concatenated."""
    spec = graph_spec(
        "adapted", [member("encoder", "cnn_features", trainable=False, filters=[4]),
                    member("from_features", "conv1d_encoder", filters=[4]),
                    NodeSpec("as_sequence", "adapter", adapter="reshape", target_shape=(144, 1)),
                    member("from_pixels", "conv1d_encoder", filters=[4]),
                    NodeSpec("joined", "merge", merge="concatenate"), member("head", "dense_head", hidden_units=[4])],
        [("input", "encoder"), ("encoder", "from_features"), ("input", "as_sequence"), ("as_sequence", "from_pixels"),
         ("from_features", "joined"), ("from_pixels", "joined"), ("joined", "head"), ("head", "output")],
        auto_adapters=True)
    return spec, IMAGES


GRAPHS = {"two_tower": two_tower, "residual": residual, "shared_and_merges": shared_features_and_every_merge,
          "auto_adapters_frozen": auto_adapters_and_a_frozen_member}


@pytest.mark.parametrize("name", sorted(GRAPHS))
def test_a_graph_stack_is_written_as_functional_keras_that_rebuilds_it(name, tmp_path):
    spec, task = GRAPHS[name]()
    model = build(spec, task)
    path = write_script(model, spec, tmp_path)
    text = path.read_text()
    assert f'({spec.mode})' in text.splitlines()[0]
    assert max(len(line) for line in text.splitlines()) <= 88
    assert_same_stack(model, import_script(path).build_model())


def test_the_generated_merges_and_adapters_keep_their_node_names(tmp_path):
    spec, task = auto_adapters_and_a_frozen_member()
    model = build(spec, task)
    assert isinstance(model.get_layer("adapter_encoder_reshape"), keras.layers.Reshape)  # the auto fix
    rebuilt = import_script(write_script(model, spec, tmp_path)).build_model()
    for name, kind in (("as_sequence", keras.layers.Reshape), ("joined", keras.layers.Concatenate),
                       ("adapter_encoder_reshape", keras.layers.Reshape)):
        assert isinstance(rebuilt.get_layer(name), kind)
    assert not rebuilt.get_layer("encoder").trainable
    spec, task = residual()
    rebuilt = import_script(write_script(build(spec, task), spec, tmp_path)).build_model()
    assert isinstance(rebuilt.get_layer("residual"), keras.layers.Add)
    assert isinstance(rebuilt.get_layer("shortcut"), keras.layers.Dense)
