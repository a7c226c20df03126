"""core.build.preprocessing.prepare: preprocessing fitted on the training split only, encoded by its layers."""

import keras
import numpy as np
import pytest

from core.build.preprocessing import PreprocessingLayers, end_to_end_model, prepare, prepare_dataset
from core.data import DataError, load_dataset, split, validation_inputs
from core.data.encoding import OOV_TOKEN, fit_preprocessing
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec

# Row 0..n: a number column whose validation rows are far from the training rows' mean, a text
# column with one value ("violet") that only a validation row holds.
ROWS = 40


def write_csv(tmp_path, rows=ROWS):
    lines = ["size,color,label"]
    for i in range(rows):
        color = ("red", "blue", "green")[i % 3]
        lines.append(f"{i * i},{color},{'yes' if i % 2 else 'no'}")
    path = tmp_path / "table.csv"
    path.write_text("\n".join(lines) + "\n")
    return path


def csv_spec(path, **fields) -> DatasetSpec:
    return DatasetSpec(source="csv", path=str(path), target="label", **fields)


def test_statistics_and_vocabulary_come_from_the_training_split_only(tmp_path):
    spec, train_spec = csv_spec(write_csv(tmp_path)), TrainSpec(validation_split=0.25, seed=1)
    prepared = prepare(spec, train_spec)
    raw = split(load_dataset(spec), 0.25, 1)
    train_sizes = raw.x_train[:, 0].astype(np.float64)
    size = prepared.preprocessing.columns[0]
    assert size.mean == pytest.approx(train_sizes.mean()) and size.variance == pytest.approx(train_sizes.var())
    whole = load_dataset(spec).x[:, 0].astype(np.float64)
    assert size.mean != pytest.approx(whole.mean())  # not the whole file's
    color = prepared.preprocessing.columns[1]
    assert color.vocabulary == tuple(sorted(set(raw.x_train[:, 1])))
    # The encoded columns: size, then the out-of-vocabulary slot and one per colour.
    assert prepared.task.input_shape == (1 + 1 + len(color.vocabulary),)
    assert prepared.preprocessing.encoded_names[:2] == ["size", f"color={OOV_TOKEN}"]
    x_train = prepared.split.x_train
    np.testing.assert_allclose(x_train[:, 0].mean(), 0.0, atol=1e-5)
    np.testing.assert_allclose(x_train[:, 0].std(), 1.0, atol=1e-5)
    assert x_train.dtype == np.float32 and (x_train[:, 1:].sum(axis=1) == 1).all()
    card = prepared.data_card()
    assert card["statistics"]["size"] == {"mean": size.mean, "variance": size.variance}
    assert card["split"] == {"train_rows": 30, "val_rows": 10, "seed": 1, "validation_split": 0.25}
    assert card["inputs"][1] == {"name": "color", "dtype": "string", "kind": "categorical",
                                 "vocabulary": list(color.vocabulary)}
    assert card["class_names"] == ["no", "yes"] and card["input_shape"] == [2] and card["target"] is None


def test_a_value_never_seen_in_training_lands_in_the_out_of_vocabulary_slot(tmp_path):
    dataset = load_dataset(csv_spec(write_csv(tmp_path)))
    prepared = prepare_dataset(dataset, TrainSpec(validation_split=0.25, seed=1))
    layers = PreprocessingLayers(prepared.preprocessing)
    rows = np.array([[4.0, "violet"], [9.0, "red"]], dtype=object)
    encoded = layers.encode(rows)
    assert encoded[0, 1] == 1.0 and encoded[0, 2:].sum() == 0.0  # slot 0 of the one-hot block
    assert encoded[1, 1] == 0.0 and encoded[1, 2:].sum() == 1.0


def test_the_encoded_split_is_what_the_end_to_end_model_computes(tmp_path):
    spec = csv_spec(write_csv(tmp_path), scaling="minmax")
    prepared = prepare(spec, TrainSpec(validation_split=0.25, seed=1))
    identity = keras.Sequential([keras.Input(prepared.task.input_shape), keras.layers.Identity()])
    model = end_to_end_model(prepared.preprocessing, identity)
    inputs, _ = validation_inputs(StackSpec(name="t", members=(MemberSpec("head", template="dense_head"),),
                                            dataset=spec, train=TrainSpec(validation_split=0.25, seed=1)))
    assert sorted(inputs) == ["color", "size"] and inputs["color"].shape == (10, 1)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(model(inputs)), prepared.split.x_val)
    # minmax: (x - min) / (max - min) of the training split.
    assert prepared.split.x_train[:, 0].min() == 0.0 and prepared.split.x_train[:, 0].max() == 1.0


