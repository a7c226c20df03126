"""`stack.py`: a standalone Keras script, in the style of plain Keras examples, that rebuilds a stack.

The script holds one `build_<member>()` per member that emits the member's layers
literally with the functional API (see `core.export.graph`), a `load_<member>()` for
members shipped as model files, a `build_model()` that wires them exactly like the
trained stack and re-applies every `trainable=False`, a `compile_model()` built like
`core.training.loop` compiles, an `adapt_preprocessing()` where Normalization layers learn
from the data, an `unfreeze_for_fine_tuning()` when the run had a fine-tune phase, and a
`__main__` block that trains on an NPZ file, in the run's phases.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Any, Iterator, Mapping

import keras

from core.export.graph import ScriptWriter, graph_nodes, history_node
from core.export.source import (
    Bracket, Expr, get_layer_call, keyword_items, layout, literal, prefixed, prose, quoted,
)
from core.spec import StackSpec, TrainSpec
from core.spec.tasks import TaskInfo
from core.build.trainability import apply_trainability, child_layers, iter_leaves, unfreeze_top

OPTIMIZER_CLASSES = {"adam": "Adam", "adamw": "AdamW", "sgd": "SGD", "rmsprop": "RMSprop"}
# Metrics that core.training.loop compiles as objects, so their logs keep these short names.
METRIC_OBJECTS = {
    "auc": 'keras.metrics.AUC(name="auc")',
    "precision": 'keras.metrics.Precision(name="precision")',
    "recall": 'keras.metrics.Recall(name="recall")',
    "rmse": 'keras.metrics.RootMeanSquaredError(name="rmse")',
}
# Learning-rate schedules that decay per step: compile_model() needs the number of steps,
# which the script works out with math.ceil.
STEP_SCHEDULES = ("cosine", "exponential")
# Where `python stack.py DATA.npz` saves what it trained: not model.keras, which sits next to
# the script in a run folder or an unpacked bundle and is the run's trained model.
TRAINED_FILE = "trained.keras"


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
            "auto" resolved (`core.training.loop.resolve_compile_args`); by default they come
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
        if _fine_tunes(spec.train):
            # A fine-tuned stack comes back with its top layers unfrozen: the script builds it
            # as it started, and unfreezes at the fine-tune epoch like the run did.
            apply_trainability(model, spec)
        with _dtype_policy("mixed_float16" if spec.train.mixed_precision else "float32"):
            writer = ScriptWriter(dict(member_files))
            writer.model_function(model, top_level=True, mixed_precision=spec.train.mixed_precision)
        frozen_at_start = {layer.name for layer in model.layers
                           if isinstance(layer, keras.Model) and not layer.trainable}
        if _fine_tunes(spec.train):
            fine_tune_trainable = _fine_tune_trainable(model, spec)
    needs_math = spec.train.lr_schedule in STEP_SCHEDULES
    imports = ("import math\n" if needs_math else "") + "import sys\n"
    imports += "from pathlib import Path\n" if member_files else ""
    imports += "\nimport keras\nimport numpy as np"
    if member_files:
        imports += "\n\nHERE = Path(__file__).resolve().parent"
    adapted = _adapted_on_input(model, model, "model", set(member_files))
    definitions = writer.functions + [_compile_function(spec.train, compile_args)]
    if adapted:
        definitions.append("\n".join([
            "def adapt_preprocessing(model, x):",
            '    """Adapt Normalization layers to the training inputs, as the run did."""',
            *[f"    {path}.adapt(x)" for path in adapted],
        ]))
    if fine_tune_trainable:
        definitions += [LEAVES_FUNCTION, _unfreeze_function(spec.train, fine_tune_trainable)]
    one_hot = model.outputs[0].shape[-1] if compile_args.get("loss") == "categorical_crossentropy" else 0
    definitions.append(_main_block(spec.train, adapt=bool(adapted), one_hot_classes=one_hot,
                                   fine_tune=_fine_tunes(spec.train), unfreezes=bool(fine_tune_trainable)))
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


def _compile_function(train: TrainSpec, compile_args: Mapping[str, Any]) -> str:
    """`compile_model(model)`, built like core.training.loop.make_optimizer builds it."""
    optimizer = compile_args.get("optimizer", train.optimizer)
    if optimizer not in OPTIMIZER_CLASSES:
        raise ValueError(
            f"Unknown optimizer {optimizer!r} in compile_args. "
            f"Expected one of {sorted(OPTIMIZER_CLASSES)}."
        )
    learning_rate = float(compile_args.get("learning_rate", train.learning_rate))
    if train.lr_schedule == "cosine":
        rate: Expr = Bracket("keras.optimizers.schedules.CosineDecay(", [
            "learning_rate", "decay_steps=epochs * steps_per_epoch"])
    elif train.lr_schedule == "exponential":
        # Decays by 10 % over each epoch's worth of steps.
        rate = Bracket("keras.optimizers.schedules.ExponentialDecay(", [
            "learning_rate", "decay_steps=steps_per_epoch", "decay_rate=0.9"])
    else:
        rate = "learning_rate"
    optimizer_args = [prefixed("learning_rate=", rate)]
    if optimizer == "sgd":
        optimizer_args.append("momentum=0.9")
    weight_decay = compile_args.get("weight_decay", train.weight_decay)
    if weight_decay and not (optimizer == "adamw" and weight_decay == 0.004):
        optimizer_args.append(f"weight_decay={float(weight_decay)!r}")
    metrics = [METRIC_OBJECTS.get(name, literal(name))
               for name in compile_args.get("metrics", [])]
    compile_items = [
        prefixed("optimizer=", Bracket(f"keras.optimizers.{OPTIMIZER_CLASSES[optimizer]}(",
                                       optimizer_args)),
        prefixed("loss=", literal(compile_args.get("loss"))),
        prefixed("metrics=", Bracket("[", metrics, "]")),
    ]
    if train.jit_compile:
        compile_items.append("jit_compile=True")
    needs_steps = train.lr_schedule in STEP_SCHEDULES
    signature = f"model, learning_rate={learning_rate!r}" + (", epochs=1, steps_per_epoch=1" if needs_steps else "")
    return "\n".join([
        f"def compile_model({signature}):",
        '    """Compile with the run\'s optimizer, learning rate, loss and metrics."""',
        *layout(Bracket("model.compile(", compile_items), 4),
        "    return model",
    ])


