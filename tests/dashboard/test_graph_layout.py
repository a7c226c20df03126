"""dashboard.graph_layout: where the nodes of a drawing sit, and what the canvas sent back."""

from core.spec import graph_of, load_spec
from dashboard import graph_edit, graph_layout
from tests.dashboard.apptest import ROOT
from tests.dashboard.test_graph_edit import two_tower


def test_the_docstring_example_holds():
    import doctest

    assert doctest.testmod(graph_layout).failed == 0


def test_moves_change_only_the_layout_and_auto_layout_forgets_it():
    spec = two_tower()
    moved = graph_layout.move(spec, {"head": [500.4, 20], "ghost": [1, 1]})
    assert moved.layout["head"] == [500, 20] and "ghost" not in moved.layout
    assert moved.model_key() == spec.model_key()
    assert graph_layout.move(spec, {"head": spec.layout["head"]}) is spec
    laid_out = graph_layout.auto_layout(moved)
    assert laid_out.layout == {} and laid_out.model_key() == spec.model_key()


def test_the_layered_layout_puts_the_input_on_top_the_output_at_the_bottom_and_rows_in_feed_order():
    spec = graph_layout.auto_layout(two_tower())
    placed = graph_layout.positions(spec)
    rows = {node_id: y for node_id, (x, y) in placed.items()}
    assert rows["input"] < rows["features"] == rows["flatten"] < rows["concatenate"] < rows["head"] < rows["output"]
    assert placed["features"][0] < placed["flatten"][0]  # the order the input feeds them
    assert placed["concatenate"][0] == placed["input"][0]


def test_an_imported_spec_without_layout_is_drawn_without_being_changed():
    fusion = load_spec(ROOT / "examples" / "seed_fusion.json")
    placed = graph_layout.positions(fusion)
    assert set(placed) == set(graph_of(fusion).ids()) and fusion.layout == {}
    cyclic = graph_edit.connect(graph_edit.delete_edge(two_tower(), "head", "output"), "head", "concatenate")
    assert set(graph_layout.positions(cyclic)) == set(cyclic.graph.ids())  # a cycle is drawn too


def test_canvas_edits_are_the_edges_drawn_that_the_spec_lacks_and_the_nodes_moved():
    spec = two_tower()
    shown = graph_layout.positions(spec)
    returned = {**shown, "head": [shown["head"][0] + 0.4, shown["head"][1]], "flatten": [900.2, 10]}
    edits = graph_layout.canvas_edits(spec, shown, returned, [("features", "concatenate"), ("head", "flatten"),
                                                             ("head", "flatten")])
    assert edits.new_edges == (("head", "flatten"),)  # what the spec has is no edit; each edge once
    assert edits.moved == {"flatten": [900, 10]}  # under a pixel is no move
    assert not graph_layout.canvas_edits(spec, shown, shown, [])
