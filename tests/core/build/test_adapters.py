import keras
import pytest

from core.build import adapters
from core.build.adapters import LONG_SEQUENCE_STEPS, Need, candidates, choose_fix
from core.build.templates import TEMPLATES
from core.spec import AdapterSpec
from core.spec.tasks import TaskInfo

TASK = TaskInfo("multiclass", (4,), num_classes=3)


def template_need(name: str, **params) -> Need:
    """What template `name` accepts, as the stack checks it: ranks, its own check, its build."""
    template = TEMPLATES[name]
    resolved = template.resolve_params(params)
    check = template.check_input
    return Need(description=name, ranks=template.input_ranks,
                extra=(lambda shape: check(shape, resolved)) if check else None,
                build=lambda shape: template.build("consumer", shape, TASK, params))


def reshape(*target, after="p", before="c") -> AdapterSpec:
    return AdapterSpec(after=after, before=before, kind="reshape", target_shape=target)


def test_a_candidate_the_consumer_refuses_is_not_offered_and_the_reason_is_given():
    choice = choose_fix((4,), template_need("cnn_features"), "input", "features", "'features'")
    assert choice.fix == ()
    assert "Reshape(2, 2, 1) would give (batch, 2, 2, 1)" in choice.reason
    assert "'features' needs images of at least 4x4" in choice.reason
    # With padding 'same' a 2x2 image survives the block, so the same reshape is offered.
    assert choose_fix((4,), template_need("cnn_features", padding="same"), "input", "features",
                      "'features'").fix == (reshape(2, 2, 1, after="input", before="features"),)


def test_a_candidate_whose_consumer_does_not_build_is_skipped():
    def build(shape):
        if shape == (6, 1):
            raise ValueError("no six today")
        return keras.Sequential([keras.Input(shape), keras.layers.Flatten()])

    need = Need(description="a sequence", ranks=(2,), build=build)
    choice = choose_fix((6,), need, "p", "c", "'c'", origin=(3, 2))
    assert choice.fix == (reshape(3, 2),)
    refused = choose_fix((6,), need, "p", "c", "'c'")
    assert refused.fix == () and "'c' does not build on it: no six today" in refused.reason


def test_a_long_vector_gets_shorter_reshapes_after_the_plain_one():
    need = Need(description="a sequence", ranks=(2,))
    found = [c.adapters for c in candidates((5408,), need, "p", "c", origin=(13, 13, 32))]
    assert found == [(reshape(5408, 1),), (reshape(169, 32),), (reshape(13, 416),), (reshape(676, 8),)]
    assert [c.adapters for c in candidates((100,), need, "p", "c")] == [(reshape(100, 1),)]


def test_a_recurrent_consumer_gets_the_shorter_sequence_and_is_told_why():
    choice = choose_fix((5408,), template_need("rnn_encoder", units=[4]), "p", "c", "'c'", origin=(13, 13, 32))
    assert choice.fix == (reshape(169, 32),)
    assert "169 positions of 32 channels" in choice.note
    assert "Reshape(5408, 1) would make a sequence of 5,408 steps" in choice.instead
    assert choice.warning == ""
    # Without the flattened map's shape, chunks of consecutive values keep it under the limit.
    assert choose_fix((5408,), template_need("rnn_encoder", units=[4]), "p", "c", "'c'").fix == (reshape(676, 8),)
    # A Conv1D runs over the steps in parallel: the plain reshape stays.
    assert choose_fix((5408,), template_need("conv1d_encoder"), "p", "c", "'c'").fix == (reshape(5408, 1),)


def test_when_only_a_long_sequence_fits_it_is_offered_with_a_warning():
    steps = 1009  # prime: no shorter reshape
    assert steps > LONG_SEQUENCE_STEPS
    choice = choose_fix((steps,), template_need("rnn_encoder", units=[4]), "input", "seq", "'seq'")
    assert choice.fix == (reshape(steps, 1, after="input", before="seq"),)
    assert "'seq' reads sequences of 1,009 steps" in choice.warning
    assert "one step at a time" in choice.warning and "Cheaper:" in choice.warning


def test_a_big_feature_map_is_pooled_not_flattened_and_says_why():
    need = Need(description="a feature vector", ranks=(1,))
    (only,) = candidates((64, 64, 16), need, "p", "c")
    assert only.adapters == (AdapterSpec(after="p", before="c", kind="global_average_pooling"),)
    assert "65,536 values" in only.note
    assert [c.adapters[0].kind for c in candidates((8, 8, 4), need, "p", "c")] == ["flatten", "global_average_pooling"]


def test_a_fixed_input_keeps_its_first_fix_and_gains_checked_alternatives():
    need = Need.fixed((10,), dense_activation="softmax")
    first = choose_fix((5, 5, 4), need, "p", "output", "the output").fix
    assert [a.label() for a in first] == ["Flatten", "Dense(10, softmax)"]
    assert choose_fix((5, 5, 10), need, "p", "output", "the output").fix[0].kind == "global_average_pooling"


def test_an_adapter_that_cannot_apply_says_why():
    with pytest.raises(ValueError, match=r"cannot reshape \(batch, 13\) \(13 values\) to \(batch, 4, 4, 1\)"):
        adapters.make_layer(reshape(4, 4, 1), (13,), "r")
    with pytest.raises(ValueError, match="needs a sequence or a feature map"):
        adapters.make_layer(AdapterSpec(after="p", kind="global_average_pooling"), (13,), "g")
    assert adapters.mismatch(reshape(13, 1), (13,)) is None


def test_recurrent_layers_and_flattened_maps_are_recognized():
    inputs = keras.Input((5, 2))
    nested = keras.Model(inputs, keras.layers.Bidirectional(keras.layers.LSTM(2))(inputs))
    outer = keras.Sequential([keras.Input((5, 2)), nested])
    assert adapters.is_recurrent(outer)
    assert not adapters.is_recurrent(keras.Sequential([keras.Input((5, 2)), keras.layers.Conv1D(2, 3)]))
    flattening = keras.Sequential([keras.Input((6, 6, 1)), keras.layers.Conv2D(3, 3), keras.layers.Flatten(),
                                   keras.layers.Dropout(0.1)])
    assert adapters.flattened_from(flattening) == (4, 4, 3)
    assert adapters.flattened_from(keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])) is None
