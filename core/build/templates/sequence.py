"""Templates on sequences (steps, channels): a Conv1D encoder and a GRU/LSTM encoder."""

from __future__ import annotations

import keras

from core.build.templates.blocks import conv_blocks, conv_input_check, pool_to_vector
from core.build.templates.registry import ParamSpec, Template, register


def build_conv1d_encoder(input_shape, task, params, name, sample=None) -> keras.Model:
    """Conv1D (+ max-pooling) blocks over the steps, then one vector per sequence."""
    inputs = keras.Input(shape=input_shape, name=f"{name}_input")
    x = conv_blocks(inputs, params, name, dims=1)
    x = pool_to_vector(x, params["pooling"], name, dims=1)
    if params["dropout_rate"] > 0:
        x = keras.layers.Dropout(params["dropout_rate"], name=f"{name}_dropout")(x)
    return keras.Model(inputs, x, name=name)


def build_rnn_encoder(input_shape, task, params, name, sample=None) -> keras.Model:
    """Stacked GRU or LSTM layers; the last returns its final state, the others sequences."""
    cell = {"gru": keras.layers.GRU, "lstm": keras.layers.LSTM}[params["cell"]]
    inputs = keras.Input(shape=input_shape, name=f"{name}_input")
    x = inputs
    last = len(params["units"])
    for index, units in enumerate(params["units"], start=1):
        layer = cell(units, return_sequences=index < last, name=f"{name}_{params['cell']}{index}")
        if params["bidirectional"]:
            # Forward and backward final states are concatenated: 2 * units features.
            layer = keras.layers.Bidirectional(layer, name=f"{name}_bidirectional{index}")
        x = layer(x)
        if params["dropout_rate"] > 0:
            x = keras.layers.Dropout(params["dropout_rate"], name=f"{name}_dropout{index}")(x)
    return keras.Model(inputs, x, name=name)


register(Template(
    name="conv1d_encoder",
    title="Conv1D sequence encoder",
    description="Conv1D + max-pooling blocks over the steps of a sequence, then global pooling: "
                "a fast encoder for signals and time series of shape (steps, channels).",
    params=(
        ParamSpec("filters", "int_list", [32, 64], "filters per Conv1D block", 1, 1024, min_items=1),
        ParamSpec("kernel_size", "int", 3, "kernel size in steps", 1, 31),
        ParamSpec("activation", "activation", "relu", "activation of the conv layers"),
        ParamSpec("padding", "choice", "same", "conv padding", choices=("same", "valid")),
        ParamSpec("pool_size", "int", 2, "max-pool size in steps (1 = no pooling)", 1, 8),
        ParamSpec("pooling", "choice", "global_average", "how the feature sequence becomes a vector",
                  choices=("global_average", "global_max", "flatten")),
        ParamSpec("dropout_rate", "float", 0.0, "dropout on the features", 0.0, 0.9),
    ),
    input_ranks=(2,),
    builder=build_conv1d_encoder,
    check_input=conv_input_check(1, "sequences"),
    tags=("sequence", "encoder"),
))

register(Template(
    name="rnn_encoder",
    title="Recurrent sequence encoder (GRU/LSTM)",
    description="Stacked GRU or LSTM layers, optionally bidirectional; outputs the final state "
                "of the last layer: an encoder for sequences whose order matters.",
    params=(
        ParamSpec("cell", "choice", "gru", "recurrent cell", choices=("gru", "lstm")),
        ParamSpec("units", "int_list", [64], "units of each stacked recurrent layer", 1, 2048, min_items=1),
        ParamSpec("bidirectional", "bool", False, "read each sequence both ways (doubles the features)"),
        ParamSpec("dropout_rate", "float", 0.0, "dropout after each recurrent layer", 0.0, 0.9),
    ),
    input_ranks=(2,),
    builder=build_rnn_encoder,
    tags=("sequence", "encoder"),
))
