"""dashboard/diagram.py: the DOT source of the stack diagram, from a spec and its report."""

import re

from core.spec import AdapterSpec, MemberSpec, StackSpec
from dashboard.diagram import stack_dot, trainability


def report_for(spec, frozen=(), problems=(), adapters=()):
    members = []
    for member in spec.all_members():
        total = 100
        members.append({"name": member.name, "source": member.source, "role": "member",
                        "input_shape": [4], "output_shape": [8], "total_params": total,
                        "trainable_params": 0 if member.name in frozen else total,
                        "non_trainable_params": total if member.name in frozen else 0,
                        "frozen_params": total if member.name in frozen else 0,
                        "layers": [{"path": f"{member.name}_dense{i}", "name": f"{member.name}_dense{i}",
                                    "class": "Dense", "output_shape": [8], "params": 50,
                                    "trainable_params": 0 if member.name in frozen else 50,
                                    "trainable": member.name not in frozen, "has_weights": True}
                                   for i in (1, 2)]})
    return {"ok": not problems, "input_shape": [4], "output_shape": [3], "members": members,
            "problems": [{"member": name, "kind": "shape", "message": "", "fix": []} for name in problems],
            "adapters": [a.to_dict() for a in adapters]}


def edges(dot):
    return re.findall(r'^\s*"([^"]+)" -> "([^"]+)"', dot, flags=re.M)


def test_sequential_stack_is_a_chain_with_shapes_and_counts():
    spec = StackSpec(members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="dense_head")))
    dot = stack_dot(spec, report_for(spec))
    assert dot.startswith("digraph stack {") and dot.rstrip().endswith("}")
    assert edges(dot) == [("step:input", "member:a"), ("member:a", "member:b"), ("member:b", "step:output")]
    assert "(4,) → (8,)" in dot and "100 params" in dot and "(3,)" in dot


def test_frozen_members_are_dashed_and_labelled():
    spec = StackSpec(members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="dense_head")))
    dot = stack_dot(spec, report_for(spec, frozen=("a",)))
    line = next(line for line in dot.splitlines() if line.strip().startswith('"member:a"'))
    assert "dashed" in line and "FROZEN" in line
    assert "dashed" not in next(line for line in dot.splitlines() if line.strip().startswith('"member:b"'))


def test_without_a_report_the_member_flags_decide():
    member = MemberSpec("a", template="mlp", trainable=False)
    assert trainability(None, member) == "frozen"
    assert trainability({"total_params": 10, "trainable_params": 4, "frozen_params": 6}, member) == "partly frozen"
    assert trainability({"total_params": 10, "trainable_params": 4, "frozen_params": 0}, member) == "trainable"
    spec = StackSpec(mode="transfer", members=(MemberSpec("base", source="run", run_id="r1"),),
                     head=MemberSpec("head", template="dense_head"), options={"freeze_base": True})
    dot = stack_dot(spec, None)
    assert "FROZEN" in next(line for line in dot.splitlines() if '"member:base"' in line and "label" in line)


def test_statistics_that_never_train_do_not_make_a_member_partly_frozen():
    member = MemberSpec("encoder", template="tabular_encoder")
    normalization_only = {"total_params": 109, "trainable_params": 100, "frozen_params": 0}
    assert trainability(normalization_only, member) == "trainable"
    assert trainability({"total_params": 109, "trainable_params": 0, "frozen_params": 100}, member) == "frozen"


def test_fusion_branches_meet_at_the_concatenation_with_the_raw_input_as_a_branch():
    spec = StackSpec(mode="fusion", members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="mlp")),
                     head=MemberSpec("head", template="dense_head"), options={"include_raw_input": True})
    dot = stack_dot(spec, report_for(spec))
    found = edges(dot)
    assert ("member:a", "step:fusion") in found and ("member:b", "step:fusion") in found
    assert ("step:fusion", "member:head") in found
    # The raw input runs straight into the fusion, labelled; it is not drawn as an adapter.
    assert ("step:input", "step:fusion") in found and "raw input, flattened" in dot
    assert "adapter:" not in dot and "Flatten" not in dot


def test_the_diagram_follows_a_dark_theme():
    spec = StackSpec(members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="dense_head")))
    light, dark = stack_dot(spec, report_for(spec)), stack_dot(spec, report_for(spec), theme="dark")
    for dot in (light, dark):
        assert 'bgcolor="transparent"' in dot  # no white box on a dark page
    assert 'fontcolor="#d1d5db"' in dark and 'fontcolor="#374151"' in light


def test_accepted_adapters_sit_on_their_edge():
    spec = StackSpec(members=(MemberSpec("a", template="cnn_features"), MemberSpec("b", template="dense_head")))
    adapter = AdapterSpec(after="a", kind="reshape", before="b", target_shape=(5408, 1))
    dot = stack_dot(spec, report_for(spec, adapters=(adapter,)))
    assert 'label="Reshape(5408, 1)"' in dot
    assert ("member:a", "adapter:1:0") in edges(dot) and ("adapter:1:0", "member:b") in edges(dot)


def test_a_problem_is_drawn_in_red():
    spec = StackSpec(members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="dense_head")))
    dot = stack_dot(spec, report_for(spec, problems=("b",)))
    assert '"member:a" -> "member:b" [color="#dc2626", penwidth=2];' in dot


def test_an_expanded_member_lists_its_layers_in_a_cluster():
    spec = StackSpec(members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="dense_head")))
    dot = stack_dot(spec, report_for(spec, frozen=("a",)), expanded=["a"])
    assert 'subgraph "cluster_a"' in dot
    assert ("layer:a:head", "layer:a:0") in edges(dot) and ("layer:a:1", "member:b") in edges(dot)
    assert "a_dense1 (Dense)" in dot and "frozen" in dot


def test_names_cannot_break_out_of_their_quotes():
    spec = StackSpec(members=(MemberSpec('evil"] -> x [label="', template="mlp"),))
    dot = stack_dot(spec, None)
    assert '\\"' in dot and '"member:evil\\"] -> x [label=\\""' in dot


def test_an_adapter_after_the_fusion_step_sits_on_the_edge_into_the_head():
    # "fusion" is the producer core.build gives the head's input (core.spec.rules.stack_edges).
    spec = StackSpec(mode="fusion", members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="mlp")),
                     head=MemberSpec("head", template="conv1d_encoder"))
    adapter = AdapterSpec(after="fusion", kind="reshape", before="head", target_shape=(16, 1))
    found = edges(stack_dot(spec, report_for(spec, adapters=(adapter,))))
    assert ("step:fusion", "adapter:4:0") in found and ("adapter:4:0", "member:head") in found
