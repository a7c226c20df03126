"""The Assemble page's canvas end to end: a stack drawn with the mouse in headless Chromium,
checked edge by edge, trained, downloaded and used with plain Keras.

The canvas is React Flow inside the component's iframe: nodes are placed from the palette,
dragged by the mouse, and connected by dragging from a node's bottom handle to another's top
handle (tests/e2e/ui.py). Screenshots go to test-artifacts/e2e/canvas-*.png.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from playwright.sync_api import expect

from tests.e2e import ui
from tests.e2e.test_dashboard import EPOCHS, download_from_runs_page, train_to_the_end

pytestmark = pytest.mark.e2e
TWO_TOWER_PARAMS = 456_458  # cnn_features with 64 dense units, ⊕ the flattened image, into dense_head
RED = re.compile(r"stroke:\s*(#dc2626|rgb\(220, 38, 38\))")


def empty_stack(page, url: str) -> None:
    """Open Assemble on the default stack and start an empty one (only the input and output)."""
    ui.open_app(page, url, "assemble")
    ui.canvas_node(page, "model_a").wait_for()
    ui.button(page, "canvas-empty").click()
    expect(ui.canvas(page).locator(".react-flow__node")).to_have_count(2)
    ui.settle(page)


def metric(page, label: str):
    return page.get_by_test_id("stMetric").filter(has_text=label)


def test_the_canvas_loads_nothing_from_the_network(tab, server):
    """React Flow comes from the component's wheel, served by the dashboard: every request made
    for the canvas's iframe (its page, scripts, styles, fonts) goes to the dashboard's own address."""
    requests = []
    tab.on("request", lambda request: requests.append((request.frame.url, request.url)))
    ui.open_app(tab, server.url, "assemble")
    ui.canvas_node(tab, "model_a").wait_for()
    ui.click_node(tab, "model_a")
    canvas = [url for frame, url in requests if "streamlit_flow" in frame or "streamlit_flow" in url]
    assert len(canvas) > 3, requests  # the iframe's page and the component's files were asked for
    # Nothing on the page goes elsewhere either (the favicon once came from a font CDN).
    assert [url for _, url in requests if not url.startswith((server.url, "data:", "blob:"))] == []


def test_a_two_tower_stack_drawn_on_the_canvas_trains_and_its_model_predicts(tab, server, server_runs, artifacts,
                                                                             tmp_path):
    page = tab
    empty_stack(page, server.url)
    ui.place(page, "Member", "canvas-add-template", r"· cnn_features$")
    ui.canvas_node(page, "cnn").wait_for()
    # Placing a node selects it: its panel opens beside the canvas, with the template's form.
    panel = ui.keyed(page, "canvas-panel")
    expect(panel).to_contain_text("cnn · template cnn_features")
    ui.keyed(page, "exp-cnn-params").locator("summary").click()
    ui.set_number(page, "draft-node-cnn-cnn_features-dense_units", 64)
    ui.place(page, "Adapter", "canvas-add-adapter", r"^Flatten$")
    ui.place(page, "Merge", "canvas-add-merge", r"^concatenate$")
    ui.place(page, "Member", "canvas-add-template", r"· dense_head$")
    for name in ("cnn", "flatten", "concatenate", "dense"):
        ui.canvas_node(page, name).wait_for()
    ui.move_node(page, "dense", -150, -20)  # drag to place: only the layout changes
    ui.shot(page, artifacts, "canvas-placed")

    for source, target in [("input", "cnn"), ("input", "flatten"), ("cnn", "concatenate"),
                           ("flatten", "concatenate"), ("concatenate", "dense"), ("dense", "output")]:
        ui.connect(page, source, target)
    expect(page.get_by_text("The stack builds: (28, 28, 1) → (10,).")).to_be_visible()
    expect(metric(page, "Total parameters")).to_contain_text(f"{TWO_TOWER_PARAMS:,}")
    expect(ui.canvas_edge(page, "concatenate", "dense")).to_contain_text("(848,)")
    expect(ui.canvas_node(page, "cnn")).to_contain_text("(28, 28, 1) → (64,)")
    ui.button(page, "canvas-auto-layout").click()
    ui.settle(page)
    ui.no_app_exception(page)
    ui.shot(page, artifacts, "canvas-two-tower")

    ui.go_to(page, "Train")
    run_id = train_to_the_end(page, artifacts, "canvas-two-tower")
    run = server_runs.get(run_id)
    assert (run.status, run.epochs_done) == ("finished", EPOCHS)
    assert run.spec.mode == "graph" and run.spec.graph.inputs_of("concatenate") == ["cnn", "flatten"]
    path = download_from_runs_page(page, run_id, tmp_path, artifacts, "canvas-two-tower")

    import keras

    from core.data import load_dataset
    from core.spec import DatasetSpec

    model = keras.saving.load_model(path)
    assert model.count_params() == TWO_TOWER_PARAMS
    digits = load_dataset(DatasetSpec(name="digits28"))
    predictions = model.predict(digits.x[:200], verbose=0)
    assert predictions.shape == (200, 10)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-4)
    assert (predictions.argmax(axis=1) == digits.y[:200]).mean() > 0.5  # trained, not freshly initialised


def test_a_mismatched_edge_is_red_with_the_reason_and_its_fix_makes_it_build(tab, server, artifacts):
    page = tab
    empty_stack(page, server.url)
    ui.place(page, "Member", "canvas-add-template", r"· dense_head$")
    ui.connect(page, "input", "dense")
    ui.connect(page, "dense", "output")
    edge = ui.canvas_edge(page, "input", "dense")
    expect(edge).to_contain_text("✗ (28, 28, 1), needs a feature vector")
    expect(edge.locator("path.react-flow__edge-path")).to_have_attribute("style", RED)
    expect(page.get_by_text("does not build yet")).to_be_visible()
    ui.button(page, "canvas-auto-layout").click()
    ui.settle(page)
    ui.shot(page, artifacts, "canvas-mismatch")

    edge.locator(".react-flow__edge-text").click()  # the edge's panel: its shapes, the reason, the fix
    panel = ui.keyed(page, "canvas-panel")
    expect(panel).to_contain_text("input → dense")
    expect(panel.get_by_test_id("stAlertContentError")).to_contain_text("Cannot feed the input into 'dense'")
    ui.shot(page, artifacts, "canvas-mismatch-panel", focus=panel)
    ui.button(page, "canvas-edge-fix").click()
    ui.wait_idle(page)
    expect(page.get_by_text("The stack builds: (28, 28, 1) → (10,).")).to_be_visible()
    fixed = ui.canvas_edge(page, "adapter_input_flatten", "dense")
    expect(fixed).to_contain_text("(784,)")
    expect(ui.canvas_edge(page, "input", "adapter_input_flatten")).to_contain_text("(28, 28, 1)")
    expect(ui.canvas(page).locator("path.react-flow__edge-path[style*='220, 38, 38']")).to_have_count(0)
    ui.no_app_exception(page)
    ui.shot(page, artifacts, "canvas-fixed")


def test_a_preset_becomes_a_graph_on_the_canvas_without_the_canvas_loading_again(tab, server, artifacts):
    page = tab
    ui.open_app(page, server.url, "assemble")
    ui.choose(page, "draft-mode", "fusion")  # a preset with options, drawn above the canvas
    ui.canvas_node(page, "fusion_concat").wait_for()
    ui.settle(page)
    page.locator(ui.CANVAS_IFRAME).element_handle().content_frame().evaluate("window.stacklabMark = 'kept'")
    ui.place(page, "Merge", "canvas-add-merge", r"^add$")
    ui.canvas_node(page, "add").wait_for()
    ui.settle(page)
    expect(page.get_by_text("Drawn on the canvas: nodes and the edges between them.")).to_be_visible()
    # The same document: the component was not mounted again (no flicker, the zoom is kept).
    frame = page.locator(ui.CANVAS_IFRAME).element_handle().content_frame()
    assert frame.evaluate("window.stacklabMark") == "kept"
    ui.move_node(page, "add", 0, 60)
    ui.shot(page, artifacts, "canvas-fusion-as-graph")


# ---- the seed's stacks and an ensemble, drawn instead of picked ------------------------------


def expected_report(mode: str, members: list[dict], **extra):
    """The pre-flight report of the v1 preset a drawing should equal (same members, same data)."""
    from core.build.stacking import check
    from core.spec import StackSpec
    from dashboard.spec_edit import default_spec

    preset = StackSpec.from_dict({**default_spec().to_dict(), "mode": mode, "members": members, **extra})
    report = check(preset)
    assert report.ok, report.problems
    return report


def draw_sequential(page, artifacts, folder):
    ui.place(page, "Member", "canvas-add-template", r"· cnn_features$")
    ui.place(page, "Member", "canvas-add-template", r"· dense_head$")
    for source, target in [("input", "cnn"), ("cnn", "dense"), ("dense", "output")]:
        ui.connect(page, source, target)
    return expected_report("sequential", [{"name": "cnn", "template": "cnn_features"},
                                          {"name": "dense", "template": "dense_head"}])


def draw_transfer(page, artifacts, folder):
    """A pretrained file (made in `folder` by examples/make_pretrained.py, as a user of a fresh
    clone does) under a new head, frozen with its node panel's switch."""
    from tests.core.build.test_seed_parity import make_pretrained

    pretrained = make_pretrained(folder)
    palette = ui.keyed(page, "canvas-palette")
    palette.get_by_role("tab", name="Member", exact=True).click()
    palette.get_by_role("tab", name="Model file (.keras, .h5)").click()
    ui.upload(page, "canvas-add-file-upload", pretrained)
    ui.button(page, "canvas-add-file-button").click()  # once the file is inspected
    ui.canvas_node(page, "pretrained_model").wait_for()
    ui.wait_idle(page)
    ui.place(page, "Member", "canvas-add-template", r"· dense_head$")
    for source, target in [("input", "pretrained_model"), ("pretrained_model", "dense"), ("dense", "output")]:
        ui.connect(page, source, target)
    ui.click_node(page, "pretrained_model")
    toggle = ui.keyed(page, "draft-node-pretrained_model-trainable")
    switch = toggle.locator("input")
    toggle.locator("label").click()  # the switch's label takes the click, as a user's
    ui.wait_idle(page)
    expect(switch).not_to_be_checked()
    frozen = re.compile(r"0 / 320 params trainable\s*frozen", re.IGNORECASE)  # drawn upper-case
    expect(ui.canvas_node(page, "pretrained_model")).to_contain_text(frozen)
    ui.shot(page, artifacts, "canvas-transfer-frozen", focus=ui.keyed(page, "canvas-panel"))
    return expected_report("transfer", [{"name": "pretrained_model", "source": "file",
                                         "file": str(pretrained)}],
                           head={"name": "dense", "template": "dense_head"}, options={"freeze_base": True})


