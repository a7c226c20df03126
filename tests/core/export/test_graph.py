"""core.export.graph: build_model() rebuilds the same graph; loaded members are cut and frozen."""

import shutil

import pytest

from tests.core.export.export_stacks import (
    assert_same_stack,
    branchy_stack,
    ensemble_stack,
    file_member_stack,
    frozen_batchnorm_stack,
    fusion_stack,
    import_script,
    sequence_stack,
    sequential_stack,
    write_script,
)


@pytest.mark.parametrize("build", [sequential_stack, fusion_stack, ensemble_stack,
                                   frozen_batchnorm_stack, branchy_stack, sequence_stack],
                         ids=["sequential", "fusion", "ensemble", "frozen_batchnorm", "branchy",
                              "bidirectional_gru"])
def test_build_model_rebuilds_the_same_architecture(build, tmp_path):
    model, spec = build()
    path = write_script(model, spec, tmp_path)
    assert max(len(line) for line in path.read_text().splitlines()) <= 88
    assert_same_stack(model, import_script(path).build_model())


def test_loaded_member_is_cut_and_frozen_like_in_the_stack(tmp_path):
    model, spec, source = file_member_stack(tmp_path)
    (tmp_path / "members").mkdir()
    shutil.copy(source, tmp_path / "members" / "base.keras")
    path = write_script(model, spec, tmp_path, {"base": "members/base.keras"})
    text = path.read_text()
    assert "def load_base():" in text and 'source.get_layer("embedding").output' in text
    assert "keras.saving.load_model(" in text and "safe_mode" not in text
    assert_same_stack(model, import_script(path).build_model())
