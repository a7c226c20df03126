"""The Assemble page: members, modes, trainability, the diagram, the pre-flight check and its fixes,
spec import and export, model-file and run members. The inspector answering is real."""

import json

import pytest

from core.spec import AdapterSpec, DatasetSpec, LayerRule, MemberSpec, StackSpec
from core.storage.paths import run_stack_path
from dashboard import state
from tests.dashboard.apptest import TINY, app, elements, open_page, texts

pytestmark = pytest.mark.usefixtures("inspector_home")


def assemble(spec: StackSpec | None = None):
    return open_page(app(spec), "assemble")


def draft(at) -> StackSpec:
    return at.session_state[state.DRAFT]


def metrics(at):
    return {metric.label: metric.value for metric in at.metric}


def diagram(at) -> str:
    (chart,) = elements(at, "graphviz_chart")
    return chart.proto.spec


def test_the_default_stack_builds_and_is_drawn():
    at = assemble()
    assert "The stack builds: (28, 28, 1) → (10,)." in texts(at)
    assert metrics(at) == {"Total parameters": "693,962", "Trainable": "693,962", "Non-trainable": "0"}
    assert '"member:model_a"' in diagram(at) and "(28, 28, 1) → (5408,)" in diagram(at)
    names = [t.value for t in at.text_input if t.key.startswith("draft-member-") and t.key.endswith("-name")]
    assert names == ["model_a", "model_b"]
    exported = at.download_button(key="asm-export")
    assert exported.label == "Export spec (.json)"


def test_a_mismatch_is_reported_and_its_fix_applied_with_one_click():
    at = assemble()
    at.selectbox(key="add-template").set_value("conv1d_encoder").run()
    at.button(key="add-template-button").click().run()
    assert [m.name for m in draft(at).members] == ["model_a", "model_b", "conv1d"]
    at.button(key="up-conv1d").click().run()
    assert [m.name for m in draft(at).members] == ["model_a", "conv1d", "model_b"]
    assert "does not build yet" in texts(at)
    fix = next(b for b in at.button if b.label.startswith("Apply fix"))
    assert fix.label == "Apply fix: Reshape(5408, 1)"
    assert "Cannot feed 'model_a' into 'conv1d'" in texts(at)
    assert 'color="#dc2626"' in diagram(at)  # the problem is drawn in red
    fix.click().run()
    reshape = AdapterSpec(after="model_a", kind="reshape", before="conv1d", target_shape=(5408, 1))
    assert draft(at).adapters == (reshape,)
    assert "The stack builds" in texts(at)
    assert 'label="Reshape(5408, 1)"' in diagram(at)
    at.button(key="asm-adapter-remove-0").click().run()
    assert draft(at).adapters == () and "does not build yet" in texts(at)
    at.toggle(key="draft-auto-adapters").set_value(True).run()
    assert draft(at).auto_adapters and "The stack builds" in texts(at)
    assert "Inserted automatically: Reshape(5408, 1) after 'model_a'" in texts(at)


def test_members_are_renamed_removed_and_their_template_parameters_edited():
    at = assemble()
    at.text_input(key="draft-member-model_a-name").set_value("features").run()
    assert [m.name for m in draft(at).members] == ["features", "model_b"]
    at.text_input(key="draft-member-features-name").set_value("model_b").run()
    assert "already exists" in at.error[0].value
    at.text_input(key="draft-member-features-cnn_features-filters").set_value("8, 16").run()
    assert draft(at).members[0].params["filters"] == [8, 16]
    assert "(28, 28, 1) → (400,)" in diagram(at)
    at.text_input(key="draft-member-features-cnn_features-filters").set_value("8, x").run()
    assert "not a list of whole numbers" in at.error[0].value
    at.button(key="remove-features").click().run()
    assert [m.name for m in draft(at).members] == ["model_b"]


def test_freezing_a_member_and_single_layers_changes_the_trainable_count():
    at = assemble()
    at.toggle(key="draft-member-model_a-trainable").set_value(False).run()
    assert metrics(at)["Non-trainable"] == "320"
    assert "FROZEN" in diagram(at)
    at.toggle(key="draft-member-model_a-trainable").set_value(True).run()
    editor = next(e for e in at.data_editor if e.key.startswith("draft-layers-model_b-"))
    assert list(editor.value["layer"]) == ["model_b_dense1", "model_b_output"]
    at.session_state[editor.key] = {"edited_rows": {0: {"trainable": False}}, "added_rows": [], "deleted_rows": []}
    at.run()
    assert draft(at).trainability == (LayerRule(member="model_b", layers="model_b_dense1", trainable=False),)
    assert metrics(at)["Non-trainable"] == "692,352"
    assert "partly" in diagram(at).lower()


