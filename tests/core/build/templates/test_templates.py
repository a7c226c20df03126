"""Tests for core/build/templates/ and every template registered into TEMPLATES."""

import json
import math
import re
import socket

import keras
import numpy as np
import pytest
from keras.src.utils import file_utils  # keras.applications download through this module

from core.build.templates import TEMPLATES, ParamSpec, applications
from core.build.templates.blocks import min_conv_input
from core.spec.tasks import TaskInfo

# One small compatible case per template: input shape, parameters, output shape with a
# 3-class task. A template registered without a case here fails test_every_template_has_a_case.
CASES = {
    "cnn_features": ((12, 12, 1), {}, (None, 5 * 5 * 32)),
    "cnn_classifier": ((12, 12, 1), {"filters": [4, 8], "hidden_units": [8]}, (None, 3)),
    "dense_head": ((8,), {"hidden_units": [16]}, (None, 3)),
    "mlp": ((8,), {"hidden_units": [16, 8], "batch_norm": True, "dropout_rate": 0.1}, (None, 8)),
    "mlp_classifier": ((8,), {"hidden_units": [16], "batch_norm": True}, (None, 3)),
    "tabular_encoder": ((6,), {"hidden_units": [16, 4]}, (None, 4)),
    "conv1d_encoder": ((16, 3), {"filters": [4, 8], "dropout_rate": 0.1}, (None, 8)),
    "rnn_encoder": ((10, 3), {"units": [8]}, (None, 8)),
    "applications_backbone": ((28, 28, 1), {"alpha": 0.35}, (None, 1280)),
}
PREDICTION_TEMPLATES = sorted(n for n, t in TEMPLATES.items() if t.output == "predictions")
MULTICLASS = TaskInfo("multiclass", (), num_classes=3)


def fit_one_step(model, task: TaskInfo | None, run_eagerly: bool = False) -> float:
    """One training step on random data: the task's loss for predictions, mse for features.

    run_eagerly skips tracing the train step: 2.6 s instead of 19 s for MobileNetV2.
    """
    rng = np.random.default_rng(0)
    x = rng.random((4, *model.input_shape[1:]), dtype="float32")
    if task is None:
        y, loss = rng.random((4, *model.output_shape[1:]), dtype="float32"), "mse"
    elif task.kind == "multiclass":
        y, loss = rng.integers(0, task.num_classes, size=(4,)), task.default_loss
    elif task.kind == "binary":
        y, loss = rng.integers(0, 2, size=(4, 1)).astype("float32"), task.default_loss
    else:
        y, loss = rng.random((4, task.output_dim), dtype="float32"), task.default_loss
    model.compile(optimizer="adam", loss=loss, run_eagerly=run_eagerly)
    history = model.fit(x, y, batch_size=4, epochs=1, verbose=0)
    return history.history["loss"][0]


def test_every_template_has_a_case():
    assert sorted(CASES) == sorted(TEMPLATES)


# ---- declarations ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_defaults_pass_their_own_validation(name):
    template = TEMPLATES[name]
    assert template.resolve_params({}) == {p.name: p.default for p in template.params}
    for spec in template.params:
        assert spec.validate(spec.default, name) == spec.default, spec.name
        assert spec.help, f"{name}.{spec.name} has no help text"


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_to_dict_is_json_serializable(name):
    data = TEMPLATES[name].to_dict()
    assert json.loads(json.dumps(data)) == data
    assert data["name"] == name and data["description"] and data["tags"]
    assert [p["name"] for p in data["params"]] == [p.name for p in TEMPLATES[name].params]


# ---- building and training ---------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_builds_on_a_small_input_and_trains_one_step(name):
    template = TEMPLATES[name]
    input_shape, params, output_shape = CASES[name]
    task = TaskInfo("multiclass", input_shape, num_classes=3)
    model = template.build("member", input_shape, task, params)
    assert model.name == "member"
    assert model.input_shape == (None, *input_shape)
    assert model.output_shape == output_shape
    assert all(layer.name.startswith("member_") for layer in model.layers), [layer.name for layer in model.layers]
    if template.output == "predictions":
        assert model.get_layer("member_output").activation.__name__ == "softmax"
    eager = name == "applications_backbone"
    assert math.isfinite(fit_one_step(model, task if template.output == "predictions" else None, run_eagerly=eager))


