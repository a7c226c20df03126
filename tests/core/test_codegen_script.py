"""core.codegen_script: stack.py compiles, adapts preprocessing and runs like the trained stack."""

import runpy
import sys

import keras
import numpy as np
import pytest

from core.export import generate_script
from tests.core.export_stacks import (
    assert_same_stack, ensemble_stack, import_script, sequential_stack, tabular_stack, write_script,
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
