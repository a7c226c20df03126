"""The Assemble page's canvas and node panels (AppTest; the inspector answering is real).

AppTest does not run the canvas component's JavaScript: a test sends what the component
would send back (its answer: nodes with positions, edges, the id clicked, a timestamp)
through session state under the component's key, as the browser does; tests/e2e drives the
real thing in Chromium.
"""

import pytest

from core.spec import GRAPH_MODE, MemberSpec, StackSpec
from dashboard import graph_edit, graph_layout, services, state
from dashboard.widgets import canvas
from tests.dashboard.apptest import TINY, app, open_page, texts
from tests.dashboard.test_graph_edit import two_tower

pytestmark = pytest.mark.usefixtures("inspector_home")
ANSWERED = [0]  # the browser's last answer's timestamp


def browser_time(flow) -> int:
    """An answer's timestamp: newer than the drawing it answers and than the last answer."""
    ANSWERED[0] = max(ANSWERED[0], flow.timestamp) + 1
    return ANSWERED[0]


def assemble(spec: StackSpec | None = None):
    return open_page(app(spec), "assemble")


def draft(at) -> StackSpec:
    return at.session_state[state.DRAFT]


def shown(at) -> canvas.Shown:
    return at.session_state[state.CANVAS_SHOWN]


def answer(at, selected: str | None = None, moved: dict | None = None, drawn: tuple = ()):
    """The canvas answers: the drawing it was given (as the component sends it back), with
    nodes moved, edges drawn and a click."""
    given = shown(at)
    sent = {"nodes": [node.asdict() for node in given.flow.nodes],
            "edges": [edge.asdict() for edge in given.flow.edges]}
    for node in sent["nodes"]:
        if node["id"] in (moved or {}):
            x, y = moved[node["id"]]
            node["position"] = {"x": x, "y": y}
    sent["edges"] += [{"id": f"{canvas.DRAWN_EDGE_PREFIX}{source}-{target}", "source": source, "target": target}
                      for source, target in drawn]
    at.session_state[canvas.CANVAS_KEY] = {**sent, "selectedId": selected, "timestamp": browser_time(given.flow)}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def node_text(at, node_id: str) -> str:
    return next(node.data["content"] for node in shown(at).flow.nodes if node.id == node_id)


def node_style(at, node_id: str) -> dict:
    return next(node.style for node in shown(at).flow.nodes if node.id == node_id)


@pytest.fixture
def inspector_checks(monkeypatch):
    """How many specs the page sent to the inspector to check."""
    real = services.client()
    calls = []

    class Counting:
        def __getattr__(self, name):
            return getattr(real, name)

        def check(self, spec):
            calls.append(spec)
            return real.check(spec)

    monkeypatch.setattr(services, "client", Counting)
    services._check.clear()
    return calls


def test_the_canvas_draws_the_preset_s_graph_with_shapes_and_counts_from_the_report():
    at = assemble()
    assert [node.id for node in shown(at).flow.nodes] == ["input", "model_a", "model_b", "output"]
    assert [(e.source, e.target) for e in shown(at).flow.edges] == [("input", "model_a"), ("model_a", "model_b"),
                                                                   ("model_b", "output")]
    assert "(28, 28, 1) → (5408,)" in node_text(at, "model_a")
    assert "693,642 / 693,642 params trainable" in node_text(at, "model_b")
    assert draft(at).layout == {}  # drawn without changing the spec


def test_a_click_on_a_member_opens_its_panel_and_the_panel_edits_the_preset_in_place():
    at = answer(assemble(), selected="model_a")
    assert state.CANVAS_SELECTION in at.session_state and at.session_state[state.CANVAS_SELECTION] == ("node",
                                                                                                      "model_a")
    assert at.text_input(key="draft-node-model_a-name").value == "model_a"
    assert "draft-member-model_a-name" not in [t.key for t in at.text_input]  # one editor of a member at a time
    at.number_input(key="draft-node-model_a-cnn_features-dense_units").set_value(64).run()
    assert draft(at).mode == "sequential" and draft(at).members[0].params["dense_units"] == 64
    assert "(28, 28, 1) → (64,)" in node_text(at, "model_a")
    at.button(key="canvas-close").click().run()
    assert at.session_state[state.CANVAS_SELECTION] is None
    assert "draft-member-model_a-name" in [t.key for t in at.text_input]


