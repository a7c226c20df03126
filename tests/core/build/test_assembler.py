"""core/build/assembler.py and wiring.py: the one builder checks exactly the edges of the stack's graph."""

import keras
import pytest

from core.build.assembler import Assembler
from core.build.stacking import build, check
from core.build.wiring import wire
from core.spec import AdapterSpec, MemberSpec, StackSpec, graph_of, rules
from core.spec.tasks import TaskInfo

IMAGES = TaskInfo("multiclass", (12, 12, 1), num_classes=3)
VECTORS = TaskInfo("multiclass", (6,), num_classes=3)


def cnn(name="features"):
    return MemberSpec(name, template="cnn_features", params={"filters": [4], "dense_units": 4})


def classifier(name):
    return MemberSpec(name, template="cnn_classifier", params={"filters": [2], "hidden_units": [4]})


HEAD = MemberSpec("head", template="dense_head", params={"hidden_units": [8]})

SPECS = {
    "sequential": StackSpec(members=(cnn(), HEAD)),
    "sequential-head": StackSpec(members=(cnn("a"), MemberSpec("b", template="mlp")), head=HEAD),
    "transfer": StackSpec(mode="transfer", members=(cnn(),), head=HEAD),
    "fusion": StackSpec(mode="fusion", members=(cnn("a"), cnn("b")), head=HEAD),
    "fusion-raw": StackSpec(mode="fusion", members=(cnn(),), head=HEAD, options={"include_raw_input": True}),
    "ensemble-average": StackSpec(mode="ensemble", members=(classifier("a"), classifier("b"))),
    "ensemble-meta": StackSpec(mode="ensemble", members=(classifier("a"), classifier("b")), head=HEAD,
                               options={"combine": "meta_head"}),
}


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_builder_adapts_on_exactly_the_edges_of_the_rules(name):
    spec = SPECS[name]
    assembler = Assembler(spec, IMAGES, None)
    assert assembler.check_names()
    outputs = wire(assembler)
    assert outputs is not None and not assembler.problems, [p.message for p in assembler.problems]
    # Each edge of the preset once, named as adapters name them; the raw input's Flatten is
    # the fusion's own (its two edges are the graph's, not the preset's).
    raw = {(rules.INPUT, rules.RAW_INPUT_FLATTEN), (rules.RAW_INPUT_FLATTEN, rules.FUSION)}
    assert sorted(set(assembler.wired) - raw) == sorted(
        edge for edge in rules.stack_edges(spec) if edge != rules.RAW_INPUT_EDGE)
    # And every edge of the graph has its report, in the graph's order.
    assert [(report.source, report.target) for report in
            (assembler.edge_reports[index] for index in sorted(assembler.edge_reports))] == [
        edge.pair() for edge in graph_of(spec).edges]


@pytest.mark.parametrize("name", sorted(SPECS))
def test_the_layers_the_builder_adds_between_members_are_reserved_names(name):
    spec = SPECS[name]
    model = build(spec, IMAGES)
    member_names = {member.name for member in spec.all_members()}
    added = {layer.name for layer in model.layers} - member_names
    assert added and added <= set(rules.RESERVED_NAMES), added


@pytest.mark.parametrize("mode, options", [("fusion", {}), ("ensemble", {"combine": "meta_head"})])
def test_the_fix_offered_before_the_head_of_a_combining_step_builds_when_accepted(mode, options):
    # A head that reads sequences: the combined vector needs a Reshape on the step -> head edge.
    head = MemberSpec("head", template="conv1d_encoder")
    members = (cnn("a"), cnn("b")) if mode == "fusion" else (classifier("a"), classifier("b"))
    spec = StackSpec(mode=mode, members=members, head=head, options=options)
    report = check(spec, IMAGES)
    step = rules.FUSION if mode == "fusion" else rules.ENSEMBLE
    into_head = next(problem for problem in report.problems if problem.member == "head")
    assert into_head.fix[0].after == step and f"Cannot feed the {step} into 'head'" in into_head.message
    fixed = spec
    for problem in report.problems:
        fixed = rules.accept_fix(fixed, problem.fix)
    after = check(fixed, IMAGES)
    assert after.ok, [problem.message for problem in after.problems]
    assert after.adapters == tuple(adapter for problem in report.problems for adapter in problem.fix)
    model = build(fixed, IMAGES)
    assert isinstance(model.get_layer(f"adapter_{step}_reshape"), keras.layers.Reshape)


def test_an_accepted_adapter_after_the_average_of_an_ensemble_is_applied():
    spec = StackSpec(mode="ensemble", members=(MemberSpec("a", template="mlp_classifier"),
                                               MemberSpec("b", template="mlp_classifier")),
                     adapters=(AdapterSpec(after="ensemble", before="output", kind="dense", units=3,
                                           activation="softmax"),))
    report = check(spec, VECTORS)
    assert report.ok and report.adapters == spec.adapters
    assert isinstance(build(spec, VECTORS).get_layer("adapter_ensemble_dense"), keras.layers.Dense)