@pytest.mark.parametrize("name", PREDICTION_TEMPLATES)
@pytest.mark.parametrize("task, units, activation", [
    (TaskInfo("binary", (), num_classes=2), 1, "sigmoid"),
    (TaskInfo("regression", (), output_dim=2), 2, "linear"),
])
def test_prediction_templates_follow_the_task(name, task, units, activation):
    input_shape, params, _ = CASES[name]
    model = TEMPLATES[name].build("member", input_shape, task, params)
    assert model.output_shape == (None, units)
    assert model.get_layer("member_output").activation.__name__ == activation
    assert math.isfinite(fit_one_step(model, task))


def test_explicit_output_units_and_activation_override_the_task():
    model = TEMPLATES["mlp_classifier"].build("m", (8,), MULTICLASS, {"units": 5, "output_activation": "tanh"})
    assert model.output_shape == (None, 5)
    assert model.get_layer("m_output").activation.__name__ == "tanh"


def test_dense_head_still_reproduces_the_seed_model_b():
    model = TEMPLATES["dense_head"].build("head", (5408,), TaskInfo("multiclass", (), num_classes=10), {})
    assert [layer.name for layer in model.layers] == ["head_input", "head_dense1", "head_output"]
    assert model.count_params() == 5408 * 128 + 128 + 128 * 10 + 10


# ---- input shapes ------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_input_problem_explains_an_incompatible_rank(name):
    template = TEMPLATES[name]
    wrong = (8, 8, 3) if 1 in template.input_ranks else (8,)
    problem = template.input_problem(wrong)
    assert isinstance(problem, str) and "expects input of rank" in problem
    assert template.input_problem(CASES[name][0], CASES[name][1]) is None
    expected = r"Member 'm' \(template '.+'\) expects input of rank .* but receives shape \(batch, "
    with pytest.raises(ValueError, match=expected):
        template.build("m", wrong, MULTICLASS)


@pytest.mark.parametrize("params, minimum", [
    ({}, 4),                                                     # conv 3 valid (+2), pool 2 (x2)
    ({"filters": [8, 8]}, 10),                                   # ((1 * 2) + 2) * 2 + 2
    ({"filters": [8, 8], "padding": "same"}, 4),
    ({"filters": [8, 8, 8], "pool_size": 1, "kernel_size": 5}, 13),
])
def test_conv_templates_know_the_smallest_input(params, minimum):
    template = TEMPLATES["cnn_features"]
    resolved = template.resolve_params(params)
    assert min_conv_input(resolved) == minimum
    assert template.input_problem((minimum, minimum, 1), params) is None
    problem = template.input_problem((minimum - 1, minimum + 5, 1), params)
    assert f"needs images of at least {minimum}x{minimum}" in problem
    # The size is really the smallest: a model builds on it and yields at least one pixel.
    model = template.build("m", (minimum, minimum, 1), MULTICLASS, params)
    assert model.output_shape[-1] >= 1


def test_shape_only_checks_report_nothing_that_parameters_could_fix():
    # The stack's pre-flight calls check_input(shape) before it knows the member's params.
    assert TEMPLATES["cnn_features"].check_input((3, 3, 1)) is None
    assert TEMPLATES["conv1d_encoder"].input_problem((3, 2)) is not None  # defaults: 2 pooled blocks
    assert TEMPLATES["conv1d_encoder"].input_problem((3, 2), {"filters": [4], "pool_size": 1}) is None


def test_flatten_needs_a_known_length():
    problem = TEMPLATES["conv1d_encoder"].input_problem((None, 3), {"pooling": "flatten"})
    assert "known size to flatten" in problem
    model = TEMPLATES["conv1d_encoder"].build("m", (None, 3), MULTICLASS, {})
    assert model.output_shape == (None, 64)


# ---- parameter validation ----------------------------------------------------------------


