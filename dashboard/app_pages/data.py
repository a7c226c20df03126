"""Data: choose a built-in dataset or upload a CSV / NPZ file or a ZIP of image folders, and see what it holds.

The choice is the draft spec's `dataset`: the stack trains on what this page shows.
Core calls: core.data (list_builtins, load_dataset via services.dataset_preview),
core.data.image_folders.class_samples (a few images of each class, for the grid),
core.storage.uploads.store_bytes (uploads are stored content-addressed, so nothing is lost).
"""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from core.data import DataError, DataLimits, csv_columns
from core.data.image_folders import IMAGE_SUFFIXES, class_samples
from core.spec import SCALINGS, TASKS, DatasetSpec
from core.spec.schema import COLOR_MODES, DEFAULT_IMAGE_SIZE, IMAGE_SIDE_RANGE
from core.storage.uploads import display_name, resolve
from dashboard import figures, formatting, services, spec_edit, state

SOURCES = {"builtin": "Built-in dataset", "csv": "CSV file", "npz": "NPZ file (arrays x, y)",
           "images": "Image folders (ZIP)"}
# The file each uploading source takes.
SUFFIXES = {"csv": "csv", "npz": "npz", "images": "zip"}
UPLOAD_HELP = {
    "csv": "A header row; one column is the target.",
    "npz": "Arrays named x and y (np.savez('data.npz', x=..., y=...)).",
    "images": f"One folder per class (cats/001.jpg, dogs/002.png, ...), optionally inside one folder; images "
              f"{', '.join(IMAGE_SUFFIXES)}. Nothing is extracted: the archive is checked first.",
}
COLOR_MODE_LABELS = {"rgb": "RGB (3 channels)", "grayscale": "Grayscale (1 channel)"}
# The preview grid: thumbnails per class, classes drawn, and the thumbnails' width on the page
# (small images are enlarged; large ones are subsampled to at most THUMBNAIL_MAX_SIDE pixels first,
# so a 512 x 512 dataset does not send megabytes of pixels to the browser).
THUMBNAILS_PER_CLASS = 8
CLASSES_SHOWN = 12
THUMBNAIL_PX = 72
THUMBNAIL_MAX_SIDE = 128
TARGET_GUESSES = ("target", "label", "labels", "class", "y")
# The uploader's own limit, in Streamlit's megabytes (MiB): what core.data refuses anyway.
UPLOAD_LIMIT_MB = max(1, math.ceil(DataLimits.from_env().max_file_bytes / 2**20))

spec = state.draft()
dataset = spec.dataset
st.title("Data")
st.caption("The stack trains on the dataset chosen here.")


def use(new: DatasetSpec) -> None:
    if new != state.draft().dataset:
        state.set_draft(spec_edit.set_dataset(state.draft(), new))


def described(current: DatasetSpec) -> str:
    return current.name if current.source == "builtin" else display_name(current.path or "")


def refuse(message: str) -> None:
    """Show why a file cannot be used; the stack keeps the dataset it had."""
    st.error(f"{message} The stack keeps training on {described(dataset)}.", icon=":material/error:")
    st.stop()


source = st.segmented_control("Source", list(SOURCES), format_func=SOURCES.get, default=dataset.source,
                              required=True, key=state.widget_key("draft", "data", "source"))

if source == "builtin":
    choices = services.builtins()
    current = dataset.name if dataset.source == "builtin" and dataset.name in choices else "digits28"
    name = st.selectbox("Dataset", list(choices), index=list(choices).index(current),
                        format_func=lambda n: f"{choices[n]['title']}  ·  {n}",
                        key=state.widget_key("draft", "data", "builtin"))
    st.markdown(choices[name]["description"])
    scaling = dataset.scaling
    if len(choices[name]["input_shape"]) == 1:
        scaling = st.columns([1, 2])[0].selectbox("Feature scaling", SCALINGS, index=SCALINGS.index(dataset.scaling),
                               key=state.widget_key("draft", "data", "builtin-scaling"),
                               help="standard: zero mean, unit variance; minmax: 0..1; none: as stored.")
    candidate = DatasetSpec(source="builtin", name=name, scaling=scaling)
