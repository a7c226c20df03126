import collections

import keras
import numpy as np
import pytest

from core.build.stacking import STACKING_MODES, StackError, build, check
from core.build.trainability import count_params
from core.spec import AdapterSpec, LayerRule, MemberSpec, StackSpec
from core.spec.rules import accept_fix
from core.spec.tasks import TaskInfo

IMAGES = TaskInfo("multiclass", (12, 12, 1), num_classes=3)
VECTORS = TaskInfo("multiclass", (6,), num_classes=3)


def small_cnn(name="features", **params):
    return MemberSpec(name, template="cnn_features", params={"filters": [4], **params})


def small_head(name="head", **params):
    return MemberSpec(name, template="dense_head", params={"hidden_units": [8], **params})


def leaf_types(model) -> collections.Counter:
    counter = collections.Counter()
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            counter += leaf_types(layer)
        elif not isinstance(layer, keras.layers.InputLayer):
            counter[type(layer).__name__] += 1
    return counter


MODE_SPECS = {
    "sequential": StackSpec(members=(small_cnn(), small_head())),
    "fusion": StackSpec(mode="fusion", members=(small_cnn(dense_units=4),), head=small_head(),
                        options={"include_raw_input": True}),
    "transfer": StackSpec(mode="transfer", members=(small_cnn(),), head=small_head()),
    "ensemble": StackSpec(mode="ensemble", members=(
        MemberSpec("a", template="cnn_classifier", params={"filters": [4], "hidden_units": [8]}),
        MemberSpec("b", template="cnn_classifier", params={"filters": [2], "hidden_units": [4]}))),
}


def test_every_mode_has_a_spec_here():
    assert set(MODE_SPECS) == set(STACKING_MODES)


@pytest.mark.parametrize("mode", sorted(MODE_SPECS))
def test_each_mode_builds_one_model_that_trains_end_to_end(mode):
    spec = MODE_SPECS[mode]
    model = build(spec, IMAGES)
    assert model.output_shape == (None, 3)
    member_names = [m.name for m in spec.all_members()]
    assert all(isinstance(model.get_layer(n), keras.Model) for n in member_names)
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.rand(16, 12, 12, 1).astype("float32")
    y = np.random.randint(0, 3, 16)
    before = [w.copy() for w in model.get_weights()]
    model.fit(x, y, epochs=1, batch_size=8, verbose=0)
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.predict(x, verbose=0).shape == (16, 3)


def test_check_reports_shapes_and_counts_per_member():
    report = check(MODE_SPECS["sequential"], IMAGES)
    assert report.ok and not report.problems
    features, head = report.members
    assert features.input_shape == (12, 12, 1)
    assert features.output_shape == (5 * 5 * 4,)
    assert head.input_shape == (100,) and head.output_shape == (3,)
    assert features.total_params == 4 * 9 + 4
    assert head.total_params == (100 * 8 + 8) + (8 * 3 + 3)
    assert report.total_params == features.total_params + head.total_params
    assert report.to_dict()["non_trainable_params"] == 0
    assert [row["class"] for row in features.layers] == ["Conv2D", "MaxPooling2D", "Flatten"]


def test_mismatch_names_both_members_the_shapes_and_the_fix():
    spec = StackSpec(members=(small_cnn(pooling="flatten"), MemberSpec("seq", template="conv1d_encoder"),
                              small_head()))
    report = check(spec, IMAGES)
    assert not report.ok
    problem = report.problems[0]
    assert problem.kind == "shape"
    assert "'features'" in problem.message and "'seq'" in problem.message
    assert "(batch, 100)" in problem.message
    assert "expects a sequence" in problem.message
    assert problem.fix == (AdapterSpec(after="features", before="seq", kind="reshape", target_shape=(100, 1)),)
    assert "Reshape(100, 1)" in problem.message
    with pytest.raises(StackError, match="Cannot feed 'features' into 'seq'"):
        build(spec, IMAGES)


