"""Driving the dashboard in Chromium: Streamlit's DOM, found by the app's stable widget keys.

Streamlit adds a keyed widget's key to its container as the CSS class `st-key-<key>`. The
"draft-" keys get a "-r<n>" suffix once the draft is replaced (dashboard/state.py), so keys
are matched as a substring of the class. Every wait is for something the page shows or the
app's own "script not running" marker, never a fixed sleep.
"""

from __future__ import annotations

import re
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Locator, Page, expect

VIEWPORT = {"width": 1400, "height": 1600}
TIMEOUT_MS = 60_000
# Assertions wait as long as actions do (Playwright's own default is 5 s): a rerun on a machine
# whose cores also run the other test process can take longer than that.
expect.set_options(timeout=TIMEOUT_MS)
# From Train to a finished run: the worker imports TensorFlow (~5 s), builds and trains.
TRAIN_TIMEOUT_MS = 240_000
# The app root carries the script state; "notRunning" once a rerun has drawn everything.
IDLE = "[data-testid=stApp][data-test-script-state=notRunning][data-test-connection-state=CONNECTED]"
# Points of the "training" epoch curve of the first chart on the page (the Train page's loss
# chart; the live-chart component, dashboard/components/live_chart/), or -1 when none is drawn.
CHART_POINTS_JS = """() => {
    const chart = document.querySelector('.js-plotly-plot');
    const trace = chart && chart.data && chart.data.find((t) => t.name === 'training');
    return trace ? trace.x.length : -1;
}"""
# The charts of the live-chart component: their data as Plotly holds it, and the update drawn.
CHARTS_JS = """() => Array.from(document.querySelectorAll('.slc-card')).map((card) => {
    const plot = card.querySelector('.js-plotly-plot');
    return {id: card.dataset.chart, seq: Number(card.closest('.slc-root').dataset.seq || 0),
            traces: (plot && plot.data || []).map((t) => ({name: t.name, x: Array.from(t.x || []),
              y: Array.from(t.y || []), visible: t.visible, opacity: t.opacity, mode: t.mode}))};
})"""


def keyed(page: Page, key: str) -> Locator:
    """The element container of the widget with key `key` (a "draft-" key in any generation)."""
    return page.locator(f"[class*=st-key-{key}]")


def button(page: Page, key: str) -> Locator:
    """The keyed button. A button with help text renders a hidden twin, hence :visible."""
    return keyed(page, key).locator("button:visible")


def wait_idle(page: Page) -> None:
    page.locator(IDLE).wait_for()


def heading(page: Page, title: str) -> Locator:
    return page.locator("h1").filter(has_text=re.compile(rf"^\s*{re.escape(title)}\s*$"))


PAGE_TITLES = ("Data", "Assemble", "Train", "Runs", "Sweeps")


def open_app(page: Page, url: str, path: str = "") -> None:
    """Load the app (path: "", "data", "assemble", "train" or "runs") and wait until it is drawn,
    inside the app's frame: the top navigation and the wide layout that dashboard/app.py sets."""
    page.goto(f"{url}/{path}")
    heading(page, path.capitalize() or "Train").wait_for()
    wait_idle(page)
    # Each link's text is its icon's name, then its title.
    expect(page.get_by_test_id("stTopNavLink")).to_have_text([re.compile(f"{title}$") for title in PAGE_TITLES])
    expect(page.get_by_test_id("stApp")).to_have_class(re.compile(r"\bstreamlit-wide\b"))


def go_to(page: Page, title: str) -> None:
    """Switch page with the top navigation, as a user does (the session and its draft stay)."""
    page.get_by_test_id("stTopNavLink").filter(has_text=title).click()
    heading(page, title).wait_for()
    wait_idle(page)


def set_number(page: Page, key: str, value: int) -> None:
    field = keyed(page, key).locator("input")
    field.fill(str(value))
    field.press("Enter")
    expect(field).to_have_value(str(value))
    wait_idle(page)


def choose(page: Page, key: str, option: str) -> None:
    """Pick `option` in the keyed selectbox."""
    box = keyed(page, key).locator("input[role=combobox]")
    box.click()
    page.get_by_role("option", name=option, exact=True).click()
    expect(box).to_have_value(option)
    wait_idle(page)


def upload(page: Page, key: str, path: Path) -> None:
    keyed(page, key).locator("input[type=file]").set_input_files(str(path))


def errors_shown(page: Page) -> list[str]:
    return page.get_by_test_id("stAlertContentError").all_inner_texts()


