"""Tiny genuine model files, and hostile copies of them, for the tests of core/loading*.py.

The fixtures that save and verify them are in tests/core/model_files/loading_fixtures.py. Hostile files
carry harmless payloads (a marker file under tmp_path).
"""

import json
import warnings
import zipfile

import keras
import pytest

from core.model_files import loading
from core.model_files.loading import LoadLimits, ModelFileRefused

LIMITS = LoadLimits()


def build_sequential():
    model = keras.Sequential(
        [
            keras.Input((6,)),
            keras.layers.Dense(5, activation="relu", name="hidden"),
            keras.layers.Dropout(0.1, name="dropout"),
            keras.layers.Dense(3, activation="softmax", name="out"),
        ],
        name="seq",
    )
    model.get_layer("hidden").trainable = False
    return model


def build_functional():
    inputs = keras.Input((6,), name="features")
    left = keras.layers.Dense(4, activation="tanh", name="left")(inputs)
    right = keras.layers.BatchNormalization(name="norm")(inputs)
    right = keras.layers.Dense(2, name="right")(right)
    merged = keras.layers.Concatenate(name="merge")([left, right])
    outputs = keras.layers.Dense(1, activation="sigmoid", name="score")(merged)
    model = keras.Model(inputs, outputs, name="func")
    model.get_layer("left").trainable = False
    return model


BUILDERS = {"sequential": build_sequential, "functional": build_functional}


def rewrite_keras(source, target, mutate=None, members=None, config_text=None,
                  compression=zipfile.ZIP_STORED):
    """Copy a .keras archive, passing its config through `mutate` and adding `members`."""
    with zipfile.ZipFile(source) as archive, \
            zipfile.ZipFile(target, "w", compression=compression) as out, warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # zipfile warns on a duplicate name
        for info in archive.infolist():
            data = archive.read(info)
            if info.filename == "config.json" and mutate is not None:
                config = json.loads(data)
                mutate(config)
                data = json.dumps(config).encode()
            out.writestr(info.filename, config_text if info.filename == "config.json" and config_text else data)
        for info, data in (members or {}).items():
            out.writestr(info, data)
    return target


def dense_config(config, name="hidden"):
    return next(layer for layer in config["config"]["layers"] if layer["config"].get("name") == name)


def refuse(path, match, limits=LIMITS):
    with pytest.raises(ModelFileRefused, match=match) as caught:
        loading.inspect_model_file(path, limits)
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"Refused '{path.name}': ")
    return caught.value
