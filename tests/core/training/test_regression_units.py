"""Regression trains on standardized targets and reports, predicts and exports in the target's units."""

import keras
import numpy as np
import pytest

from core.build.preprocessing import end_to_end_model
from core.data import validation_inputs
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec
from core.training.compile import standardized_loss
from core.training.loop import TARGET_UNITS_LAYER, train


@pytest.fixture(scope="module")
def diabetes_run():
    spec = StackSpec(
        name="diabetes",
        members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [16]}),
                 MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(epochs=3, batch_size=32, validation_split=0.2, seed=0, metrics=("mae", "mse", "rmse")),
        dataset=DatasetSpec(name="diabetes"))
    return spec, train(spec)


def test_diabetes_predictions_and_val_mae_are_in_the_targets_units(diabetes_run):
    spec, result = diabetes_run
    prepared = result.prepared
    y_val = prepared.split.y_val.astype(np.float64)
    predictions = result.model.predict(prepared.split.x_val, verbose=0)[:, 0].astype(np.float64)
    last = result.history[-1]
    assert last["val_mae"] == pytest.approx(np.abs(predictions - y_val).mean(), rel=1e-5)
    assert last["val_rmse"] == pytest.approx(np.sqrt(((predictions - y_val) ** 2).mean()), rel=1e-5)
    # The targets run from 25 to 346 (mean ~150): even a barely trained model predicts on that
    # scale, because its last layer de-standardizes; one trained on raw targets starts near 0.
    assert 100 < predictions.mean() < 200 and last["val_mae"] > 20
    # The loss is the standardized one: mse / variance of the training targets.
    variance = prepared.preprocessing.target.variance[0]
    assert last["val_loss"] == pytest.approx(last["val_mse"] / variance, rel=1e-4) and last["loss"] < 5
    assert result.model.layers[-1].name == TARGET_UNITS_LAYER
    assert result.compile_args["loss_weight"] == pytest.approx(1 / variance)


def test_the_generated_script_compiles_with_the_same_loss_weight(diabetes_run, tmp_path):
    from core.export.artifacts import export_run

    spec, result = diabetes_run
    paths = export_run(result.model, spec, result.history, tmp_path, compile_args=result.compile_args,
                       prepared=result.prepared)
    script = paths["stack.py"].read_text()
    assert "loss_weights=[" in script and f"name=\"{TARGET_UNITS_LAYER}\"" in script


def test_the_end_to_end_model_outputs_the_targets_units_from_raw_features(diabetes_run):
    spec, result = diabetes_run
    inputs, y = validation_inputs(spec, limit=20)
    model = end_to_end_model(result.prepared.preprocessing, result.model)
    raw_predictions = keras.ops.convert_to_numpy(model(inputs))
    np.testing.assert_allclose(raw_predictions, result.model.predict(result.prepared.split.x_val[:20], verbose=0),
                               rtol=1e-5, atol=1e-4)
    assert np.abs(raw_predictions[:, 0] - y).mean() < 3 * np.abs(y - y.mean()).mean()


@pytest.mark.parametrize("loss", ["mse", "mae", "huber"])
def test_the_weighted_loss_in_units_equals_the_loss_on_standardized_targets(loss):
    from core.data.encoding import TargetScaling

    target = TargetScaling("t", (150.0,), (900.0,))
    rng = np.random.default_rng(0)
    y, pred = rng.normal(150, 30, (64, 1)), rng.normal(150, 40, (64, 1))
    classes = {"mse": keras.losses.MeanSquaredError, "mae": keras.losses.MeanAbsoluteError,
               "huber": keras.losses.Huber}
    args = standardized_loss(loss, target)
    weight = args["loss_weight"]
    in_units = keras.losses.Huber(delta=args["huber_delta"]) if loss == "huber" else classes[loss]()
    standard = classes[loss]()
    expected = float(standard((y - 150) / 30, (pred - 150) / 30))
    assert float(in_units(y, pred)) * weight == pytest.approx(expected, rel=1e-5)
