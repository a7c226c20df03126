"""Stacks of several shapes, and checks on a rebuilt stack, for the export and codegen tests.

The stacks are built here directly with Keras, shaped like core.build.stacking builds them: one
Functional model whose members are nested models named after the member, plus adapters
and combining layers.
"""

import importlib.util
import itertools
from pathlib import Path

import keras
import numpy as np

from core.build.templates import TEMPLATES
from core.export.artifacts import generate_script
from core.spec import EarlyStoppingSpec, MemberSpec, StackSpec, TrainSpec
from core.spec.tasks import TaskInfo

IMAGE = (12, 12, 1)
TASK = TaskInfo("multiclass", IMAGE, num_classes=3)
COMPILE_ARGS = {"optimizer": "adam", "learning_rate": 0.01, "weight_decay": 0.0,
                "loss": "sparse_categorical_crossentropy", "metrics": ["accuracy"]}
_module_ids = itertools.count()


def template(kind: str, name: str, input_shape: tuple, **params) -> keras.Model:
    return TEMPLATES[kind].build(name, input_shape, TASK, params)


def member(name: str, template_name: str | None = None, **fields) -> MemberSpec:
    return MemberSpec(name=name, template=template_name, **fields)


# ---- stacks of several shapes ------------------------------------------------------------


def sequential_stack():
    features = template("cnn_features", "features", IMAGE, filters=[4])
    classifier = template("dense_head", "classifier", features.output_shape[1:], hidden_units=[8])
    inputs = keras.Input(IMAGE, name="input")
    model = keras.Model(inputs, classifier(features(inputs)), name="seed_sequential")
    spec = StackSpec(name="seed sequential", mode="sequential", members=(
        member("features", "cnn_features"), member("classifier", "dense_head")))
    return model, spec


def fusion_stack():
    features = template("cnn_features", "features", IMAGE, filters=[4], dense_units=6)
    head = template("dense_head", "head", (6 + 144,), hidden_units=[8], dropout_rate=0.2)
    inputs = keras.Input(IMAGE, name="input")
    raw = keras.layers.Flatten(name="raw_input_flatten")(inputs)
    fused = keras.layers.Concatenate(name="fusion_concat")([features(inputs), raw])
    model = keras.Model(inputs, head(fused), name="fusion")
    spec = StackSpec(name="fusion", mode="fusion", options={"include_raw_input": True},
                     members=(member("features", "cnn_features"),), head=member("head", "dense_head"))
    return model, spec


def ensemble_stack():
    a = template("cnn_classifier", "a", IMAGE, filters=[4], hidden_units=[])
    b = keras.Sequential([keras.Input(IMAGE), keras.layers.Flatten(name="b_flatten"),
                          keras.layers.Dense(3, activation="softmax", name="b_output")], name="b")
    c = template("mlp_classifier", "c", (144,), hidden_units=[5])
    inputs = keras.Input(IMAGE, name="input")
    flat = keras.layers.Flatten(name="adapter_c_flatten")(inputs)
    average = keras.layers.Average(name="ensemble_average")([a(inputs), b(inputs), c(flat)])
    model = keras.Model(inputs, average, name="ensemble")
    spec = StackSpec(name="ensemble", mode="ensemble", members=(
        member("a", "cnn_classifier"), member("b", source="file", file="b.keras"),
        member("c", "mlp_classifier")))
    return model, spec


def frozen_batchnorm_stack():
    features = template("cnn_features", "features", IMAGE, filters=[4, 6], batch_norm=True,
                        padding="same", kernel_size=2)
    features.get_layer("features_conv1").trainable = False
    features.get_layer("features_bn2").trainable = False
    classifier = template("dense_head", "classifier", features.output_shape[1:], hidden_units=[8])
    classifier.trainable = False
    inputs = keras.Input(IMAGE, name="input")
    model = keras.Model(inputs, classifier(features(inputs)), name="frozen_parts")
    spec = StackSpec(name="frozen parts", members=(
        member("features", "cnn_features"), member("classifier", "dense_head", trainable=False)))
    return model, spec


@keras.saving.register_keras_serializable(package="stacklab_test")
class Scale(keras.layers.Layer):
    """A layer with no public keras path: the generator must fall back to deserialize."""

    def __init__(self, factor=2.0, **kwargs):
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def branchy_stack():
    """A member graph with a branch, a merge, a shared layer, an op, a regularizer, a custom layer."""
    inputs = keras.Input((6,), name="branchy_input")
    trunk = keras.layers.Dense(8, activation="tanh", name="branchy_trunk",
                               kernel_regularizer=keras.regularizers.L2(0.05))(inputs)
    left = keras.layers.Dense(4, name="branchy_left")(trunk)
    right = Scale(0.5, name="branchy_scale")(keras.layers.Dense(4, use_bias=False, name="branchy_right")(trunk))
    shared = keras.layers.Dense(4, activation="relu", name="branchy_shared")
    merged = keras.layers.Add(name="branchy_add")([shared(left), shared(right)])
    flipped = keras.ops.flip(merged, axis=-1)
    branchy = keras.Model(inputs, [flipped, left], name="branchy")
    head = template("dense_head", "head", (8,), hidden_units=[])
    stack_inputs = keras.Input((6,), name="input")
    outputs = branchy(stack_inputs)
    joined = keras.layers.Concatenate(name="join")(outputs)
    model = keras.Model(stack_inputs, head(joined), name="branchy_stack")
    spec = StackSpec(name="branchy", mode="fusion", members=(member("branchy", source="file", file="x.keras"),),
                     head=member("head", "dense_head"))
    return model, spec


