"""Templates on images: the seed's CNN feature extractor (model_a) and a complete CNN classifier."""

from __future__ import annotations

import keras

from core.build.templates.blocks import (
    OUTPUT_PARAMS,
    conv_blocks,
    conv_input_check,
    dense_layers,
    output_layer,
    pool_to_vector,
    with_defaults,
)
from core.build.templates.registry import ParamSpec, Template, register


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