def bad_values(spec: ParamSpec) -> list:
    """Values `spec` must refuse: wrong type, out of range, not a choice."""
    below = [] if spec.minimum is None else [spec.minimum - 1]
    above = [] if spec.maximum is None else [spec.maximum + 1]
    if spec.kind in ("int", "units"):
        return ["3", 2.5, True, *[int(v) for v in below + above]]
    if spec.kind == "float":
        return ["0.5", None, float("nan"), *below, *above]
    if spec.kind == "bool":
        return ["yes", 1, None]
    if spec.kind == "int_list":
        return [["a"], "32", [True], *[[int(v)] for v in below + above], *([[]] if spec.min_items else [])]
    if spec.kind == "activation":
        return ["not_an_activation", 3, *([] if spec.default == "auto" else ["auto"])]
    return ["not-a-choice", None, True]


BAD_PARAMS = [
    pytest.param(name, spec.name, value, id=f"{name}.{spec.name}={value!r}")
    for name, template in sorted(TEMPLATES.items())
    for spec in template.params
    for value in bad_values(spec)
]


@pytest.mark.parametrize("name, param, value", BAD_PARAMS)
def test_bad_parameter_values_raise_naming_the_parameter(name, param, value):
    with pytest.raises(ValueError, match=rf"'{name}\.{param}' (must|needs)"):
        TEMPLATES[name].resolve_params({param: value})


@pytest.mark.parametrize("name", sorted(TEMPLATES))
def test_unknown_parameter_names_are_refused(name):
    with pytest.raises(ValueError, match=rf"Template '{name}' has no parameter 'hiden_units'. Its parameters: \["):
        TEMPLATES[name].build("m", CASES[name][0], MULTICLASS, {"hiden_units": [8]})


def test_build_errors_name_the_member_and_parameter():
    with pytest.raises(ValueError, match=r"'encoder.dropout_rate' must be <= 0.9, received 1.5"):
        TEMPLATES["mlp"].build("encoder", (8,), MULTICLASS, {"dropout_rate": 1.5})
    with pytest.raises(ValueError, match=r"'encoder.cell' must be one of \['gru', 'lstm'\], received 'rnn'"):
        TEMPLATES["rnn_encoder"].build("encoder", (5, 2), MULTICLASS, {"cell": "rnn"})


def test_parameter_values_are_normalized():
    resolved = TEMPLATES["cnn_features"].resolve_params({"filters": 16, "dropout_rate": 0, "kernel_size": np.int64(5)})
    assert resolved["filters"] == [16] and resolved["dropout_rate"] == 0.0 and type(resolved["kernel_size"]) is int


# ---- tabular_encoder ---------------------------------------------------------------------


def test_tabular_encoder_adapts_its_normalization_to_the_sample():
    rng = np.random.default_rng(1)
    sample = rng.normal(loc=[10.0, -3.0, 500.0], scale=[2.0, 0.5, 100.0], size=(256, 3)).astype("float32")
    model = TEMPLATES["tabular_encoder"].build("tab", (3,), MULTICLASS, {"hidden_units": [4]}, sample=sample)
    normalization = model.get_layer("tab_normalization")
    np.testing.assert_allclose(np.ravel(normalization.mean), sample.mean(axis=0), rtol=1e-4)
    np.testing.assert_allclose(np.ravel(normalization.variance), sample.var(axis=0), rtol=1e-3)
    normalized = keras.Model(model.input, normalization.output)(sample)
    np.testing.assert_allclose(np.mean(normalized, axis=0), 0.0, atol=1e-3)
    np.testing.assert_allclose(np.std(normalized, axis=0), 1.0, atol=1e-3)


def test_tabular_encoder_without_a_sample_builds_with_identity_normalization():
    model = TEMPLATES["tabular_encoder"].build("tab", (3,), MULTICLASS, {"hidden_units": [4]})
    x = np.array([[1.0, 20.0, -300.0]], dtype="float32")
    np.testing.assert_allclose(keras.Model(model.input, model.get_layer("tab_normalization").output)(x), x)
    assert math.isfinite(fit_one_step(model, None))


