"""Constructor calls for layers, operations and Keras Applications, each checked by rebuilding.

A layer is rendered as `keras.layers.X(...)` with only the arguments whose value differs
from the class's default, and the call is checked by instantiating it and comparing
`get_config()` with the original. A layer that cannot be rendered that way (no public
class path, an unusual argument) is emitted as `keras.layers.deserialize({...})` with its
full config, so the rebuilt architecture always matches. A keras.ops function in a graph
becomes `keras.ops.f(...)` when replaying it gives the same operation. A nested Keras
Applications backbone (MobileNetV2, EfficientNetB0-B7, ResNet50/101/152 by their fixed
internal layer names; VGG, DenseNet, Xception, InceptionV3 by their default model names),
confirmed by building the application and comparing every layer's config, becomes its
constructor call.

Example:
    >>> from core.export.source import flat
    >>> flat(layer_expression(keras.layers.Dense(4, name="dense"), frozen_parent=False))
    'keras.layers.Dense(4, name="dense")'
"""

from __future__ import annotations

import inspect
import json
import re
from typing import Any, Mapping

import keras

from core.export.source import (
    Bracket,
    Call,
    Expr,
    Unrenderable,
    dict_expr,
    inline_literal,
    is_keyword_name,
    keyword_items,
    literal,
    prefixed,
    sequence_expr,
)

# ---- layers and operations ----------------------------------------------------------------------


def input_call(config: Mapping[str, Any]) -> Expr:
    """`keras.Input(...)` for an InputLayer's config."""
    batch_shape = list(config["batch_shape"])
    items: list[Expr] = []
    if batch_shape[0] is None:
        items.append(f"shape={inline_literal(tuple(batch_shape[1:]))}")
    else:
        items.append(f"batch_shape={inline_literal(tuple(batch_shape))}")
    if config.get("dtype") not in (None, "float32"):
        items.append(f"dtype={inline_literal(config['dtype'])}")
    for flag in ("sparse", "ragged", "optional"):
        if config.get(flag):
            items.append(f"{flag}=True")
    if not re.fullmatch(r"input_layer(_\d+)?", config["name"]):
        items.append(f"name={inline_literal(config['name'])}")
    return Bracket("keras.Input(", items)


def layer_expression(layer, frozen_parent: bool) -> Expr:
    """A constructor call for `layer`, or `keras.layers.deserialize({...})` as fallback."""
    config = layer.get_config()
    try:
        expression = _constructor(layer, config, skip=("trainable",))
    except Unrenderable:
        serialized = serialized_config(layer)
        serialized = {k: v for k, v in serialized.items() if k in (
            "module", "class_name", "config", "registered_name")}
        function = ("keras.layers.deserialize(" if isinstance(layer, keras.layers.Layer)
                    else "keras.saving.deserialize_keras_object(")
        return Bracket(function, [literal(serialized)])
    if not layer.trainable and not frozen_parent:
        expression.items.append("trainable=False")
    return expression


def op_call(node, arguments: list[Expr]) -> Expr:
    """`keras.ops.flip(x, axis=-1)` for an operation node, checked like a layer."""
    try:
        return _function_call(node, arguments)
    except Unrenderable:  # no function form: the operation's full config rebuilds it
        return Call(deserialize_call(node.operation), arguments)