def test_layers_selected_by_regex_become_a_rule():
    at = assemble()
    at.text_input(key="asm-rule-regex").set_value(".*conv.*").run()
    assert "Matches 1 layer: model_a/model_a_conv1" in texts(at)
    at.button(key="asm-rule-add").click().run()
    assert draft(at).trainability == (LayerRule(member="*", layers=".*conv.*", trainable=False),)
    assert metrics(at)["Non-trainable"] == "320"
    at.text_input(key="asm-rule-regex").set_value("conv(").run()
    assert "not a valid regular expression" in at.error[0].value
    at.button(key="asm-rule-remove-0").click().run()
    assert draft(at).trainability == ()


def test_modes_map_the_members_onto_their_roles_and_say_what_changed():
    at = assemble()
    at.selectbox(key="draft-mode").set_value("fusion").run()
    spec = draft(at)
    # The chain's dense head on top becomes the fusion's head, not a fused member.
    assert [m.name for m in spec.members] == ["model_a"] and spec.head.name == "model_b"
    assert spec.name == "fusion_digits28" and at.text_input(key="draft-name").value == "fusion_digits28"
    assert "'model_b', the top of the chain, is now the head." in texts(at)
    at.toggle(key="draft-options-fusion-include_raw_input").set_value(True).run()
    assert draft(at).options == {"include_raw_input": True} and draft(at).name == "fusion_digits28"
    assert "The stack builds" in texts(at)
    assert "concatenate" in diagram(at)
    at.selectbox(key="draft-mode").set_value("ensemble").run()
    # The head is kept, as the meta-head, rather than silently dropped.
    assert draft(at).head.name == "model_b" and draft(at).options == {"combine": "meta_head"}
    assert "'model_b' is now the ensemble's meta-head" in texts(at)
    at.selectbox(key="draft-options-ensemble-combine").set_value("average").run()
    assert draft(at).head is None and draft(at).options == {"combine": "average"}
    assert "Removed the head 'model_b'" in texts(at)
    at.button(key="asm-undo").click().run()
    assert draft(at).head.name == "model_b" and draft(at).options == {"combine": "meta_head"}


def test_a_stack_name_the_user_typed_stays_when_the_mode_changes():
    at = assemble()
    at.text_input(key="draft-name").set_value("digits_fusion").run()
    at.selectbox(key="draft-mode").set_value("fusion").run()
    assert draft(at).name == "digits_fusion" and at.text_input(key="draft-name").value == "digits_fusion"


def test_a_spec_is_imported_from_json_and_a_bad_one_refused():
    at = assemble()
    at.file_uploader(key="asm-import").set_value(("tiny.json", TINY.to_json().encode(), "application/json")).run()
    assert draft(at) == TINY
    # The widgets showing the draft are new ones, started from the imported draft (the browser
    # would otherwise keep showing the old values).
    assert at.text_input(key="draft-name-r1").value == "tiny"
    assert at.selectbox(key="draft-mode-r1").value == "sequential"
    bad = json.dumps({**TINY.to_dict(), "mode": "stacked"}).encode()
    at.file_uploader(key="asm-import").set_value(("bad.json", bad, "application/json")).run()
    assert "'bad.json' is not a StackLab spec: 'mode' must be one of" in at.error[0].value
    assert draft(at) == TINY
    at.button(key="asm-reset").click().run()
    assert draft(at) == TINY  # an edited draft is replaced only after a yes
    assert "Replace your draft 'tiny' with the default stack?" in texts(at)
    at.button(key="asm-replace-yes").click().run()
    assert draft(at).name == "sequential_digits28"
    assert at.text_input(key="draft-name-r2").value == "sequential_digits28"
    at.button(key="asm-undo").click().run()  # one level of undo
    assert draft(at) == TINY and at.text_input(key="draft-name-r3").value == "tiny"
    assert "asm-undo" not in [button.key for button in at.button]


