import dataclasses

import keras
import numpy as np
import pytest

from core.build.stacking import build
from core.build.trainability import count_params, frozen_members, iter_leaves, trainability_rows, unfreeze_top
from core.spec import FineTuneSpec, LayerRule, MemberSpec, StackSpec
from core.spec.tasks import TaskInfo

TASK = TaskInfo("multiclass", (6,), num_classes=3)


def stack(**changes) -> StackSpec:
    spec = StackSpec(members=(
        MemberSpec("encoder", template="mlp", params={"hidden_units": [8, 8], "batch_norm": True}),
        MemberSpec("head", template="dense_head", params={"hidden_units": [4]}),
    ))
    return spec.replace(**changes)


def fit(model: keras.Model, epochs: int = 2) -> None:
    model.compile("adam", "sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(64, 6)).astype("float32") * 3 + 1
    y = np.random.default_rng(1).integers(0, 3, 64)
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)


def weights_of(layer) -> list[np.ndarray]:
    return [np.array(w) for w in layer.get_weights()]


def test_a_frozen_member_keeps_its_weights_and_the_others_train():
    encoder, head = stack().members
    spec = stack(members=(dataclasses.replace(encoder, trainable=False), head))
    model = build(spec, TASK)
    encoder, head = model.get_layer("encoder"), model.get_layer("head")
    before_encoder, before_head = weights_of(encoder), weights_of(head)
    fit(model)
    for old, new in zip(before_encoder, weights_of(encoder)):
        np.testing.assert_array_equal(old, new)  # moving statistics included: frozen BN is in inference mode
    assert any(not np.array_equal(old, new) for old, new in zip(before_head, weights_of(head)))
    assert count_params(encoder).trainable == 0
    assert count_params(model).trainable == count_params(head).trainable


def test_layer_rules_by_regex_apply_in_order():
    rules = (LayerRule(member="*", layers=".*", trainable=False),
             LayerRule(member="encoder", layers="encoder_dense2", trainable=True),
             LayerRule(member="head", layers=".*output", trainable=True))
    model = build(stack(trainability=rules), TASK)
    trainable = {path for path, _, on in iter_leaves(model) if on}
    assert trainable >= {"encoder/encoder_dense2", "head/head_output"}
    assert "encoder/encoder_dense1" not in trainable and "head/head_dense1" not in trainable
    before = {path: weights_of(leaf) for path, leaf, _ in iter_leaves(model) if leaf.weights}
    fit(model)
    after = {path: weights_of(leaf) for path, leaf, _ in iter_leaves(model) if leaf.weights}
    for path in before:
        changed = any(not np.array_equal(a, b) for a, b in zip(before[path], after[path]))
        assert changed == (path in trainable), path


def test_counts_match_keras_and_the_trainability_rows():
    model = build(stack(trainability=(LayerRule(member="encoder", layers="encoder_dense1"),)), TASK)
    counts = count_params(model)
    assert counts.total == model.count_params()
    assert counts.trainable == sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    rows = {row["path"]: row for row in trainability_rows(model)}
    assert rows["encoder/encoder_dense1"]["trainable"] is False
    assert rows["encoder/encoder_dense1"]["trainable_params"] == 0
    assert rows["encoder/encoder_dense1"]["params"] == 6 * 8  # no bias before batch norm
    assert rows["head/head_output"]["trainable_params"] == 4 * 3 + 3
    assert counts.non_trainable == sum(r["params"] - r["trainable_params"] for r in rows.values())


def test_transfer_freezes_the_base_and_fine_tune_unfreezes_its_top():
    spec = StackSpec(mode="transfer", members=stack().members[:1], head=stack().members[1])
    model = build(spec, TASK)
    assert frozen_members(model, spec) == ["encoder"]
    unfrozen = unfreeze_top(model, spec, FineTuneSpec(unfreeze_top_layers=2))
    # Two weighted layers from the top: the second dense layer and its batch norm; batch
    # norm stays frozen unless asked, so only the dense layer trains.
    assert unfrozen == ["encoder/encoder_dense2"]
    assert count_params(model.get_layer("encoder")).trainable == 8 * 8
    everything = unfreeze_top(model, spec, FineTuneSpec(members=("encoder",), unfreeze_batchnorm=True))
    assert "encoder/encoder_dense1_bn" in everything
    assert count_params(model.get_layer("encoder")).non_trainable == 2 * 8 * 2  # moving mean / variance


