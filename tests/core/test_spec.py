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
    assert json.loads(spec.to_json())["schema_version"] == 1


def test_member_source_is_inferred_from_its_fields():
    spec = StackSpec.from_dict({"members": [{"name": "a", "file": "m.keras"}, {"name": "b", "run_id": "r1"},
                                            {"name": "c", "template": "mlp"}]})
    assert [m.source for m in spec.members] == ["file", "run", "template"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"mode": "stacked"}, r"'mode' must be one of \['sequential', 'fusion', 'transfer', 'ensemble'\], received 'stacked'"),
        ({"membres": []}, r"Unknown key 'membres' in StackSpec. Allowed keys: .*'members'"),
        ({"members": [{"name": "a", "source": "url"}]}, r"'members\[0\].source' must be one of"),
        ({"members": [{"template": "mlp"}]}, r"Missing required key 'members\[0\].name'"),
        ({"train": {"epochs": "3"}}, r"'train.epochs' must be an integer, received '3'"),
        ({"train": {"learning_rate": "fast"}}, r"'train.learning_rate' must be a number"),
        ({"train": {"metrics": ["acc"]}}, r"'train.metrics\[0\]' must be one of \['auto', 'accuracy'"),
        ({"train": {"early_stopping": {"patiense": 2}}}, r"Unknown key 'train.early_stopping.patiense'"),
        ({"mode": "fusion", "options": {"combine": "average"}}, r"Unknown option 'options.combine' for mode 'fusion'. Allowed options: \['include_raw_input'\]"),
        ({"mode": "ensemble", "options": {"combine": "vote"}}, r"'options.combine' must be one of \['average', 'meta_head'\]"),
        ({"dataset": {"source": "parquet"}}, r"'dataset.source' must be one of \['builtin', 'csv', 'npz'\]"),
        ({"schema_version": 99}, r"'schema_version' 99 is not supported"),
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