def test_the_draft_survives_a_reload_and_shows_in_a_new_tab(stacklab_home):
    at = assemble()
    at.text_input(key="draft-name").set_value("my_stack").run()
    at.selectbox(key="add-template").set_value("mlp").run()
    at.button(key="add-template-button").click().run()
    edited = draft(at)
    assert [m.name for m in edited.members] == ["model_a", "model_b", "mlp"]
    assert "Saved as you edit" in texts(at)
    reloaded = assemble()  # a new session: a reload, another tab, a restarted server
    assert draft(reloaded) == edited
    assert reloaded.text_input(key="draft-name").value == "my_stack"
    # An edit in one tab reaches the other at its next rerun.
    reloaded.text_input(key="draft-name").set_value("renamed").run()
    at.run()
    assert draft(at).name == "renamed" and at.text_input(key="draft-name-r1").value == "renamed"


def test_an_import_over_an_edited_draft_asks_first(stacklab_home):
    at = assemble()
    at.text_input(key="draft-name").set_value("mine").run()
    at.file_uploader(key="asm-import").set_value(("tiny.json", TINY.to_json().encode(), "application/json")).run()
    assert draft(at).name == "mine"
    at.button(key="asm-replace-no").click().run()
    assert draft(at).name == "mine" and "asm-replace-yes" not in [button.key for button in at.button]


def test_a_model_file_is_inspected_cut_and_added(shared_home, finished_run):
    at = assemble()
    content = run_stack_path(finished_run).read_bytes()
    at.file_uploader(key="add-file-upload").set_value(("encoder.keras", content, "application/octet-stream")).run()
    assert not at.error, [e.value for e in at.error]
    (layers,) = [table.value for table in at.dataframe if table.editing_mode == "read_only"]
    assert list(layers["layer"]) == ["input", "encoder", "classifier"]
    assert "Functional 'tiny': (4,) → (3,) · 67 params (67 trainable)" in texts(at)
    cut = next(s for s in at.selectbox if s.label == "Cut at layer" and s.key.startswith("add-file"))
    cut.set_value("encoder").run()
    at.button(key="add-file-button").click().run()
    member = draft(at).members[-1]
    assert (member.name, member.source, member.cut_at) == ("encoder", "file", "encoder")
    assert member.file.startswith("sha256:")


def test_a_refused_model_file_shows_its_reason_and_the_app_keeps_working(shared_home):
    at = assemble()
    at.file_uploader(key="add-file-upload").set_value(("bad.keras", b"definitely not a zip", "application/zip")).run()
    # Among the page's errors: the shared home may hold a finished run whose model file is gone,
    # which the "Earlier run" tab reports too.
    assert any(error.value.startswith("Refused 'bad.keras':") for error in at.error), [e.value for e in at.error]
    assert "The stack builds" in texts(at)
    at.selectbox(key="draft-mode").set_value("fusion").run()
    assert draft(at).mode == "fusion"


def test_an_earlier_run_becomes_a_member(shared_home, finished_run):
    at = assemble(TINY)
    at.selectbox(key="add-run").set_value(finished_run).run()
    at.button(key="add-run-button").click().run()
    assert draft(at).members[-1] == MemberSpec(name="pretrained", source="run", run_id=finished_run)
    assert f"run {finished_run}" in diagram(at)


def test_only_fixes_that_build_are_offered():
    iris = StackSpec(name="iris_cnn", members=(MemberSpec("features", template="cnn_features"),
                                              MemberSpec("head", template="dense_head")),
                     dataset=DatasetSpec(name="iris"))
    at = assemble(iris)
    assert "does not build yet" in texts(at)
    assert not [b for b in at.button if b.label.startswith("Apply fix")]  # Reshape(2, 2, 1) cannot work
    assert any("No adapter fits" in str(md.value) for md in at.markdown)


def test_a_member_frozen_by_rules_shows_its_switch_off_and_turning_it_on_drops_the_rules():
    frozen = TINY.replace(trainability=(LayerRule(member="encoder", layers=".*", trainable=False),))
    at = assemble(frozen)
    switch = at.toggle(key="draft-member-encoder-trainable-frozen-by-rules")
    assert switch.value is False and "FROZEN" in diagram(at)
    switch.set_value(True).run()
    assert draft(at).trainability == () and at.toggle(key="draft-member-encoder-trainable").value is True


def test_normalization_statistics_do_not_count_as_frozen():
    spec = StackSpec(name="tabular", members=(MemberSpec("encoder", template="tabular_encoder"),
                                              MemberSpec("head", template="dense_head")),
                     dataset=DatasetSpec(name="iris"))
    at = assemble(spec)
    assert "The stack builds" in texts(at)
    assert "PARTLY FROZEN" not in diagram(at) and at.toggle(key="draft-member-encoder-trainable").value is True