def sequence_stack():
    encoder = TEMPLATES["rnn_encoder"].build("encoder", (9, 2), TASK, {"units": 4, "bidirectional": True})
    head = template("dense_head", "head", encoder.output_shape[1:], hidden_units=[])
    inputs = keras.Input((9, 2), name="input")
    model = keras.Model(inputs, head(encoder(inputs)), name="sequence")
    spec = StackSpec(name="sequence", members=(member("encoder", "rnn_encoder"), member("head", "dense_head")))
    return model, spec


def tabular_stack(sample: np.ndarray | None = None):
    encoder = TEMPLATES["tabular_encoder"].build("encoder", (5,), TASK, {"hidden_units": [4]}, sample=sample)
    head = template("dense_head", "head", (4,), hidden_units=[])
    inputs = keras.Input((5,), name="input")
    model = keras.Model(inputs, head(encoder(inputs)), name="tabular")
    spec = StackSpec(name="tabular", members=(member("encoder", "tabular_encoder"), member("head", "dense_head")))
    return model, spec


def file_member_stack(folder: Path):
    """A saved model, loaded, cut at 'embedding' and frozen, under a new dense head."""
    inputs = keras.Input(IMAGE, name="pretrained_input")
    x = keras.layers.Conv2D(3, 3, activation="relu", name="conv")(inputs)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(5, activation="relu", name="embedding")(x)
    outputs = keras.layers.Dense(3, activation="softmax", name="predictions")(x)
    source = folder / "pretrained.keras"
    keras.Model(inputs, outputs, name="pretrained").save(source)
    loaded = keras.saving.load_model(source, compile=False)
    base = keras.Model(loaded.inputs, loaded.get_layer("embedding").output, name="base")
    base.trainable = False
    head = template("dense_head", "head", (5,), hidden_units=[4])
    stack_inputs = keras.Input(IMAGE, name="input")
    model = keras.Model(stack_inputs, head(base(stack_inputs)), name="transfer")
    spec = StackSpec(
        name="transfer", mode="transfer",
        members=(member("base", source="file", file=str(source), cut_at="embedding", trainable=False),),
        head=member("head", "dense_head"),
        train=TrainSpec(epochs=1, batch_size=8, validation_split=0.25, early_stopping=EarlyStoppingSpec()),
    )
    return model, spec, source


def mobilenet_stack():
    backbone = template("applications_backbone", "backbone", (32, 32, 3), architecture="MobileNetV2",
                        alpha=0.35, weights="none", pooling="avg")
    nested = backbone.get_layer("backbone_mobilenetv2")
    for layer in nested.layers[:40]:  # the bottom frozen, as a fine-tune phase leaves it
        layer.trainable = False
    head = template("dense_head", "head", backbone.output_shape[1:], hidden_units=[])
    inputs = keras.Input((32, 32, 3), name="input")
    model = keras.Model(inputs, head(backbone(inputs)), name="mobile")
    spec = StackSpec(name="mobile", mode="transfer", members=(member("backbone", "applications_backbone"),),
                     head=member("head", "dense_head"))
    return model, spec


# ---- helpers ------------------------------------------------------------------------------


def leaf_operations(model) -> list[str]:
    """Class names of every operation, nested models flattened, inputs left out."""
    names = []
    for operation in getattr(model, "operations", model.layers):  # Sequential has only layers
        if isinstance(operation, keras.Model):
            names += leaf_operations(operation)
        elif not isinstance(operation, keras.layers.InputLayer):
            names.append(type(operation).__name__)
    return names


def all_layers(model):
    for layer in model.layers:
        yield layer
        if isinstance(layer, keras.Model):
            yield from all_layers(layer)


def trainable_count(model) -> int:
    return sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def import_script(path: Path):
    spec = importlib.util.spec_from_file_location(f"generated_stack_{next(_module_ids)}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_script(model, spec, folder: Path, member_files=None) -> Path:
    source = generate_script(model, spec, member_files or {}, compile_args=COMPILE_ARGS)
    compile(source, "stack.py", "exec")
    path = folder / "stack.py"
    path.write_text(source)
    return path


def assert_same_stack(original: keras.Model, rebuilt: keras.Model) -> None:
    assert rebuilt.name == original.name
    assert rebuilt.count_params() == original.count_params()
    assert trainable_count(rebuilt) == trainable_count(original)
    assert leaf_operations(rebuilt) == leaf_operations(original)
    assert rebuilt.output_shape == original.output_shape
    # Same wiring: with the original's weights, the rebuilt stack computes the same thing.
    rebuilt.set_weights(original.get_weights())
    for layer in all_layers(rebuilt):
        if isinstance(layer, keras.layers.Normalization):
            layer.finalize_state()  # as loading does: mean and variance from the copied state
    x = np.random.default_rng(0).random((4, *original.input_shape[1:]), dtype=np.float32)
    np.testing.assert_allclose(rebuilt.predict(x, verbose=0), original.predict(x, verbose=0),
                               rtol=1e-5, atol=1e-6)

