"""core.training.compile: one compile/fit policy, instantiated by the trainer (its rendering as
source is tested with the script, in tests/core/export/test_training_code.py)."""

import inspect

import keras
import pytest

from core.spec import LR_SCHEDULES, METRICS, OPTIMIZERS, EarlyStoppingSpec, FineTuneSpec, SpecError, TrainSpec
from core.spec.tasks import TaskInfo
from core.training.compile import (
    LEARNING_RATES,
    METRIC_OBJECTS,
    OPTIMIZER_CALLS,
    KerasCall,
    Runtime,
    compile_model,
    fine_tune_learning_rate,
    fit_callbacks,
    instantiate,
    phases,
    resolve_auto,
    resolve_compile_args,
    uses_steps,
)
from core.training.loop import _check_settings

MULTICLASS = TaskInfo("multiclass", (6,), num_classes=3)
BINARY = TaskInfo("binary", (6,), num_classes=2)
REGRESSION = TaskInfo("regression", (6,))


def tiny_model(units=3, activation="softmax") -> keras.Model:
    inputs = keras.Input((6,))
    return keras.Model(inputs, keras.layers.Dense(units, activation=activation)(inputs))


def test_the_policy_covers_every_choice_the_spec_offers():
    assert set(OPTIMIZER_CALLS) == set(OPTIMIZERS)
    assert set(LEARNING_RATES) == set(LR_SCHEDULES)
    assert set(METRIC_OBJECTS) <= set(METRICS)


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("schedule", LR_SCHEDULES)
def test_compile_model_builds_each_optimizer_with_its_schedule(optimizer, schedule):
    model = tiny_model()
    train = TrainSpec(optimizer=optimizer, lr_schedule=schedule, learning_rate=0.01, epochs=4)
    compile_model(model, train, MULTICLASS, steps_per_epoch=5)
    config = model.optimizer.get_config()
    assert type(model.optimizer).__name__ == OPTIMIZER_CALLS[optimizer].path.rsplit(".", 1)[1]
    rate = config["learning_rate"]
    if schedule == "cosine":
        assert rate["class_name"] == "CosineDecay" and rate["config"]["decay_steps"] == 4 * 5
    elif schedule == "exponential":  # 10 % per epoch's worth of steps
        assert rate["class_name"] == "ExponentialDecay"
        assert (rate["config"]["decay_steps"], rate["config"]["decay_rate"]) == (5, 0.9)
    else:
        assert rate == pytest.approx(0.01)
    if optimizer == "sgd":
        assert config["momentum"] == 0.9


def test_a_weight_decay_of_zero_leaves_the_optimizers_default():
    adamw, adam = tiny_model(), tiny_model()
    compile_model(adamw, TrainSpec(optimizer="adamw"), MULTICLASS)
    compile_model(adam, TrainSpec(optimizer="adam"), MULTICLASS)
    keras_default = inspect.signature(keras.optimizers.AdamW).parameters["weight_decay"].default
    assert adamw.optimizer.get_config()["weight_decay"] == keras_default == 0.004
    assert adam.optimizer.get_config()["weight_decay"] is None
    decayed = tiny_model()
    compile_model(decayed, TrainSpec(optimizer="adam", weight_decay=0.01), MULTICLASS)
    assert decayed.optimizer.get_config()["weight_decay"] == 0.01


def test_a_step_schedule_needs_the_steps_per_epoch():
    with pytest.raises(ValueError, match="decays per step: pass steps_per_epoch"):
        compile_model(tiny_model(), TrainSpec(lr_schedule="cosine"), MULTICLASS)
    assert uses_steps(TrainSpec(lr_schedule="exponential")) and not uses_steps(TrainSpec())


