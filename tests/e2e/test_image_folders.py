"""A ZIP of image folders uploaded on the Data page in a real browser: the grid per class and the
class balance, then the size and colour mode changed; a hostile ZIP refused in plain words.
Screenshots go to test-artifacts/e2e/."""

from __future__ import annotations

import zipfile

import pytest
from playwright.sync_api import expect

from tests.e2e import ui
from tests.examples import example

pytestmark = pytest.mark.e2e


def shapes_maker():
    """examples/image_folder_zip.py's ZIP maker (the example imports Keras only to train)."""
    return example("image_folder_zip").make_shapes_zip


def choose_images_source(tab) -> None:
    ui.keyed(tab, "draft-data-source").get_by_text("Image folders (ZIP)", exact=True).click()
    ui.wait_idle(tab)


def test_a_zip_of_image_folders_shows_a_grid_per_class_and_the_class_balance(tab, server, artifacts, tmp_path):
    archive = shapes_maker()(tmp_path / "shapes.zip", {"circle": 10, "square": 6, "triangle": 3})
    ui.open_app(tab, server.url, "data")
    choose_images_source(tab)
    ui.upload(tab, "data-upload-images", archive)
    grid = ui.keyed(tab, "data-class-circle")
    grid.wait_for()
    ui.wait_idle(tab)
    assert ui.errors_shown(tab) == []
    for shape, count in (("circle", 10), ("square", 6), ("triangle", 3)):
        row = ui.keyed(tab, f"data-class-{shape}")
        expect(row).to_contain_text(f"{shape} · {count} images")
        expect(row.get_by_role("img")).to_have_count(min(count, 8))
    expect(tab.get_by_test_id("stMetric").filter(has_text="Input shape")).to_contain_text("(64, 64, 3)")
    expect(tab.get_by_test_id("stMetric").filter(has_text="Samples")).to_contain_text("19")
    balance = tab.locator(".js-plotly-plot").filter(has_text="Class balance")
    expect(balance).to_contain_text("10 (53%)")
    expect(tab.get_by_test_id("stDataFrame")).to_be_visible()  # the class balance as a table (drawn on a canvas)
    ui.shot(tab, artifacts, "image-folders-grid", focus=grid)

    ui.set_number(tab, "draft-data-image-height", 32)
    ui.keyed(tab, "draft-data-color-mode").get_by_text("Grayscale (1 channel)", exact=True).click()
    ui.wait_idle(tab)
    expect(tab.get_by_test_id("stMetric").filter(has_text="Input shape")).to_contain_text("(32, 64, 1)")
    ui.shot(tab, artifacts, "image-folders-grayscale", focus=ui.keyed(tab, "data-class-circle"))
    ui.no_app_exception(tab)


def test_a_zip_slip_archive_is_refused_in_plain_words(tab, server, artifacts, tmp_path):
    archive = shapes_maker()(tmp_path / "slip.zip", 2)
    with zipfile.ZipFile(archive, "a") as writer:
        writer.writestr("shapes/circle/../../../outside.png", b"not an image")
    ui.open_app(tab, server.url, "data")
    choose_images_source(tab)
    ui.upload(tab, "data-upload-images", archive)
    refusal = tab.get_by_test_id("stAlertContentError").filter(has_text="slip.zip")
    expect(refusal).to_contain_text("which points outside the archive (a '..' part)")
    expect(refusal).to_contain_text("The stack keeps training on digits28.")
    ui.wait_idle(tab)
    expect(ui.keyed(tab, "data-class-circle")).to_have_count(0)
    ui.shot(tab, artifacts, "image-folders-refused", focus=refusal)
