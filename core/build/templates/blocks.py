"""Building blocks templates share: dense and conv stacks, the output layer, shared parameters."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import keras

from core.build.templates.registry import InputCheck, ParamSpec, output_activation, output_units, safe_layer_name
from core.spec.tasks import TaskInfo


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


OUTPUT_PARAMS = (
    ParamSpec("units", "units", "auto", "output units; auto = classes, 1 for binary/regression", 1, 100000),
    ParamSpec("output_activation", "activation", "auto",
              "auto = softmax for classes, sigmoid for binary, linear for regression"),
)


def with_defaults(specs: tuple[ParamSpec, ...], **defaults: Any) -> tuple[ParamSpec, ...]:
    """`specs` with some defaults changed (templates that share parameters differ in defaults)."""
    return tuple(replace(s, default=defaults[s.name]) if s.name in defaults else s for s in specs)
