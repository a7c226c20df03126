"""core.export.script: stack.py compiles, adapts preprocessing and runs like the trained stack."""

import dataclasses
import runpy
import sys

import keras
import numpy as np
import pytest

from core.build.trainability import apply_trainability, iter_leaves, unfreeze_top
from core.export.artifacts import generate_script
from core.spec import FineTuneSpec, TrainSpec
from tests.core.export.export_stacks import (
    IMAGE,
    all_layers,
    assert_same_stack,
    ensemble_stack,
    import_script,
    sequential_stack,
    tabular_stack,
    trainable_count,
    write_script,
)


def test_normalization_fed_by_the_raw_input_is_adapted_to_the_training_data(tmp_path):
    sample = np.random.default_rng(3).normal(5.0, 2.0, (32, 5)).astype("float32")
    model, spec = tabular_stack(sample)
    module = import_script(write_script(model, spec, tmp_path))
    rebuilt = module.build_model()
    assert_same_stack(model, rebuilt)  # copies the adapted state too
    fresh = module.build_model()
    module.adapt_preprocessing(fresh, sample)
    adapted = fresh.get_layer("encoder").get_layer("encoder_normalization")
    original = model.get_layer("encoder").get_layer("encoder_normalization")
    np.testing.assert_allclose(keras.ops.convert_to_numpy(adapted.mean),
                               keras.ops.convert_to_numpy(original.mean), rtol=1e-5)
    assert "adapt_preprocessing(model, x)" in (tmp_path / "stack.py").read_text()


def test_member_files_must_name_nested_models():
    model, spec = sequential_stack()
    with pytest.raises(ValueError, match="no nested model of that name"):
        generate_script(model, spec, {"missing": "members/missing.keras"})


def test_auto_loss_and_metrics_are_guessed_from_the_output_without_compile_args():
    model, spec = ensemble_stack()  # the output comes from an Average of softmax members
    source = generate_script(model, spec)
    assert 'loss="sparse_categorical_crossentropy"' in source
    assert 'metrics=["accuracy"]' in source


def test_script_without_arguments_prints_the_summary(tmp_path, monkeypatch, capsys):
    model, spec = sequential_stack()
    path = write_script(model, spec, tmp_path)
    monkeypatch.setattr(sys, "argv", [str(path)])
    runpy.run_path(str(path), run_name="__main__")
    assert "seed_sequential" in capsys.readouterr().out


def test_a_fine_tuned_stack_is_rebuilt_as_it_started_and_unfreezes_like_the_run(tmp_path, monkeypatch):
    model, spec = sequential_stack()
    tune = FineTuneSpec(start_epoch=2, unfreeze_top_layers=1, learning_rate_factor=0.1)
    spec = dataclasses.replace(spec, mode="transfer", members=spec.members[:1], head=spec.members[1],
                               train=TrainSpec(epochs=3, batch_size=8, learning_rate=0.01, fine_tune=tune))
    apply_trainability(model, spec)
    at_start = trainable_count(model)
    unfreeze_top(model, spec, tune)  # a fine-tuned run's model comes back like this
    after = trainable_count(model)
    tuned_paths = [path for path, _, trainable in iter_leaves(model) if trainable]
    flags = [layer.trainable for layer in all_layers(model)]
    path = write_script(model, spec, tmp_path)
    assert [layer.trainable for layer in all_layers(model)] == flags  # the model is left as it was
    module = import_script(path)
    rebuilt = module.build_model()
    assert trainable_count(rebuilt) == at_start < after
    module.unfreeze_for_fine_tuning(rebuilt)
    assert trainable_count(rebuilt) == after
    assert [p for p, _, trainable in iter_leaves(rebuilt) if trainable] == tuned_paths
    source = path.read_text()
    assert "initial_epoch=1" in source and "compile_model(model, learning_rate=0.001)" in source
    assert max(len(line) for line in source.splitlines()) <= 88
    # Trains both phases: one epoch frozen, then two fine-tuning.
    rng = np.random.default_rng(4)
    np.savez(tmp_path / "data.npz", x=rng.random((16, *IMAGE), dtype=np.float32), y=rng.integers(0, 3, 16))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(path), str(tmp_path / "data.npz")])
    runpy.run_path(str(path), run_name="__main__")
    assert trainable_count(keras.saving.load_model(tmp_path / "trained.keras")) == after


def test_a_fine_tune_phase_with_nothing_frozen_still_lowers_the_learning_rate(tmp_path):
    model, spec = sequential_stack()  # every member trains: nothing to unfreeze
    tune = FineTuneSpec(start_epoch=2, learning_rate_factor=0.5)
    spec = dataclasses.replace(spec, train=TrainSpec(epochs=2, learning_rate=0.01, fine_tune=tune))
    source = write_script(model, spec, tmp_path).read_text()
    assert "unfreeze_for_fine_tuning" not in source
    assert "compile_model(model, learning_rate=0.005)" in source and "initial_epoch=1" in source


def test_a_fine_tune_phase_after_the_last_epoch_is_left_out(tmp_path):
    model, spec = sequential_stack()
    spec = dataclasses.replace(spec, train=TrainSpec(epochs=2, fine_tune=FineTuneSpec(start_epoch=3)))
    source = write_script(model, spec, tmp_path).read_text()
    assert "unfreeze_for_fine_tuning" not in source and "initial_epoch" not in source
