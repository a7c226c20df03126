"""The Data page: built-in datasets with previews, CSV and NPZ uploads, errors in plain words."""

import io

import numpy as np
import pytest

from core.storage.uploads import resolve
from dashboard import state
from tests.dashboard.apptest import app, elements, open_page, texts

pytestmark = pytest.mark.usefixtures("inspector_home")


def metrics(at):
    return {metric.label: metric.value for metric in at.metric}


def draft(at):
    return at.session_state[state.DRAFT]


def test_opens_on_digits28_with_an_image_grid_and_the_class_balance():
    at = open_page(app(), "data")
    assert at.selectbox(key="draft-data-builtin").value == "digits28"
    assert metrics(at) == {"Samples": "1,797", "Input shape": "(28, 28, 1)", "Task": "multiclass", "Classes": "10"}
    charts = elements(at, "plotly_chart")
    assert len(charts) == 2  # the sample grid and the class balance
    assert '"Class balance"' in charts[1].proto.spec
    assert draft(at).dataset.name == "digits28"


def test_a_tabular_dataset_shows_a_table_and_becomes_the_draft_dataset():
    at = open_page(app(), "data")
    at.selectbox(key="draft-data-builtin").set_value("iris").run()
    assert draft(at).dataset.name == "iris"
    # The default stack is a CNN: the page says it no longer fits, and where to change it.
    assert "The stack being assembled does not fit this dataset" in at.warning[0].value
    table = at.dataframe[0].value
    assert list(table.columns) == ["target", "sepal length (cm)", "sepal width (cm)", "petal length (cm)",
                                   "petal width (cm)"]
    assert set(table["target"]) <= {"setosa", "versicolor", "virginica"}
    at.selectbox(key="draft-data-builtin-scaling").set_value("minmax").run()
    assert draft(at).dataset.scaling == "minmax"


def test_a_regression_dataset_shows_the_target_distribution():
    at = open_page(app(), "data")
    at.selectbox(key="draft-data-builtin").set_value("diabetes").run()
    assert metrics(at)["Task"] == "regression" and metrics(at)["Target range"] == "25 – 346"
    assert "Distribution of the target" in elements(at, "plotly_chart")[0].proto.spec


def test_a_csv_upload_is_stored_and_its_target_and_features_chosen():
    at = open_page(app(), "data")
    at.segmented_control(key="draft-data-source").set_value("csv").run()
    assert "Upload a .csv file" in texts(at)
    rows = "\n".join(f"{i},{i % 7},{'red' if i % 2 else 'blue'},{i % 2}" for i in range(40))
    content = f"size,weight,color,label\n{rows}\n".encode()
    at.file_uploader(key="data-upload-csv").set_value(("shop.csv", content, "text/csv")).run()
    assert not at.error, [e.value for e in at.error]
    dataset = draft(at).dataset
    assert dataset.source == "csv" and dataset.target == "label" and dataset.features == ()
    assert resolve(dataset.path).read_bytes() == content  # stored, content-addressed
    assert metrics(at)["Samples"] == "40" and metrics(at)["Classes"] == "2"
    at.multiselect(key=at.multiselect[0].key).set_value(["size", "color"]).run()
    assert draft(at).dataset.features == ("size", "color")
    assert list(at.dataframe[0].value.columns) == ["target", "size", "color"]  # raw: the model encodes them
    assert "The model's own first layers scale numbers ('standard') and one-hot encode text" in texts(at)


def test_a_refused_csv_says_why_and_the_app_keeps_working():
    at = open_page(app(), "data")
    at.segmented_control(key="draft-data-source").set_value("csv").run()
    at.file_uploader(key="data-upload-csv").set_value(("gaps.csv", b"a,b,label\n1,,0\n2,3,1\n", "text/csv")).run()
    assert at.error and "missing" in at.error[0].value.lower()
    assert "gaps.csv" in at.error[0].value
    assert "The stack keeps training on digits28." in at.error[0].value
    assert draft(at).dataset.name == "digits28"  # the refused file never replaced the working dataset
    open_page(at, "assemble")
    assert "The stack builds" in texts(at)
    open_page(at, "data")
    at.segmented_control(key="draft-data-source").set_value("builtin").run()
    assert not at.error and draft(at).dataset.source == "builtin"


def test_the_uploaders_state_the_limit_that_is_enforced():
    at = open_page(app(), "data")
    at.segmented_control(key="draft-data-source").set_value("csv").run()
    (uploader,) = at.file_uploader
    assert uploader.proto.max_upload_size_mb == 200  # STACKLAB_MAX_DATA_BYTES, 200 MiB


def test_an_npz_upload_of_images_gets_the_image_preview():
    images = np.random.default_rng(0).random((30, 8, 8, 1)).astype("float32")
    buffer = io.BytesIO()
    np.savez(buffer, x=images, y=np.arange(30) % 3)
    at = open_page(app(), "data")
    at.segmented_control(key="draft-data-source").set_value("npz").run()
    at.file_uploader(key="data-upload-npz").set_value(("shapes.npz", buffer.getvalue(), "application/zip")).run()
    assert not at.error, [e.value for e in at.error]
    assert draft(at).dataset.source == "npz"
    assert metrics(at)["Input shape"] == "(8, 8, 1)" and metrics(at)["Classes"] == "3"
    assert len(elements(at, "plotly_chart")) == 2


def test_an_npz_that_is_not_an_archive_is_refused_in_plain_words():
    at = open_page(app(), "data")
    at.segmented_control(key="draft-data-source").set_value("npz").run()
    at.file_uploader(key="data-upload-npz").set_value(("broken.npz", b"not a zip at all", "application/zip")).run()
    assert at.error and "'broken.npz' is not an NPZ archive" in at.error[0].value
    assert draft(at).dataset.name == "digits28"