def test_freezing_a_member_in_its_panel_marks_it_frozen_on_the_canvas():
    at = answer(assemble(TINY), selected="encoder")
    at.toggle(key="draft-node-encoder-trainable").set_value(False).run()
    assert draft(at).members[0].trainable is False
    assert "**FROZEN**" in node_text(at, "encoder") and "dashed" in node_style(at, "encoder")["border"]
    assert "0 / 40 params trainable" in node_text(at, "encoder")
    layers = next(table for table in at.dataframe if table.editing_mode != "read_only").value
    assert list(layers["trainable"]) == [False]


def test_dragging_a_node_moves_it_without_asking_the_inspector_or_redrawing_the_canvas(inspector_checks):
    at = assemble()
    asked, timestamp = len(inspector_checks), shown(at).flow.timestamp
    at = answer(at, moved={"model_b": [420, 77]})
    assert draft(at).layout == {"model_b": [420, 77]} and draft(at).mode == "sequential"
    assert len(inspector_checks) == asked  # the check is cached on the spec without its layout
    assert shown(at).flow.timestamp == timestamp  # the canvas has the position already
    at.button(key="canvas-auto-layout").click().run()
    assert draft(at).layout == {}
    assert shown(at).flow.timestamp > timestamp and len(inspector_checks) == asked


def test_an_edge_drawn_on_the_canvas_makes_the_preset_a_graph_and_a_refused_one_says_why():
    at = assemble()
    at.button(key="canvas-add-merge-button").click().run()
    assert draft(at).mode == GRAPH_MODE and "concatenate" in draft(at).graph.ids()
    assert at.session_state[state.CANVAS_SELECTION] == ("node", "concatenate")  # its panel opens
    mode = at.selectbox(key="draft-mode")
    assert (mode.value, mode.disabled) == (GRAPH_MODE, True)  # the mode shown follows the draft
    at = answer(at, drawn=[("input", "concatenate")])
    assert ("input", "concatenate") in graph_edit.edge_pairs(draft(at))
    timestamp = shown(at).flow.timestamp
    at = answer(at, drawn=[("input", "model_b")])
    assert "already takes its input from 'model_a'" in texts(at)
    assert ("input", "model_b") not in graph_edit.edge_pairs(draft(at))
    assert shown(at).flow.timestamp > timestamp  # drawn afresh, without the refused edge


def test_the_same_answer_is_applied_once():
    at = answer(assemble(), moved={"model_a": [5, 5]})
    at.button(key="canvas-auto-layout").click().run()
    at.run()  # the component's value stays in session state: it must not move the node back
    assert draft(at).layout == {}


def test_merge_and_adapter_panels_edit_their_node_and_delete_it():
    at = answer(assemble(two_tower()), selected="concatenate")
    at.selectbox(key="draft-node-concatenate-merge").set_value("add").run()
    assert draft(at).graph.node("concatenate").merge == "add"
    at.button(key="canvas-input-up-1").click().run()
    assert draft(at).graph.inputs_of("concatenate") == ["flatten", "features"]
    at = answer(at, selected="flatten")
    at.selectbox(key="draft-node-flatten-adapter").set_value("dense").run()
    at.number_input(key="draft-node-flatten-dense-units").set_value(32).run()
    node = draft(at).graph.node("flatten")
    assert (node.adapter, node.units, node.activation) == ("dense", 32, "linear")
    at.button(key="canvas-delete").click().run()
    assert "flatten" not in draft(at).graph.ids() and at.session_state[state.CANVAS_SELECTION] is None
    assert all("flatten" not in pair for pair in graph_edit.edge_pairs(draft(at)))


