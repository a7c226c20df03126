"""core/data: load_dataset, and the readers behind it (csv_files, npz_files, builtin)."""

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from numpy.lib import format as npy_format

from core.data import (
    BUILTIN_DATASETS,
    DataError,
    DataLimits,
    Dataset,
    csv_columns,
    list_builtins,
    load_dataset,
    split,
)
from core.data import builtin as builtin_arrays
from core.data.csv_files import dataset_from_arrays
from core.spec import DatasetSpec
from core.spec.tasks import TaskInfo
from core.storage.uploads import store_bytes

ROOT = Path(__file__).resolve().parents[3]

EXPECTED_BUILTINS = {
    # name: (num_samples, input_shape, kind, num_classes)
    "digits28": (1797, (28, 28, 1), "multiclass", 10),
    "digits8": (1797, (8, 8, 1), "multiclass", 10),
    "iris": (150, (4,), "multiclass", 3),
    "wine": (178, (13,), "multiclass", 3),
    "breast_cancer": (569, (30,), "binary", 2),
    "diabetes": (442, (10,), "regression", 0),
    "transactions": (10_000, (13,), "binary", 2),
    "waveforms": (4_000, (64, 1), "multiclass", 4),
}


def builtin(name: str, scaling: str = "standard") -> Dataset:
    return load_dataset(DatasetSpec(source="builtin", name=name, scaling=scaling))


def load_csv(tmp_path: Path, text: str, limits: DataLimits | None = None, **spec) -> Dataset:
    path = tmp_path / "data.csv"
    path.write_text(text)
    spec = DatasetSpec(source="csv", path=str(path), **spec)
    return load_dataset(spec) if limits is None else load_dataset(spec, limits)


def write_npz(path: Path, **arrays) -> Path:
    np.savez(path, **arrays)
    return path


def load_npz(path: Path, limits: DataLimits | None = None, **spec) -> Dataset:
    spec = DatasetSpec(source="npz", path=str(path), **spec)
    return load_dataset(spec) if limits is None else load_dataset(spec, limits)


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


@pytest.fixture
def no_array_reads(monkeypatch):
    """Fail the test if any .npy array body is read: refusals must come from the headers."""

    def refuse(*args, **kwargs):
        raise AssertionError("an array was read before the archive was judged")

    monkeypatch.setattr(npy_format, "read_array", refuse)


# ---- built-in datasets --------------------------------------------------------------------


def test_registry_lists_every_builtin_with_plain_data():
    listed = list_builtins()
    assert [entry["name"] for entry in listed] == list(BUILTIN_DATASETS) == list(EXPECTED_BUILTINS)
    json.dumps(listed)  # plain data only
    for entry in listed:
        samples, shape, kind, classes = EXPECTED_BUILTINS[entry["name"]]
        assert (entry["num_samples"], tuple(entry["input_shape"]), entry["task"],
                entry["num_classes"]) == (samples, shape, kind, classes)
        assert len(entry["class_names"]) == classes
        assert entry["title"] and entry["description"]


@pytest.mark.parametrize("name", list(EXPECTED_BUILTINS))
def test_builtin_loads_with_right_shapes_task_and_dtypes(name):
    samples, shape, kind, classes = EXPECTED_BUILTINS[name]
    dataset = builtin(name)
    assert dataset.x.shape == (samples, *shape)
    assert dataset.x.dtype == np.float32 and np.isfinite(dataset.x).all()
    assert dataset.task.kind == kind and dataset.task.input_shape == shape
    assert dataset.num_samples == samples
    if kind == "regression":
        assert dataset.y.dtype == np.float32 and dataset.y.shape == (samples,)
    else:
        assert dataset.y.dtype == np.int64
        assert sorted(np.unique(dataset.y)) == list(range(classes))
        assert len(dataset.task.class_names) == dataset.task.num_classes == classes
    # Tabular sets name their columns; images and sequences do not.
    assert len(dataset.feature_names) == (shape[0] if len(shape) == 1 else 0)


def test_digits28_is_upscaled_real_handwriting_in_unit_range():
    big, small = builtin("digits28"), builtin("digits8")
    assert big.x.shape == (1797, 28, 28, 1)
    assert big.x.min() == 0.0 and big.x.max() == 1.0
    assert not big.x[:, :2].any() and not big.x[:, -2:].any()  # MNIST-like 2-pixel border
    # Every 3x3 block of the 24x24 centre is one pixel of the 8x8 original.
    np.testing.assert_array_equal(big.x[:, 2:26:3, 2:26:3], small.x)
    np.testing.assert_array_equal(big.y, small.y)
    assert big.task.class_names == tuple("0123456789")