def test_metric_objects_keep_their_short_names():
    model = tiny_model(1, "sigmoid")
    args = compile_model(model, TrainSpec(metrics=("auto", "auc", "precision", "recall")), BINARY)
    assert args["metrics"] == ["accuracy", "auc", "precision", "recall"]
    model.fit(keras.ops.ones((4, 6)), keras.ops.ones((4, 1)), verbose=0)
    assert {"auc", "precision", "recall"} <= {metric.name for metric in model.metrics[-1].metrics}


def test_callbacks_follow_the_schedule_and_early_stopping():
    callbacks = fit_callbacks(TrainSpec(lr_schedule="reduce_on_plateau", validation_split=0.0,
                                        early_stopping=EarlyStoppingSpec(monitor="loss", patience=4)))
    plateau, stopping = callbacks
    assert (type(plateau).__name__, plateau.monitor, plateau.factor, plateau.patience) == (
        "ReduceLROnPlateau", "loss", 0.5, 2)
    assert (type(stopping).__name__, stopping.monitor, stopping.patience) == ("EarlyStopping", "loss", 4)
    assert fit_callbacks(TrainSpec(lr_schedule="reduce_on_plateau"))[0].monitor == "val_loss"
    assert fit_callbacks(TrainSpec()) == []


def test_instantiate_multiplies_runtime_quantities_and_builds_nested_calls():
    call = KerasCall("optimizers.schedules.CosineDecay", (Runtime(("learning_rate",)),),
                     {"decay_steps": Runtime(("epochs", "steps_per_epoch"))})
    schedule = instantiate(call, {"learning_rate": 0.1, "epochs": 3, "steps_per_epoch": 7})
    assert schedule.get_config()["decay_steps"] == 21
    with pytest.raises(KeyError):
        instantiate(call, {"learning_rate": 0.1})


def test_phases_and_the_fine_tune_learning_rate():
    tuned = TrainSpec(epochs=5, learning_rate=0.01, fine_tune=FineTuneSpec(start_epoch=3, learning_rate_factor=0.1))
    assert phases(tuned) == [("train", 2), ("fine_tune", 5)]
    assert fine_tune_learning_rate(tuned) == 0.001  # not 0.0010000000000000002
    late = TrainSpec(epochs=2, fine_tune=FineTuneSpec(start_epoch=3))
    assert phases(late) == [("train", 2)]


def test_a_fine_tune_phase_from_the_first_epoch_is_refused():
    with pytest.raises(SpecError, match="'train.fine_tune.start_epoch' must be at least 2, received 1"):
        _check_settings(TrainSpec(fine_tune=FineTuneSpec(start_epoch=1)), MULTICLASS)


@pytest.mark.parametrize("task, train_spec, message", [
    (MULTICLASS, TrainSpec(metrics=("auc",)), "Metric 'auc' is computed for binary tasks only"),
    (REGRESSION, TrainSpec(metrics=("accuracy",)), "Metric 'accuracy' needs a classification task"),
    (MULTICLASS, TrainSpec(loss="mse"), "Loss 'mse' does not suit a multiclass task"),
    (MULTICLASS, TrainSpec(loss="binary_crossentropy"), "needs a binary task"),
])
def test_settings_that_do_not_suit_the_task(task, train_spec, message):
    with pytest.raises(ValueError, match=message):
        resolve_compile_args(train_spec, task)


def test_auto_resolves_loss_and_metrics_from_the_task():
    assert resolve_compile_args(TrainSpec(), MULTICLASS)["loss"] == "sparse_categorical_crossentropy"
    binary = resolve_compile_args(TrainSpec(metrics=("auto", "auc", "accuracy")), BINARY)
    assert binary["loss"] == "binary_crossentropy" and binary["metrics"] == ["accuracy", "auc"]
    regression = resolve_compile_args(TrainSpec(), REGRESSION)
    assert (regression["loss"], regression["metrics"]) == ("mse", ["mae"])
    # The script generator's guess resolves without the checks.
    assert resolve_auto(TrainSpec(metrics=("auc",)), MULTICLASS)["metrics"] == ["auc"]