def test_a_member_placed_from_the_palette_is_named_after_its_template_and_renamed_in_its_panel():
    at = assemble(two_tower())
    at.selectbox(key="canvas-add-template").set_value("mlp").run()
    at.button(key="canvas-add-template-button").click().run()
    assert draft(at).graph.node("mlp").member == MemberSpec("mlp", template="mlp")
    at.text_input(key="draft-node-mlp-name").set_value("tower").run()
    assert draft(at).graph.node("tower") is not None and at.session_state[state.CANVAS_SELECTION] == ("node",
                                                                                                      "tower")
    at.text_input(key="draft-node-tower-name").set_value("head").run()
    assert "already exists" in at.error[0].value


def test_a_run_placed_on_the_canvas_is_cut_at_a_layer_in_its_panel(shared_home, finished_run):
    at = assemble(two_tower())
    at.selectbox(key="canvas-add-run").set_value(finished_run).run()
    at.button(key="canvas-add-run-button").click().run()
    node = draft(at).graph.node("pretrained")
    assert node.member == MemberSpec("pretrained", source="run", run_id=finished_run)
    assert f"run {finished_run}" in node_text(at, "pretrained")
    cut = at.selectbox(key="draft-node-pretrained-cut")
    assert cut.options[:2] == ["(whole model)", "encoder"]
    cut.set_value("encoder").run()
    assert draft(at).graph.node("pretrained").member.cut_at == "encoder"


def test_an_empty_stack_starts_with_the_input_and_output_only():
    at = assemble()
    at.button(key="canvas-empty").click().run()
    assert draft(at).mode == GRAPH_MODE and draft(at).graph.ids() == ["input", "output"]
    mode = next(box for box in at.selectbox if box.label == "Stacking mode")  # a new generation of draft- keys
    assert mode.value == GRAPH_MODE and mode.disabled


def mismatched() -> StackSpec:
    """The two towers with the raw image fed to the concatenation unflattened."""
    return graph_edit.connect(graph_edit.delete_node(two_tower(), "flatten"), "input", "concatenate")


def flow_edge(at, source: str, target: str):
    return next(edge for edge in shown(at).flow.edges if (edge.source, edge.target) == (source, target))


def test_a_mismatched_edge_is_red_with_the_reason_and_its_panel_s_fix_inserts_the_adapter_on_it():
    at = assemble(mismatched())
    edge = flow_edge(at, "input", "concatenate")
    assert edge.style["stroke"] == "#dc2626" and edge.label == "✗ (28, 28, 1), needs a feature vector"
    assert flow_edge(at, "features", "concatenate").label == "(64,)" and not flow_edge(at, "features",
                                                                                        "concatenate").style
    at = answer(at, selected=edge.id)
    assert at.session_state[state.CANVAS_SELECTION] == ("edge", "input", "concatenate")
    assert any("Cannot feed the input into 'concatenate'" in e.value for e in at.error)
    at.button(key="canvas-edge-fix").click().run()
    assert draft(at).graph.inputs_of("concatenate") == ["features", "adapter_input_flatten"]
    assert "The stack builds: (28, 28, 1) → (10,)." in texts(at)
    assert "Inserted automatically" not in texts(at)  # the adapter is a node of the drawing
    assert not any(edge.style for edge in shown(at).flow.edges)


def test_a_problem_s_fix_on_a_graph_goes_on_its_edge():
    at = assemble(mismatched())
    fix = next(button for button in at.button if button.label == "Apply fix: Flatten")
    fix.click().run()
    assert draft(at).graph.inputs_of("concatenate") == ["features", "adapter_input_flatten"]
    assert draft(at).adapters == () and "The stack builds" in texts(at)


def test_the_mode_graph_turns_the_preset_into_its_graph():
    at = assemble()
    at.selectbox(key="draft-mode").set_value(GRAPH_MODE).run()
    assert draft(at).mode == GRAPH_MODE and draft(at).graph.ids() == ["input", "model_a", "model_b", "output"]
    assert draft(at).name == "graph_digits28" and at.text_input(key="draft-name").value == "graph_digits28"
    assert "The stack builds" in texts(at) and at.metric[0].value == "693,962"