@pytest.mark.parametrize("maker", [builtin_arrays.make_transactions, builtin_arrays.make_waveforms])
def test_generated_builtins_are_deterministic(maker):
    first, second = maker(), maker()
    np.testing.assert_array_equal(first.x, second.x)
    np.testing.assert_array_equal(first.y, second.y)


def test_transactions_is_imbalanced_fraud_with_meaningful_features():
    dataset = builtin("transactions")
    assert dataset.task.class_names == ("normal", "fraud")
    assert 0.02 <= dataset.y.mean() <= 0.03
    assert {"amount", "hour", "merchant_risk", "distance_from_home_km"} <= set(dataset.feature_names)
    raw = builtin_arrays.make_transactions()
    amount = raw.x[:, raw.feature_names.index("amount")]
    # Learnable: fraud is on average larger relative to the customer's usual spend.
    assert amount[raw.y == 1].mean() > amount[raw.y == 0].mean()


def test_waveforms_are_balanced_noisy_sequences():
    dataset = builtin("waveforms")
    assert dataset.task.class_names == ("sine", "square", "sawtooth", "noise")
    assert np.bincount(dataset.y).tolist() == [1000] * 4
    assert len({round(float(v), 3) for v in dataset.x[:20, 0, 0]}) > 15  # random phases


def test_builtins_are_cached_and_read_only():
    first, second = builtin("iris"), builtin("iris")
    assert first is second
    with pytest.raises(ValueError, match="read-only"):
        first.x[0, 0] = 99.0
    with pytest.raises(ValueError, match="read-only"):
        first.y[0] = 1


def test_tabular_builtins_stay_raw_whatever_the_scaling():
    # The scaling is the model's first layer, fitted on the training split (test_preprocessing.py):
    # the dataset itself is the same raw data for every scaling.
    standard, minmax = builtin("wine", "standard"), builtin("wine", "minmax")
    assert standard is minmax
    np.testing.assert_allclose(standard.x, builtin_arrays.make_wine().x, rtol=1e-6)
    assert builtin("digits8", "standard").x.max() == 1.0 and builtin("digits8").pixel_range is None


def test_unknown_builtin_lists_the_choices():
    with pytest.raises(DataError, match=r"Unknown built-in dataset 'mnist'.*digits28"):
        builtin("mnist")


def test_summary_is_plain_data_with_class_counts_or_target_stats():
    summary = builtin("iris").summary()
    assert summary["class_counts"] == {"setosa": 50, "versicolor": 50, "virginica": 50}
    assert summary["task"]["kind"] == "multiclass" and summary["num_samples"] == 150
    json.dumps(summary)
    regression = builtin("diabetes").summary()
    assert regression["class_counts"] == {}
    assert 25 <= regression["target_stats"]["min"] < regression["target_stats"]["max"] <= 346
    json.dumps(regression)


# ---- CSV -----------------------------------------------------------------------------------

MIXED_CSV = "size,color,fresh,label\n1,red,True,apple\n2,green,False,pear\n3,red,True,apple\n4,blue,True,plum\n"


def test_csv_numeric_and_categorical_features_stay_raw_columns(tmp_path):
    dataset = load_csv(tmp_path, MIXED_CSV, target="label")
    assert dataset.feature_names == ("size", "color", "fresh") and dataset.is_table
    assert dataset.feature_kinds == ("numeric", "categorical", "categorical")
    assert dataset.task.kind == "multiclass" and dataset.task.input_shape == (3,)
    assert dataset.task.class_names == ("apple", "pear", "plum")
    assert dataset.y.tolist() == [0, 1, 0, 2]
    # Numbers as numbers, text (and bools) as text: encoding them is the model's job.
    assert dataset.x[:, 0].astype(float).tolist() == [1.0, 2.0, 3.0, 4.0]
    assert dataset.x[:, 1].tolist() == ["red", "green", "red", "blue"]
    assert dataset.x[:, 2].tolist() == ["True", "False", "True", "True"]
    summary = dataset.summary()
    assert summary["feature_kinds"] == ["numeric", "categorical", "categorical"]
    assert summary["x_stats"] == {"min": 1.0, "max": 4.0, "mean": 2.5}  # the numeric columns
    json.dumps(summary)


