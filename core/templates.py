"""Built-in sub-model builders, in a registry keyed by name.

Each template declares its parameters (name, type, default, range) so a UI can render a
form from them, and builds a `keras.Model` named after the member for a given input shape
and task. Templates that end in an output layer ("auto" units) read the number of classes
and the activation from the task.

This module holds the framework, the building blocks templates share, the seed's two
templates and the CNN classifier; `core.templates_vector` (MLP, tabular),
`core.templates_sequence` (Conv1D, GRU/LSTM) and `core.templates_applications` (Keras
Applications backbones) register theirs when this module is imported.

Example:
    >>> model = TEMPLATES["cnn_features"].build("features", (28, 28, 1), task, {})
    >>> model.output_shape
    (None, 5408)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Mapping

import keras
import numpy as np

from core.tasks import TaskInfo

PARAM_KINDS = ("int", "float", "bool", "choice", "int_list", "units", "activation", "str")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "sigmoid", "elu", "selu", "linear", "softmax")


@dataclass(frozen=True)
class ParamSpec:
    """One declared template parameter.

    kind: "int", "float", "bool", "choice" (one of `choices`), "int_list" (a list of at
    least `min_items` ints, each within [minimum, maximum]), "units" (an int or "auto":
    follow the task), "activation" (a Keras activation name; "auto" = follow the task,
    only where the default is "auto") or "str".
    """

    name: str
    kind: str
    default: Any
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    min_items: int = 0

    def validate(self, value: Any, where: str) -> Any:
        """Return `value` normalized (lists become lists of ints), or raise ValueError."""
        key = f"{where}.{self.name}"
        auto_allowed = self.kind == "units" or (self.kind == "activation" and self.default == "auto")
        if auto_allowed and isinstance(value, str) and value == "auto":
            return value
        if self.kind == "int" or self.kind == "units":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                also = ' or "auto"' if self.kind == "units" else ""
                raise ValueError(f"'{key}' must be an integer{also}, received {value!r}.")
            self._check_range(int(value), key)
            return int(value)
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"'{key}' must be a number, received {value!r}.")
            if not math.isfinite(value):
                raise ValueError(f"'{key}' must be a finite number, received {value!r}.")
            self._check_range(float(value), key)
            return float(value)
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"'{key}' must be true or false, received {value!r}.")
            return bool(value)
        if self.kind == "int_list":
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                value = [int(value)]
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
            ):
                raise ValueError(f"'{key}' must be a list of integers, received {value!r}.")
            if len(value) < self.min_items:
                raise ValueError(f"'{key}' needs at least {self.min_items} item(s), received {list(value)!r}.")
            for v in value:
                self._check_range(int(v), key)
            return [int(v) for v in value]
        allowed = self.allowed_values()
        # True == 1 in Python: without this, True would pass as the choice 1.0.
        wrong_bool = isinstance(value, bool) and not any(isinstance(c, bool) for c in allowed)
        if allowed and (wrong_bool or value not in allowed):
            also = ' or "auto"' if self.kind == "activation" and self.default == "auto" else ""
            raise ValueError(f"'{key}' must be one of {list(allowed)}{also}, received {value!r}.")
        if self.kind == "str" and not isinstance(value, str):
            raise ValueError(f"'{key}' must be a string, received {value!r}.")
        return value

    def _check_range(self, value: float, key: str) -> None:
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"'{key}' must be >= {self.minimum}, received {value}.")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"'{key}' must be <= {self.maximum}, received {value}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for forms; an activation lists the names it accepts as its choices."""
        return {
            "name": self.name, "kind": self.kind, "default": self.default, "help": self.help,
            "minimum": self.minimum, "maximum": self.maximum, "choices": list(self.allowed_values()),
            "min_items": self.min_items,
        }

    def allowed_values(self) -> tuple[Any, ...]:
        if self.choices or self.kind != "activation":
            return self.choices
        return (("auto",) if self.default == "auto" else ()) + ACTIVATIONS


# builder(input_shape, task, params, name, sample) -> keras.Model
Builder = Callable[[tuple, TaskInfo, dict, str, "np.ndarray | None"], keras.Model]
# check_input(input_shape, params=None) -> a sentence saying what is wrong, or None
InputCheck = Callable[..., "str | None"]