def _function_call(node, arguments: list[Expr]) -> Bracket:
    """The keras.ops call that replays `node`'s operation, or Unrenderable saying why there is none."""
    operation = node.operation
    function_name = re.sub(r"(?<!^)(?=[A-Z])", "_", type(operation).__name__).lower()
    function = getattr(keras.ops, function_name, None)
    options = {k: v for k, v in operation.get_config().items() if k != "name"}
    if function is None or not all(is_keyword_name(k) for k in options):
        raise Unrenderable(f"no keras.ops.{function_name} call for {options}")
    option_items = keyword_items(options)  # Unrenderable: an option with no literal form
    inputs = [keras.KerasTensor(t.shape, dtype=t.dtype) for t in node.arguments.keras_tensors]
    args, kwargs = node.arguments.fill_in({id(t): n for t, n in zip(node.arguments.keras_tensors, inputs)})
    if set(kwargs) & set(options):
        raise Unrenderable(f"keras.ops.{function_name} is called with {sorted(kwargs)} and configured with them")
    try:
        # The operation's config is its constructor's arguments; whether the function takes
        # them as keywords (einsum takes its subscripts first) is for its signature to say.
        inspect.signature(function).bind(*args, **kwargs, **options)
    except TypeError:  # how inspect reports arguments that do not fit a signature
        raise Unrenderable(f"keras.ops.{function_name} does not take {sorted(options)} as keywords") from None
    try:
        result = function(*args, **kwargs, **options)
    except ValueError:  # keras.ops check shapes, axes and dtypes with ValueError: not this call
        raise Unrenderable(f"keras.ops.{function_name} refuses {options} for these inputs") from None
    outputs = keras.tree.flatten(result)
    if not outputs or not isinstance(outputs[0], keras.KerasTensor):
        raise Unrenderable(f"keras.ops.{function_name} gives no symbolic tensor")
    again = outputs[0]._keras_history[0]
    if type(again) is not type(operation) or {
            k: v for k, v in again.get_config().items() if k != "name"} != options:
        raise Unrenderable(f"keras.ops.{function_name} does not reproduce {options}")
    return Bracket(f"keras.ops.{function_name}(", arguments + option_items)


def serialized_config(obj) -> dict[str, Any]:
    """`obj` serialized, as plain JSON values (what .keras files store)."""
    value = keras.saving.serialize_keras_object(obj)
    return json.loads(json.dumps(value, default=lambda v: v.tolist() if hasattr(v, "tolist") else str(v)))


def deserialize_call(obj) -> Bracket:
    """`keras.saving.deserialize_keras_object({...})` with `obj`'s full config."""
    return Bracket("keras.saving.deserialize_keras_object(", [literal(serialized_config(obj))])


def _constructor(obj, config: Mapping[str, Any], skip: tuple[str, ...] = ()) -> Bracket:
    """Render `obj` as `public.Path(required, key=value, ...)`, only non-default keys.

    The result is checked: instantiating it must give the same config (except `skip`).
    """
    cls = type(obj)
    path = _public_path(cls)
    signature = inspect.signature(cls.__init__)
    parameters = [
        p for p in list(signature.parameters.values())[1:]
        if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
    ]
    names = {p.name for p in parameters}
    takes_more = any(p.kind is p.VAR_KEYWORD for p in signature.parameters.values())
    required = [p.name for p in parameters if p.default is p.empty]
    if any(name not in config for name in required):
        raise Unrenderable(f"{path} needs arguments its config does not hold")
    try:
        defaults = cls(**{name: _argument_value(config[name]) for name in required}).get_config()
    except ValueError as error:  # Keras checks arguments with ValueError: no call with these alone
        raise Unrenderable(f"{path} refuses its required arguments alone: {error}") from None
    order = [p.name for p in parameters] + [k for k in config if k not in names]
    order = [k for k in order if k in config and k not in skip]
    if not all(is_keyword_name(k) for k in order):
        raise Unrenderable(f"{path} has a config key that is not a Python name")
    keys = [k for k in order if k in required or k == "name" or k not in defaults
            or not _same(config[k], defaults[k])]
    target = _comparable({k: v for k, v in config.items() if k not in skip})
    rendered: dict[str, Expr] = {}

    def positional_count(selected: list[str]) -> int:
        """How many of `selected` lead as positional arguments: the required ones in front."""
        count = 0
        while count < len(selected) and selected[count] in required:
            count += 1
        return count

    def expression(selected: list[str]) -> Bracket:
        for key in selected:
            if key not in rendered:
                rendered[key] = _value_expr(config[key])  # Unrenderable: no literal form
        leading = positional_count(selected)
        items = [rendered[key] if index < leading else prefixed(f"{key}=", rendered[key])
                 for index, key in enumerate(selected)]
        return Bracket(f"{path}(", items)

    def matches(selected: list[str]) -> bool:
        """Whether the call `expression(selected)` stands for rebuilds the config."""
        expression(selected)
        if not takes_more and any(key not in names for key in selected):
            return False  # a config key the constructor has no argument for
        leading = positional_count(selected)
        values = [_argument_value(config[key]) for key in selected]
        try:
            got = cls(*values[:leading], **dict(zip(selected[leading:], values[leading:]))).get_config()
        except ValueError:  # Keras checks arguments with ValueError: a combination the class refuses
            return False
        return _comparable({k: v for k, v in got.items() if k not in skip}) == target

    if not matches(keys):
        keys = order
        if not matches(keys):
            raise Unrenderable(f"{path}(...) does not reproduce the config")
    for key in list(keys):  # drop arguments that follow from others (strides from pool_size)
        if key not in required and key != "name" and matches([k for k in keys if k != key]):
            keys.remove(key)
    return expression(keys)


