"""`stack.py`: a standalone Keras script, in the style of plain Keras examples, that rebuilds a stack.

The script holds one `build_<member>()` per member that emits the member's layers
literally with the functional API (see `core.export.graph`), a `load_<member>()` for
members shipped as model files, a `build_model()` that wires them exactly like the
trained stack and re-applies every `trainable=False`, an `adapt_preprocessing()` where
Normalization layers learn from the data, and how it trains (`core.export.training_code`,
which renders the trainer's own compile/fit policy): a `compile_model()`, an
`unfreeze_for_fine_tuning()` when the run had a fine-tune phase, and a `__main__` block
that trains on an NPZ file, in the run's phases.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import keras

from core.build.trainability import apply_trainability, child_layers, iter_leaves, unfreeze_top
from core.export.graph import ScriptWriter, graph_nodes, history_node
from core.export.source import get_layer_call, prose
from core.export.training_code import (
    LEAVES_FUNCTION,
    TRAINED_FILE,
    compile_function,
    main_block,
    unfreeze_function,
)
from core.spec import StackSpec, TrainSpec
from core.spec.tasks import TaskInfo
from core.training.compile import ONE_HOT_LOSSES, fine_tunes, resolve_auto, uses_steps


def generate_script(
    model: keras.Model,
    spec: StackSpec,
    member_files: Mapping[str, str] = {},
    compile_args: Mapping[str, Any] | None = None,
) -> str:
    """Return `stack.py`: a standalone Keras script that rebuilds and trains this stack.

    Args:
        model: the stack (a Functional model whose members are nested models).
        spec: the spec the stack was built from (names, mode, training settings).
        member_files: member name -> path, relative to the script, of the member's model
            file; those members are loaded from the file (and cut and frozen like in the
            stack) instead of rebuilt from layers.
        compile_args: optimizer, learning_rate, weight_decay, loss and metrics with
            "auto" resolved (`core.training.compile.resolve_compile_args`); by default they come
            from `spec.train`, and "auto" is guessed from the model's output activation.

    Returns:
        The script's source code.

    Raises:
        ValueError: a name in `member_files` is not a nested model of `model`.

    Example:
        >>> source = generate_script(model, spec)
        >>> compile(source, "stack.py", "exec") is not None
        True
    """
    nested = {layer.name for layer in model.layers if isinstance(layer, keras.Model)}
    unknown = sorted(set(member_files) - nested)
    if unknown:
        raise ValueError(
            f"Cannot load member '{unknown[0]}' from a file: the stack '{model.name}' has no "
            f"nested model of that name. Its members: {sorted(nested) or 'none'}."
        )
    compile_args = dict(compile_args or _guess_compile_args(model, spec.train))
    fine_tune_trainable: dict[str, list[str]] = {}
    with _trainability_kept(model):
        if fine_tunes(spec.train):
            # A fine-tuned stack comes back with its top layers unfrozen: the script builds it
            # as it started, and unfreezes at the fine-tune epoch like the run did.
            apply_trainability(model, spec)
        with _dtype_policy("mixed_float16" if spec.train.mixed_precision else "float32"):
            writer = ScriptWriter(dict(member_files))
            writer.model_function(model, top_level=True, mixed_precision=spec.train.mixed_precision)
        frozen_at_start = {layer.name for layer in model.layers
                           if isinstance(layer, keras.Model) and not layer.trainable}
        if fine_tunes(spec.train):
            fine_tune_trainable = _fine_tune_trainable(model, spec)
    needs_math = uses_steps(spec.train)
    imports = ("import math\n" if needs_math else "") + "import sys\n"
    imports += "from pathlib import Path\n" if member_files else ""
    imports += "\nimport keras\nimport numpy as np"
    if member_files:
        imports += "\n\nHERE = Path(__file__).resolve().parent"
    adapted = _adapted_on_input(model, model, "model", set(member_files))
    definitions = writer.functions + [compile_function(spec.train, compile_args)]
    if adapted:
        definitions.append("\n".join([
            "def adapt_preprocessing(model, x):",
            '    """Adapt Normalization layers to the training inputs, as the run did."""',
            *[f"    {path}.adapt(x)" for path in adapted],
        ]))
    if fine_tune_trainable:
        definitions += [LEAVES_FUNCTION, unfreeze_function(spec.train, fine_tune_trainable)]
    one_hot = model.outputs[0].shape[-1] if compile_args.get("loss") in ONE_HOT_LOSSES else 0
    definitions.append(main_block(spec.train, adapt=bool(adapted), one_hot_classes=one_hot,
                                  unfreezes=bool(fine_tune_trainable)))
    header = _script_header(model, spec, member_files, frozen_at_start, bool(fine_tune_trainable))
    return "\n\n".join([header, imports]) + "\n\n\n" + (
        "\n\n\n".join(definitions) + "\n")


def _script_header(model: keras.Model, spec: StackSpec, member_files: Mapping[str, str], frozen: set[str],
                   unfreezes: bool) -> str:
    """The docstring: what the script does, and each member (`frozen`: the members frozen when
    training starts; `unfreezes`: the script has unfreeze_for_fine_tuning())."""
    members = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    described = {member.name: member for member in spec.all_members()}
    lines = [
        f'"""Stack "{prose(spec.name)}" ({prose(spec.mode)}): '
        f'{prose(" + ".join(m.name for m in members))}.',
        "",
        "Generated by StackLab. build_model() rebuilds the architecture of the trained stack",
        "(fresh weights: the trained model is model.keras next to this file) and freezes",
        "the same layers; compile_model() uses the run's optimizer, loss and metrics.",
        *([f"The run fine-tuned from epoch {spec.train.fine_tune.start_epoch}: build_model() freezes what was",
           "frozen at the start, and unfreeze_for_fine_tuning() unfreezes what the run unfroze then."]
          if unfreezes else []),
        "",
        "Members:",
    ]
    for member in members:
        spec_member = described.get(member.name)
        if member.name in member_files:
            origin = f"loaded from {prose(member_files[member.name])}"
        elif spec_member is not None and spec_member.source == "template":
            origin = f"template {prose(spec_member.template)}"
        elif spec_member is not None:
            origin = f"{spec_member.source} member, rebuilt from its layers"
        else:
            origin = "rebuilt from its layers"
        mark = ", frozen" if member.name in frozen else ""
        lines.append(f"    {prose(member.name)}: {origin}, {member.count_params():,} parameters{mark}")
    lines += [
        "",
        "Run:",
        "    python stack.py            build the stack and print its summary",
        "    python stack.py DATA.npz   train on arrays x and y of DATA.npz and save the result",
        f"                               as {TRAINED_FILE} in the working directory (model.keras,",
        "                               the run's trained model, is never overwritten)",
        '"""',
    ]
    return "\n".join(lines)