def test_prepare_is_cached_and_follows_the_split():
    first = prepare(DatasetSpec(name="iris"), TrainSpec(validation_split=0.2, seed=0))
    assert prepare(DatasetSpec(name="iris"), TrainSpec(validation_split=0.2, seed=0, epochs=7)) is first
    other = prepare(DatasetSpec(name="iris"), TrainSpec(validation_split=0.2, seed=1))
    assert other is not first and other.preprocessing.mean != first.preprocessing.mean
    with pytest.raises(ValueError, match="read-only"):
        first.split.x_train[0, 0] = 1.0
    # The same rows as the raw split, only encoded.
    raw = split(load_dataset(DatasetSpec(name="iris")), 0.2, 0)
    np.testing.assert_array_equal(first.split.y_val, raw.y_val)
    np.testing.assert_allclose(first.split.x_val, (raw.x_val - np.array(first.preprocessing.mean))
                               / np.sqrt(first.preprocessing.variance), rtol=1e-5, atol=1e-6)


def test_scaling_none_and_images_have_no_normalization():
    prepared = prepare(DatasetSpec(name="iris", scaling="none"), TrainSpec(validation_split=0.2, seed=0))
    assert not prepared.preprocessing.has_layers and prepared.data_card()["statistics"] == {}
    digits = prepare(DatasetSpec(name="digits8"), TrainSpec(validation_split=0.2, seed=0))
    assert digits.preprocessing.mean is None and digits.task.input_shape == (8, 8, 1)


def test_raw_images_are_rescaled_by_a_layer():
    from core.data.csv_files import dataset_from_arrays

    images = np.random.default_rng(0).integers(0, 256, (20, 4, 4, 1), dtype=np.uint8)
    dataset = dataset_from_arrays(images, np.arange(20) % 2)
    prepared = prepare_dataset(dataset, TrainSpec(validation_split=0.25, seed=0))
    assert prepared.preprocessing.pixel_range == 255.0 and prepared.data_card()["pixel_range"] == 255.0
    assert prepared.split.x_train.max() <= 1.0
    stack = keras.Sequential([keras.Input((4, 4, 1)), keras.layers.Flatten(), keras.layers.Dense(2)])
    model = end_to_end_model(prepared.preprocessing, stack)
    assert any(isinstance(layer, keras.layers.Rescaling) for layer in model.layers)
    # Rescaling multiplies by 1/255, the reference divides by 255: one float32 rounding apart,
    # which an output near 0 (the weights are random) turns into a large relative difference.
    np.testing.assert_allclose(keras.ops.convert_to_numpy(model(images[:3].astype(np.float32))),
                               keras.ops.convert_to_numpy(stack(images[:3] / np.float32(255.0))),
                               rtol=1e-5, atol=1e-6)


def test_regression_targets_get_training_split_statistics():
    prepared = prepare(DatasetSpec(name="diabetes"), TrainSpec(validation_split=0.2, seed=0))
    target = prepared.preprocessing.target
    assert target.mean[0] == pytest.approx(prepared.split.y_train.mean(), rel=1e-6)
    assert target.variance[0] == pytest.approx(prepared.split.y_train.astype(np.float64).var(), rel=1e-6)
    card = prepared.data_card()
    assert card["target"]["std"] == pytest.approx(np.sqrt(target.variance[0])) and card["class_names"] == []


def test_validation_inputs_without_a_validation_split_are_training_rows():
    spec = StackSpec(name="t", members=(MemberSpec("head", template="dense_head"),),
                     dataset=DatasetSpec(name="iris"), train=TrainSpec(validation_split=0.0, seed=0))
    inputs, y = validation_inputs(spec, limit=7)
    assert inputs.shape == (7, 4) and inputs.dtype == np.float32 and y.shape == (7,)


def test_an_unknown_scaling_is_refused():
    dataset = load_dataset(DatasetSpec(name="iris"))
    with pytest.raises(DataError, match="Scaling must be one of"):
        fit_preprocessing(dataset, split(dataset, 0.2, 0), "log")