def same_output_in_training(layer, x: np.ndarray) -> None:
    """A frozen BatchNormalization normalizes with its moving statistics even when training."""
    in_training = keras.ops.convert_to_numpy(layer(x, training=True))
    np.testing.assert_allclose(in_training, keras.ops.convert_to_numpy(layer(x, training=False)),
                               rtol=1e-6, atol=1e-6)


def test_frozen_batch_norm_runs_in_inference_mode():
    model = build(stack(trainability=(LayerRule(member="encoder", layers=".*_bn"),)), TASK)
    bn = model.get_layer("encoder").get_layer("encoder_dense1_bn")
    before = weights_of(bn)
    fit(model)
    for old, new in zip(before, weights_of(bn)):
        np.testing.assert_array_equal(old, new)
    # Batch statistics (mean 3, standard deviation 2) are far from the moving ones (0, 1):
    # a batch norm normalizing with them would give another output.
    same_output_in_training(bn, np.random.default_rng(2).normal(3.0, 2.0, size=(32, 8)).astype("float32"))


def test_a_frozen_member_runs_its_batch_norm_in_inference_mode():
    encoder, head = stack().members
    model = build(stack(members=(dataclasses.replace(encoder, trainable=False), head)), TASK)
    fit(model)
    same_output_in_training(model.get_layer("encoder"),
                            np.random.default_rng(3).normal(3.0, 2.0, size=(32, 6)).astype("float32"))


def test_unknown_members_in_rules_and_fine_tune_are_explained():
    spec = StackSpec(mode="transfer", members=stack().members[:1], head=stack().members[1])
    model = build(spec, TASK)
    with pytest.raises(ValueError, match="fine_tune.members names 'ghost'"):
        unfreeze_top(model, spec, FineTuneSpec(members=("ghost",)))
    from core.build.stacking import check

    report = check(stack(trainability=(LayerRule(member="encoder", layers="(unclosed"),)), TASK)
    assert "is not a valid regular expression" in report.problems[0].message


def test_statistics_that_never_train_are_not_counted_as_frozen():
    from core.build.stacking import check

    spec = StackSpec(members=(MemberSpec("encoder", template="tabular_encoder", params={"hidden_units": [4]}),
                              MemberSpec("head", template="dense_head", params={"hidden_units": []})))
    report = check(spec, TASK)
    encoder = report.members[0].to_dict()
    # The Normalization layer's mean, variance and count never train: not frozen by anyone.
    assert encoder["non_trainable_params"] == 6 + 6 + 1
    assert (encoder["frozen_params"], encoder["never_trainable_params"]) == (0, 6 + 6 + 1)
    assert report.frozen_params == 0 and report.to_dict()["never_trainable_params"] == 13


def test_frozen_counts_weights_frozen_by_the_stack_and_not_batch_norm_statistics():
    spec = StackSpec(mode="transfer", members=stack().members[:1], head=stack().members[1])
    model = build(spec, TASK)
    statistics = 2 * (8 * 2)  # moving mean and variance of two batch norms of 8 units
    counts = count_params(model.get_layer("encoder"))
    assert (counts.trainable, counts.frozen, counts.never_trainable) == (0, counts.total - statistics, statistics)
    unfreeze_top(model, spec, FineTuneSpec(unfreeze_top_layers=2))  # the second dense layer trains
    counts = count_params(model.get_layer("encoder"))
    assert (counts.trainable, counts.never_trainable) == (8 * 8, statistics)
    assert counts.frozen == counts.total - statistics - 8 * 8
    unfreeze_top(model, spec, FineTuneSpec(members=("encoder",), unfreeze_batchnorm=True))
    assert count_params(model.get_layer("encoder")).frozen == 0


def test_the_report_and_trainability_rows_count_what_a_rule_froze():
    from core.build.stacking import check

    report = check(stack(trainability=(LayerRule(member="encoder", layers="encoder_dense1"),)), TASK)
    encoder = report.members[0]
    rows = {row["path"]: row for row in encoder.layers}
    assert rows["encoder_dense1"]["frozen_params"] == 6 * 8
    assert rows["encoder_dense1_bn"]["frozen_params"] == 0  # its gamma and beta still train
    assert encoder.frozen_params == report.frozen_params == 6 * 8
    assert encoder.to_dict()["never_trainable_params"] == 2 * (8 * 2)
