"""Templates on feature vectors: the seed's dense head (model_b), an MLP encoder, an MLP
classifier, a tabular encoder."""

from __future__ import annotations

import keras
import numpy as np

from core.build.templates.blocks import OUTPUT_PARAMS, dense_layers, output_layer, with_defaults
from core.build.templates.registry import ParamSpec, Template, register
from core.spec.shapes import format_shape


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


def build_mlp(input_shape, task, params, name, sample=None) -> keras.Model:
    """Dense layers on a feature vector; outputs the last hidden layer."""
    inputs = keras.Input(shape=input_shape, name=f"{name}_input")
    x = dense_layers(inputs, params["hidden_units"], params["activation"], params["dropout_rate"],
                     params["batch_norm"], name)
    return keras.Model(inputs, x, name=name)


def build_tabular_encoder(input_shape, task, params, name, sample=None) -> keras.Model:
    """Normalization (adapted to `sample` when given) then Dense layers.

    Without a sample the Normalization keeps mean 0 and variance 1 (identity), so the
    member still builds and runs in a pre-flight check that has no data.
    """
    inputs = keras.Input(shape=input_shape, name=f"{name}_input")
    normalization = keras.layers.Normalization(axis=-1, name=f"{name}_normalization")
    if sample is not None:
        sample = np.asarray(sample, dtype="float32")
        if sample.ndim != 2 or sample.shape[1] != input_shape[0]:
            raise ValueError(
                f"Member '{name}' (template 'tabular_encoder') adapts to a sample of inputs with "
                f"shape {format_shape(input_shape)}, but the sample has shape {sample.shape}."
            )
        if len(sample):
            normalization.adapt(sample)
    x = normalization(inputs)
    x = dense_layers(x, params["hidden_units"], params["activation"], params["dropout_rate"],
                     params["batch_norm"], name)
    return keras.Model(inputs, x, name=name)


MLP_PARAMS = (
    ParamSpec("hidden_units", "int_list", [128], "units of each Dense layer", 1, 8192, min_items=1),
    ParamSpec("activation", "activation", "relu", "activation of the Dense layers"),
    ParamSpec("dropout_rate", "float", 0.0, "dropout after each Dense layer", 0.0, 0.9),
    ParamSpec("batch_norm", "bool", False, "BatchNormalization before each activation"),
)

register(Template(
    name="mlp",
    title="MLP encoder",
    description="Dense layers on a feature vector; outputs the last layer's features for a "
                "head or a fusion to use.",
    params=MLP_PARAMS,
    input_ranks=(1,),
    builder=build_mlp,
    tags=("vector", "encoder"),
))

register(Template(
    name="mlp_classifier",
    title="MLP classifier",
    description="A complete classifier on feature vectors: Dense layers and an output layer "
                "that follows the dataset. Use several as ensemble members.",
    params=with_defaults(MLP_PARAMS, hidden_units=[64]) + OUTPUT_PARAMS,
    input_ranks=(1,),
    builder=build_dense_head,
    output="predictions",
    tags=("vector", "classifier"),
))

register(Template(
    name="tabular_encoder",
    title="Tabular encoder",
    description="Normalizes each column to the training data's mean and variance, then Dense "
                "layers: for CSV-like feature tables whose columns have different scales.",
    params=with_defaults(MLP_PARAMS, hidden_units=[64]),
    input_ranks=(1,),
    builder=build_tabular_encoder,
    tags=("tabular", "vector", "encoder"),
))