@dataclass(frozen=True)
class Template:
    """A named sub-model builder with declared parameters.

    Args:
        input_ranks: accepted ranks of one sample (without batch): 1 for feature vectors,
            2 for sequences (steps, channels), 3 for images (height, width, channels).
        output: "features" for encoders, "predictions" when the model ends in an output
            layer sized by the task (heads and complete classifiers).
        check_input: optional extra constraint on the input shape, called as
            `check_input(shape, params)` with resolved parameters; returns a sentence
            saying what is wrong, or None. Callers that know only the shape call
            `check_input(shape)`: it then reports only what no parameter choice would fix.
    """

    name: str
    title: str
    description: str
    params: tuple[ParamSpec, ...]
    input_ranks: tuple[int, ...]
    builder: Builder
    output: str = "features"
    check_input: InputCheck | None = None
    tags: tuple[str, ...] = field(default=())

    def resolve_params(self, params: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """Fill in defaults and validate values; unknown parameter names are errors."""
        where = where or self.name
        declared = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise ValueError(
                f"Template '{self.name}' has no parameter '{unknown[0]}'. "
                f"Its parameters: {sorted(declared)}."
            )
        return {
            p.name: p.validate(params.get(p.name, p.default), where) for p in self.params
        }

    def input_problem(self, input_shape: tuple, params: Mapping[str, Any] | None = None) -> str | None:
        """Why this template cannot take `input_shape` (without batch), or None.

        Args:
            input_shape: shape of one sample, without the batch axis.
            params: the member's parameters (missing ones take their defaults); some
                constraints depend on them (pooling steps, `adapt_input`).

        Raises:
            ValueError: a parameter is unknown or invalid.
        """
        if len(input_shape) not in self.input_ranks:
            return (
                f"expects input of rank {' or '.join(str(r) for r in self.input_ranks)} "
                f"({' or '.join(RANK_WORDS[r] for r in self.input_ranks)})"
            )
        if self.check_input is not None:
            return self.check_input(tuple(input_shape), self.resolve_params(params or {}))
        return None

    def build(
        self,
        name: str,
        input_shape: tuple,
        task: TaskInfo,
        params: Mapping[str, Any] | None = None,
        sample: np.ndarray | None = None,
    ) -> keras.Model:
        """Build the sub-model for one sample shape `input_shape`.

        Args:
            name: the member name; becomes the Keras model name.
            input_shape: shape of one input sample, without the batch axis.
            task: the dataset's task, for "auto" output units and activation.
            params: template parameters; missing ones take their defaults.
            sample: a few training inputs, for layers that adapt to data (Normalization).

        Raises:
            ValueError: a parameter is unknown or out of range, or the input shape does
                not fit this template.
        """
        resolved = self.resolve_params(params or {}, where=name)
        problem = self.input_problem(tuple(input_shape), resolved)
        if problem:
            raise ValueError(
                f"Member '{name}' (template '{self.name}') {problem}, "
                f"but receives shape {format_shape(input_shape)}."
            )
        return self.builder(tuple(input_shape), task, resolved, name, sample)

    def to_dict(self) -> dict[str, Any]:
        """The template's description as plain data, for forms and the CLI."""
        return {
            "name": self.name, "title": self.title, "description": self.description,
            "params": [p.to_dict() for p in self.params], "input_ranks": list(self.input_ranks),
            "output": self.output, "tags": list(self.tags),
        }


RANK_WORDS = {1: "a feature vector", 2: "a sequence (steps, channels)", 3: "an image (height, width, channels)"}


def format_shape(shape: tuple) -> str:
    """(28, 28, 1) -> '(batch, 28, 28, 1)'; the batch axis is implied."""
    dims = ", ".join("?" if d is None else str(d) for d in shape)
    return f"(batch, {dims})"


def output_units(value: Any, task: TaskInfo) -> int:
    return task.output_units if value == "auto" else int(value)


def output_activation(value: Any, task: TaskInfo) -> str:
    return task.output_activation if value == "auto" else value


def safe_layer_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


TEMPLATES: dict[str, Template] = {}


def register(template: Template) -> Template:
    if template.name in TEMPLATES:
        raise ValueError(f"Template '{template.name}' is already registered.")
    TEMPLATES[template.name] = template
    return template


# ---- building blocks shared by templates ------------------------------------------------


def dense_layers(x, units: list[int], activation: str, dropout_rate: float, batch_norm: bool, name: str):
    """Dense layers `{name}_dense1..n`, each optionally batch-normalized, then dropout."""
    for index, width in enumerate(units, start=1):
        if batch_norm:
            # Normalize before the nonlinearity; the BatchNormalization offset replaces the bias.
            x = keras.layers.Dense(width, use_bias=False, name=f"{name}_dense{index}")(x)
            x = keras.layers.BatchNormalization(name=f"{name}_dense{index}_bn")(x)
            x = keras.layers.Activation(activation, name=f"{name}_dense{index}_{safe_layer_name(activation)}")(x)
        else:
            x = keras.layers.Dense(width, activation=activation, name=f"{name}_dense{index}")(x)
        if dropout_rate > 0:
            x = keras.layers.Dropout(dropout_rate, name=f"{name}_dropout{index}")(x)
    return x


def output_layer(x, params: dict, task: TaskInfo, name: str):
    """The final Dense layer `{name}_output`; "auto" units and activation follow the task."""
    return keras.layers.Dense(
        output_units(params["units"], task),
        activation=output_activation(params["output_activation"], task),
        name=f"{name}_output",
    )(x)


def conv_blocks(x, params: dict, name: str, dims: int):
    """Conv (+ BatchNormalization) (+ max-pooling) blocks `{name}_conv1..n`, in 1 or 2 dims."""
    conv, pool = (keras.layers.Conv1D, keras.layers.MaxPooling1D) if dims == 1 else (
        keras.layers.Conv2D, keras.layers.MaxPooling2D)
    for index, filters in enumerate(params["filters"], start=1):
        x = conv(filters, params["kernel_size"], activation=params["activation"],
                 padding=params["padding"], name=f"{name}_conv{index}")(x)
        if params.get("batch_norm"):
            x = keras.layers.BatchNormalization(name=f"{name}_bn{index}")(x)
        if params["pool_size"] > 1:
            x = pool(params["pool_size"], name=f"{name}_pool{index}")(x)
    return x


def pool_to_vector(x, pooling: str, name: str, dims: int):
    """Feature maps -> one vector: "flatten", "global_average" or "global_max"."""
    if pooling == "flatten":
        return keras.layers.Flatten(name=f"{name}_flatten")(x)
    if pooling == "global_max":
        layer = keras.layers.GlobalMaxPooling1D if dims == 1 else keras.layers.GlobalMaxPooling2D
        return layer(name=f"{name}_gmp")(x)
    layer = keras.layers.GlobalAveragePooling1D if dims == 1 else keras.layers.GlobalAveragePooling2D
    return layer(name=f"{name}_gap")(x)


def min_conv_input(params: dict) -> int:
    """Smallest input length (steps, or height and width) that leaves >= 1 after every block."""
    size = 1
    for _ in params["filters"]:
        if params["pool_size"] > 1:
            size *= params["pool_size"]
        if params["padding"] == "valid":
            size += params["kernel_size"] - 1
    return size


def conv_input_check(axes: int, what: str) -> InputCheck:
    """check_input for conv templates: the first `axes` dims must survive every block."""

    def check(shape: tuple, params: dict | None = None) -> str | None:
        if params is None:  # every size fits some choice of blocks
            return None
        spatial = shape[:axes]
        if params["pooling"] == "flatten" and any(d is None for d in spatial):
            return f"needs {what} of known size to flatten them (pooling='global_average' takes any size)"
        minimum = min_conv_input(params)
        if any(d is not None and d < minimum for d in spatial):
            blocks = len(params["filters"])
            size = "x".join([str(minimum)] * axes)
            return (f"needs {what} of at least {size} for {blocks} conv block(s) with kernel "
                    f"{params['kernel_size']}, padding '{params['padding']}' and pool {params['pool_size']} "
                    f"(fewer blocks, padding='same' or a smaller pool_size fit smaller {what})")
        return None

    return check


# ---- images: the seed's model_a and a complete CNN classifier ----------------------------


def build_cnn_features(input_shape, task, params, name, sample=None) -> keras.Model:
    """Conv2D blocks (conv, max-pool) then Flatten or global pooling: the seed's model_a."""
    inputs = keras.Input(shape=input_shape, name=f"{name}_input")
    x = conv_blocks(inputs, params, name, dims=2)
    x = pool_to_vector(x, params["pooling"], name, dims=2)
    if params["dropout_rate"] > 0:
        x = keras.layers.Dropout(params["dropout_rate"], name=f"{name}_dropout")(x)
    if params.get("dense_units", 0) > 0:
        x = keras.layers.Dense(params["dense_units"], activation=params["activation"], name=f"{name}_dense")(x)
    return keras.Model(inputs, x, name=name)


def build_cnn_classifier(input_shape, task, params, name, sample=None) -> keras.Model:
    """cnn_features' layers, then dense_head's hidden layers and output layer."""
    features = build_cnn_features(input_shape, task, params, name)
    x = dense_layers(features.output, params["hidden_units"], params["activation"],
                     params["dropout_rate"], batch_norm=False, name=name)
    return keras.Model(features.input, output_layer(x, params, task, name), name=name)


CNN_PARAMS = (
    ParamSpec("filters", "int_list", [32], "filters per conv block", 1, 1024),
    ParamSpec("kernel_size", "int", 3, "kernel size", 1, 11),
    ParamSpec("activation", "activation", "relu", "activation of conv (and dense) layers"),
    ParamSpec("padding", "choice", "valid", "conv padding", choices=("valid", "same")),
    ParamSpec("pool_size", "int", 2, "max-pool size (1 = no pooling)", 1, 8),
    ParamSpec("batch_norm", "bool", False, "BatchNormalization after each conv"),
    ParamSpec("pooling", "choice", "flatten", "how feature maps become a vector",
              choices=("flatten", "global_average", "global_max")),
    ParamSpec("dropout_rate", "float", 0.0, "dropout on the features", 0.0, 0.9),
)
OUTPUT_PARAMS = (
    ParamSpec("units", "units", "auto", "output units; auto = classes, 1 for binary/regression", 1, 100000),
    ParamSpec("output_activation", "activation", "auto",
              "auto = softmax for classes, sigmoid for binary, linear for regression"),
)


def with_defaults(specs: tuple[ParamSpec, ...], **defaults: Any) -> tuple[ParamSpec, ...]:
    """`specs` with some defaults changed (templates that share parameters differ in defaults)."""
    return tuple(replace(s, default=defaults[s.name]) if s.name in defaults else s for s in specs)


register(Template(
    name="cnn_features",
    title="CNN feature extractor",
    description="Conv2D + max-pooling blocks, then Flatten (or global pooling). "
                "The seed's model_a: one block of 32 3x3 filters.",
    params=CNN_PARAMS + (
        ParamSpec("dense_units", "int", 0, "optional Dense projection of the features (0 = none)", 0, 4096),
    ),
    input_ranks=(3,),
    builder=build_cnn_features,
    check_input=conv_input_check(2, "images"),
    tags=("image", "encoder"),
))

register(Template(
    name="cnn_classifier",
    title="CNN classifier",
    description="A complete image classifier: Conv2D blocks, Dense layers and an output layer "
                "that follows the dataset. Use several as ensemble members.",
    params=with_defaults(CNN_PARAMS, filters=[32, 64], padding="same") + (
        ParamSpec("hidden_units", "int_list", [64], "units of each hidden Dense layer ([] = none)", 1, 8192),
    ) + OUTPUT_PARAMS,
    input_ranks=(3,),
    builder=build_cnn_classifier,
    output="predictions",
    check_input=conv_input_check(2, "images"),
    tags=("image", "classifier"),
))


# ---- feature vectors: the seed's model_b --------------------------------------------------


def build_dense_head(input_shape, task, params, name, sample=None) -> keras.Model:
    """Hidden Dense layers then the output layer sized by the task: the seed's model_b."""
    inputs = keras.Input(shape=input_shape, name=f"{name}_input")
    x = dense_layers(inputs, params["hidden_units"], params["activation"], params["dropout_rate"],
                     params.get("batch_norm", False), name)
    return keras.Model(inputs, output_layer(x, params, task, name), name=name)


register(Template(
    name="dense_head",
    title="Dense classifier head",
    description="Hidden Dense layers, then an output layer whose units and activation follow "
                "the dataset. The seed's model_b: Dense(128, relu) -> Dense(10, softmax).",
    params=(
        ParamSpec("hidden_units", "int_list", [128], "units of each hidden layer ([] = none)", 1, 8192),
        ParamSpec("activation", "activation", "relu", "activation of the hidden layers"),
        ParamSpec("dropout_rate", "float", 0.0, "dropout after each hidden layer", 0.0, 0.9),
    ) + OUTPUT_PARAMS,
    input_ranks=(1,),
    builder=build_dense_head,
    output="predictions",
    tags=("head",),
))

# Imported last: these modules import the framework above and register their templates.
from core import templates_applications, templates_sequence, templates_vector  # noqa: E402, F401
