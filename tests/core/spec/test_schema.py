import json

import pytest

from core.spec import (
    AdapterSpec,
    DatasetSpec,
    FineTuneSpec,
    LayerRule,
    MemberSpec,
    SpecError,
    StackSpec,
    TrainSpec,
    load_spec,
)


def full_spec() -> StackSpec:
    return StackSpec(
        name="everything",
        mode="transfer",
        members=(MemberSpec(name="base", source="file", file="sha256:" + "ab" * 32, cut_at="flatten"),),
        head=MemberSpec(name="head", template="dense_head", params={"hidden_units": [64]}),
        options={"freeze_base": True},
        adapters=(AdapterSpec(after="base", kind="dense", units=16, activation="relu"),),
        auto_adapters=True,
        trainability=(LayerRule(member="base", layers="conv.*", trainable=True),),
        train=TrainSpec(epochs=7, metrics=("accuracy", "auc"), fine_tune=FineTuneSpec(start_epoch=3)),
        dataset=DatasetSpec(source="csv", path="data.csv", target="label", features=("a", "b")),
    )


def test_round_trip_through_dict_and_json():
    spec = full_spec()
    assert StackSpec.from_dict(spec.to_dict()) == spec
    assert StackSpec.from_json(spec.to_json()) == spec
    assert json.loads(spec.to_json())["schema_version"] == 2


def test_member_source_is_inferred_from_its_fields():
    spec = StackSpec.from_dict({"members": [{"name": "a", "file": "m.keras"}, {"name": "b", "run_id": "r1"},
                                            {"name": "c", "template": "mlp"}]})
    assert [m.source for m in spec.members] == ["file", "run", "template"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"mode": "stacked"},
         r"'mode' must be one of \['sequential', 'fusion', 'transfer', 'ensemble', 'graph'\], received 'stacked'"),
        ({"membres": []}, r"Unknown key 'membres' in StackSpec. Allowed keys: .*'members'"),
        ({"members": [{"name": "a", "source": "url"}]}, r"'members\[0\].source' must be one of"),
        ({"members": [{"template": "mlp"}]}, r"Missing required key 'members\[0\].name'"),
        ({"train": {"epochs": "3"}}, r"'train.epochs' must be an integer, received '3'"),
        ({"train": {"learning_rate": "fast"}}, r"'train.learning_rate' must be a number"),
        ({"train": {"metrics": ["acc"]}}, r"'train.metrics\[0\]' must be one of \['auto', 'accuracy'"),
        ({"train": {"early_stopping": {"patiense": 2}}}, r"Unknown key 'train.early_stopping.patiense'"),
        ({"mode": "fusion", "options": {"combine": "average"}},
         r"Unknown option 'options.combine' for mode 'fusion'. Allowed options: \['include_raw_input'\]"),
        ({"mode": "ensemble", "options": {"combine": "vote"}},
         r"'options.combine' must be one of \['average', 'meta_head'\]"),
        ({"dataset": {"source": "parquet"}}, r"'dataset.source' must be one of \['builtin', 'csv', 'npz', 'images'\]"),
        ({"schema_version": 99}, r"'schema_version' 99 is not supported: this StackLab reads schema_version 1 and 2"),
        ({"members": {"name": "a"}}, r"'members' must be a list"),
    ],
)
def test_bad_values_name_the_key_and_the_allowed_values(data, message):
    with pytest.raises(SpecError, match=message):
        StackSpec.from_dict(data)


def test_invalid_json_is_a_spec_error():
    with pytest.raises(SpecError, match="not valid JSON"):
        StackSpec.from_json("{not json")


def test_a_draft_with_no_members_is_still_valid_data():
    assert StackSpec.from_dict({"mode": "fusion"}).members == ()


def test_option_falls_back_to_mode_default():
    assert StackSpec(mode="ensemble").option("combine") == "average"
    assert StackSpec(mode="ensemble", options={"combine": "meta_head"}).option("combine") == "meta_head"


def test_load_spec_resolves_relative_paths_against_the_spec_folder(tmp_path):
    folder = tmp_path / "specs"
    folder.mkdir()
    spec = StackSpec(
        members=(MemberSpec(name="base", source="file", file="model.keras"),
                 MemberSpec(name="up", source="file", file="sha256:" + "0" * 64)),
        dataset=DatasetSpec(source="npz", path="data.npz"),
    )
    (folder / "spec.json").write_text(spec.to_json())
    loaded = load_spec(folder / "spec.json")
    assert loaded.members[0].file == str(folder / "model.keras")
    assert loaded.members[1].file == "sha256:" + "0" * 64
    assert loaded.dataset.path == str(folder / "data.npz")


# -- numbers in range (issue 8, item 21) ---------------------------------------------------


