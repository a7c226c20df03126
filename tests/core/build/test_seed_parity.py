"""The seed's three examples, as StackLab specs, against the same models in plain Keras.

examples/seed_*.json must build models with the same leaf layer types, output shapes and
total / trainable parameter counts as the code in the seed article.
"""

import collections
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import pytest

from core.build.stacking import build
from core.spec import load_spec
from core.spec.tasks import TaskInfo

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples"
DIGITS = TaskInfo("multiclass", (28, 28, 1), num_classes=10)


def leaves(model: keras.Model) -> list[tuple[str, tuple]]:
    """(layer type, output shape) of every non-model layer, depth first, inputs excluded."""
    found = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            found.extend(leaves(layer))
        elif not isinstance(layer, keras.layers.InputLayer):
            found.append((type(layer).__name__, tuple(layer.output.shape[1:])))
    return found


def trainable_count(model: keras.Model) -> int:
    return sum(int(keras.ops.size(w)) for w in model.trainable_weights)


def assert_same(ours: keras.Model, theirs: keras.Model, ordered: bool = True) -> None:
    if ordered:
        assert leaves(ours) == leaves(theirs)
    else:  # two-branch graphs list their layers in a different (equally valid) order
        assert collections.Counter(leaves(ours)) == collections.Counter(leaves(theirs))
    assert ours.output_shape == theirs.output_shape
    assert ours.count_params() == theirs.count_params()
    assert trainable_count(ours) == trainable_count(theirs)


def seed_example_1() -> keras.Model:
    # The article's code, verbatim (its `input_shape=` argument draws a Keras warning).
    model_a = keras.Sequential([
        keras.layers.Conv2D(32, (3, 3), activation="relu", input_shape=(28, 28, 1)),
        keras.layers.MaxPooling2D((2, 2)),
        keras.layers.Flatten(),
    ])
    model_b = keras.Sequential([
        keras.layers.Dense(128, activation="relu"),
        keras.layers.Dense(10, activation="softmax"),
    ])
    return keras.Sequential([model_a, model_b])


def seed_example_2() -> keras.Model:
    input_a = keras.Input(shape=(28, 28, 1))
    x = keras.layers.Conv2D(32, (3, 3), activation="relu")(input_a)
    x = keras.layers.MaxPooling2D((2, 2))(x)
    x = keras.layers.Flatten()(x)
    output_a = keras.layers.Dense(64, activation="relu")(x)
    input_b = keras.Input(shape=(28, 28, 1))
    merged = keras.layers.concatenate([output_a, keras.layers.Flatten()(input_b)])
    x = keras.layers.Dense(128, activation="relu")(merged)
    output_b = keras.layers.Dense(10, activation="softmax")(x)
    return keras.Model(inputs=[input_a, input_b], outputs=output_b)


def seed_example_3(pretrained: Path) -> keras.Model:
    model_a = keras.models.load_model(pretrained)
    model_a.trainable = False
    model_b = keras.Sequential([keras.layers.Dense(10, activation="softmax")])
    return keras.Sequential([model_a, model_b])


@pytest.mark.filterwarnings("ignore:Do not pass an `input_shape`")
def test_example_1_sequential_stacking():
    ours = build(load_spec(EXAMPLES / "seed_sequential.json"), DIGITS)
    theirs = seed_example_1()
    theirs.build((None, 28, 28, 1))
    assert_same(ours, theirs)
    assert ours.count_params() == 693_962


def test_example_2_feature_fusion():
    ours = build(load_spec(EXAMPLES / "seed_fusion.json"), DIGITS)
    assert_same(ours, seed_example_2(), ordered=False)
    assert ours.count_params() == 456_458


def make_pretrained(folder: Path) -> Path:
    """examples/make_pretrained.py run for real (one epoch) into `folder` (a fresh clone has no
    examples/pretrained_model.keras: the script makes it); returns the model file's path."""
    path = folder / "pretrained_model.keras"
    result = subprocess.run([sys.executable, str(EXAMPLES / "make_pretrained.py"), "--epochs", "1", "--out", str(path)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(scope="module")
def pretrained_folder(tmp_path_factory) -> Path:
    """The pretrained model made for real, next to a copy of the spec."""
    folder = tmp_path_factory.mktemp("transfer")
    shutil.copy(EXAMPLES / "seed_transfer.json", folder)
    make_pretrained(folder)
    return folder


def test_example_3_transfer_learning(pretrained_folder):
    ours = build(load_spec(pretrained_folder / "seed_transfer.json"), DIGITS)
    theirs = seed_example_3(pretrained_folder / "pretrained_model.keras")
    theirs.build((None, 28, 28, 1))
    assert_same(ours, theirs)
    assert (ours.count_params(), trainable_count(ours)) == (54_410, 54_090)
    # The frozen base keeps the pretrained weights.
    for kept, pretrained in zip(ours.get_layer("model_a").get_weights(), theirs.layers[0].get_weights()):
        assert (kept == pretrained).all()


def test_make_pretrained_also_writes_the_seed_h5(pretrained_folder):
    h5 = pretrained_folder / "pretrained_model.h5"
    assert h5.exists()
    spec = load_spec(pretrained_folder / "seed_transfer.json")
    as_h5 = spec.replace(members=(spec.members[0].__class__(name="model_a", source="file", file=str(h5)),))
    assert build(as_h5, DIGITS).count_params() == 54_410