def chart_points(page: Page) -> int:
    return page.evaluate(CHART_POINTS_JS)


def charts(page: Page) -> list[dict]:
    """The live-chart component's charts: [{"id", "seq", "traces": [{"name", "x", "y", "visible", ...}]}]."""
    return page.evaluate(CHARTS_JS)


def wait_for_chart_points(page: Page, count: int, timeout_ms: int = TRAIN_TIMEOUT_MS) -> None:
    page.wait_for_function(f"() => ({CHART_POINTS_JS})() >= {count}", timeout=timeout_ms, polling=100)


def shot(page: Page, folder: Path, name: str, focus: Locator | None = None) -> Path:
    """A screenshot of the viewport (Streamlit scrolls inside its own container, so a
    full-page shot shows no more), scrolled to `focus` first if given."""
    if focus is not None:
        try:
            focus.scroll_into_view_if_needed(timeout=5000)
        except PlaywrightError:
            pass  # the page redrew `focus` meanwhile (a run ending): the shot is still worth having
    path = folder / f"{name}.png"
    page.screenshot(path=path)
    return path


def no_app_exception(page: Page) -> None:
    """The app drew no exception box (its details go to the server log, checked by `tab`)."""
    expect(page.get_by_test_id("stException")).to_have_count(0)


def start_training(page: Page, epochs: int) -> str:
    """On the Train page: set the epochs, press Train; returns the new run's id (from the toast)."""
    set_number(page, "draft-train-epochs", epochs)
    start = button(page, "train-start")
    expect(start).to_be_enabled()
    start.click()
    toast = page.get_by_test_id("stToast").filter(has_text="Started run")
    toast.wait_for()
    return re.search(r"Started run (\S+?)\.", toast.inner_text()).group(1)


def wait_until_finished(page: Page, run_id: str) -> None:
    """Until the Train page's run picker shows `run_id` as finished (the page reruns as a whole
    when the run ends, so everything drawn then belongs to the ended run)."""
    picker = keyed(page, "train-run-picker").locator("input[role=combobox]")
    expect(picker).to_have_value(re.compile(rf"^{re.escape(run_id)} · .* · finished$"), timeout=TRAIN_TIMEOUT_MS)
    wait_idle(page)


# Streamlit's dataframe draws its rows on a canvas: a row is ticked by clicking its row
# marker, ROW_PX per row below a header of the same height, at the table's left edge.
ROW_PX = 35
ROW_MARKER_X = 18


def tick_row(page: Page, row: int, table_index: int = 0) -> None:
    """Tick (or untick) row `row` (0 = top) of a selectable dataframe, as a user clicks it."""
    box = page.get_by_test_id("stDataFrame").nth(table_index).bounding_box()
    page.mouse.click(box["x"] + ROW_MARKER_X, box["y"] + ROW_PX * (row + 1) + ROW_PX / 2)
    wait_idle(page)


def download(page: Page, label: str, folder: Path) -> Path:
    """Press the download button labelled `label`; returns where the file was saved."""
    with page.expect_download() as download:
        page.get_by_role("button", name=label, exact=True).click()
    target = folder / download.value.suggested_filename
    download.value.save_as(target)
    return target


def download_model(page: Page, folder: Path) -> Path:
    """Press "Download model (.keras)" on the Runs page; returns where the file was saved."""
    with page.expect_download() as download:
        page.get_by_role("button", name="Download model (.keras)", exact=True).click()
    assert download.value.suggested_filename.endswith(".keras"), download.value.suggested_filename
    target = folder / download.value.suggested_filename
    download.value.save_as(target)
    return target


# -- the Assemble page's canvas (React Flow inside the component's iframe) ------------------

CANVAS_IFRAME = "iframe[title='streamlit_flow.streamlit_flow']"
# The canvas sends each change back through a page rerun: long enough for one on these cores.
CANVAS_SETTLE_MS = 400
CONNECT_TIMEOUT_MS = 10_000


def canvas(page: Page):
    """The canvas's frame (Playwright's FrameLocator)."""
    return page.frame_locator(CANVAS_IFRAME)


def canvas_node(page: Page, node_id: str) -> Locator:
    return canvas(page).locator(f".react-flow__node[data-id='{node_id}']")


def canvas_edge(page: Page, source: str, target: str) -> Locator:
    """The edge source -> target as the app draws it (its id is "source->target")."""
    return canvas(page).locator(f"[data-testid='rf__edge-{source}->{target}']")