def _is_serialized_object(value: Any) -> bool:
    return isinstance(value, Mapping) and "class_name" in value and "module" in value


def _deserialized(value: Mapping[str, Any]) -> Any:
    """The object a serialized config (an initializer, a wrapped layer) stands for.

    Raises:
        Unrenderable: Keras cannot rebuild it here: deserialize_keras_object raises TypeError
            for a class it cannot locate and ValueError for what safe mode refuses (a lambda).
    """
    try:
        return keras.saving.deserialize_keras_object(dict(value))
    except (TypeError, ValueError) as error:
        raise Unrenderable(str(error)) from None


def _argument_value(value: Any) -> Any:
    """The value the source `_value_expr(value)` evaluates to: a config value as the
    constructor takes it (serialized objects rebuilt, dtype policies by name)."""
    if _is_dtype_name(value):
        return value["config"]["name"]
    if _is_serialized_object(value):
        return _deserialized(value)
    if isinstance(value, Mapping):
        return {key: _argument_value(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_argument_value(item) for item in value)
    return value


def _is_dtype_name(value: Any) -> bool:
    """A plain DTypePolicy config: dtype="float32" means the same policy."""
    return isinstance(value, Mapping) and value.get("class_name") == "DTypePolicy" and list(
        value.get("config", {})) == ["name"]


def _public_path(cls) -> str:
    # Set by Keras's export decorator; a subclass inherits its base's path, so only the
    # class's own attribute counts.
    paths = cls.__dict__.get("_api_export_path")
    paths = [paths] if isinstance(paths, str) else list(paths or [])
    for path in paths:
        if path.rsplit(".", 1)[-1] == cls.__name__ and path.startswith("keras."):
            return path
    if paths and paths[0].startswith("keras."):
        return paths[0]
    raise Unrenderable(f"{cls.__name__} has no public keras path")


def _value_expr(value: Any) -> Expr:
    if _is_dtype_name(value):
        return literal(value["config"]["name"])
    if _is_serialized_object(value):
        obj = _deserialized(value)
        return _constructor(obj, obj.get_config())
    if isinstance(value, Mapping):
        return dict_expr(value, _value_expr)
    if isinstance(value, (list, tuple)):
        return sequence_expr(value, _value_expr)
    if value is None or isinstance(value, (bool, int, float, str)):
        return literal(value)
    raise Unrenderable(f"no literal for {type(value).__name__}")


def _same(a: Any, b: Any) -> bool:
    return _comparable(a) == _comparable(b)


def _comparable(value: Any) -> Any:
    if isinstance(value, Mapping):
        # A wrapped layer's build state is not part of what its constructor call says.
        return {k: _comparable(v) for k, v in value.items()
                if k not in ("build_config", "compile_config")}
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    if hasattr(value, "tolist"):
        return value.tolist()
    return value


# ---- Keras Applications ---------------------------------------------------------------------------

# Keras Applications a nested model may be, told apart by layer names that only they use
# (their internal layer names are fixed, whatever the model is named). Each guess is
# confirmed by building the application and comparing every layer's config.
_MOBILENET_V2_ALPHAS = {112: 0.35, 160: 0.5, 240: 0.75, 320: 1.0, 416: 1.3, 448: 1.4}
_EFFICIENTNET_TOP = {1408: "B2", 1536: "B3", 1792: "B4", 2048: "B5", 2304: "B6", 2560: "B7"}


def application_call(model: keras.Model) -> Bracket | None:
    """`keras.applications.X(...)` if `model` is an unmodified Keras Application, else None."""
    if len(model.inputs) != 1 or len(model.layers) < 20:
        return None
    guess = _application_guess(model)
    function = getattr(keras.applications, guess[0], None) if guess else None
    if function is None:
        return None
    arguments: dict[str, Any] = {"input_shape": tuple(model.input_shape[1:]), **guess[1]}
    if "predictions" in {layer.name for layer in model.layers}:
        top = model.get_layer("predictions")
        if top.units != 1000:
            arguments["classes"] = top.units
        activation = keras.activations.serialize(top.activation)
        if activation != "softmax":
            arguments["classifier_activation"] = activation
    else:
        arguments["include_top"] = False
        last = type(model.layers[-1]).__name__
        pooling = {"GlobalAveragePooling2D": "avg", "GlobalMaxPooling2D": "max"}.get(last)
        if pooling:
            arguments["pooling"] = pooling
    arguments["weights"] = None
    default_name = inspect.signature(function).parameters.get("name")
    if default_name is None:
        return None
    if default_name.default is None:  # a name built from options, e.g. mobilenetv2_1.00_224
        if not re.fullmatch(r"[a-z0-9]+_\d\.\d\d_\d+", model.name):
            arguments["name"] = model.name
    elif default_name.default != model.name:
        arguments["name"] = model.name
    try:
        candidate = function(**arguments)
    except ValueError:  # Keras Applications check shapes and options with ValueError: not a match
        return None
    if candidate.name != model.name or _layer_signature(candidate) != _layer_signature(model):
        return None
    return Bracket(f"keras.applications.{function.__name__}(", keyword_items(arguments))


def _application_guess(model: keras.Model) -> tuple[str, dict[str, Any]] | None:
    """(constructor name, architecture arguments) that `model` may have been built with."""
    names = {layer.name for layer in model.layers}
    if "block_16_project" in names:
        filters = model.get_layer("block_16_project").filters
        alpha = _MOBILENET_V2_ALPHAS.get(filters)
        return ("MobileNetV2", {} if alpha == 1.0 else {"alpha": alpha}) if alpha else None
    if {"stem_conv", "block1a_dwconv", "top_conv"} <= names:
        top = model.get_layer("top_conv").filters
        variant = _EFFICIENTNET_TOP.get(top) or ("B1" if "block1b_dwconv" in names else "B0")
        return f"EfficientNet{variant}", {}
    if "conv1_conv" in names and "conv5_block3_out" in names:
        for depth, last in ((152, "conv4_block36_out"), (101, "conv4_block23_out"),
                            (50, "conv4_block6_out")):
            if last in names:
                return f"ResNet{depth}", {}
    for pattern, constructor in (
        (r"vgg(16|19)", "VGG{0}"), (r"densenet(121|169|201)", "DenseNet{0}"),
        (r"xception", "Xception"), (r"inception_v3", "InceptionV3"),
    ):
        match = re.fullmatch(pattern, model.name)
        if match:
            return constructor.format(*match.groups()), {}
    return None


def _layer_signature(model: keras.Model) -> list:
    """Every layer's class and config, trainability and generated names aside."""
    signature = []
    for layer in model.layers:
        config = dict(layer.get_config())
        config.pop("trainable", None)
        # Names Keras generated (input_layer_3, global_average_pooling2d_1) depend on what
        # else the process built; the applications' own layer names are fixed.
        snake = re.sub(r"([a-z])([A-Z])", r"\1_\2",
                       re.sub(r"(.)([A-Z][a-z]+)", r"\1_\2", type(layer).__name__)).lower()
        if re.fullmatch(rf"{snake}(_\d+)?", layer.name):
            config.pop("name", None)
        signature.append((type(layer).__name__, _comparable(config)))
    return signature
