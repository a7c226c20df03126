"""Tests for core/model_files/config_checks.py: model configs that name code, custom classes or
other files are refused before their code runs (static inspection: no child, no Keras
deserialization).
"""

import json

import keras
import pytest

from core.model_files import loading
from core.model_files.loading import ModelFileRefused
from tests.core.model_files.loading_models import LIMITS, dense_config, refuse, rewrite_keras

pytest_plugins = ["tests.core.model_files.loading_fixtures"]  # the fixture saved


@pytest.fixture
def marker(tmp_path):
    path = tmp_path / "marker"
    yield path
    assert not path.exists(), "a hostile file ran its payload"


def lambda_model(marker):
    target = str(marker)
    model = keras.Sequential([
        keras.Input((3,)),
        keras.layers.Lambda(lambda x: (open(target, "w").close(), x)[1], name="lambda"),
    ])
    return model


@pytest.mark.parametrize("fmt", ["keras", "h5"])
def test_lambda_layer_is_refused_before_its_code_runs(tmp_path, marker, fmt):
    path = tmp_path / f"model.{fmt}"
    lambda_model(marker).save(path)
    marker.unlink()  # building the model ran the lambda once; loading must not
    refusal = refuse(path, "layer 'lambda' is a Lambda layer \\(arbitrary Python code\\); rebuild")
    assert refusal.file_name == path.name
    with pytest.raises(ModelFileRefused, match="Lambda"):
        loading.load_model_file(path, LIMITS)


HOSTILE_ENTRIES = {
    "os-system": ({"module": "os", "class_name": "system", "config": {"command": "touch {marker}"},
                   "registered_name": None}, "from module 'os'"),
    "builtins-exec": ({"module": "builtins", "class_name": "function", "config": "exec",
                       "registered_name": "function"}, "from module 'builtins'"),
    "main-function": ({"module": "__main__", "class_name": "function", "config": "payload",
                       "registered_name": "payload"}, "from module '__main__'"),
    "pickled-lambda": ({"class_name": "__lambda__", "config": {"code": "4wEAAAAA", "defaults": None,
                        "closure": None}}, "serialized Python function"),
    "custom-package": ({"module": "my_package", "class_name": "Evil", "config": {},
                        "registered_name": "my_package>Evil"}, "from module 'my_package'"),
    "registered-name": ({"module": "keras.initializers", "class_name": "Zeros", "config": {},
                         "registered_name": "Custom>Evil"}, "custom class 'Custom>Evil'"),
    "unknown-class": ({"module": "keras.initializers", "class_name": "Zeroes", "config": {},
                       "registered_name": None}, "'Zeroes' from keras.initializers, which Keras does not know"),
    "escape-keras": ({"module": "keras.src.utils.file_utils.os", "class_name": "system", "config": {},
                      "registered_name": None}, "which Keras does not know"),
    "keras-function": ({"module": "keras.saving", "class_name": "function", "config": "load_model",
                        "registered_name": None}, "only Keras's built-in activations"),
}


@pytest.mark.parametrize("entry, match", HOSTILE_ENTRIES.values(), ids=HOSTILE_ENTRIES)
def test_hostile_config_entries_are_refused(saved, tmp_path, marker, entry, match):
    entry = json.loads(json.dumps(entry).replace("{marker}", str(marker)))

    def plant(config):
        dense_config(config)["config"]["kernel_initializer"] = entry

    path = rewrite_keras(saved["sequential", "keras"][0], tmp_path / "model.keras", plant)
    refuse(path, f"layer 'hidden' .*{match}")


def test_builtin_activation_function_entry_is_accepted(saved, tmp_path):
    def plant(config):
        dense_config(config)["config"]["activation"] = {
            "module": "keras.activations", "class_name": "function", "config": "relu",
            "registered_name": "relu"}

    path = rewrite_keras(saved["sequential", "keras"][0], tmp_path / "model.keras", plant)
    assert loading.inspect_model_file(path, LIMITS).layer_classes == ("InputLayer", "Dense", "Dropout")


def replace_hidden_layer(saved, tmp_path, class_name, layer_config):
    def plant(config):
        layer = dense_config(config)
        layer.update(class_name=class_name, config={"name": "hidden", **layer_config})

    return rewrite_keras(saved["sequential", "keras"][0], tmp_path / "model.keras", plant)


def test_tfsm_layer_is_refused(saved, tmp_path, marker):
    path = replace_hidden_layer(saved, tmp_path, "TFSMLayer",
                                {"filepath": str(marker), "call_endpoint": "serve"})
    refuse(path, "layer 'hidden' is a TFSMLayer, which loads a model from a path outside the file")


def test_string_lookup_with_a_vocabulary_file_is_refused(saved, tmp_path, marker):
    path = replace_hidden_layer(saved, tmp_path, "StringLookup",
                                {"vocabulary": str(marker), "max_tokens": None})
    refuse(path, "layer 'hidden' reads its vocabulary from the file")


def test_any_file_like_key_is_refused(saved, tmp_path, marker):
    def plant(config):
        dense_config(config)["config"]["kernel_initializer"]["config"]["filepath"] = str(marker)

    path = rewrite_keras(saved["sequential", "keras"][0], tmp_path / "model.keras", plant)
    refuse(path, "layer 'hidden' has filepath=.*would read a file outside the model file")


@pytest.mark.parametrize("depth, match", [(300, "nested more than 200"), (100_000, "nested too deeply")])
def test_deeply_nested_config_is_refused(saved, tmp_path, depth, match):
    config = '{"class_name": "Sequential", "config": {"x": ' + "[" * depth + "]" * depth + "}}"
    path = rewrite_keras(saved["sequential", "keras"][0], tmp_path / "model.keras", config_text=config)
    refuse(path, match)