def test_accepting_the_fix_or_auto_adapters_makes_it_build():
    spec = StackSpec(members=(small_head("first", units=5, output_activation="relu"),
                              MemberSpec("images", template="cnn_features", params={"filters": [2]}),
                              small_head()))
    vectors = TaskInfo("multiclass", (16,), num_classes=3)
    report = check(spec, vectors)
    assert [p.kind for p in report.problems] == ["shape"]
    # A 5-vector cannot become an image; the suggestion is honest about it.
    assert report.problems[0].fix == ()
    assert "No adapter fits" in report.problems[0].message

    spec = StackSpec(members=(small_cnn(pooling="global_average"), small_head()))
    mismatched = spec.replace(members=(spec.members[0], MemberSpec("seq", template="rnn_encoder"),
                                       spec.members[1]))
    report = check(mismatched, IMAGES)
    fixed = accept_fix(mismatched, report.problems[0].fix)
    assert check(fixed, IMAGES).ok
    auto = check(mismatched.replace(auto_adapters=True), IMAGES)
    assert auto.ok and auto.adapters == report.problems[0].fix
    model = build(fixed, IMAGES)
    assert isinstance(model.get_layer("adapter_features_reshape"), keras.layers.Reshape)


def test_a_file_member_with_a_fixed_input_gets_a_dense_projection(tmp_path):
    base = keras.Sequential([keras.Input((7,)), keras.layers.Dense(4, name="d")])
    path = tmp_path / "base.keras"
    base.save(path)
    spec = StackSpec(members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [5]}),
                              MemberSpec("pretrained", source="file", file=str(path)), small_head()))
    report = check(spec, VECTORS)
    (problem,) = report.problems
    assert "'encoder' outputs shape (batch, 5) but 'pretrained' expects (batch, 7)" in problem.message
    assert problem.fix == (AdapterSpec(after="encoder", before="pretrained", kind="dense", units=7),)
    assert check(spec.replace(auto_adapters=True), VECTORS).ok


def test_ensemble_members_must_predict_the_task():
    spec = StackSpec(mode="ensemble", members=(
        MemberSpec("a", template="mlp_classifier"), MemberSpec("b", template="mlp", params={"hidden_units": [5]})))
    report = check(spec, VECTORS)
    (problem,) = report.problems
    assert "'b' outputs shape (batch, 5) but the ensemble expects (batch, 3)" in problem.message
    assert problem.fix[0].kind == "dense" and problem.fix[0].activation == "softmax"
    assert any("'b' ('mlp') is an encoder" in w for w in report.warnings)


def test_ensemble_average_and_meta_head():
    members = (MemberSpec("a", template="mlp_classifier", params={"hidden_units": [4]}),
               MemberSpec("b", template="mlp_classifier", params={"hidden_units": [6]}))
    averaged = build(StackSpec(mode="ensemble", members=members), VECTORS)
    assert isinstance(averaged.get_layer("ensemble_average"), keras.layers.Average)
    x = np.random.rand(4, 6).astype("float32")
    expected = (averaged.get_layer("a")(x) + averaged.get_layer("b")(x)) / 2
    np.testing.assert_allclose(averaged.predict(x, verbose=0), keras.ops.convert_to_numpy(expected), rtol=1e-5)
    meta = build(StackSpec(mode="ensemble", members=members, head=small_head("meta"),
                           options={"combine": "meta_head"}), VECTORS)
    assert meta.get_layer("meta").input_shape == (None, 6)


@pytest.mark.parametrize("spec, message", [
    (StackSpec(members=(small_cnn(),)), "Mode 'sequential' chains two or more members"),
    (StackSpec(mode="fusion", members=(small_cnn(),)), "Mode 'fusion' needs a head"),
    (StackSpec(mode="transfer", head=small_head()), "Mode 'transfer' needs a pretrained member"),
    (StackSpec(mode="ensemble", members=(small_cnn(),)), "Mode 'ensemble' combines two or more"),
    (StackSpec(mode="fusion", members=(small_cnn(),), head=small_head()), "Fusion concatenates two or more"),
    (StackSpec(members=(MemberSpec("x", template="resnet9000"), small_head())),
     "template 'resnet9000', which does not exist"),
    (StackSpec(members=(small_cnn("same"), small_head("same"))), "A member named 'same' already exists"),
    (StackSpec(members=(small_cnn("has space"), small_head())), "Member name 'has space' is not allowed"),
    (StackSpec(members=(small_cnn("input"), small_head())), "Member name 'input' is reserved"),
    (StackSpec(members=(small_cnn(), small_head()), adapters=(AdapterSpec(after="ghost", kind="flatten"),)),
     "after 'ghost', which is not a member"),
    (StackSpec(members=(small_cnn(), small_head()),
               adapters=(AdapterSpec(after="features", before="elsewhere", kind="flatten"),)),
     "is never used"),
    (StackSpec(members=(small_cnn(), small_head(filters=3))), "Template 'dense_head' has no parameter 'filters'"),
    (StackSpec(members=(small_cnn(), small_head()), trainability=(LayerRule(member="nobody"),)),
     "names member 'nobody'"),
    (StackSpec(members=(MemberSpec("base", source="run", run_id="missing1"), small_head())),
     "run 'missing1' has no trained model"),
])
def test_config_problems_explain_themselves(spec, message):
    report = check(spec, IMAGES)
    assert not report.ok
    assert any(message in p.message for p in report.problems), [p.message for p in report.problems]


