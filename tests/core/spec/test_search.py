"""The `search` section of a spec: reading, errors naming the key, and apply_params."""

import pytest

from core.spec import MemberSpec, SearchSpec, SpecError, StackSpec, apply_params


def base(search=None, **train) -> dict:
    return {
        "name": "digits8-demo", "mode": "fusion",
        "members": [{"name": "model_a", "template": "cnn_features", "params": {"filters": [16]}}],
        "head": {"name": "model_b", "template": "dense_head", "params": {"hidden_units": [32]}},
        "options": {"include_raw_input": True},
        "train": {"epochs": 4, "batch_size": 32, **train},
        "dataset": {"name": "digits8"},
        **({"search": search} if search is not None else {}),
    }


SEARCH = {
    "study": "digits8-lr", "objective": {"metric": "val_accuracy", "direction": "maximize"},
    "trials": 8, "parallel": 0, "sampler": "tpe", "pruner": {"kind": "median", "warmup_epochs": 1}, "seed": 0,
    "space": {
        "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "train.batch_size": {"type": "categorical", "choices": [32, 64, 128]},
        "members.model_a.params.filters": {"type": "categorical", "choices": [[16], [32]]},
        "head.params.dropout_rate": {"type": "float", "low": 0.0, "high": 0.5},
        "mode": {"type": "categorical", "choices": ["sequential", "fusion"]},
        "members.model_a.trainable": {"type": "categorical", "choices": [True, False]},
        "train.fine_tune.start_epoch": {"type": "int", "low": 2, "high": 4},
    },
    "variants": {"fusion_raw": {"mode": "fusion", "options": {"include_raw_input": True}}},
}


def with_space(space, **search) -> dict:
    return base({"space": space, **search})


def test_the_contract_example_reads_and_round_trips():
    spec = StackSpec.from_dict(base(SEARCH))
    assert spec.search.study == "digits8-lr"
    assert spec.search.space["train.fine_tune.start_epoch"].low == 2  # an int range stays whole
    assert list(spec.search.parameters()) == list(SEARCH["space"]) + ["variant"]
    assert StackSpec.from_dict(spec.to_dict()) == spec
    assert StackSpec.from_json(spec.to_json()) == spec


def test_a_spec_without_search_writes_no_search_key():
    assert "search" not in StackSpec.from_dict(base()).to_dict()