def test_tabular_encoder_refuses_a_sample_of_another_shape():
    expected = r"sample of inputs with shape \(batch, 3\), but the sample has shape \(10, 4\)"
    with pytest.raises(ValueError, match=expected):
        TEMPLATES["tabular_encoder"].build("tab", (3,), MULTICLASS, {}, sample=np.zeros((10, 4)))


# ---- rnn_encoder -------------------------------------------------------------------------


@pytest.mark.parametrize("cell, layer_class", [("gru", keras.layers.GRU), ("lstm", keras.layers.LSTM)])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_rnn_encoder_cells_and_directions(cell, layer_class, bidirectional):
    params = {"cell": cell, "units": [6, 4], "bidirectional": bidirectional, "dropout_rate": 0.1}
    model = TEMPLATES["rnn_encoder"].build("rnn", (7, 3), MULTICLASS, params)
    assert model.output_shape == (None, 8 if bidirectional else 4)
    recurrent = [layer.forward_layer if bidirectional else layer for layer in model.layers[1:]
                 if isinstance(layer, (keras.layers.Bidirectional, keras.layers.RNN))]
    assert [type(layer) for layer in recurrent] == [layer_class, layer_class]
    assert [layer.return_sequences for layer in recurrent] == [True, False]
    assert math.isfinite(fit_one_step(model, None, run_eagerly=True))  # graph mode: the GRU case above


# ---- applications_backbone ---------------------------------------------------------------

BACKBONE = TEMPLATES["applications_backbone"]
SMALL_MOBILENET = {"architecture": "MobileNetV2", "alpha": 0.35}


@pytest.fixture
def keras_home(tmp_path, monkeypatch):
    """An empty Keras cache. Keras reads KERAS_HOME once at import; the template at build time."""
    home = tmp_path / "keras-home"
    monkeypatch.setenv("KERAS_HOME", str(home))
    return home


@pytest.fixture
def no_network(monkeypatch):
    """Fail the test if anything opens a connection or asks Keras to fetch a file."""
    attempts = []

    def refuse(*args, **kwargs):
        attempts.append(args)
        raise OSError("network access attempted")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(file_utils, "get_file", refuse)
    yield attempts
    assert attempts == []