def test_output_must_match_the_task():
    spec = StackSpec(members=(small_cnn(), small_head(units=7)))
    report = check(spec, IMAGES)
    assert "expects (batch, 3)" in report.problems[0].message
    assert report.problems[0].fix[0] == AdapterSpec(after="head", before="output", kind="dense", units=3,
                                                    activation="softmax")


def test_binary_and_regression_heads_follow_the_task():
    binary = build(StackSpec(members=(MemberSpec("m", template="mlp"), small_head())),
                   TaskInfo("binary", (6,), num_classes=2))
    assert binary.output_shape == (None, 1)
    assert binary.get_layer("head").layers[-1].activation.__name__ == "sigmoid"
    regression = build(StackSpec(members=(MemberSpec("m", template="mlp"), small_head())),
                       TaskInfo("regression", (6,)))
    assert regression.get_layer("head").layers[-1].activation.__name__ == "linear"


def test_transfer_freezes_the_base_and_counts_it_non_trainable():
    report = check(MODE_SPECS["transfer"], IMAGES)
    features, head = report.members
    assert features.trainable_params == 0 and features.total_params == 40
    assert head.trainable_params == head.total_params
    assert report.trainable_params == head.total_params
    assert any("random weights" in w for w in report.warnings)
    unfrozen = MODE_SPECS["transfer"].replace(options={"freeze_base": False})
    assert check(unfrozen, IMAGES).trainable_params == report.total_params


def test_model_name_is_a_valid_keras_name():
    model = build(StackSpec(name="my stack/v2", members=(small_cnn(), small_head())), IMAGES)
    assert model.name == "my_stack_v2"
    assert count_params(model).total == model.count_params()


# ---- fixes are checked before they are offered (issue 8, item 6) -------------------------

IRIS = TaskInfo("multiclass", (4,), num_classes=3)
DIGITS = TaskInfo("multiclass", (28, 28, 1), num_classes=10)


def test_iris_into_cnn_features_offers_no_fix_that_cannot_build():
    spec = StackSpec(members=(MemberSpec("features", template="cnn_features"), small_head()))
    (problem,) = check(spec, IRIS).problems
    assert problem.kind == "shape" and problem.fix == ()
    assert "No adapter fits: Reshape(2, 2, 1) would give (batch, 2, 2, 1)" in problem.message
    assert "'features' needs images of at least 4x4" in problem.message
    assert "Choose a template that takes (batch, 4) as it is, such as 'mlp'" in problem.message


SWEEP_TEMPLATES = ["cnn_features", "cnn_classifier", "dense_head", "mlp", "mlp_classifier",
                   "tabular_encoder", "conv1d_encoder", "rnn_encoder"]
SWEEP_SHAPES = [(4,), (16,), (100,), (1009,), (5408,), (2, 2, 1), (12, 12, 1), (8, 8, 3), (10, 3), (3, 2)]


@pytest.mark.parametrize("shape", SWEEP_SHAPES, ids=str)
@pytest.mark.parametrize("template", SWEEP_TEMPLATES)
def test_every_offered_fix_builds_when_accepted(shape, template):
    task = TaskInfo("multiclass", shape, num_classes=3)
    spec = StackSpec(members=(MemberSpec("member", template=template), small_head()))
    report = check(spec, task)
    fixable = [p for p in report.problems if p.fix]
    for problem in report.problems:
        assert problem.fix or "No adapter fits" in problem.message, problem.message
    if not fixable:
        return
    fixed = spec
    for problem in fixable:
        fixed = accept_fix(fixed, problem.fix)
    after = check(fixed, task)
    assert after.ok, [p.message for p in after.problems]
    assert check(spec.replace(auto_adapters=True), task).ok


