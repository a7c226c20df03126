"""How `stack.py` trains: compile_model(), unfreeze_for_fine_tuning() and the `__main__` block.

They render the compile/fit policy of `core.training.compile` as source, the same
description the trainer instantiates: the optimizer and its schedule, loss and metrics,
the callbacks, the phases and the fine-tune learning rate. Keyword arguments equal to
the Keras default are left out, so the script reads like a plain Keras example.

Example:
    >>> from core.export.source import flat
    >>> from core.training.compile import optimizer_call
    >>> flat(render(optimizer_call("sgd", 0.0, "constant")))
    'keras.optimizers.SGD(learning_rate=learning_rate, momentum=0.9)'
"""

from __future__ import annotations

import inspect
from typing import Any, Mapping

import keras

from core.export.source import Bracket, Expr, layout, literal, prefixed, quoted
from core.spec import TrainSpec
from core.training.compile import (
    STEP_QUANTITIES,
    KerasCall,
    Runtime,
    callback_calls,
    compile_kwargs,
    decay_epochs,
    fine_tune_learning_rate,
    fine_tunes,
    uses_steps,
)

# Where `python stack.py DATA.npz` saves what it trained: not model.keras, which sits next to
# the script in a run folder or an unpacked bundle and is the run's trained model.
TRAINED_FILE = "trained.keras"


def render(value: Any) -> Expr:
    """Source for a description: a call, a `Runtime` product of the script's names, a list
    or a literal."""
    if isinstance(value, KerasCall):
        target = _keras_attribute(value.path)
        items = [render(argument) for argument in value.args]
        items += [prefixed(f"{key}=", render(item)) for key, item in value.kwargs.items()
                  if not _is_default(target, key, item)]
        return Bracket(f"keras.{value.path}(", items)
    if isinstance(value, Runtime):
        return " * ".join(value.factors)
    if isinstance(value, list):
        return Bracket("[", [render(item) for item in value], "]")
    return literal(value)


def _keras_attribute(path: str) -> Any:
    target: Any = keras
    for part in path.split("."):
        target = getattr(target, part)
    return target


def _is_default(function: Any, key: str, value: Any) -> bool:
    """Whether `function(key=value)` says what leaving the argument out says."""
    parameter = inspect.signature(function).parameters.get(key)
    if parameter is None or parameter.default is parameter.empty or isinstance(value, (Runtime, KerasCall)):
        return False
    # True == 1 in Python, but a flag is not a count.
    return isinstance(value, bool) == isinstance(parameter.default, bool) and value == parameter.default


def compile_function(train: TrainSpec, compile_args: Mapping[str, Any]) -> str:
    """`compile_model(model, learning_rate=...)`: the run's optimizer, schedule, loss and metrics.

    Raises:
        ValueError: `compile_args` names an optimizer the policy does not know.
    """
    learning_rate = float(compile_args.get("learning_rate", train.learning_rate))
    arguments = compile_kwargs(train, {"loss": compile_args.get("loss"), "metrics": [], **compile_args})
    items = [prefixed(f"{key}=", render(value)) for key, value in arguments.items()
             if not _is_default(keras.Model.compile, key, value)]
    steps = "".join(f", {name}=1" for name in STEP_QUANTITIES) if uses_steps(train) else ""
    return "\n".join([
        f"def compile_model(model, learning_rate={learning_rate!r}{steps}):",
        '    """Compile with the run\'s optimizer, learning rate, loss and metrics."""',
        *layout(Bracket("model.compile(", items), 4),
        "    return model",
    ])


def main_block(train: TrainSpec, adapt: bool, one_hot_classes: int = 0, unfreezes: bool = False) -> str:
    """The `__main__` block: load the NPZ, compile, fit, in the run's phases; the fine-tune
    phase at its smaller learning rate and, with `unfreezes`, after unfreeze_for_fine_tuning()."""
    fit_items = [
        "x", "y", f"batch_size={train.batch_size}", f"validation_split={train.validation_split!r}",
    ]
    callbacks = [render(call) for call in callback_calls(train)]
    if callbacks:
        fit_items.append(prefixed("callbacks=", Bracket("[", callbacks, "]")))
    step_schedule = uses_steps(train)

    def compile_call(done: int, learning_rate: float | None = None) -> str:
        args = ["model"] + ([f"learning_rate={learning_rate!r}"] if learning_rate is not None else [])
        if step_schedule:
            args += [f"epochs={decay_epochs(train, done)}", "steps_per_epoch=steps_per_epoch"]
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
    if fine_tunes(train):
        tune = train.fine_tune
        frozen_epochs = tune.start_epoch - 1
        if frozen_epochs:
            lines += [compile_call(0), *fit_call(frozen_epochs)]
        if unfreezes:
            lines += [
                f"        # Fine-tune from epoch {tune.start_epoch}: the top layers of the frozen members",
                f"        # train too, at the learning rate x {tune.learning_rate_factor!r}.",
                "        unfreeze_for_fine_tuning(model)",
            ]
        else:  # nothing was frozen: the fine-tune phase only lowers the learning rate
            lines.append(f"        # From epoch {tune.start_epoch}: the learning rate x {tune.learning_rate_factor!r}.")
        lines += [
            compile_call(frozen_epochs, fine_tune_learning_rate(train)),
            *fit_call(train.epochs, initial_epoch=frozen_epochs),
        ]
    else:
        lines += [compile_call(0), *fit_call(train.epochs)]
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


def unfreeze_function(train: TrainSpec, trainable: Mapping[str, list[str]]) -> str:
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