@pytest.mark.parametrize("values, kind, classes", [
    (["yes", "no", "yes", "no"], "binary", ("no", "yes")),
    ([3, 1, 2, 3], "multiclass", ("1", "2", "3")),
    ([0.5, 1.25, 2.0, 7.5], "regression", ()),
    (list(range(0, 50, 2)), "regression", ()),  # whole numbers, but more than 20 distinct
])
def test_csv_auto_task_detection(tmp_path, values, kind, classes):
    rows = "".join(f"{i},{v}\n" for i, v in enumerate(values))
    dataset = load_csv(tmp_path, "a,target\n" + rows, target="target")
    assert dataset.task.kind == kind
    assert dataset.task.class_names == classes
    assert dataset.y.dtype == (np.float32 if kind == "regression" else np.int64)


def test_csv_forced_task(tmp_path):
    text = "a,target\n1,1\n2,2\n3,1\n4,2\n"
    assert load_csv(tmp_path, text, target="target").task.kind == "binary"
    forced = load_csv(tmp_path, text, target="target", task="regression")
    assert forced.task.kind == "regression" and forced.y.tolist() == [1.0, 2.0, 1.0, 2.0]
    as_classes = load_csv(tmp_path, "a,t\n1,0.5\n2,1.5\n3,0.5\n", target="t", task="classification")
    assert as_classes.task.class_names == ("0.5", "1.5")
    with pytest.raises(DataError, match="holds text.*regression needs numbers"):
        load_csv(tmp_path, "a,t\n1,x\n2,y\n", target="t", task="regression")


def test_csv_feature_selection_keeps_raw_numbers(tmp_path):
    text = "a,b,skip,t\n" + "".join(f"{i},{10 * i},{i % 3},{i % 2}\n" for i in range(10))
    chosen = load_csv(tmp_path, text, target="t", features=("b", "a"), scaling="minmax")
    assert chosen.feature_names == ("b", "a")  # the order asked for
    assert chosen.x.dtype == np.float32 and chosen.x[:, 0].tolist() == [10.0 * i for i in range(10)]


def test_csv_from_an_upload_resolves_and_errors_name_the_original_file():
    ref = store_bytes(MIXED_CSV.encode(), "fruit basket.csv")
    dataset = load_dataset(DatasetSpec(source="csv", path=ref, target="label"))
    assert dataset.num_samples == 4 and dataset.name == "fruit basket"
    with pytest.raises(DataError, match=r"'fruit basket.csv' has no column 'price'"):
        load_dataset(DatasetSpec(source="csv", path=ref, target="price"))
    with pytest.raises(DataError, match="not in the upload store"):
        load_dataset(DatasetSpec(source="csv", path="sha256:" + "0" * 64, target="label"))


@pytest.mark.parametrize("text, spec, message", [
    ("", {"target": "t"}, r"'data.csv' is empty"),
    ("\n\n", {"target": "t"}, r"holds no CSV data"),
    ("a,t\n", {"target": "t"}, r"header but no data rows"),
    ("a,t\n1,2\n", {}, r"Choose the target column.*\['a', 't'\]"),
    ("a,t\n1,2\n", {"target": "price"}, r"no column 'price'.*Available columns: \['a', 't'\]"),
    ("a,t\n1,2\n", {"target": "t", "features": ("a", "zz")}, r"no feature column\(s\) \['zz'\].*\['a', 't'\]"),
    ("a,t\n1,2\n", {"target": "t", "features": ("t",)}, r"both the target and a feature"),
    ("t\n1\n2\n", {"target": "t"}, r"no feature columns besides the target"),
    ("a,t\n1,x\n2,x\n3,x\n", {"target": "t"}, r"only one class \('x'\).*at least two"),
    ("a,b,t\n1,,0\n,,1\n3,4,1\n", {"target": "t"},
     r"missing or infinite values in column\(s\) 'a' \(1 row\), 'b' \(2 rows\).*impute"),
    ("a,t\ninf,0\n2,1\n", {"target": "t"}, r"'a' \(1 row\)"),
    ("a,t\n1,0\n2,\n3,1\n", {"target": "t"}, r"Target column 't'.*1 row\(s\). Drop those rows"),
    ("a,t\n1,2,3\n4,5\n", {"target": "t"}, r"could not be read as CSV.*same number of fields"),
    ("a;t\n1;2\n", {"target": "t"}, r"looks separated by ';'"),
])
def test_csv_errors_say_what_is_wrong_and_how_to_fix_it(tmp_path, text, spec, message):
    with pytest.raises(DataError, match=message):
        load_csv(tmp_path, text, **spec)