else:
    kind = source
    suffix = SUFFIXES[kind]
    uploaded = st.file_uploader(f"Upload a .{suffix} file", type=[suffix], key=state.widget_key("data", "upload", kind),
                                max_upload_size=UPLOAD_LIMIT_MB,
                                help=f"{UPLOAD_HELP[kind]} The stack keeps its dataset until the new file has "
                                     f"been read.")
    ref = dataset.path if dataset.source == kind else None
    if uploaded is not None:
        ref = services.store_upload(uploaded)
    if ref is None:
        st.info(f"Upload a .{suffix} file to train on your own data. The stack keeps its current dataset "
                f"({described(dataset)}) until then.")
        st.stop()
    st.caption(f"File: **{display_name(ref)}** (stored as {ref[:19]}…)")
    target, features = None, ()
    if kind == "csv":
        try:
            columns = csv_columns(ref)
        except DataError as error:
            refuse(str(error))
        same_file = dataset.source == "csv" and dataset.path == ref
        guess = next((c for c in columns if c.lower() in TARGET_GUESSES), columns[-1] if columns else None)
        current_target = dataset.target if same_file and dataset.target in columns else guess
        left, right = st.columns([1, 2])
        target = left.selectbox("Target column", columns, index=columns.index(current_target) if current_target else 0,
                                key=state.widget_key("draft", "data", "target", ref[7:19]),
                                help="The column the model learns to predict.")
        others = [c for c in columns if c != target]
        chosen = [c for c in (dataset.features if same_file else ()) if c in others] or others
        picked = right.multiselect("Feature columns", others, default=chosen,
                                   key=state.widget_key("draft", "data", "features", ref[7:19], target),
                                   help="The model's inputs. Text columns are one-hot encoded.")
        features = () if set(picked) == set(others) else tuple(picked)
    stem = display_name(ref).rsplit(".", 1)[0] or kind
    if kind == "images":
        same = dataset.source == "images"
        height_now, width_now = dataset.image_size if same else DEFAULT_IMAGE_SIZE
        low, high = int(IMAGE_SIDE_RANGE.minimum), int(IMAGE_SIDE_RANGE.maximum)
        size_help = f"Every image is resized to this (bilinear, not cropped); {low} to {high} pixels."
        left, middle, right = st.columns([1, 1, 2])
        height = left.number_input("Height", low, high, int(height_now), step=8, help=size_help,
                                   key=state.widget_key("draft", "data", "image-height"))
        width = middle.number_input("Width", low, high, int(width_now), step=8, help=size_help,
                                    key=state.widget_key("draft", "data", "image-width"))
        color_mode = right.segmented_control(
            "Colour mode", COLOR_MODES, format_func=COLOR_MODE_LABELS.get, required=True,
            default=dataset.color_mode if same else "rgb", key=state.widget_key("draft", "data", "color-mode"))
        candidate = DatasetSpec(source="images", name=stem, path=ref, image_size=(int(height), int(width)),
                                color_mode=color_mode)
    else:
        left, right = st.columns(2)
        task = left.selectbox("Task", TASKS, index=TASKS.index(dataset.task),
                              key=state.widget_key("draft", "data", "task"),
                              help="auto: whole numbers with few distinct values are classes, anything else is "
                                   "regression.")
        scaling = right.selectbox("Feature scaling", SCALINGS, index=SCALINGS.index(dataset.scaling),
                                  key=state.widget_key("draft", "data", "scaling"))
        candidate = DatasetSpec(source=kind, name=stem, path=ref, target=target, features=features, task=task,
                                scaling=scaling)


@st.cache_data(show_spinner=False, max_entries=16)
def thumbnails(path: str, name: str, dataset_json: str) -> tuple[str, dict[str, np.ndarray] | str]:
    """("ok", class -> uint8 images) or ("error", why): the first images of the first classes, as the model
    sees them. Keyed by the stored file's path (content-addressed, under its home) and the spec."""
    try:
        samples = class_samples(Path(path), name, DatasetSpec.from_dict(json.loads(dataset_json)),
                                THUMBNAILS_PER_CLASS, max_classes=CLASSES_SHOWN)
    except DataError as error:
        return "error", str(error)
    step = max(1, math.ceil(max(next(iter(samples.values())).shape[1:3]) / THUMBNAIL_MAX_SIDE))
    return "ok", {class_name: images[:, ::step, ::step] for class_name, images in samples.items()}


