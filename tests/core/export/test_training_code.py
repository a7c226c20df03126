"""core.export.training_code: stack.py compiles and fits exactly like the trainer did.

Both read one policy (core.training.compile); these tests hold the two readings side by
side: the compile config of the trainer's model against the one the script's
compile_model() gives, and each fit call of a real run against the script's.
"""

import runpy
import sys

import keras
import numpy as np
import pytest

from core.data import Dataset
from core.export.artifacts import generate_script
from core.spec import LR_SCHEDULES, OPTIMIZERS, EarlyStoppingSpec, FineTuneSpec, MemberSpec, StackSpec, TrainSpec
from core.spec.tasks import TaskInfo
from core.training.compile import compile_model, uses_steps
from core.training.loop import train
from tests.core.export.export_stacks import TASK, import_script, sequential_stack

BINARY = TaskInfo("binary", (6,), num_classes=2)


def compiled(model: keras.Model) -> dict:
    """The model's compile config, but the optimizer's name (Keras numbers it per process: adam_1)."""
    config = model.get_compile_config()
    config["optimizer"]["config"].pop("name")
    return config


def binary_stack():
    inputs = keras.Input((6,), name="input")
    member_inputs = keras.Input((6,), name="encoder_input")
    encoder = keras.Model(member_inputs, keras.layers.Dense(4, activation="relu", name="encoder_dense")(member_inputs),
                          name="encoder")
    outputs = keras.layers.Dense(1, activation="sigmoid", name="output")(encoder(inputs))
    return keras.Model(inputs, outputs, name="binary"), StackSpec(name="binary", members=(MemberSpec("encoder"),))


@pytest.mark.parametrize("optimizer", OPTIMIZERS)
@pytest.mark.parametrize("schedule", LR_SCHEDULES)
@pytest.mark.parametrize("weight_decay", [0.0, 0.01])
def test_the_scripts_compile_model_compiles_like_the_trainer(optimizer, schedule, weight_decay, tmp_path):
    model, spec = sequential_stack()
    train_spec = TrainSpec(optimizer=optimizer, lr_schedule=schedule, weight_decay=weight_decay, learning_rate=0.02,
                           epochs=4)
    spec = spec.replace(train=train_spec)
    compile_args = compile_model(model, train_spec, TASK, epochs=3, steps_per_epoch=5)
    path = tmp_path / "stack.py"
    path.write_text(generate_script(model, spec, compile_args=compile_args))
    module = import_script(path)
    rebuilt = module.build_model()
    module.compile_model(rebuilt, **({"epochs": 3, "steps_per_epoch": 5} if uses_steps(train_spec) else {}))
    assert compiled(rebuilt) == compiled(model)


def test_metric_objects_and_jit_compile_are_compiled_alike(tmp_path):
    model, spec = binary_stack()
    train_spec = TrainSpec(metrics=("auto", "auc", "precision", "recall"), jit_compile=True)
    compile_args = compile_model(model, train_spec, BINARY)
    path = tmp_path / "stack.py"
    path.write_text(generate_script(model, spec.replace(train=train_spec), compile_args=compile_args))
    module = import_script(path)
    rebuilt = module.build_model()
    module.compile_model(rebuilt)
    assert compiled(rebuilt) == compiled(model)
    assert 'keras.metrics.AUC(name="auc")' in path.read_text()


def test_the_script_keeps_the_runs_jit_setting_where_keras_would_choose_xla(tmp_path, monkeypatch):
    # jit_compile="auto" (Keras's default) turns XLA on with a GPU, or on JAX: a script that
    # leaves it out would compile differently from the run there.
    monkeypatch.setattr(keras.Model, "_resolve_auto_jit_compile", lambda self: True)
    model, spec = sequential_stack()
    train_spec = TrainSpec()
    compile_args = compile_model(model, train_spec, TASK)
    path = tmp_path / "stack.py"
    path.write_text(generate_script(model, spec.replace(train=train_spec), compile_args=compile_args))
    module = import_script(path)
    rebuilt = module.build_model()
    module.compile_model(rebuilt)
    assert rebuilt.get_compile_config()["jit_compile"] is model.get_compile_config()["jit_compile"] is False


def _fit_recorder(monkeypatch) -> list[dict]:
    """Record what each keras.Model.fit call is given and how the model is compiled then."""
    calls: list[dict] = []
    real_fit = keras.Model.fit

    def recording_fit(self, *args, **kwargs):
        callbacks = [callback for callback in kwargs.get("callbacks") or []
                     if type(callback).__module__.startswith("keras.")]  # the trainer's own aside
        calls.append({
            "epochs": kwargs["epochs"], "initial_epoch": kwargs.get("initial_epoch", 0),
            "batch_size": kwargs["batch_size"], "compile": compiled(self),
            "label_shape": np.shape(args[1])[1:],  # (3,): one-hot labels for categorical cross-entropy
            "trainable_weights": len(self.trainable_weights),
            "callbacks": [(type(c).__name__, {key: value for key, value in vars(c).items()
                                               if isinstance(value, (bool, int, float, str))})
                          for c in callbacks],
        })
        return real_fit(self, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", recording_fit)
    return calls


TRANSFER = dict(
    name="transfer", mode="transfer",
    members=(MemberSpec("base", template="mlp", params={"hidden_units": [8, 8]}),),
    head=MemberSpec("head", template="dense_head", params={"hidden_units": []}),
)


@pytest.mark.parametrize("train_spec", [
    # The fine-tune phase decays an exponential schedule per epoch's worth of steps, too.
    TrainSpec(epochs=3, batch_size=8, validation_split=0.25, optimizer="sgd", lr_schedule="exponential",
              learning_rate=0.02, early_stopping=EarlyStoppingSpec(patience=10),
              fine_tune=FineTuneSpec(start_epoch=2, unfreeze_top_layers=1, learning_rate_factor=0.3)),
    TrainSpec(epochs=3, batch_size=8, validation_split=0.25, optimizer="adamw", lr_schedule="cosine",
              fine_tune=FineTuneSpec(start_epoch=3)),
    TrainSpec(epochs=2, batch_size=8, validation_split=0.0, optimizer="rmsprop", lr_schedule="reduce_on_plateau",
              loss="categorical_crossentropy",
              early_stopping=EarlyStoppingSpec(monitor="loss", patience=10, min_delta=0.001)),
], ids=["exponential_fine_tune", "cosine_fine_tune", "plateau"])
def test_the_script_fits_in_the_same_phases_as_the_run(train_spec, tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 6)).astype("float32")
    y = np.argmax(x[:, :3], axis=1).astype("int64")
    spec = StackSpec(**TRANSFER, train=train_spec)
    calls = _fit_recorder(monkeypatch)
    result = train(spec, Dataset(name="tiny", x=x, y=y, task=TaskInfo("multiclass", (6,), num_classes=3)))
    assert result.status == "finished"
    run_calls = list(calls)
    calls.clear()
    path = tmp_path / "stack.py"
    path.write_text(generate_script(result.model, spec, compile_args=result.compile_args))
    np.savez(tmp_path / "data.npz", x=x, y=y)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(path), str(tmp_path / "data.npz")])
    runpy.run_path(str(path), run_name="__main__")
    assert len(run_calls) == (2 if train_spec.fine_tune else 1)
    assert calls == run_calls