def test_an_accepted_adapter_that_no_longer_fits_is_the_problem_with_its_index():
    accepted = AdapterSpec(after="input", before="features", kind="reshape", target_shape=(4, 4, 1))
    spec = StackSpec(members=(small_cnn(padding="same"), small_head()),
                     adapters=(AdapterSpec(after="features", before="head", kind="flatten"), accepted))
    assert check(spec, TaskInfo("multiclass", (16,), num_classes=3)).ok
    report = check(spec, TaskInfo("multiclass", (13,), num_classes=3))  # the dataset changed
    (problem,) = report.problems
    assert problem.kind == "adapter" and problem.adapter_index == 1 and problem.member == "features"
    assert problem.received == (13,) and problem.fix == ()
    assert ("The accepted adapter Reshape(4, 4, 1) between the input and 'features' no longer fits: "
            "it cannot reshape (batch, 13)") in problem.message
    assert "Remove it" in problem.message
    assert report.to_dict()["problems"][0]["adapter_index"] == 1
    removed = spec.replace(adapters=spec.adapters[:1])
    assert "No adapter fits" in check(removed, TaskInfo("multiclass", (13,), num_classes=3)).problems[0].message


def test_an_accepted_adapter_whose_result_the_consumer_no_longer_takes_is_the_problem():
    spec = StackSpec(members=(small_cnn(), MemberSpec("seq", template="conv1d_encoder"), small_head()),
                     adapters=(AdapterSpec(after="features", before="seq", kind="reshape", target_shape=(100, 1)),))
    assert check(spec, IMAGES).ok
    changed = spec.replace(members=(small_cnn(), MemberSpec("seq", template="mlp"), small_head()))
    (problem,) = check(changed, IMAGES).problems
    assert problem.kind == "adapter" and problem.adapter_index == 0
    assert "'features' outputs (batch, 100), which Reshape(100, 1) turns into (batch, 100, 1)" in problem.message
    assert "'seq' expects a feature vector" in problem.message


@pytest.mark.parametrize("adapter, message", [
    (AdapterSpec(after="ghost", kind="flatten"), "after 'ghost', which is not a member"),
    (AdapterSpec(after="features", before="elsewhere", kind="flatten"), "is never used"),
])
def test_an_adapter_placed_where_nothing_uses_it_is_an_adapter_problem(adapter, message):
    spec = StackSpec(members=(small_cnn(), small_head()), adapters=(adapter,))
    (problem,) = check(spec, IMAGES).problems
    assert problem.kind == "adapter" and problem.adapter_index == 0
    assert message in problem.message and "Remove it" in problem.message


def test_a_gru_after_cnn_features_gets_the_shorter_reshape():
    spec = StackSpec(members=(MemberSpec("features", template="cnn_features"),
                              MemberSpec("seq", template="rnn_encoder", params={"units": [4]}), small_head()))
    (problem,) = check(spec, DIGITS).problems
    assert problem.fix == (AdapterSpec(after="features", before="seq", kind="reshape", target_shape=(169, 32)),)
    assert "169 positions of 32 channels" in problem.message
    assert "Reshape(5408, 1) would make a sequence of 5,408 steps" in problem.message
    fixed = check(accept_fix(spec, problem.fix), DIGITS)
    assert fixed.ok and fixed.warnings == ()
    # A long reshape accepted earlier still builds, with a warning naming the cheaper one.
    long = spec.replace(adapters=(AdapterSpec(after="features", before="seq", kind="reshape",
                                              target_shape=(5408, 1)),))
    report = check(long, DIGITS)
    assert report.ok
    (warning,) = report.warnings
    assert "'seq' reads sequences of 5,408 steps" in warning and "one step at a time" in warning
    assert "remove Reshape(5408, 1) and add Reshape(169, 32) instead" in warning


def test_a_fix_that_can_only_make_a_long_sequence_is_offered_with_a_warning():
    spec = StackSpec(members=(MemberSpec("seq", template="rnn_encoder", params={"units": [4]}), small_head()))
    report = check(spec, TaskInfo("multiclass", (1009,), num_classes=3))
    (problem,) = report.problems
    assert problem.fix == (AdapterSpec(after="input", before="seq", kind="reshape", target_shape=(1009, 1)),)
    assert problem.fix_warning.startswith("'seq' reads sequences of 1,009 steps")
    assert f"Warning: {problem.fix_warning}" in problem.message
    assert report.warnings == (problem.fix_warning,)
    assert report.to_dict()["problems"][0]["fix_warning"] == problem.fix_warning