@pytest.mark.parametrize("params, file_name", [
    (SMALL_MOBILENET, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_0.35_224_no_top.h5"),
    ({"alpha": 1.0, "input_size": 96}, "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5"),
    ({"architecture": "EfficientNetB0"}, "efficientnetb0_notop.h5"),
    ({"architecture": "ResNet50"}, "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"),
])
def test_imagenet_without_a_cached_file_names_the_path_and_stays_offline(keras_home, no_network, params, file_name):
    expected = keras_home / "models" / file_name
    message = re.escape(f"Put the file at {expected} ") + r".*weights='none', which works offline"
    with pytest.raises(ValueError, match=message):
        BACKBONE.build("base", (28, 28, 1), MULTICLASS, {**params, "weights": "imagenet"})
    assert not keras_home.exists() or not any(keras_home.rglob("*"))


def test_without_keras_home_the_cache_is_under_the_home_folder(tmp_path, monkeypatch):
    monkeypatch.delenv("KERAS_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    path = applications.weights_file_path("ResNet50", {}, (32, 32))
    assert path == tmp_path / ".keras" / "models" / "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def save_backbone_weights(params: dict, input_shape: tuple, path) -> keras.Model:
    """Build the backbone with random weights and save it where Keras caches ImageNet files.

    The cache files are legacy Keras .h5 weights; `Model.save("x.h5")` writes that format
    (the weights under "model_weights"), which `model.load_weights("x.h5")` reads.
    """
    model = BACKBONE.build("source", input_shape, MULTICLASS, params)
    backbone = model.layers[-1]
    for layer in backbone.layers:  # non-trivial stem statistics, like the real EfficientNet file
        if isinstance(layer, keras.layers.Normalization):
            layer.adapt_mean.assign([0.485, 0.456, 0.406])
            layer.adapt_variance.assign([0.229**2, 0.224**2, 0.225**2])
            layer.finalize_state()
    path.parent.mkdir(parents=True, exist_ok=True)
    backbone.save(path)
    return backbone


@pytest.mark.filterwarnings("ignore:`input_shape` is undefined or non-square")  # Keras: 32x32 uses 224's weights
@pytest.mark.parametrize("params", [SMALL_MOBILENET, {"architecture": "EfficientNetB0"}],
                         ids=lambda p: p["architecture"])
def test_imagenet_loads_the_cached_file_and_matches_keras_imagenet(keras_home, monkeypatch, params):
    file_name = applications.weights_file_path(params["architecture"], BACKBONE.resolve_params(params), (32, 32)).name
    path = keras_home / "models" / file_name
    source = save_backbone_weights(params, (28, 28, 1), path)

    with monkeypatch.context() as offline:
        offline.setattr(file_utils, "get_file", lambda *a, **k: pytest.fail("Keras was asked to fetch a file"))
        model = BACKBONE.build("base", (28, 28, 1), MULTICLASS, {**params, "weights": "imagenet"})
    backbone = model.get_layer(f"base_{params['architecture'].lower()}")
    assert len(backbone.weights) == len(source.weights) > 100
    for loaded_layer, saved_layer in zip(backbone.layers, source.layers):
        for loaded, saved in zip(loaded_layer.weights, saved_layer.weights):
            if isinstance(loaded_layer, keras.layers.Normalization) and loaded is loaded_layer.adapt_variance:
                continue  # EfficientNet folds a factor into it: checked through the outputs below
            np.testing.assert_array_equal(loaded.numpy(), saved.numpy(), err_msg=loaded.path)

    # What Keras itself builds with weights="imagenet" from the same file (hand it the file
    # instead of downloading): the same file name, and the same outputs.
    requested = []
    monkeypatch.setattr(file_utils, "get_file", lambda fname, origin, **k: requested.append(fname) or str(path))
    constructor = applications.ARCHITECTURES[params["architecture"]].constructor
    options = {"alpha": params["alpha"]} if "alpha" in params else {}
    reference = constructor(include_top=False, weights="imagenet", input_shape=(32, 32, 3), pooling="avg", **options)
    assert requested == [file_name]
    x = np.random.default_rng(2).uniform(0, 255, size=(2, 32, 32, 3)).astype("float32")
    if params["architecture"] == "MobileNetV2":
        x = x / 127.5 - 1
    # Random weights give tiny pooled outputs: compare the first conv too, and relative to size.
    first_conv = {"MobileNetV2": "Conv1", "EfficientNetB0": "stem_conv"}[params["architecture"]]
    for ours, theirs in ((backbone, reference), (truncate(backbone, first_conv), truncate(reference, first_conv))):
        expected = keras.ops.convert_to_numpy(theirs(x, training=False))
        np.testing.assert_allclose(ours(x, training=False), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def truncate(model: keras.Model, layer_name: str) -> keras.Model:
    return keras.Model(model.input, model.get_layer(layer_name).output)


def test_a_weights_file_that_does_not_fit_is_a_clear_error(keras_home, no_network):
    path = keras_home / "models" / "efficientnetb0_notop.h5"
    save_backbone_weights(SMALL_MOBILENET, (32, 32, 3), path)
    with pytest.raises(ValueError, match=r"the weights file .*efficientnetb0_notop.h5 does not fit EfficientNetB0"):
        BACKBONE.build("base", (32, 32, 3), MULTICLASS, {"architecture": "EfficientNetB0", "weights": "imagenet"})


# keras.applications.<module>.preprocess_input, for 0-255 RGB pixels.
PREPROCESS = {
    "MobileNetV2": keras.applications.mobilenet_v2.preprocess_input,
    "EfficientNetB0": keras.applications.efficientnet.preprocess_input,
    "ResNet50": keras.applications.resnet50.preprocess_input,
}


@pytest.mark.parametrize("architecture, features",
                         [("MobileNetV2", 1280), ("EfficientNetB0", 1280), ("ResNet50", 2048)])
def test_each_architecture_gets_its_preprocessing(architecture, features, tmp_path):
    params = {"architecture": architecture, "alpha": 0.35, "pooling": "max"}
    model = BACKBONE.build("base", (32, 32, 3), MULTICLASS, params)
    assert model.output_shape == (None, features)
    backbone = model.layers[-1]
    assert backbone.name == f"base_{architecture.lower()}" and backbone.input_shape == (None, 32, 32, 3)
    rgb = np.random.default_rng(3).random((2, 32, 32, 3), dtype="float32")
    preprocessing = keras.Model(model.input, model.layers[-2].output)
    expected = PREPROCESS[architecture](rgb * 255.0)  # the template's default pixel_range is "0_1"
    np.testing.assert_allclose(preprocessing(rgb), expected, rtol=1e-5, atol=1e-3)
    # No Lambda layers: the preprocessing (ResNet50's channel flip is a keras.ops node) loads in safe_mode.
    preprocessing.save(tmp_path / "preprocessing.keras")
    loaded = keras.saving.load_model(tmp_path / "preprocessing.keras", safe_mode=True)
    np.testing.assert_allclose(loaded(rgb), expected, rtol=1e-5, atol=1e-3)


def test_pixel_range_0_255_skips_the_scaling():
    model = BACKBONE.build("base", (32, 32, 3), MULTICLASS, {**SMALL_MOBILENET, "pixel_range": "0_255"})
    pixels = np.random.default_rng(4).uniform(0, 255, size=(1, 32, 32, 3)).astype("float32")
    preprocessed = keras.Model(model.input, model.layers[-2].output)(pixels)
    np.testing.assert_allclose(preprocessed, pixels / 127.5 - 1, atol=1e-5)


@pytest.mark.parametrize("input_shape, params, resized, to_rgb", [
    ((28, 28, 1), {}, (32, 32), keras.layers.Concatenate),
    ((20, 40, 1), {}, (32, 64), keras.layers.Concatenate),
    ((28, 28, 4), {"input_size": 48}, (48, 48), keras.layers.Conv2D),
    ((40, 40, 3), {}, None, None),
])
def test_adapt_input_resizes_and_maps_channels(input_shape, params, resized, to_rgb):
    model = BACKBONE.build("base", input_shape, MULTICLASS, {**SMALL_MOBILENET, **params})
    names = [layer.name for layer in model.layers]
    assert ("base_resize" in names) == (resized is not None)
    assert ("base_to_rgb" in names) == (to_rgb is not None)
    if to_rgb is not None:
        assert isinstance(model.get_layer("base_to_rgb"), to_rgb)
    assert model.layers[-1].input_shape == (None, *(resized or input_shape[:2]), 3)


def test_without_adapt_input_the_problem_is_explained():
    params = {**SMALL_MOBILENET, "adapt_input": False}
    expected = "needs 3-channel (RGB) images of at least 32x32 when adapt_input is false"
    assert expected in BACKBONE.input_problem((28, 28, 1), params)
    assert expected in BACKBONE.input_problem((64, 64, 1), params)
    assert BACKBONE.input_problem((32, 32, 3), params) is None
    assert BACKBONE.input_problem((28, 28, 1), SMALL_MOBILENET) is None
    with pytest.raises(ValueError, match=re.escape(expected) + r".*but receives shape \(batch, 28, 28, 1\)"):
        BACKBONE.build("base", (28, 28, 1), MULTICLASS, params)


def test_backbone_member_survives_a_safe_mode_round_trip(tmp_path):
    model = BACKBONE.build("base", (32, 32, 3), MULTICLASS, {"architecture": "MobileNetV2", "alpha": 0.35})
    path = tmp_path / "member.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    x = np.random.default_rng(5).random((2, 32, 32, 3), dtype="float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-5)


def test_activation_parameters_list_their_choices_for_forms():
    params = {p["name"]: p for p in TEMPLATES["dense_head"].to_dict()["params"]}
    assert params["activation"]["choices"][0] == "relu" and "auto" not in params["activation"]["choices"]
    assert params["output_activation"]["choices"][0] == "auto"
    assert "softmax" in params["output_activation"]["choices"]
