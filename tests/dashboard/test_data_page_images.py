"""The Data page's image folders: a ZIP upload, its size and colour mode, a grid per class, the
class balance, and a hostile ZIP refused in plain words."""

import io
import zipfile

import pytest
from PIL import Image

from core.storage.uploads import resolve
from dashboard import state
from tests.dashboard.apptest import app, elements, open_page, texts

pytestmark = pytest.mark.usefixtures("inspector_home")

COLOURS = {"blue": (0, 0, 255), "green": (0, 200, 0), "red": (255, 0, 0)}


def colours_zip(counts=None, extra=()) -> bytes:
    """A ZIP of one-colour PNGs in colours/<class>/, `counts` images per class (default 3 each)."""
    counts = counts or dict.fromkeys(COLOURS, 3)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, count in counts.items():
            for index in range(count):
                image = io.BytesIO()
                Image.new("RGB", (20, 16), COLOURS[name]).save(image, "PNG")
                archive.writestr(f"colours/{name}/{index}.png", image.getvalue())
        for member, data in extra:
            archive.writestr(member, data)
    return buffer.getvalue()


def metrics(at):
    return {metric.label: metric.value for metric in at.metric}


def draft(at):
    return at.session_state[state.DRAFT]


def upload_zip(data: bytes, name: str = "colours.zip"):
    at = open_page(app(), "data")
    at.segmented_control(key="draft-data-source").set_value("images").run()
    at.file_uploader(key="data-upload-images").set_value((name, data, "application/zip")).run()
    return at


def test_the_image_source_asks_for_a_zip():
    at = open_page(app(), "data")
    at.segmented_control(key="draft-data-source").set_value("images").run()
    assert "Upload a .zip file" in texts(at)
    (uploader,) = at.file_uploader
    assert list(uploader.proto.type) == [".zip"]
    assert draft(at).dataset.name == "digits28"  # nothing uploaded yet: the stack keeps its data


def test_a_zip_of_class_folders_shows_a_grid_per_class_and_the_class_balance():
    data = colours_zip({"blue": 2, "green": 3, "red": 9})
    at = upload_zip(data)
    assert not at.error, [e.value for e in at.error]
    dataset = draft(at).dataset
    assert (dataset.source, dataset.image_size, dataset.color_mode) == ("images", (64, 64), "rgb")
    assert resolve(dataset.path).read_bytes() == data  # stored, content-addressed
    assert metrics(at) == {"Samples": "14", "Input shape": "(64, 64, 3)", "Task": "multiclass", "Classes": "3"}
    # One row of thumbnails per class, at most 8 each, under the class's name and count.
    assert [len(row.value) for row in at.image] == [2, 3, 8]
    assert "**red** · 9 images" in texts(at)
    charts = elements(at, "plotly_chart")
    assert any('"Class balance"' in chart.proto.spec for chart in charts)
    table = at.dataframe[0].value
    assert table["class"].tolist() == ["blue", "green", "red"] and table["images"].tolist() == [2, 3, 9]


def test_the_size_and_colour_mode_change_the_dataset():
    at = upload_zip(colours_zip())
    at.number_input(key="draft-data-image-height").set_value(24).run()
    at.segmented_control(key="draft-data-color-mode").set_value("grayscale").run()
    assert not at.error, [e.value for e in at.error]
    assert draft(at).dataset.image_size == (24, 64) and draft(at).dataset.color_mode == "grayscale"
    assert metrics(at)["Input shape"] == "(24, 64, 1)"


@pytest.mark.parametrize("extra, reason", [
    ([("colours/red/../../../evil.png", b"x")], "points outside the archive"),
    ([("colours/red/notes.txt", b"notes")], "which is not an image"),
])
def test_a_hostile_zip_is_refused_in_plain_words_and_the_stack_keeps_its_data(extra, reason):
    at = upload_zip(colours_zip(extra=extra), "bad.zip")
    assert at.error and reason in at.error[0].value and "'bad.zip'" in at.error[0].value
    assert "The stack keeps training on digits28." in at.error[0].value
    assert draft(at).dataset.name == "digits28"
    assert not at.image
