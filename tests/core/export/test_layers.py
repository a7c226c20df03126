"""core.export.layers: layers become readable constructor calls, or a config that rebuilds them."""

import functools

import keras
import pytest

from core.export.artifacts import generate_script
from core.spec import MemberSpec, StackSpec
from tests.core.export.export_stacks import (
    COMPILE_ARGS,
    assert_same_stack,
    branchy_stack,
    frozen_batchnorm_stack,
    import_script,
    mobilenet_stack,
    sequence_stack,
    write_script,
)


def test_script_reads_like_keras_code(tmp_path):
    model, spec = frozen_batchnorm_stack()
    source = generate_script(model, spec, compile_args=COMPILE_ARGS)
    assert "import tensorflow" not in source
    # Readable constructor calls, only non-default arguments, trainability as in the stack.
    words = " ".join(source.split())
    assert ('x = keras.layers.Conv2D( 4, (2, 2), padding="same", activation="relu", '
            'name="features_conv1", trainable=False, )(inputs)') in words
    assert '    x = keras.layers.BatchNormalization(name="features_bn2", trainable=False)(x)\n' in source
    assert '    x = keras.layers.MaxPooling2D(name="features_pool1")(x)\n' in source
    assert "    classifier.trainable = False\n" in source
    assert "def build_features():" in source and "def build_classifier():" in source
    assert "keras.layers.deserialize" not in source
    assert max(len(line) for line in source.splitlines()) <= 88
    assert "def compile_model(model, learning_rate=0.01):" in source
    assert "optimizer=keras.optimizers.Adam(learning_rate=learning_rate)" in source
    assert 'loss="sparse_categorical_crossentropy"' in source


def test_unreadable_layers_fall_back_to_deserialize_and_ops_stay_readable(tmp_path):
    model, spec = branchy_stack()
    source = generate_script(model, spec, compile_args=COMPILE_ARGS)
    assert "keras.layers.deserialize(" in source and '"stacklab_test>Scale"' in source
    assert "keras.ops.flip(" in source and "axis=-1" in source
    assert "kernel_regularizer=keras.regularizers.L2(l2=0.05)" in source
    # The shared layer is created once and called twice.
    assert source.count('keras.layers.Dense(4, activation="relu", name="branchy_shared")') == 1


def test_wrapped_layers_are_rendered_as_nested_constructor_calls():
    model, spec = sequence_stack()
    words = " ".join(generate_script(model, spec, compile_args=COMPILE_ARGS).split())
    assert "keras.layers.Bidirectional( keras.layers.GRU(4, " in words
    assert "deserialize" not in words


def test_keras_application_backbone_is_emitted_as_its_constructor(tmp_path):
    model, spec = mobilenet_stack()
    path = write_script(model, spec, tmp_path)
    source = path.read_text()
    assert "keras.applications.MobileNetV2(" in source
    assert "alpha=0.35" in source and 'name="backbone_mobilenetv2"' in source
    assert "for layer in model.layers[:40]:" in source
    assert_same_stack(model, import_script(path).build_model())


# ---- fallbacks: only what Keras refuses falls back; a bug surfaces ---------------------------


class _Broken(RuntimeError):
    """Stands for a bug: an error no fallback may swallow."""


@keras.saving.register_keras_serializable(package="stacklab_test")
class Fragile(keras.layers.Layer):
    """A layer the generator takes for a public one (Keras's export decorator sets this
    attribute) and whose constructor breaks like a bug once `broken_when` says so."""

    _api_export_path = "keras.layers.Fragile"
    broken_when = None  # None, "without_factor" (the defaults) or "with_factor" (the check)

    def __init__(self, factor=2.0, **kwargs):
        given = "factor" in kwargs or factor != 2.0
        if Fragile.broken_when == ("with_factor" if given else "without_factor"):
            raise _Broken("a bug while rebuilding the layer")
        super().__init__(**kwargs)
        self.factor = factor

    def call(self, x):
        return x * self.factor

    def get_config(self):
        return {**super().get_config(), "factor": self.factor}


