"""core/storage/drafts.py: one autosaved draft, one level of undo, and nothing lost when it cannot be read."""

import json

import pytest

from core.spec import FineTuneSpec, MemberSpec, SpecError, StackSpec, TrainSpec
from core.storage import drafts

FIRST = StackSpec(name="first", members=(MemberSpec("a", template="mlp"),))
SECOND = StackSpec(name="second", mode="fusion", members=(MemberSpec("b", template="mlp"),))


def test_without_a_saved_draft_there_is_nothing_to_load():
    assert drafts.load() is None and drafts.stamp() is None


def test_each_save_bumps_the_revision_and_round_trips_the_spec():
    assert drafts.save(FIRST).revision == 1
    saved = drafts.save(FIRST.replace(name="edited"))
    assert saved.revision == 2 and drafts.load() == saved
    assert drafts.load().spec.name == "edited" and drafts.load().previous is None  # an edit is not a replacement


def test_a_replacement_keeps_the_replaced_draft_for_one_undo():
    drafts.save(FIRST)
    drafts.save(SECOND, replaces=True, reason="an import")
    drafts.save(SECOND.replace(name="second_edited"))  # edits after it keep the undo
    assert drafts.load().previous == FIRST and drafts.load().replaced_by == "an import"
    restored = drafts.undo()
    assert restored.spec == FIRST and restored.previous is None
    with pytest.raises(ValueError, match="only the last replacement can be undone"):
        drafts.undo()


def test_an_unreadable_draft_is_moved_aside_not_overwritten(stacklab_home):
    drafts.draft_path().write_text(json.dumps({"format": 1, "revision": 3, "spec": {"mode": "stacked"}}))
    with pytest.raises(SpecError, match="it was kept as .*draft-unreadable-"):
        drafts.load()
    (kept,) = stacklab_home.glob("draft-unreadable-*.json")
    assert "stacked" in kept.read_text()
    assert drafts.load() is None
    assert drafts.save(FIRST).revision == 1


def test_a_half_finished_draft_with_a_value_out_of_range_is_kept():
    # Fine-tune after the last epoch: the pre-flight check reports it; the draft is not "unreadable".
    unfinished = FIRST.replace(train=TrainSpec(epochs=2, fine_tune=FineTuneSpec(start_epoch=5)))
    drafts.save(unfinished)
    assert drafts.load().spec == unfinished
