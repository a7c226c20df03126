"""Tests for core/model_files/loading.py: genuine model files load, summarize and cut like the originals.

What the checks refuse is tested next to the checks: test_container_checks.py,
test_config_checks.py and test_child.py. The few tests here that need the
child share one set of verified files (see tests/core/model_files/loading_fixtures.py).
"""

import json
import re

import keras
import numpy as np
import pytest

from core.model_files import child, loading
from core.model_files.loading import LoadLimits, ModelFileRefused
from core.storage import uploads
from tests.core.model_files.loading_models import LIMITS, build_functional, build_sequential

pytest_plugins = ["tests.core.model_files.loading_fixtures"]  # the fixtures saved and summaries

FROZEN = {"sequential": "hidden", "functional": "left"}
CASES = [(kind, fmt) for kind in ("sequential", "functional") for fmt in ("keras", "h5")]
SAMPLE = np.random.default_rng(1).normal(size=(4, 6)).astype("float32")


# ---------------------------------------------------------------------------------------
# Genuine files


@pytest.mark.parametrize("case", CASES, ids=["-".join(case) for case in CASES])
def test_summary_matches_the_original_model(saved, summaries, case):
    path, original = saved[case]
    summary = summaries[case]
    trainable = sum(int(np.prod(w.shape)) for w in original.trainable_weights)
    assert summary.total_params == original.count_params()
    assert summary.trainable_params == trainable
    assert summary.non_trainable_params == original.count_params() - trainable > 0
    assert [row["name"] for row in summary.layers] == [layer.name for layer in original.layers]
    assert summary.output_shapes == [list(original.output_shape[1:])]
    assert summary.file.format == case[1] and summary.file.file_name == path.name
    assert json.loads(json.dumps(summary.to_dict()))["total_params"] == summary.total_params
    text = summary.describe()
    assert f"total params {summary.total_params:,}" in text
    last = original.layers[-1]
    assert re.search(rf"^{last.name} +Dense +\(batch, {last.units}\) +{last.count_params()} +yes$", text, re.M)


@pytest.mark.parametrize("case", CASES, ids=["-".join(case) for case in CASES])
def test_loaded_model_predicts_like_the_original(saved, summaries, case):
    path, original = saved[case]
    loaded = loading.load_model_file(path, LIMITS)
    np.testing.assert_allclose(loaded.predict(SAMPLE, verbose=0),
                               original.predict(SAMPLE, verbose=0), rtol=1e-6)
    assert loaded.get_layer(FROZEN[case[0]]).trainable is False


def test_repeated_loads_of_the_same_bytes_skip_the_child(saved, summaries, monkeypatch):
    def no_child(*args):
        raise AssertionError("a verified file started a child process again")

    monkeypatch.setattr(child, "verify_in_child", no_child)
    path, _ = saved["functional", "keras"]
    for _ in range(2):
        assert loading.load_model_file(path, LIMITS).name == "func"


def test_upload_reference_resolves_and_names_the_upload(saved, summaries):
    path, original = saved["sequential", "keras"]
    ref = uploads.store_bytes(path.read_bytes(), "My classifier.keras")
    assert loading.inspect_model_file(ref, LIMITS).file_name == "My classifier.keras"
    loaded = loading.load_model_file(ref, LIMITS)  # same bytes: verified already
    np.testing.assert_allclose(loaded.predict(SAMPLE, verbose=0), original.predict(SAMPLE, verbose=0), rtol=1e-6)


@pytest.mark.parametrize("kind, layer_name", [("sequential", "hidden"), ("functional", "merge")])
def test_cut_model_keeps_layers_up_to_the_named_one(saved, summaries, kind, layer_name):
    path, original = saved[kind, "keras"]
    cut = loading.cut_model(loading.load_model_file(path, LIMITS), layer_name, name="encoder")
    reference = keras.Model(original.inputs, original.get_layer(layer_name).output)
    assert cut.name == "encoder" and cut.layers[-1].name == layer_name
    np.testing.assert_allclose(cut.predict(SAMPLE, verbose=0), reference.predict(SAMPLE, verbose=0), rtol=1e-6)


def test_cut_model_lists_the_layers_when_the_name_is_unknown():
    with pytest.raises(ValueError, match="has no layer 'missing'. Available layers: hidden, dropout, out"):
        loading.cut_model(build_sequential(), "missing")


def test_top_level_layers_rows():
    rows = loading.top_level_layers(build_functional())
    by_name = {row["name"]: row for row in rows}
    assert by_name["left"] == {"name": "left", "class": "Dense", "output_shape": [4],
                               "params": 28, "trainable": False}
    assert by_name["norm"]["params"] == 24 and by_name["features"]["class"] == "InputLayer"


def test_static_report_describes_the_file(saved):
    report = loading.inspect_model_file(saved["functional", "keras"][0], LIMITS)
    assert report.model_class == "Functional" and report.model_name == "func"
    assert sorted(report.layer_classes) == ["BatchNormalization", "Concatenate", "Dense", "InputLayer"]
    assert report.layer_count == 6 and report.keras_version == keras.__version__
    assert report.members == ("config.json", "metadata.json", "model.weights.h5")
    assert report.weight_bytes == 4 * saved["functional", "keras"][1].count_params()


def test_limits_from_env(monkeypatch):
    monkeypatch.setenv("STACKLAB_LOAD_MEMORY_BYTES", "1234567890")
    monkeypatch.setenv("STACKLAB_LOAD_TIMEOUT_S", "2.5")
    limits = LoadLimits.from_env()
    assert limits.memory_bytes == 1234567890 and limits.timeout_s == 2.5
    assert limits.max_members == LoadLimits().max_members
    monkeypatch.setenv("STACKLAB_LOAD_MAX_MEMBERS", "many")
    with pytest.raises(ValueError, match="STACKLAB_LOAD_MAX_MEMBERS must be an integer, received 'many'"):
        LoadLimits.from_env()
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        LoadLimits(timeout_s=0)


def test_refusal_of_an_upload_names_the_original_file(tmp_path):
    ref = uploads.store_bytes(b"not a model at all", "holiday photos.keras")
    with pytest.raises(ModelFileRefused, match="^Refused 'holiday photos.keras': it is not a zip archive"):
        loading.summarize_model_file(ref, LIMITS)


def test_cut_model_at_a_nested_member_of_a_saved_stack(tmp_path):
    """A stack's members are nested models; cutting at one keeps the outer graph's tensor."""
    encoder = keras.Sequential([keras.Input((4,)), keras.layers.Dense(6, name="d")], name="encoder")
    inputs = keras.Input((4,))
    stack = keras.Model(inputs, keras.layers.Dense(2, name="head")(encoder(inputs)))
    stack.save(tmp_path / "stack.keras")
    loaded = keras.saving.load_model(tmp_path / "stack.keras")
    cut = loading.cut_model(loaded, "encoder", name="base")
    assert cut.output_shape == (None, 6) and cut.count_params() == 30
    x = np.ones((2, 4), "float32")
    np.testing.assert_allclose(cut.predict(x, verbose=0), loaded.get_layer("encoder").predict(x, verbose=0))