def test_csv_not_utf8_is_refused(tmp_path):
    path = tmp_path / "sheet.csv"
    path.write_bytes(b"PK\x03\x04\xff\xfe\x00binary spreadsheet")
    with pytest.raises(DataError, match="'sheet.csv' is not UTF-8.*CSV UTF-8"):
        load_dataset(DatasetSpec(source="csv", path=str(path), target="a"))


def test_csv_too_many_categories_names_the_column_and_count(tmp_path):
    text = "city,t\n" + "".join(f"town{i},{i % 2}\n" for i in range(60))
    with pytest.raises(DataError, match=r"Column 'city'.*60 distinct text values.*limit of 50.*Leave it out"):
        load_csv(tmp_path, text, target="t")
    # A number column with a stray '?' is read as text: the message points at the strays.
    text = "age,t\n" + "".join(f"{i if i % 10 else '?'},{i % 2}\n" for i in range(100))
    with pytest.raises(DataError, match=r"looks numeric except for entries such as \['\?'\]"):
        load_csv(tmp_path, text, target="t")


@pytest.mark.parametrize("limits, message", [
    (DataLimits(max_file_bytes=10), r"'data.csv' is .* over the limit of 10 bytes.*STACKLAB_MAX_DATA_BYTES"),
    (DataLimits(max_rows=5), r"more than 5 rows.*STACKLAB_MAX_ROWS"),
    (DataLimits(max_columns=2), r"3 columns, over the limit of 2"),
    (DataLimits(max_classes=3), r"10 distinct values, over the limit of 3 classes"),
])
def test_csv_limits(tmp_path, limits, message):
    text = "a,b,t\n" + "".join(f"{i},{i},{i}\n" for i in range(10))
    with pytest.raises(DataError, match=message):
        load_csv(tmp_path, text, limits, target="t", task="classification")


def test_missing_or_absent_file_path():
    with pytest.raises(DataError, match="needs a file"):
        load_dataset(DatasetSpec(source="csv", target="t"))
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(DatasetSpec(source="npz", path="/nowhere/data.npz"))


# ---- NPZ -----------------------------------------------------------------------------------


def test_npz_keeps_x_shape_and_encodes_labels(tmp_path):
    x = np.random.default_rng(0).random((12, 5, 4, 2))
    path = write_npz(tmp_path / "cubes.npz", x=x, y=np.array([1, 2, 3] * 4))
    dataset = load_npz(path)
    assert dataset.x.shape == (12, 5, 4, 2) and dataset.x.dtype == np.float32
    np.testing.assert_allclose(dataset.x, x, rtol=1e-6)  # images/sequences are not rescaled
    assert dataset.task.kind == "multiclass" and dataset.task.class_names == ("1", "2", "3")
    assert dataset.y.tolist() == [0, 1, 2] * 4 and dataset.name == "cubes"


def test_npz_string_labels_regression_and_one_hot(tmp_path):
    x = np.arange(20, dtype=np.float64).reshape(10, 2)
    named = load_npz(write_npz(tmp_path / "a.npz", x=x, y=np.array(["cat", "dog"] * 5)))
    assert named.task.kind == "binary" and named.task.class_names == ("cat", "dog")
    targets = load_npz(write_npz(tmp_path / "b.npz", x=x, y=np.linspace(0, 1, 20).reshape(10, 2)))
    assert targets.task.kind == "regression" and targets.task.output_dim == 2
    assert targets.y.shape == (10, 2) and targets.y.dtype == np.float32
    one_hot = load_npz(write_npz(tmp_path / "c.npz", x=x, y=np.eye(3)[[0, 1, 2, 1, 0, 2, 1, 0, 2, 1]]))
    assert one_hot.task.num_classes == 3 and one_hot.y.tolist()[:4] == [0, 1, 2, 1]
    standard = load_npz(tmp_path / "a.npz", scaling="standard")  # scaled by the model, not here
    np.testing.assert_array_equal(standard.x, x)
    assert standard.pixel_range is None