def _fine_tune_trainable(model: keras.Model, spec: StackSpec) -> dict[str, list[str]]:
    """Per member that the fine-tune phase changes, the paths (below the member) of its layers
    that train afterwards: unfreezes `model` as the trainer does and reads it back."""
    unfrozen = unfreeze_top(model, spec, spec.train.fine_tune)
    changed = dict.fromkeys(path.split("/", 1)[0] for path in unfrozen)
    return {name: [path for path, _, trainable in iter_leaves(model.get_layer(name)) if trainable]
            for name in changed}


@contextmanager
def _trainability_kept(model: keras.Model) -> Iterator[None]:
    """Give every layer of `model` its `trainable` flag back on exit."""
    flags = []

    def walk(layer: keras.layers.Layer) -> None:
        flags.append((layer, layer.trainable))  # parents first: setting one resets its children
        for child in child_layers(layer):
            walk(child)

    walk(model)
    try:
        yield
    finally:
        for layer, trainable in flags:
            layer.trainable = trainable


def _adapted_on_input(model: keras.Model, stack: keras.Model, path: str,
                      loaded: set[str], fed_raw: bool = True) -> list[str]:
    """Paths like `model.get_layer("enc").get_layer("enc_normalization")` of Normalization
    layers without fixed statistics that see the stack's raw input.

    core.build.stacking adapts exactly those to the training sample (a member fed by another
    member gets no sample), so the script adapts them to its data. Members loaded from
    files keep the statistics saved in the file.
    """
    if isinstance(model, keras.Sequential):
        steps = [(layer, fed_raw and index == 0) for index, layer in enumerate(model.layers)]
    else:
        input_ids = {id(tensor) for tensor in model.inputs}
        steps = [(node.operation, fed_raw and all(
            id(t) in input_ids for t in node.arguments.keras_tensors)) for node in graph_nodes(model)]
    paths = []
    for layer, raw in steps:
        inner = get_layer_call(path, layer.name)
        if isinstance(layer, keras.Model) and not (model is stack and layer.name in loaded):
            paths += [p for p in _adapted_on_input(layer, stack, inner, loaded, raw) if p not in paths]
        elif raw and isinstance(layer, keras.layers.Normalization) and layer.get_config().get(
                "mean") is None and inner not in paths:
            paths.append(inner)
    return paths


def _guess_compile_args(model: keras.Model, train: TrainSpec) -> dict[str, Any]:
    """Resolve "auto" loss and metrics from the activation that produces the output."""
    activation = _output_activation(model)
    units = model.outputs[0].shape[-1]
    if activation == "softmax":
        kind = "multiclass"
    elif activation == "sigmoid" and units == 1:
        kind = "binary"
    else:
        kind = "regression"
    return resolve_auto(train, TaskInfo(kind, (), num_classes=units or 0))


def _output_activation(model: keras.Model) -> str | None:
    tensor = model.outputs[0]
    for _ in range(1000):  # follow the first input back through merges and nested models
        operation = tensor._keras_history[0]
        if isinstance(operation, keras.Model):
            tensor = operation.outputs[0]
            continue
        config = operation.get_config()
        if config.get("activation") not in (None, "linear"):
            return config["activation"]
        inputs = history_node(tensor).arguments.keras_tensors
        if not inputs or not isinstance(operation, keras.layers.Layer):
            return None
        tensor = inputs[0]
    return None


@contextmanager
def _dtype_policy(name: str) -> Iterator[None]:
    # Defaults are compared under the policy the script runs with, so `dtype` is emitted
    # only for layers whose policy differs from it.
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