@pytest.mark.parametrize(
    "data, message",
    [
        ({"train": {"batch_size": 0}}, r"^'train.batch_size' must be at least 1, received 0\.$"),
        ({"train": {"batch_size": -8}}, r"^'train.batch_size' must be at least 1, received -8\.$"),
        ({"train": {"epochs": 0}}, r"^'train.epochs' must be at least 1, received 0\.$"),
        ({"train": {"learning_rate": 0}}, r"^'train.learning_rate' must be greater than 0.0, received 0\.0\.$"),
        ({"train": {"learning_rate": -0.01}}, r"'train.learning_rate' must be greater than 0.0, received -0.01"),
        ({"train": {"validation_split": 1.0}}, r"'train.validation_split' must be between 0.0 and 0.9, received 1.0"),
        ({"train": {"validation_split": -0.1}}, r"'train.validation_split' must be between 0.0 and 0.9"),
        ({"train": {"weight_decay": -1e-4}}, r"'train.weight_decay' must be at least 0.0, received -0.0001"),
        ({"train": {"seed": -1}}, r"'train.seed' must be between 0 and 4294967295, received -1"),
        ({"train": {"early_stopping": {"patience": -1}}}, r"'train.early_stopping.patience' must be at least 0"),
        ({"train": {"early_stopping": {"min_delta": -0.5}}}, r"'train.early_stopping.min_delta' must be at least"),
        ({"train": {"epochs": 9, "fine_tune": {"start_epoch": 1}}},
         r"'train.fine_tune.start_epoch' must be at least 2, received 1"),
        ({"train": {"epochs": 9, "fine_tune": {"unfreeze_top_layers": -2}}},
         r"'train.fine_tune.unfreeze_top_layers' must be at least 0, received -2"),
        ({"train": {"epochs": 9, "fine_tune": {"learning_rate_factor": 0.0}}},
         r"'train.fine_tune.learning_rate_factor' must be greater than 0.0, received 0.0"),
        ({"train": {"epochs": 5, "fine_tune": {"start_epoch": 6}}},
         r"^'train.fine_tune.start_epoch' must be at most 'train.epochs' \(5\), received 6: the fine-tune phase "
         r"would never start"),
        ({"adapters": [{"after": "a", "kind": "dense"}]},
         r"'adapters\[0\].units' must be at least 1 for a dense adapter, received 0"),
        ({"adapters": [{"after": "a", "kind": "flatten"}, {"after": "a", "kind": "dense", "units": -3}]},
         r"'adapters\[1\].units' must be at least 0, received -3"),
        ({"adapters": [{"after": "a", "kind": "reshape", "target_shape": [28, 0, 1]}]},
         r"'adapters\[0\].target_shape\[1\]' must be at least 1, received 0"),
    ],
)
def test_numbers_out_of_range_name_the_key_the_range_and_the_value(data, message):
    with pytest.raises(SpecError, match=message):
        StackSpec.from_dict(data)
    with pytest.raises(SpecError, match=message):
        StackSpec.from_json(json.dumps(data))


def test_the_edges_of_each_range_are_allowed():
    spec = StackSpec.from_dict({
        "adapters": [{"after": "a", "kind": "dense", "units": 1}, {"after": "a", "kind": "resizing",
                                                                   "target_shape": [1, 1]}],
        "train": {"batch_size": 1, "epochs": 2, "learning_rate": 1e-9, "validation_split": 0.9, "seed": 0,
                  "weight_decay": 0, "early_stopping": {"patience": 0, "min_delta": 0},
                  "fine_tune": {"start_epoch": 2, "unfreeze_top_layers": 0, "learning_rate_factor": 1e-6}}})
    assert spec.train.fine_tune.start_epoch == spec.train.epochs == 2
    assert StackSpec.from_dict({"train": {"validation_split": 0}}).train.validation_split == 0.0


def test_a_spec_built_in_code_is_checked_with_check_values():
    spec = StackSpec(train=TrainSpec(epochs=3, fine_tune=FineTuneSpec(start_epoch=4)))
    with pytest.raises(SpecError, match=r"'train.fine_tune.start_epoch' must be at most 'train.epochs' \(3\)"):
        spec.check_values()
    # Stored specs written before a rule existed can still be read back.
    assert StackSpec.from_json(spec.to_json(), check_values=False) == spec


def test_ranges_are_data_for_forms():
    assert TrainSpec.range_of("batch_size").describe() == "at least 1"
    assert TrainSpec.range_of("optimizer") is None
    assert FineTuneSpec.range_of("start_epoch").minimum == 2


def test_every_example_spec_still_loads():
    from pathlib import Path

    examples = sorted((Path(__file__).resolve().parents[3] / "examples").glob("*.json"))
    assert len(examples) >= 3
    for path in examples:
        load_spec(path).check_values()


# -- size and nesting limits (issue 8, item 23) ---------------------------------------------


def test_a_deeply_nested_document_is_one_spec_error_not_a_recursion_error():
    with pytest.raises(SpecError, match=r"^The spec is nested more than 32 levels deep"):
        StackSpec.from_json("[" * 100_000 + "]" * 100_000)
    nested = '{"name": "x", "members": [{"name": "a", "params": {"p": ' + "[" * 40 + "]" * 40 + "}}]}"
    with pytest.raises(SpecError, match=r"nested more than 32 levels deep at 'members\[0\].params.p\[0\]"):
        StackSpec.from_json(nested)
    with pytest.raises(SpecError, match="nested more than 32 levels deep"):
        StackSpec.from_dict({"options": {"a": json.loads("[" * 40 + "]" * 40)}})


def test_a_spec_over_the_size_limit_is_refused_before_it_is_parsed(tmp_path, monkeypatch):
    big = StackSpec(name="x" * 2_000).to_json()
    monkeypatch.setenv("STACKLAB_MAX_SPEC_BYTES", "1000")
    with pytest.raises(SpecError, match=r"^The spec is 2\.\d KiB, over the limit of 1,000 bytes "
                                        r"\(STACKLAB_MAX_SPEC_BYTES\)"):
        StackSpec.from_json(big)
    path = tmp_path / "big.json"
    path.write_text(big)
    with pytest.raises(SpecError, match=r"^'big.json' is 2\.\d KiB, over the 1,000 bytes limit"):
        load_spec(path)
    monkeypatch.setenv("STACKLAB_MAX_SPEC_BYTES", "lots")
    with pytest.raises(ValueError, match="STACKLAB_MAX_SPEC_BYTES must be a positive whole number"):
        load_spec(path)
    monkeypatch.delenv("STACKLAB_MAX_SPEC_BYTES")
    assert load_spec(path).name == "x" * 2_000  # the default limit is 1 MiB