def test_npz_uint8_images_keep_raw_pixels_and_a_pixel_range(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (6, 4, 4, 1), dtype=np.uint8)
    dataset = load_npz(write_npz(tmp_path / "images.npz", x=images, y=np.array([0, 1] * 3)))
    assert dataset.pixel_range == 255.0 and dataset.summary()["pixel_range"] == 255.0
    np.testing.assert_array_equal(dataset.x, images.astype(np.float32))  # /255 is the model's Rescaling layer
    floats = load_npz(write_npz(tmp_path / "floats.npz", x=images / 255.0, y=np.array([0, 1] * 3)))
    assert floats.pixel_range is None
    given = dataset_from_arrays(images.astype(np.float32), np.array([0, 1] * 3), pixel_range=255.0)
    assert given.pixel_range == 255.0
    with pytest.raises(DataError, match="pixel_range"):
        Dataset("bad", images[:, 0, 0], [0, 1] * 3, TaskInfo("binary", (1,), 2), pixel_range=0.0)


def test_npz_is_read_without_pickle(tmp_path, monkeypatch):
    calls = []
    real_read_array = npy_format.read_array

    def spy(*args, **kwargs):
        calls.append(kwargs.get("allow_pickle"))
        return real_read_array(*args, **kwargs)

    monkeypatch.setattr(npy_format, "read_array", spy)
    load_npz(write_npz(tmp_path / "a.npz", x=np.ones((4, 2)), y=np.array([0, 1, 0, 1])))
    assert calls == [False, False]


@pytest.mark.parametrize("key", ["x", "y"])
def test_npz_object_arrays_are_refused_before_loading(tmp_path, no_array_reads, key):
    arrays = {"x": np.ones((4, 2)), "y": np.array([0, 1, 0, 1])}
    arrays[key] = np.array([{"a": 1}, None, "b", 2] if key == "y" else [[1, None]] * 4, dtype=object)
    path = tmp_path / "pickled.npz"
    np.savez(path, **arrays)  # np.savez pickles object arrays
    with pytest.raises(DataError, match=f"Array {key} of 'pickled.npz' has dtype object.*never loads pickles"):
        load_npz(path)


def test_npz_zip_bomb_is_refused_without_inflating(tmp_path, no_array_reads):
    path = tmp_path / "bomb.npz"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        with archive.open("x.npy", "w") as member:  # 16 MiB of zeros, streamed
            npy_format.write_array(member, np.zeros((4096, 1024), np.float32))
        archive.writestr("y.npy", npy_bytes(np.zeros(4096, np.int64)))
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match=r"'x.npy' of 'bomb.npz' inflates \d+x .*zip bombs"):
        load_npz(path)


