"""dashboard/diagram.py: the DOT source of the stack diagram, from a spec and its report."""

import re

from core.spec import AdapterSpec, MemberSpec, StackSpec
from dashboard import graph_edit, graph_layout
from dashboard.diagram import canvas_edges, canvas_nodes, stack_dot, trainability
from tests.dashboard.test_graph_edit import two_tower


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


# ---- the canvas's nodes and edges -----------------------------------------------------------


def graph_report(spec, frozen=(), partly=(), bad_edges=(), problems=()):
    """A graph spec's report: members, and one entry per edge (those in `bad_edges` do not fit)."""
    report = report_for(spec, frozen=frozen, problems=problems)
    for member in report["members"]:
        if member["name"] in partly:
            member.update(trainable_params=60, frozen_params=40)
    report["edges"] = [{"source": edge.source, "target": edge.target, "shape": [5408] if edge.source != "input"
                        else [28, 28, 1], "accepts": "a feature vector", "ok": edge.pair() not in bad_edges,
                        "message": f"'{edge.source}' does not fit '{edge.target}'" if edge.pair() in bad_edges else "",
                        "fix": [], "fix_label": ""} for edge in spec.graph.edges]
    return report


def test_canvas_nodes_show_name_what_it_is_shape_and_counts_and_mark_frozen_members():
    spec = two_tower()
    report = graph_report(spec, frozen=("features",), partly=("head",), problems=("concatenate",))
    nodes = {node.id: node for node in canvas_nodes(spec, spec.graph, graph_layout.positions(spec), report)}
    assert nodes["features"].text.splitlines()[0] == "**features** · template cnn\\_features  "
    assert "(4,) → (8,)" in nodes["features"].text and "0 / 100 params trainable" in nodes["features"].text
    assert nodes["features"].state == "frozen" and "**FROZEN**" in nodes["features"].text
    assert "dashed" in nodes["features"].style["border"]
    assert nodes["head"].state == "partly frozen" and "**PARTLY FROZEN**" in nodes["head"].text
    assert nodes["concatenate"].text.startswith("**concatenate** · concatenate") and nodes["concatenate"].problem
    assert "#dc2626" in nodes["concatenate"].style["border"]
    assert "(5408,)" in nodes["flatten"].text  # an adapter's shape: the one on its outgoing edge
    assert nodes["input"].text == "**input** · digits28  \n(4,)" and nodes["output"].text == "**output**  \n(3,)"
    assert nodes["head"].position == tuple(spec.layout["head"])


def test_canvas_edges_carry_their_shape_and_a_mismatch_is_red_with_the_reason():
    spec = two_tower()
    report = graph_report(spec, bad_edges=(("features", "concatenate"),))
    drawn = {(edge.source, edge.target): edge for edge in canvas_edges(spec.graph, report)}
    assert drawn[("input", "features")].label == "(28, 28, 1)" and drawn[("input", "features")].ok
    bad = drawn[("features", "concatenate")]
    assert (bad.ok, bad.label, bad.message) == (False, "✗ (5408,), needs a feature vector",
                                                "'features' does not fit 'concatenate'")
    assert [edge.label for edge in canvas_edges(spec.graph, None)] == [""] * len(spec.graph.edges)


def test_an_edge_drawn_twice_gets_ids_of_its_own():
    spec = graph_edit.connect(two_tower(), "features", "concatenate")
    ids = [edge.id for edge in canvas_edges(spec.graph)]
    assert len(set(ids)) == len(ids) and "features->concatenate#2" in ids


def test_file_names_on_the_canvas_are_shown_as_written_never_as_markup():
    member = MemberSpec("encoder", source="file", file="sha256:ab")
    spec = graph_edit.add_member(graph_edit.empty_graph(two_tower()), member)
    (node,) = [n for n in canvas_nodes(spec, spec.graph, graph_layout.positions(spec),
                                       display_name=lambda ref: "<img src=x onerror=alert(1)>*$x$*.keras")
               if n.id == "encoder"]
    assert "\\<img src=x onerror=alert\\(1\\)\\>" not in node.text  # parentheses stay as they are
    assert "\\<img src=x onerror=alert(1)\\>\\*\\$x\\$\\*.keras" in node.text


def test_an_edge_after_a_node_that_could_not_be_wired_is_not_checked_rather_than_red():
    spec = two_tower()
    report = graph_report(spec)
    report["edges"][-1] = {**report["edges"][-1], "shape": None, "accepts": "", "ok": False,
                           "message": "Not checked: 'head' has no output (see its problem)."}
    edge = canvas_edges(spec.graph, report)[-1]
    assert (edge.ok, edge.checked, edge.label) == (False, False, "? · not checked")