def draw_ensemble(page, artifacts, folder):
    """A CNN and an MLP (on the flattened image) classify; their predictions are averaged."""
    ui.place(page, "Member", "canvas-add-template", r"· cnn_classifier$")
    ui.place(page, "Adapter", "canvas-add-adapter", r"^Flatten$")
    ui.place(page, "Member", "canvas-add-template", r"· mlp_classifier$")
    ui.place(page, "Merge", "canvas-add-merge", r"^average$")
    for source, target in [("input", "cnn"), ("input", "flatten"), ("flatten", "mlp"), ("cnn", "average"),
                           ("mlp", "average"), ("average", "output")]:
        ui.connect(page, source, target)
    return expected_report("ensemble", [{"name": "cnn", "template": "cnn_classifier"},
                                        {"name": "mlp", "template": "mlp_classifier"}],
                           options={"combine": "average"},
                           adapters=[{"after": "input", "kind": "flatten", "before": "mlp"}])


DRAWINGS = {"sequential": draw_sequential, "transfer": draw_transfer, "ensemble": draw_ensemble}


@pytest.mark.parametrize("stack", list(DRAWINGS))
def test_a_seed_stack_or_an_ensemble_drawn_on_the_canvas_is_its_preset_and_trains(stack, tab, server, server_runs,
                                                                                 artifacts, tmp_path):
    """Drawn with the palette, the mouse and node panels only: the same model as the mode's
    preset (same parameter counts), trained (a frozen base with a fine-tune phase for transfer),
    downloaded and used with plain Keras."""
    page = tab
    empty_stack(page, server.url)
    preset = DRAWINGS[stack](page, artifacts, tmp_path)
    expect(page.get_by_text("The stack builds: (28, 28, 1) → (10,).")).to_be_visible()
    expect(metric(page, "Total parameters")).to_contain_text(f"{preset.total_params:,}")
    expect(metric(page, "Non-trainable")).to_contain_text(f"{preset.non_trainable_params:,}")
    ui.button(page, "canvas-auto-layout").click()
    ui.settle(page)
    ui.no_app_exception(page)
    ui.shot(page, artifacts, f"canvas-{stack}")

    ui.go_to(page, "Train")
    if stack == "transfer":  # the head trains on the frozen base, then the base is unfrozen
        ui.set_number(page, "draft-train-epochs", EPOCHS)
        page.get_by_text("Fine-tune phase").click()
        ui.keyed(page, "draft-train-fine-tune").locator("label").click()
        ui.wait_idle(page)
        expect(ui.keyed(page, "draft-train-fine-tune-start").locator("input")).to_have_value(str(EPOCHS))
    run_id = train_to_the_end(page, artifacts, f"canvas-{stack}")
    run = server_runs.get(run_id)
    assert (run.status, run.epochs_done, run.spec.mode) == ("finished", EPOCHS, "graph")
    if stack == "transfer":
        updates = [row["member_updates"]["pretrained_model"] for row in server_runs.metrics(run_id)]
        assert updates[0] == 0 and updates[1] > 0, updates  # frozen, then fine-tuned
    path = download_from_runs_page(page, run_id, tmp_path, artifacts, f"canvas-{stack}")

    import keras

    from core.data import load_dataset
    from core.spec import DatasetSpec

    model = keras.saving.load_model(path)
    assert model.count_params() == preset.total_params
    digits = load_dataset(DatasetSpec(name="digits28"))
    predictions = model.predict(digits.x[:200], verbose=0)
    np.testing.assert_allclose(predictions.sum(axis=1), 1.0, rtol=1e-4)
    assert (predictions.argmax(axis=1) == digits.y[:200]).mean() > 0.5  # trained, not freshly initialised