@pytest.mark.parametrize("space, search, message", [
    ({"train.learning_rate": {"type": "float", "low": 0, "high": 0.01, "log": True}}, {},
     r"'search.space.train.learning_rate.low' must be > 0 for a log scale, received 0"),
    ({"train.learning_rate": {"type": "float", "low": 0.1, "high": 0.01}}, {},
     r"'search.space.train.learning_rate.low' must be less than 'search.space.train.learning_rate.high'"),
    ({"train.batch_size": {"type": "categorical", "choices": []}}, {},
     r"'search.space.train.batch_size.choices' must list at least one value"),
    ({"train.learnin_rate": {"type": "float", "low": 0.001, "high": 0.01}}, {},
     r"'search.space.train.learnin_rate'.*no key 'learnin_rate' in 'train'.*Did you mean 'learning_rate'"),
    ({"members.model_x.params.filters": {"type": "categorical", "choices": [[8]]}}, {},
     r"'search.space.members.model_x.params.filters'.*no item named 'model_x' in 'members'.*'model_a'"),
    ({"train.batch_size": {"type": "categorical", "choices": [32, "big"]}}, {},
     r"'search.space.train.batch_size' = 'big'.*'train.batch_size' must be an integer"),
    ({"train.fine_tune.start_epoch": {"type": "int", "low": 2, "high": 9}}, {},
     r"'search.space.train.fine_tune.start_epoch' = 9.*must be at most 'train.epochs' \(4\)"),
    ({"train.epochs": {"type": "int", "low": 1.5, "high": 4}}, {},
     r"'search.space.train.epochs.low' must be a whole number for type 'int'"),
    ({"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2}}, {"sampler": "grid"},
     r"'search.space.train.learning_rate' is a float range, which a grid sampler cannot enumerate"),
    ({"train.learning_rate": {"type": "uniform", "low": 1e-4, "high": 1e-2}}, {},
     r"'search.space.train.learning_rate.type' must be one of \['float', 'int', 'categorical'\]"),
    ({}, {}, r"'search.space' is empty and there are no 'variants'"),
    ({"train.epochs": {"type": "int", "low": 2, "high": 4}}, {"objective": {"metric": "val_acc"}},
     r"'search.objective.metric' must be one of"),
    ({"train.epochs": {"type": "int", "low": 2, "high": 4}}, {"trials": 0},
     r"'search.trials' must be at least 1, received 0"),
    ({"train.epochs": {"type": "int", "low": 2, "high": 4}}, {"pruner": {"kind": "threshold"}},
     r"'search.pruner.lower' or 'search.pruner.upper' is needed for a threshold pruner"),
    ({"train.epochs": {"type": "int", "low": 2, "high": 4}}, {"variants": {"bad": {"mode": "stacked"}}},
     r"'search.variants.bad' does not make a valid spec: 'mode' must be one of"),
])
def test_errors_name_the_key(space, search, message):
    with pytest.raises(SpecError, match=message):
        StackSpec.from_dict(with_space(space, **search))


def test_a_validation_metric_needs_a_validation_split():
    data = base({"space": {"train.epochs": {"type": "int", "low": 2, "high": 4}}}, validation_split=0.0)
    with pytest.raises(SpecError, match=r"'search.objective.metric' is 'val_accuracy', but "
                                        r"'train.validation_split' is 0"):
        StackSpec.from_dict(data)
    data["search"]["objective"] = {"metric": "loss"}
    assert StackSpec.from_dict(data).search.objective.resolved_direction() == "minimize"


def test_apply_params_sets_each_path_and_drops_the_search():
    spec = StackSpec.from_dict(base(SEARCH))
    trial = apply_params(spec, {"train.learning_rate": 0.003, "members.model_a.params.filters": [32],
                                "head.params.dropout_rate": 0.25, "members.model_a.trainable": False,
                                "train.fine_tune.start_epoch": 3})
    assert trial.search is None
    assert trial.train.learning_rate == 0.003
    assert trial.members[0] == MemberSpec("model_a", template="cnn_features", params={"filters": [32]},
                                          trainable=False)
    assert trial.head.params == {"hidden_units": [32], "dropout_rate": 0.25}
    assert trial.train.fine_tune.start_epoch == 3  # made from the defaults: the base had none
    assert spec.members[0].params == {"filters": [16]}  # the base spec is untouched


def test_a_mode_change_resets_the_options_unless_a_variant_sets_them():
    spec = StackSpec.from_dict(base(SEARCH))
    assert apply_params(spec, {"mode": "sequential"}).options == {}
    raw = apply_params(spec.replace(mode="sequential", options={}), {"variant": "fusion_raw"})
    assert (raw.mode, raw.options) == ("fusion", {"include_raw_input": True})
    with pytest.raises(SpecError, match=r"Unknown variant 'nope': the search lists \['fusion_raw'\]"):
        apply_params(spec, {"variant": "nope"})


def test_variants_merge_dicts_and_replace_lists():
    search = SearchSpec.from_dict({"variants": {"wide": {"train": {"batch_size": 16},
                                                         "head": {"params": {"hidden_units": [64, 64]}}}}})
    spec = StackSpec.from_dict(base()).replace(search=search)
    trial = apply_params(spec, {"variant": "wide"})
    assert (trial.train.batch_size, trial.train.epochs) == (16, 4)
    assert trial.head.params == {"hidden_units": [64, 64]}
    assert search.grid_size() is None and SearchSpec.from_dict({**search.to_dict(), "sampler": "grid"}).grid_size() == 1