@pytest.mark.parametrize("spec", [two_tower(), graph_layout.auto_layout(two_tower())], ids=["placed", "unplaced"])
def test_a_graph_spec_round_trips_through_the_canvas_unchanged(spec):
    at = assemble()
    at.file_uploader(key="asm-import").set_value(("towers.json", spec.to_json().encode(), "application/json")).run()
    assert draft(at) == spec
    at = answer(answer(at), selected="features")  # the canvas answers its drawing, a click
    assert draft(at) == spec and draft(at).to_json() == spec.to_json()  # what "Export spec" writes


def echo(flow, **changes) -> dict:
    """What the component sends back after taking the drawing `flow` (positions may move)."""
    answer = {"nodes": [node.asdict() for node in flow.nodes], "edges": [edge.asdict() for edge in flow.edges],
              "selectedId": None, "timestamp": browser_time(flow)}
    answer.update(changes)
    return answer


def test_an_answer_shows_a_drawing_whatever_its_positions_and_drawn_edges_but_not_with_other_text():
    at = assemble()
    flow = shown(at).flow
    assert canvas.answer_shows(echo(flow), flow)
    moved = echo(flow)
    moved["nodes"][1]["position"] = {"x": 999, "y": -5}
    moved["edges"].append({"id": f"{canvas.DRAWN_EDGE_PREFIX}input-output", "source": "input", "target": "output"})
    assert canvas.answer_shows(moved, flow)
    stale = echo(flow)
    stale["nodes"][1]["data"] = {"content": "an older text"}
    assert not canvas.answer_shows(stale, flow)
    assert not canvas.answer_shows(echo(flow, edges=echo(flow)["edges"][:-1]), flow)


def test_a_drawing_the_canvas_answered_past_is_given_again_newer():
    """The component drops a drawing whose timestamp is older than its own last answer: an
    answer sent after a drawing was given, but without it, makes the page give it again."""
    at = assemble()
    before = shown(at).flow
    at.button(key="canvas-add-merge-button").click().run()  # a new drawing, with the merge
    given = shown(at).flow
    assert given.timestamp > before.timestamp and "concatenate" in [node.id for node in given.nodes]
    # The canvas answers after that drawing's timestamp, still showing the one before.
    at.session_state[canvas.CANVAS_KEY] = echo(before, timestamp=given.timestamp + 50)
    at.run()
    again = shown(at).flow
    assert again.timestamp > given.timestamp + 50 and [n.id for n in again.nodes] == [n.id for n in given.nodes]
    at.session_state[canvas.CANVAS_KEY] = echo(again)  # it took it: nothing more to give
    at.run()
    assert shown(at).flow.timestamp == again.timestamp


def test_an_edge_is_deleted_from_its_panel_and_a_node_s_edges_from_the_node_s():
    at = assemble(two_tower())
    at = answer(at, selected=flow_edge(at, "head", "output").id)
    at.button(key="canvas-delete").click().run()
    assert ("head", "output") not in graph_edit.edge_pairs(draft(at))
    assert at.session_state[state.CANVAS_SELECTION] is None
    assert "The input of the output is not connected" in texts(at)
    at = answer(at, selected="concatenate")
    at.button(key="canvas-edge-delete-0").click().run()  # its edges: features ->, flatten ->, -> head
    assert graph_edit.graph(draft(at)).inputs_of("concatenate") == ["flatten"]


def test_a_drawing_given_before_the_canvas_fitted_the_last_one_in_view_fits_too():
    """The component fits the view after its own layout of a drawing, which its second answer
    follows; a drawing given before then (a selection, a report's labels) must still ask for
    the fit, or the nodes just placed stay out of view. Later drawings keep the user's zoom."""
    at = assemble(two_tower())
    at = answer(answer(at))  # given, laid out (and fitted)
    at = answer(at, selected="features")  # the selection is drawn: the same positions
    assert not shown(at).fit
    at.button(key="canvas-add-merge-button").click().run()  # a node placed: fit it in view
    assert shown(at).fit and shown(at).answers == 0
    at = answer(at, selected="head")  # drawn again before the component laid out the placed node
    assert shown(at).fit
    at = answer(answer(at))
    at = answer(at, selected="features")
    assert not shown(at).fit