def class_grid(current: DatasetSpec, counts: dict[str, int]) -> None:
    """A row of thumbnails per class, titled with the class's name and how many images it has."""
    outcome, samples = thumbnails(str(resolve(current.path)), display_name(current.path),
                                  json.dumps(current.to_dict(), sort_keys=True))
    if outcome == "error":
        refuse(samples)
    for class_name, images in samples.items():
        with st.container(key=state.widget_key("data", "class", class_name)):
            st.markdown(f"**{class_name}** · {formatting.count(counts[class_name])} images")
            st.image([image[..., 0] if image.shape[-1] == 1 else image for image in images], width=THUMBNAIL_PX)
    if len(counts) > len(samples):
        st.caption(f"The first {len(samples)} of {len(counts)} classes; the chart beside shows them all.")

with st.spinner("Reading the dataset…"):
    outcome, preview = services.dataset_preview(candidate)
if outcome == "error":
    refuse(preview)
use(candidate)  # only a dataset that was read replaces the one the stack trains on

report, _ = services.check_or_error(state.draft())
if report is not None and not report["ok"] and report["problems"]:
    st.warning(f"The stack being assembled does not fit this dataset: {report['problems'][0]['message']}",
               icon=":material/warning:")
    st.page_link("app_pages/assemble.py", label="Adjust the stack on the Assemble page", icon=":material/stacks:")

summary = preview["summary"]
task_info = summary["task"]
columns = st.columns(4)
columns[0].metric("Samples", formatting.count(summary["num_samples"]))
columns[1].metric("Input shape", formatting.shape(summary["input_shape"]))
if task_info["kind"] == "regression":
    columns[2].metric("Task", "regression")
    stats = summary.get("target_stats", {})
    low, high = formatting.number(stats.get("min")), formatting.number(stats.get("max"))
    columns[3].metric("Target range", f"{low} – {high}")
else:
    columns[2].metric("Task", task_info["kind"], help="multiclass or binary classification")
    columns[3].metric("Classes", task_info["num_classes"])

left, right = st.columns([3, 2], gap="large")
with left:
    st.subheader("Samples")
    if candidate.source == "images":
        class_grid(candidate, summary["class_counts"])
    elif preview["kind"] == "images":
        st.plotly_chart(figures.image_grid(preview["samples"], preview["labels"]), key="data-samples",
                        config={"displayModeBar": False})
    elif preview["kind"] == "sequences":
        st.plotly_chart(figures.sequence_samples(preview["samples"][:8], preview["labels"][:8]), key="data-samples",
                        config={"displayModeBar": False})
    elif preview["kind"] == "table":
        table = preview["table"]
        st.dataframe(table, hide_index=True, key="data-table",
                     column_config={c: st.column_config.NumberColumn(format="%.3f") for c in table.columns
                                    if c != "target" and pd.api.types.is_float_dtype(table[c])})
        if summary["feature_names"]:
            st.caption(f"{formatting.plural(len(summary['feature_names']), 'column')} as the file holds them. The "
                       f"model's own first layers scale numbers ('{state.draft().dataset.scaling}') and one-hot "
                       f"encode text, fitted on the training split only, so the downloaded model takes raw rows.")
    else:
        st.caption(f"Samples of shape {formatting.shape(summary['input_shape'])} have no preview.")
with right:
    if summary["class_counts"]:
        st.plotly_chart(figures.class_balance(summary["class_counts"]), key="data-balance",
                        config={"displayModeBar": False})
        if candidate.source == "images":
            counts = summary["class_counts"]
            total = sum(counts.values()) or 1
            st.dataframe(pd.DataFrame({"class": list(counts), "images": list(counts.values()),
                                       "share": [count / total for count in counts.values()]}),
                         hide_index=True, key="data-balance-table",
                         column_config={"share": st.column_config.ProgressColumn(format="percent", min_value=0,
                                                                                 max_value=1)})
    elif "targets" in preview:
        st.plotly_chart(figures.target_histogram(preview["targets"]), key="data-balance",
                        config={"displayModeBar": False})