def crafted_npz(path: Path, x_header: bytes, y: np.ndarray | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", x_header)
        archive.writestr("y.npy", npy_bytes(np.arange(3) if y is None else y))
    return path


def npy_header(shape, descr="<f8") -> bytes:
    buffer = io.BytesIO()
    npy_format.write_array_header_1_0(buffer, {"descr": descr, "fortran_order": False, "shape": shape})
    return buffer.getvalue()


def test_npz_crafted_header_declaring_a_huge_shape_is_refused_without_allocating(tmp_path, no_array_reads):
    path = crafted_npz(tmp_path / "liar.npz", npy_header((10**9, 10**6)) + b"\0" * 64)
    with pytest.raises(DataError, match=r"declares shape \(1000000000, 1000000\).*truncated or crafted"):
        load_npz(path)


def test_npz_crafted_header_length_is_refused(tmp_path, no_array_reads):
    # Format 2.0 allows a 4-byte header length; numpy would read it all before judging it.
    header = npy_format.MAGIC_PREFIX + bytes([2, 0]) + (2**31).to_bytes(4, "little")
    with pytest.raises(DataError, match="header; real ones are a few hundred bytes"):
        load_npz(crafted_npz(tmp_path / "long.npz", header + b"{}"))


def test_npz_size_limits_come_from_declared_sizes(tmp_path, no_array_reads):
    path = write_npz(tmp_path / "a.npz", x=np.ones((10, 10)), y=np.arange(10) % 2)  # 800 bytes of x
    with pytest.raises(DataError, match=r"'x.npy' of 'a.npz' inflates to .*STACKLAB_MAX_ARRAY_BYTES"):
        load_npz(path, DataLimits(max_array_bytes=500))
    # Each member fits, but x, its float32 copy and y together do not.
    with pytest.raises(DataError, match=r"needing 1.2 KiB to load, over the limit"):
        load_npz(path, DataLimits(max_array_bytes=1000))
    with pytest.raises(DataError, match=r"10 samples, over the limit of 5"):
        load_npz(path, DataLimits(max_rows=5))
    with pytest.raises(DataError, match=r"over the limit of 100 bytes.*STACKLAB_MAX_DATA_BYTES"):
        load_npz(path, DataLimits(max_file_bytes=100))


@pytest.mark.parametrize("arrays, message", [
    ({"features": np.ones((3, 2)), "y": np.arange(3)}, r"no array 'x' \(found: \['features', 'y'\]\)"),
    ({"x": np.ones((3, 2)), "y": np.arange(2)}, r"3 samples in x but 2 in y"),
    ({"x": np.ones(3), "y": np.arange(3)}, r"shape \(3,\); it needs \(samples, features...\)"),
    ({"x": np.array([["a"], ["b"], ["c"]]), "y": np.arange(3)}, r"dtype <U1, which is not numeric"),
    ({"x": np.array([[1.0, np.nan], [2, 3], [np.inf, 1]]), "y": np.arange(3)},
     r"missing, infinite or too-large values in 2 sample\(s\) \(columns \[0, 1\]\)"),
    ({"x": np.ones((3, 2)), "y": np.array([1.0, np.nan, 2.0])}, r"array y .* 1 row\(s\)"),
    ({"x": np.ones((3, 2)), "y": np.zeros(3, np.int64)}, r"only one class"),
])
def test_npz_errors(tmp_path, arrays, message):
    with pytest.raises(DataError, match=message):
        load_npz(write_npz(tmp_path / "bad.npz", **arrays))


def test_npz_with_a_crowd_of_members_is_refused_before_opening(tmp_path, monkeypatch):
    path = tmp_path / "crowd.npz"
    with zipfile.ZipFile(path, "w") as archive:
        for index in range(300):
            archive.writestr(f"a{index}.npy", b"")
    monkeypatch.setattr(zipfile, "ZipFile", None)  # the end record alone must decide
    with pytest.raises(DataError, match=r"'crowd.npz' declares 300 archive members"):
        load_npz(path)


def test_npz_that_is_not_a_zip_is_refused(tmp_path):
    path = tmp_path / "plain.npz"
    path.write_bytes(npy_bytes(np.ones(3)))  # a bare .npy, renamed
    with pytest.raises(DataError, match=r"'plain.npz' is not an NPZ archive.*np.savez"):
        load_npz(path)


# ---- limits, arrays, Dataset -------------------------------------------------------------------


def test_limits_from_env(monkeypatch):
    monkeypatch.setenv("STACKLAB_MAX_DATA_BYTES", "1234")
    monkeypatch.setenv("STACKLAB_MAX_COMPRESSION_RATIO", "50.5")
    limits = DataLimits.from_env()
    assert limits.max_file_bytes == 1234 and limits.max_compression_ratio == 50.5
    assert limits.max_rows == DataLimits().max_rows
    with pytest.raises(ValueError, match="STACKLAB_MAX_ROWS must be a positive whole number"):
        DataLimits.from_env({"STACKLAB_MAX_ROWS": "lots"})
    with pytest.raises(ValueError, match="STACKLAB_MAX_ROWS must be a positive whole number"):
        DataLimits.from_env({"STACKLAB_MAX_ROWS": "0"})
    with pytest.raises(ValueError, match="max_classes must be a positive number"):
        DataLimits(max_classes=0)


def test_dataset_checks_its_arrays():
    task = TaskInfo("binary", (2,), num_classes=2, class_names=("a", "b"))
    dataset = Dataset("ok", np.ones((2, 2)), [0, 1], task)
    assert dataset.x.dtype == np.float32 and dataset.y.dtype == np.int64
    with pytest.raises(DataError, match="2 samples in x but 3 in y"):
        Dataset("bad", np.ones((2, 2)), [0, 1, 1], task)
    with pytest.raises(DataError, match="needs labels 0..1"):
        Dataset("bad", np.ones((2, 2)), [0, 2], task)
    with pytest.raises(DataError, match=r"samples of shape \(3,\) but its task declares input_shape \(2,\)"):
        Dataset("bad", np.ones((2, 3)), [0, 1], task)


def test_dataset_from_arrays():
    dataset = dataset_from_arrays(np.random.default_rng(0).random((10, 5, 1)), np.arange(10) % 2)
    assert dataset.task.kind == "binary" and dataset.task.input_shape == (5, 1)


def test_dataset_checks_its_feature_kinds():
    task = TaskInfo("binary", (2,), num_classes=2)
    table = Dataset("t", np.array([[1.0, "a"], [2.0, "b"]], dtype=object), [0, 1], task,
                    ("n", "c"), feature_kinds=("numeric", "categorical"))
    assert table.x.dtype == object and table.is_table
    with pytest.raises(DataError, match="give one kind"):
        Dataset("bad", np.ones((2, 2)), [0, 1], task, ("n", "c"), feature_kinds=("numeric", "text"))


def test_core_data_imports_no_keras_or_ui():
    code = ("import sys, core.data, core.data.csv_files, core.data.npz_files; "
            "bad = [m for m in ('keras', 'tensorflow', 'streamlit', 'plotly') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# ---- split ---------------------------------------------------------------------------------


def test_split_is_deterministic_for_a_seed():
    dataset = builtin("digits8")
    first, second, other = split(dataset, 0.2, seed=3), split(dataset, 0.2, seed=3), split(dataset, 0.2, seed=4)
    for name in ("x_train", "y_train", "x_val", "y_val"):
        np.testing.assert_array_equal(getattr(first, name), getattr(second, name))
    assert not np.array_equal(first.y_train, other.y_train)


def test_split_sizes_cover_every_sample_once():
    n = 101
    dataset = dataset_from_arrays(np.arange(n, dtype=np.float64).reshape(n, 1), np.linspace(0, 1, n))
    parts = split(dataset, 0.3, seed=0)
    assert (len(parts.x_train), len(parts.x_val)) == (71, 30)
    seen = np.concatenate([parts.x_train[:, 0], parts.x_val[:, 0]])
    assert sorted(seen.tolist()) == list(range(n))
    np.testing.assert_allclose(parts.y_val, parts.x_val[:, 0] / 100, rtol=1e-6)  # rows stay paired


def test_split_is_stratified_for_classes():
    assert np.bincount(split(builtin("iris"), 0.2, seed=0).y_val).tolist() == [10, 10, 10]
    fraud = split(builtin("transactions"), 0.2, seed=1)
    assert np.bincount(fraud.y_val).tolist() == [1950, 50]
    assert np.bincount(fraud.y_train).tolist() == [7800, 200]


def test_split_with_a_singleton_class_falls_back_to_shuffling():
    dataset = dataset_from_arrays(np.ones((10, 1)), np.array([0] * 5 + [1] * 4 + [2]))
    parts = split(dataset, 0.2, seed=0)
    assert len(parts.y_val) == 2 and len(parts.y_train) == 8


def test_split_zero_gives_empty_validation_with_trailing_shape():
    parts = split(builtin("digits28"), 0.0, seed=0)
    assert parts.x_val.shape == (0, 28, 28, 1) and parts.x_val.dtype == np.float32
    assert parts.y_val.shape == (0,) and parts.y_val.dtype == np.int64
    assert len(parts.x_train) == 1797
    parts.x_train[0, 0, 0, 0] = 1.0  # copies: writable although the cached dataset is not


@pytest.mark.parametrize("fraction", [-0.1, 0.95, 1.0])
def test_split_fraction_out_of_range(fraction):
    with pytest.raises(DataError, match="validation_split must be between 0 and 0.9"):
        split(builtin("iris"), fraction, seed=0)


def test_csv_columns_reads_only_the_header():
    ref = store_bytes(b"amount,hour,label\n1,2,x\n", "t.csv")
    assert csv_columns(ref) == ["amount", "hour", "label"]
    with pytest.raises(DataError, match="holds no CSV data"):
        csv_columns(store_bytes(b"", "empty.csv"))
    with pytest.raises(DataError, match="is not in the upload store"):
        csv_columns("sha256:" + "0" * 64)