def settle(page: Page) -> None:
    """Until a canvas event's reruns have come and gone: the component answers in the browser's
    own time (twice for each new drawing), so the app may still be idle right after a mouse
    event (page.wait_for_timeout, not time.sleep: the browser's events must keep flowing)."""
    for _ in range(2):
        page.wait_for_timeout(CANVAS_SETTLE_MS)
        wait_idle(page)


def drag(page: Page, start: dict, end: dict) -> None:
    """Press at the centre of box `start`, move in steps to the centre of box `end`, release."""
    page.mouse.move(start["x"] + start["width"] / 2, start["y"] + start["height"] / 2)
    page.mouse.down()
    page.mouse.move(end["x"] + end["width"] / 2, end["y"] + end["height"] / 2, steps=12)
    page.mouse.up()


def connect(page: Page, source: str, target: str) -> None:
    """Drag from the bottom handle of `source` to the top handle of `target` on the canvas, and
    wait until the app has drawn the edge. A drag the canvas lost while it took a new drawing
    (its nodes moved under the mouse) is made once more."""
    for attempt in range(2):
        start, end = _handles(page, source, target)
        if not (in_canvas_view(page, start) and in_canvas_view(page, end)):
            fit_view(page)  # as a user does when a node is out of view
            start, end = _handles(page, source, target)
        drag(page, start, end)
        try:
            canvas_edge(page, source, target).wait_for(timeout=CONNECT_TIMEOUT_MS if attempt == 0 else TIMEOUT_MS)
            break
        except PlaywrightError:
            if attempt:
                raise
            settle(page)
    settle(page)


def _handles(page: Page, source: str, target: str) -> tuple[dict, dict]:
    return (canvas_node(page, source).locator(".react-flow__handle.source").bounding_box(),
            canvas_node(page, target).locator(".react-flow__handle.target").bounding_box())


def in_canvas_view(page: Page, box: dict | None) -> bool:
    """Whether `box` (page coordinates) is inside the canvas's frame and the browser's viewport."""
    frame = page.locator(CANVAS_IFRAME).bounding_box()
    viewport = page.viewport_size
    if box is None or frame is None or viewport is None:
        return False
    right, bottom = box["x"] + box["width"], box["y"] + box["height"]
    return (max(frame["x"], 0) <= box["x"] and right <= min(frame["x"] + frame["width"], viewport["width"])
            and max(frame["y"], 0) <= box["y"] and bottom <= min(frame["y"] + frame["height"], viewport["height"]))


def fit_view(page: Page) -> None:
    """Press the canvas's own "fit view" control and bring the whole canvas on screen. The
    component fits the view by itself only after its own layout of a new drawing, which a
    drawing given meanwhile can cancel; and nodes grow as the report fills their labels."""
    page.locator(CANVAS_IFRAME).evaluate("frame => frame.scrollIntoView({block: 'center'})")
    canvas(page).locator(".react-flow__controls-fitview").click()
    page.locator(CANVAS_IFRAME).evaluate("frame => frame.scrollIntoView({block: 'center'})")
    settle(page)


def move_node(page: Page, node_id: str, dx: float, dy: float) -> None:
    """Drag a node by (dx, dy) screen pixels, holding it by its middle."""
    box = canvas_node(page, node_id).bounding_box()
    drag(page, box, {**box, "x": box["x"] + dx, "y": box["y"] + dy})
    settle(page)


def click_node(page: Page, node_id: str) -> None:
    """Click a node on the canvas: its panel opens beside it."""
    canvas_node(page, node_id).click()
    page.locator("[class*=st-key-canvas-panel]").wait_for()
    settle(page)


def place(page: Page, tab: str, key: str, option: str | None = None) -> None:
    """From the canvas's palette: open `tab` ("Member", "Merge", "Adapter"), pick the option
    matching the regex `option` in the selectbox `key` if given, press its "Place on the canvas"."""
    palette = keyed(page, "canvas-palette")
    palette.get_by_role("tab", name=tab, exact=True).click()
    if key == "canvas-add-template":  # the member tab's own tabs may show a model file or a run
        palette.get_by_role("tab", name="Template", exact=True).click()
    if option is not None:
        choose_matching(page, key, option)
    button(page, f"{key}-button").click()
    wait_idle(page)


def choose_matching(page: Page, key: str, pattern: str) -> None:
    """Pick the option of the keyed selectbox whose text matches the regex `pattern`."""
    box = keyed(page, key).locator("input[role=combobox]")
    box.click()
    page.get_by_role("option", name=re.compile(pattern)).click()
    wait_idle(page)
