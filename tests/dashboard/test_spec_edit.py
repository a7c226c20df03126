"""dashboard/spec_edit.py: edits of the draft spec keep every reference consistent."""

import pytest

from core.spec import AdapterSpec, DatasetSpec, FineTuneSpec, LayerRule, MemberSpec, StackSpec, TrainSpec, rules
from dashboard import spec_edit


def three_members() -> StackSpec:
    return StackSpec(
        members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="mlp"),
                 MemberSpec("c", template="dense_head")),
        adapters=(AdapterSpec(after="a", kind="flatten", before="b"),),
        trainability=(LayerRule(member="b", layers=".*", trainable=False),),
        train=TrainSpec(fine_tune=FineTuneSpec(members=("b",))))


def test_default_spec_is_the_seed_with_five_epochs():
    spec = spec_edit.default_spec()
    assert [(m.name, m.template) for m in spec.members] == [("model_a", "cnn_features"), ("model_b", "dense_head")]
    assert spec.members[0].params["filters"] == [32] and spec.members[1].params["hidden_units"] == [128]
    assert spec.dataset.name == "digits28" and spec.train.epochs == 5 and spec.mode == "sequential"


def test_unique_names_are_valid_and_free():
    spec = three_members()
    assert spec_edit.unique_name(spec, "a") == "a_2"
    assert spec_edit.unique_name(spec, "my model.keras") == "my_model_keras"
    assert spec_edit.unique_name(spec, "2024") == "m_2024"
    assert spec_edit.unique_name(spec, "output") == "output_2"  # reserved for a step of the stack


def test_rename_follows_every_reference():
    spec = spec_edit.rename_member(three_members(), "b", "middle")
    assert [m.name for m in spec.members] == ["a", "middle", "c"]
    assert spec.adapters[0].before == "middle"
    assert spec.trainability[0].member == "middle"
    assert spec.train.fine_tune.members == ("middle",)


@pytest.mark.parametrize("name, message", [("a", "already exists"), ("9lives", "use a letter first"),
                                           ("fusion", "reserved")])
def test_rename_refuses_bad_names(name, message):
    with pytest.raises(ValueError, match=message):
        spec_edit.rename_member(three_members(), "b", name)


@pytest.mark.parametrize("name", ["a", "9lives", "has space", "fusion_concat", "x" * 65])
def test_the_name_check_is_the_rule_core_build_applies(name):
    # core.build reports the same sentence for the same name (core.spec.rules.member_name_problem).
    expected = rules.member_name_problem(name, ["a", "c"])
    assert expected
    with pytest.raises(ValueError) as raised:
        spec_edit.check_name(three_members(), name, current="b")
    assert str(raised.value) == expected


def test_a_transfer_from_a_run_fine_tunes_in_the_second_half():
    run_spec = StackSpec(members=(MemberSpec("a", template="mlp"),), train=TrainSpec(epochs=10))
    spec = spec_edit.transfer_from_run(run_spec, "run1", cut_at="dense")
    assert spec.train.fine_tune.start_epoch == rules.default_fine_tune_start(10) == 6
    short = spec_edit.transfer_from_run(run_spec.replace(train=TrainSpec(epochs=1)), "run1")
    assert (short.train.epochs, short.train.fine_tune.start_epoch) == (2, 2)


def test_remove_drops_the_adapters_rules_and_fine_tune_entries_naming_it():
    spec = spec_edit.remove_member(three_members(), "b")
    assert [m.name for m in spec.members] == ["a", "c"]
    assert spec.adapters == () and spec.trainability == () and spec.train.fine_tune.members == ()


def test_move_is_clamped_at_the_ends():
    spec = three_members()
    assert [m.name for m in spec_edit.move_member(spec, "c", -1).members] == ["a", "c", "b"]
    assert [m.name for m in spec_edit.move_member(spec, "a", -1).members] == ["a", "b", "c"]
    assert [m.name for m in spec_edit.move_member(spec, "a", 5).members] == ["b", "c", "a"]


def test_modes_map_members_onto_their_roles_and_drop_options_they_do_not_know():
    spec, notes = spec_edit.switch_mode(three_members(), "fusion", {"include_raw_input": True})
    # The top of the chain, a dense head, becomes the fusion's head.
    assert [m.name for m in spec.members] == ["a", "b"] and spec.head.name == "c"
    assert spec.options == {"include_raw_input": True}
    assert notes[0] == "'c', the top of the chain, is now the head."
    assert notes[-1] == "Now fusion: a, b read the input; their features and the raw input are concatenated into c."
    spec, notes = spec_edit.switch_mode(spec, "ensemble")
    assert spec.options == {"combine": "meta_head"} and spec.head.name == "c"  # kept as the meta-head
    spec, notes = spec_edit.switch_mode(spec, "ensemble", {"combine": "average"})
    assert spec.head is None and notes[0].startswith("Removed the head 'c'")  # averaging has no head
    spec, notes = spec_edit.switch_mode(spec, "transfer")
    assert spec.head.template == "dense_head" and "Added the head 'head'" in notes[0]
    assert StackSpec.from_dict(spec.to_dict()) == spec