def _main_block(train: TrainSpec, adapt: bool, one_hot_classes: int = 0, fine_tune: bool = False,
                unfreezes: bool = False) -> str:
    """The `__main__` block: load the NPZ, compile, fit; with `fine_tune`, two phases, the second
    at the smaller learning rate and, with `unfreezes`, after unfreeze_for_fine_tuning()."""
    fit_items = [
        "x", "y", f"batch_size={train.batch_size}", f"validation_split={train.validation_split!r}",
    ]
    # The callbacks core.training.loop adds for these settings.
    callbacks: list[Expr] = []
    if train.lr_schedule == "reduce_on_plateau":
        monitor = "val_loss" if train.validation_split > 0 else "loss"
        callbacks.append(Bracket("keras.callbacks.ReduceLROnPlateau(", [
            *([f"monitor={quoted(monitor)}"] if monitor != "val_loss" else []),
            "factor=0.5", "patience=2"]))
    stopping = train.early_stopping
    if stopping is not None:
        options = {"monitor": stopping.monitor, "patience": stopping.patience,
                   "min_delta": stopping.min_delta,
                   "restore_best_weights": stopping.restore_best_weights}
        keras_defaults = {"monitor": "val_loss", "patience": 0, "min_delta": 0,
                          "restore_best_weights": False}
        callbacks.append(Bracket("keras.callbacks.EarlyStopping(", keyword_items(
            {key: value for key, value in options.items() if value != keras_defaults[key]})))
    if callbacks:
        fit_items.append(prefixed("callbacks=", Bracket("[", callbacks, "]")))
    step_schedule = train.lr_schedule in STEP_SCHEDULES

    def compile_call(epochs: int, learning_rate: float | None = None) -> str:
        """core.training.loop decays a step schedule over the epochs left in the phase."""
        args = ["model"] + ([f"learning_rate={learning_rate!r}"] if learning_rate is not None else [])
        if step_schedule:
            args += [f"epochs={epochs}", "steps_per_epoch=steps_per_epoch"]
        return f"        compile_model({', '.join(args)})"

    def fit_call(epochs: int, initial_epoch: int = 0) -> list[str]:
        first = [f"initial_epoch={initial_epoch}"] if initial_epoch else []
        return layout(Bracket("model.fit(", fit_items[:2] + first + [f"epochs={epochs}"] + fit_items[2:]), 8)

    lines = [
        'if __name__ == "__main__":',
        f"    keras.utils.set_random_seed({train.seed})",
        "    model = build_model()",
        "    if len(sys.argv) < 2:",
        "        model.summary()",
        "    else:",
        "        with np.load(sys.argv[1], allow_pickle=False) as data:",
        '            x, y = data["x"], data["y"]',
    ]
    if one_hot_classes:  # categorical cross-entropy wants one-hot labels, as the run used
        lines.append(f"        y = keras.utils.to_categorical(y, {one_hot_classes})")
    if adapt:
        lines.append("        adapt_preprocessing(model, x)")
    if step_schedule:
        lines += [
            f"        train_size = int(len(x) * (1 - {train.validation_split!r}))",
            f"        steps_per_epoch = max(1, math.ceil(train_size / {train.batch_size}))",
        ]
    if fine_tune:
        tune = train.fine_tune
        frozen_epochs = tune.start_epoch - 1
        rate = float(f"{train.learning_rate * tune.learning_rate_factor:.12g}")  # 0.001, not 0.0010000000000000002
        if frozen_epochs:
            lines += [compile_call(train.epochs), *fit_call(frozen_epochs)]
        if unfreezes:
            lines += [
                f"        # Fine-tune from epoch {tune.start_epoch}: the top layers of the frozen members",
                f"        # train too, at the learning rate x {tune.learning_rate_factor!r}.",
                "        unfreeze_for_fine_tuning(model)",
            ]
        else:  # nothing was frozen: the fine-tune phase only lowers the learning rate
            lines.append(f"        # From epoch {tune.start_epoch}: the learning rate x {tune.learning_rate_factor!r}.")
        lines += [
            compile_call(train.epochs - frozen_epochs, rate),
            *fit_call(train.epochs, initial_epoch=frozen_epochs),
        ]
    else:
        lines += [compile_call(train.epochs), *fit_call(train.epochs)]
    lines += [f'        model.save("{TRAINED_FILE}")', f'        print("Saved {TRAINED_FILE}")']
    return "\n".join(lines)


