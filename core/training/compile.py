"""The compile/fit policy, written once: optimizers, learning-rate schedules, loss, metrics,
callbacks and the phases of a run.

The policy is a description made of plain data (`KerasCall`s whose values are literals,
`Runtime` quantities or further calls), so it has two readers: the trainer instantiates it
(`compile_model`, `fit_callbacks`), and the script generator renders the same description
as source for `stack.py` (`core.export.training_code`). A change here changes both.

Example:
    >>> call = optimizer_call("sgd", weight_decay=0.0, lr_schedule="constant")
    >>> call.path, call.kwargs["momentum"]
    ('optimizers.SGD', 0.9)
    >>> instantiate(call, {"learning_rate": 0.01}).get_config()["momentum"]
    0.9
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import keras

from core.spec import FineTuneSpec, TrainSpec
from core.spec.events import PHASE_FINE_TUNE, PHASE_TRAIN
from core.spec.tasks import TaskInfo

# ---- the description ----------------------------------------------------------------------


@dataclass(frozen=True)
class Runtime:
    """A number known only when a phase compiles: the product of the named quantities.

    The trainer passes the numbers; the generated compile_model() takes them as arguments,
    so the script writes the names (`epochs * steps_per_epoch`).
    """

    factors: tuple[str, ...]


@dataclass(frozen=True)
class KerasCall:
    """`keras.<path>(*args, **kwargs)`; values are literals, `Runtime`s or `KerasCall`s."""

    path: str  # below `keras`: "optimizers.SGD", "optimizers.schedules.CosineDecay"
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)


LEARNING_RATE = Runtime(("learning_rate",))
# Quantities a step schedule needs: the epochs it decays over and the steps in one epoch.
STEP_QUANTITIES = ("epochs", "steps_per_epoch")

# Per optimizer (core.spec.OPTIMIZERS): the Keras class and the arguments StackLab always
# passes (SGD with the usual momentum of 0.9). A weight decay of 0 leaves each optimizer
# its own default: none, except AdamW's 0.004 (Keras's default for AdamW).
OPTIMIZER_CALLS: dict[str, KerasCall] = {
    "adam": KerasCall("optimizers.Adam"),
    "adamw": KerasCall("optimizers.AdamW"),
    "sgd": KerasCall("optimizers.SGD", kwargs={"momentum": 0.9}),
    "rmsprop": KerasCall("optimizers.RMSprop"),
}
# Per schedule (core.spec.LR_SCHEDULES): the learning rate the optimizer gets.
LEARNING_RATES: dict[str, Any] = {
    "constant": LEARNING_RATE,
    "reduce_on_plateau": LEARNING_RATE,  # a callback lowers it (`callback_calls`)
    # Down to 0 over the epochs left when the phase compiles.
    "cosine": KerasCall("optimizers.schedules.CosineDecay", (LEARNING_RATE,),
                        {"decay_steps": Runtime(STEP_QUANTITIES)}),
    # 10 % lower after each epoch's worth of steps.
    "exponential": KerasCall("optimizers.schedules.ExponentialDecay", (LEARNING_RATE,),
                             {"decay_steps": Runtime(("steps_per_epoch",)), "decay_rate": 0.9}),
}
# Metrics compiled as objects, named so their logs keep these short names ("auc", not "auc_1").
METRIC_OBJECTS: dict[str, KerasCall] = {
    "auc": KerasCall("metrics.AUC", kwargs={"name": "auc"}),
    "precision": KerasCall("metrics.Precision", kwargs={"name": "precision"}),
    "recall": KerasCall("metrics.Recall", kwargs={"name": "recall"}),
    "rmse": KerasCall("metrics.RootMeanSquaredError", kwargs={"name": "rmse"}),
}
# lr_schedule="reduce_on_plateau": halve the rate after 2 epochs without improvement.
REDUCE_ON_PLATEAU = {"factor": 0.5, "patience": 2}
REGRESSION_LOSSES = ("mse", "mae", "huber")
# Losses that want one-hot labels: the trainer and the script turn integer labels into them.
ONE_HOT_LOSSES = ("categorical_crossentropy",)
BINARY_ONLY_METRICS = ("auc", "precision", "recall")


def optimizer_call(optimizer: str, weight_decay: float, lr_schedule: str) -> KerasCall:
    """The optimizer with its learning-rate schedule, as a description.

    Raises:
        ValueError: an optimizer or schedule this policy does not know.
    """
    if optimizer not in OPTIMIZER_CALLS:
        raise ValueError(f"Unknown optimizer {optimizer!r}. Expected one of {sorted(OPTIMIZER_CALLS)}.")
    if lr_schedule not in LEARNING_RATES:
        raise ValueError(f"Unknown lr_schedule {lr_schedule!r}. Expected one of {sorted(LEARNING_RATES)}.")
    base = OPTIMIZER_CALLS[optimizer]
    kwargs = {"learning_rate": LEARNING_RATES[lr_schedule], **base.kwargs}
    if weight_decay:
        kwargs["weight_decay"] = float(weight_decay)
    return KerasCall(base.path, base.args, kwargs)


def compile_kwargs(train_spec: TrainSpec, compile_args: Mapping[str, Any]) -> dict[str, Any]:
    """`model.compile`'s keyword arguments, as a description.

    Args:
        train_spec: the schedule and `jit_compile` come from here.
        compile_args: optimizer, weight_decay, loss and metrics with "auto" resolved
            (`resolve_compile_args`); a missing optimizer or weight decay is the spec's.
            A regression model that outputs the target's units also has loss_weight (and
            huber_delta for "huber"): `standardized_loss`.
    """
    optimizer = optimizer_call(compile_args.get("optimizer", train_spec.optimizer),
                               compile_args.get("weight_decay", train_spec.weight_decay), train_spec.lr_schedule)
    loss: Any = compile_args["loss"]
    if compile_args.get("huber_delta") is not None:
        loss = KerasCall("losses.Huber", kwargs={"delta": compile_args["huber_delta"]})
    kwargs = {
        "optimizer": optimizer,
        "loss": loss,
        "metrics": [METRIC_OBJECTS.get(name, name) for name in compile_args["metrics"]],
        "jit_compile": train_spec.jit_compile,
    }
    if compile_args.get("loss_weight") is not None:
        kwargs["loss_weights"] = [compile_args["loss_weight"]]
    return kwargs


def callback_calls(train_spec: TrainSpec) -> list[KerasCall]:
    """The Keras callbacks `fit` gets for these settings (the schedule's, early stopping)."""
    calls = []
    if train_spec.lr_schedule == "reduce_on_plateau":
        monitor = "val_loss" if train_spec.validation_split > 0 else "loss"
        calls.append(KerasCall("callbacks.ReduceLROnPlateau", kwargs={"monitor": monitor, **REDUCE_ON_PLATEAU}))
    stopping = train_spec.early_stopping
    if stopping is not None:
        calls.append(KerasCall("callbacks.EarlyStopping", kwargs={
            "monitor": stopping.monitor, "patience": stopping.patience, "min_delta": stopping.min_delta,
            "restore_best_weights": stopping.restore_best_weights}))
    return calls


def runtime_names(value: Any) -> set[str]:
    """The `Runtime` quantities a description uses (what compile_model() must be given)."""
    if isinstance(value, Runtime):
        return set(value.factors)
    if isinstance(value, KerasCall):
        return runtime_names(list(value.args) + list(value.kwargs.values()))
    if isinstance(value, Mapping):
        return runtime_names(list(value.values()))
    if isinstance(value, (list, tuple)):
        return set().union(*(runtime_names(item) for item in value))
    return set()


def uses_steps(train_spec: TrainSpec) -> bool:
    """Whether the learning-rate schedule decays per step (needs epochs and steps per epoch)."""
    return bool(runtime_names(LEARNING_RATES[train_spec.lr_schedule]) & set(STEP_QUANTITIES))


# ---- loss and metrics -----------------------------------------------------------------------


def resolve_auto(train_spec: TrainSpec, task: TaskInfo) -> dict[str, Any]:
    """Optimizer, learning rate, weight decay, loss and metrics with every "auto" replaced
    from the task (metrics deduplicated, in order); no check that they suit the task."""
    metrics: list[str] = []
    for name in train_spec.metrics:
        for resolved in task.default_metrics if name == "auto" else (name,):
            if resolved not in metrics:
                metrics.append(resolved)
    return {
        "optimizer": train_spec.optimizer,
        "learning_rate": train_spec.learning_rate,
        "weight_decay": train_spec.weight_decay,
        "loss": task.default_loss if train_spec.loss == "auto" else train_spec.loss,
        "metrics": metrics,
    }


def resolve_compile_args(train_spec: TrainSpec, task: TaskInfo) -> dict[str, Any]:
    """Optimizer, learning rate, loss and metrics with every "auto" resolved from the task.

    Raises:
        ValueError: a loss or metric does not suit the task (e.g. auc on 10 classes).
    """
    args = resolve_auto(train_spec, task)
    loss = args["loss"]
    if task.is_classification == (loss in REGRESSION_LOSSES):
        raise ValueError(
            f"Loss '{loss}' does not suit a {task.kind} task. Use loss 'auto' "
            f"(= '{task.default_loss}')."
        )
    if loss == "binary_crossentropy" and task.kind != "binary":
        raise ValueError(f"Loss 'binary_crossentropy' needs a binary task, but this one is {task.kind} "
                         f"with {task.num_classes} classes. Use 'sparse_categorical_crossentropy'.")
    for resolved in args["metrics"]:
        if resolved in BINARY_ONLY_METRICS and task.kind != "binary":
            raise ValueError(f"Metric '{resolved}' is computed for binary tasks only; this task is "
                             f"{task.kind}. Use 'accuracy', or 'auto'.")
        if resolved == "accuracy" and not task.is_classification:
            raise ValueError("Metric 'accuracy' needs a classification task; for regression use 'mae', "
                             "'mse' or 'rmse'.")
    return args


# ---- phases -----------------------------------------------------------------------------------


def fine_tunes(train_spec: TrainSpec) -> bool:
    """Whether the run has a fine-tune phase: one that starts after the last epoch is skipped."""
    return train_spec.fine_tune is not None and train_spec.fine_tune.start_epoch <= train_spec.epochs


def check_fine_tune(tune: FineTuneSpec) -> None:
    """Raise SpecError when the fine-tune phase would leave no epoch on the frozen base.

    A spec built in code is not range-checked; FineTuneSpec's own range is the rule.
    """
    FineTuneSpec.range_of("start_epoch").check(tune.start_epoch, "train.fine_tune.start_epoch")


def phases(train_spec: TrainSpec) -> list[tuple[str, int]]:
    """(phase, last epoch) pairs; epochs are 1-based and inclusive."""
    if not fine_tunes(train_spec):
        return [(PHASE_TRAIN, train_spec.epochs)]
    return [(PHASE_TRAIN, train_spec.fine_tune.start_epoch - 1), (PHASE_FINE_TUNE, train_spec.epochs)]


def fine_tune_learning_rate(train_spec: TrainSpec) -> float:
    """The fine-tune phase's learning rate: the run's times the factor (0.001, not
    0.0010000000000000002, so the script reads as it trains)."""
    return float(f"{train_spec.learning_rate * train_spec.fine_tune.learning_rate_factor:.12g}")


def decay_epochs(train_spec: TrainSpec, done: int) -> int:
    """The epochs a step schedule decays over when a phase compiles after `done` epochs:
    all those left in the run (the first phase decays over the fine-tune phase too)."""
    return max(train_spec.epochs - done, 1)


# ---- the trainer's reading ------------------------------------------------------------------


def instantiate(value: Any, quantities: Mapping[str, float]) -> Any:
    """The objects a description stands for, with `quantities` for its `Runtime` values.

    Raises:
        KeyError: a `Runtime` quantity is missing from `quantities`.
    """
    if isinstance(value, Runtime):
        return math.prod(quantities[name] for name in value.factors)
    if isinstance(value, KerasCall):
        target: Any = keras
        for part in value.path.split("."):
            target = getattr(target, part)
        return target(*(instantiate(a, quantities) for a in value.args),
                      **{k: instantiate(v, quantities) for k, v in value.kwargs.items()})
    if isinstance(value, Mapping):
        return {key: instantiate(item, quantities) for key, item in value.items()}
    if isinstance(value, list):
        return [instantiate(item, quantities) for item in value]
    return value


def standardized_loss(loss: str, target) -> dict[str, float]:
    """The loss weight (and Huber delta) that make a model outputting the target's units train
    on the standardized scale: weight * loss(y, pred) == loss((y - mean) / std, (pred - mean) / std).

    Exact for one target: mse / variance, mae / std, Huber(delta=std) / variance. With
    several targets the weight uses their mean variance (the same scale for all of them).
    Why this way: the model's outputs (and so every metric, early stopping's too) stay in
    the target's units, the gradients are those of standardized training, and it is plain
    `compile(loss_weights=...)`, which the generated stack.py renders as well.

    Args:
        loss: a regression loss name ("mse", "mae", "huber").
        target: a `core.data.encoding.TargetScaling` (mean, variance per target).

    Returns:
        {"loss_weight": w} plus {"huber_delta": std} for "huber": entries of compile_args.
    """
    variance = float(sum(target.variance) / len(target.variance))
    std = math.sqrt(variance)
    if loss == "mae":
        return {"loss_weight": 1.0 / std}
    if loss == "huber":
        return {"loss_weight": 1.0 / variance, "huber_delta": std}
    return {"loss_weight": 1.0 / variance}


def compile_model(model: keras.Model, train_spec: TrainSpec, task: TaskInfo, *,
                  learning_rate: float | None = None, epochs: int | None = None,
                  steps_per_epoch: int | None = None, target=None) -> dict[str, Any]:
    """Compile `model` from the spec, as the generated script's compile_model() does.

    Args:
        learning_rate: the phase's rate; the spec's by default.
        epochs: the epochs a step schedule decays over; all of the run's by default.
        steps_per_epoch: batches per epoch; needed by a step schedule (cosine, exponential).
        target: for regression, the targets' `TargetScaling`: the model outputs the
            target's units (its last layer de-standardizes), and the loss is weighted to
            the standardized scale (`standardized_loss`), so metrics read in the target's
            units while the loss trains on a sane scale.

    Returns:
        The resolved compile arguments (`resolve_compile_args`) with this learning rate,
        and loss_weight / huber_delta when `target` is given.

    Raises:
        ValueError: the loss or metrics do not suit the task, or a step schedule is
            missing `steps_per_epoch`.
    """
    args = resolve_compile_args(train_spec, task)
    if target is not None and not task.is_classification:
        args.update(standardized_loss(args["loss"], target))
    rate = train_spec.learning_rate if learning_rate is None else learning_rate
    if steps_per_epoch is None and uses_steps(train_spec):
        raise ValueError(f"lr_schedule '{train_spec.lr_schedule}' decays per step: pass steps_per_epoch "
                         f"(batches per epoch) to compile_model.")
    quantities = {"learning_rate": rate, "epochs": epochs or train_spec.epochs, "steps_per_epoch": steps_per_epoch}
    model.compile(**instantiate(compile_kwargs(train_spec, args), quantities))
    return {**args, "learning_rate": rate}


def fit_callbacks(train_spec: TrainSpec) -> list[keras.callbacks.Callback]:
    """The Keras callbacks of `callback_calls`, instantiated."""
    return [instantiate(call, {}) for call in callback_calls(train_spec)]