def test_a_single_member_gets_a_new_head_rather_than_losing_its_only_member():
    single = StackSpec(members=(MemberSpec("features", template="cnn_features"),))
    spec, _ = spec_edit.switch_mode(single, "fusion")
    assert [m.name for m in spec.members] == ["features"] and spec.head.template == "dense_head"


def test_a_generated_stack_name_follows_mode_and_dataset_and_a_chosen_one_stays():
    default = spec_edit.default_spec()
    assert default.name == "sequential_digits28"
    fusion = spec_edit.set_mode(default, "fusion")
    assert fusion.name == "fusion_digits28"
    assert spec_edit.set_mode(fusion, "ensemble").name == "ensemble_digits28"
    assert spec_edit.set_mode(fusion, "fusion", {"include_raw_input": True}).name == "fusion_digits28"
    assert spec_edit.set_dataset(fusion, DatasetSpec(name="iris")).name == "fusion_iris"
    assert spec_edit.set_mode(default.replace(name="fusion_stack", mode="fusion"), "transfer").name == \
        "transfer_digits28"  # the generated name of earlier versions
    chosen = spec_edit.set_mode(default.replace(name="digits_fusion"), "fusion")
    assert spec_edit.set_mode(chosen, "transfer").name == "digits_fusion"
    assert spec_edit.set_dataset(chosen, DatasetSpec(name="iris")).name == "digits_fusion"


def test_apply_fix_appends_the_suggested_adapters_once():
    fix = [{"after": "a", "kind": "reshape", "before": "b", "target_shape": [5408, 1], "units": 0,
            "activation": "linear"}]
    spec = spec_edit.apply_fix(three_members(), fix)
    assert spec.adapters[-1] == AdapterSpec(after="a", kind="reshape", before="b", target_shape=(5408, 1))
    assert spec_edit.apply_fix(spec, fix) == spec
    assert spec_edit.remove_adapter(spec, 1).adapters == three_members().adapters


def test_layer_trainability_becomes_one_exact_rule_per_layer():
    spec = spec_edit.set_layer_trainable(StackSpec(), "base", "block_1/conv.1", False)
    spec = spec_edit.set_layer_trainable(spec, "base", "block_1/conv.1", True)
    assert spec.trainability == (LayerRule(member="base", layers=r"block_1/conv\.1", trainable=True),)
    assert spec_edit.layer_matches(spec.trainability[0].layers, "block_1/conv.1")
    assert not spec_edit.layer_matches(spec.trainability[0].layers, "block_1/conv11")


def test_regex_rules_match_like_core_and_bad_ones_say_why():
    assert spec_edit.layer_matches(".*conv.*", "backbone/block_1_conv")
    assert spec_edit.layer_matches("block_1_conv", "backbone/block_1_conv")  # the layer name alone
    assert not spec_edit.layer_matches("conv", "backbone/block_1_conv")  # full match, not search
    with pytest.raises(ValueError, match="not a valid regular expression"):
        spec_edit.add_rule(StackSpec(), "*", "conv(", False)
    spec = spec_edit.add_rule(StackSpec(), "*", ".*bn.*", False)
    assert spec_edit.remove_rule(spec, 0).trainability == ()


def test_runs_become_members_or_the_base_of_a_transfer_stack():
    spec = spec_edit.with_run_member(three_members(), "20260101-000000-abcdef")
    assert spec.members[-1] == MemberSpec(name="pretrained", source="run", run_id="20260101-000000-abcdef")
    layers = [{"name": "input", "class": "InputLayer"}, {"name": "model_a", "class": "Functional"},
              {"name": "model_b", "class": "Functional"}]
    assert spec_edit.feature_layer(layers) == "model_a" and spec_edit.feature_layer(layers[:2]) is None
    transfer = spec_edit.transfer_from_run(spec_edit.default_spec(), "20260101-000000-abcdef", cut_at="model_a")
    assert transfer.mode == "transfer" and transfer.members[0].source == "run" and transfer.head is not None
    assert transfer.members[0].cut_at == "model_a"
    assert transfer.dataset.name == "digits28" and transfer.train.fine_tune.start_epoch == 3
    assert StackSpec.from_dict(transfer.to_dict()) == transfer


def test_a_transfer_stack_on_a_one_epoch_run_has_room_for_its_fine_tune_phase():
    one_epoch = StackSpec(name="short", train=TrainSpec(epochs=1))
    transfer = spec_edit.transfer_from_run(one_epoch, "run-1")
    assert (transfer.train.epochs, transfer.train.fine_tune.start_epoch) == (2, 2)
    transfer.check_values()  # a valid spec: the fine-tune phase starts within the run


def test_the_wiring_of_a_graph_names_its_members_and_merges():
    from core.spec.presets import to_graph_spec

    fusion, _ = spec_edit.switch_mode(three_members(), "fusion", {"include_raw_input": True})
    words = spec_edit.wiring(to_graph_spec(fusion))
    assert words.startswith("a, b, c as drawn (") and "merges fusion_concat" in words