# The script's own walk over a member's layers, with the paths core.build.trainability uses.
LEAVES_FUNCTION = '''def leaves(layer, prefix=""):
    """(path, layer) of each layer below `layer` but models: ("block/conv", conv)..."""
    for child in layer.layers:
        if isinstance(child, keras.Model):
            yield from leaves(child, f"{prefix}{child.name}/")
        elif not isinstance(child, keras.layers.InputLayer):
            yield f"{prefix}{child.name}", child'''


def _unfreeze_function(train: TrainSpec, trainable: Mapping[str, list[str]]) -> str:
    """`unfreeze_for_fine_tuning(model)`: per member, the layers that train in the fine-tune phase."""
    tune = train.fine_tune
    count = tune.unfreeze_top_layers
    top = {0: "every layer", 1: "the top layer with weights"}.get(count, f"the top {count} layers with weights")
    table = Bracket("{", [prefixed(f"{quoted(name)}: ", Bracket("[", [quoted(path) for path in paths], "]"))
                          for name, paths in trainable.items()], "}")
    return "\n".join([
        "def unfreeze_for_fine_tuning(model):",
        f'    """Fine-tune phase: unfreeze {top} of each frozen member.',
        *([] if tune.unfreeze_batchnorm else ["", "    BatchNormalization layers stay frozen (in inference mode)."]),
        '    """',
        *layout(prefixed("trainable = ", table), 4),
        "    for name, paths in trainable.items():",
        "        member = model.get_layer(name)",
        "        member.trainable = True  # and all below it; all but `paths` freeze again",
        "        for path, layer in leaves(member):",
        "            layer.trainable = path in paths",
    ])


def _fine_tunes(train: TrainSpec) -> bool:
    """Whether training has a fine-tune phase (core.training.loop skips one that starts after the last epoch)."""
    return train.fine_tune is not None and train.fine_tune.start_epoch <= train.epochs


def _fine_tune_trainable(model: keras.Model, spec: StackSpec) -> dict[str, list[str]]:
    """Per member that the fine-tune phase changes, the paths (below the member) of its layers
    that train afterwards: unfreezes `model` as core.training.loop does and reads it back."""
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
    task = TaskInfo(kind, (), num_classes=units or 0)
    metrics: list[str] = []
    for metric in train.metrics:
        for name in task.default_metrics if metric == "auto" else (metric,):
            metrics += [name] if name not in metrics else []
    return {
        "optimizer": train.optimizer,
        "learning_rate": train.learning_rate,
        "weight_decay": train.weight_decay,
        "loss": task.default_loss if train.loss == "auto" else train.loss,
        "metrics": metrics,
    }


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
