"""core.export.layers: layers become readable constructor calls, or a config that rebuilds them."""

from core.export.artifacts import generate_script
from tests.core.export.export_stacks import (
    COMPILE_ARGS, assert_same_stack, branchy_stack, frozen_batchnorm_stack, import_script,
    mobilenet_stack, sequence_stack, write_script,
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