def _stack_with(layer_or_op) -> tuple[keras.Model, StackSpec]:
    inputs = keras.Input((4,), name="member_input")
    member = keras.Model(inputs, layer_or_op(inputs), name="member")
    stack_inputs = keras.Input((4,), name="input")
    spec = StackSpec(name="s", members=(MemberSpec("member", source="file", file="m.keras"),))
    return keras.Model(stack_inputs, member(stack_inputs), name="stack"), spec


@pytest.mark.parametrize("broken_when", ["without_factor", "with_factor"])
def test_a_bug_while_checking_a_constructor_call_is_not_turned_into_a_fallback(broken_when, monkeypatch):
    model, spec = _stack_with(Fragile(0.5, name="fragile"))
    monkeypatch.setattr(Fragile, "broken_when", broken_when)
    with pytest.raises(_Broken, match="a bug while rebuilding"):
        generate_script(model, spec, compile_args=COMPILE_ARGS)


def test_a_bug_while_replaying_an_operation_is_not_turned_into_a_fallback(monkeypatch):
    model, spec = _stack_with(lambda x: keras.ops.flip(x, axis=-1))

    def broken_flip(*args, **kwargs):
        raise _Broken("a bug in keras.ops.flip")

    monkeypatch.setattr(keras.ops, "flip", broken_flip)
    with pytest.raises(_Broken, match="a bug in keras.ops.flip"):
        generate_script(model, spec, compile_args=COMPILE_ARGS)


def test_an_operation_whose_config_its_function_does_not_take_is_rebuilt_from_its_config(tmp_path):
    # Einsum's config holds its subscripts, which keras.ops.einsum takes positionally.
    model, spec = _stack_with(lambda x: keras.ops.einsum("bi,bi->bi", x, x))
    source = generate_script(model, spec, compile_args=COMPILE_ARGS)
    assert "keras.ops.einsum" not in source and '"class_name": "Einsum"' in source
    path = tmp_path / "stack.py"
    path.write_text(source)
    assert_same_stack(model, import_script(path).build_model())


def test_a_bug_while_rebuilding_a_config_value_is_not_turned_into_a_fallback(monkeypatch):
    model, spec = _stack_with(keras.layers.Dense(2, kernel_initializer=keras.initializers.HeNormal(seed=3)))

    def broken_deserialize(*args, **kwargs):
        raise _Broken("a bug while deserializing")

    monkeypatch.setattr(keras.saving, "deserialize_keras_object", broken_deserialize)
    with pytest.raises(_Broken, match="a bug while deserializing"):
        generate_script(model, spec, compile_args=COMPILE_ARGS)


def test_a_value_keras_cannot_deserialize_here_falls_back_to_the_layers_config():
    @keras.saving.register_keras_serializable(package="stacklab_test")
    class Ones(keras.initializers.Initializer):
        def __call__(self, shape, dtype=None):
            return keras.ops.ones(shape, dtype=dtype)

    model, spec = _stack_with(keras.layers.Dense(2, kernel_initializer=Ones(), name="dense_ones"))
    del keras.saving.get_custom_objects()["stacklab_test>Ones"]  # as in a process that never defined it
    source = generate_script(model, spec, compile_args=COMPILE_ARGS)
    assert "keras.layers.deserialize(" in source and '"stacklab_test>Ones"' in source


@pytest.mark.parametrize("error, surfaces", [(ValueError("input shape refused"), False),
                                             (_Broken("a bug in the application"), True)])
def test_only_an_application_that_keras_refuses_is_written_layer_by_layer(error, surfaces, monkeypatch):
    model, spec = mobilenet_stack()

    @functools.wraps(keras.applications.MobileNetV2)  # the same signature
    def refusing(*args, **kwargs):
        raise error

    monkeypatch.setattr(keras.applications, "MobileNetV2", refusing)
    if surfaces:
        with pytest.raises(_Broken, match="a bug in the application"):
            generate_script(model, spec, compile_args=COMPILE_ARGS)
    else:
        source = generate_script(model, spec, compile_args=COMPILE_ARGS)
        assert "keras.applications.MobileNetV2(" not in source and "block_16_project" in source
