"""Assemble's Compare modes: the draft in every mode as one sweep, then the Sweeps page showing it."""

from __future__ import annotations

import pytest

from core import sweeps
from core.spec import MemberSpec, SpecError
from dashboard import state
from tests.dashboard.apptest import TINY, app, open_page, texts

pytestmark = pytest.mark.usefixtures("inspector_home")


@pytest.fixture
def spawned(monkeypatch) -> list[str]:
    started: list[str] = []
    monkeypatch.setattr(sweeps, "spawn_driver", lambda study, storage=None: started.append(study) or 4242)
    return started


def test_compare_modes_makes_one_sweep_with_a_trial_per_mode_and_opens_it(spawned):
    at = open_page(app(TINY), "assemble")
    assert ("Compare modes trains the same data and members, with the same seed (0) and 3 epochs, as sequential, "
            "fusion with the raw input, an averaging ensemble: one run each, as one sweep.") in texts(at)
    at.button(key="asm-compare-modes").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [study] = spawned
    assert study.startswith("tiny-modes-")
    summary = sweeps.sweep(study)
    variants = summary.base_spec.search.variants
    assert list(variants) == ["sequential", "fusion_raw", "ensemble"]
    # One trial per variant: a grid over the variants, the budget its size, every trial the
    # draft's data, seed and epochs.
    assert summary.budget == len(variants) == summary.base_spec.search.grid_size()
    assert summary.base_spec.search.sampler == "grid" and summary.base_spec.search.pruner.kind == "none"
    specs = [sweeps.trial_spec(summary.base_spec, {"variant": name}, n) for n, name in enumerate(variants)]
    assert [s.mode for s in specs] == ["sequential", "fusion", "ensemble"]
    assert {(s.dataset, s.train) for s in specs} == {(TINY.dataset, TINY.train)}
    assert at.title[0].value == "Sweeps" and at.session_state[state.SELECTED_SWEEP] == study
    assert f"Comparing 3 modes of 'tiny' as sweep '{study}'" in texts(at)
    assert "0 of 3 trials done" in texts(at)
    # Pressed again for the same draft: the same sweep is found again, not a second one.
    at = open_page(at, "assemble")
    at.button(key="asm-compare-modes").click().run()
    assert spawned == [study, study] and [s.study for s in sweeps.list_sweeps()] == [study]


def test_a_frozen_base_adds_transfer_with_and_without_fine_tune(spawned):
    frozen = TINY.replace(members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [8]},
                                              trainable=False), TINY.members[1]))
    at = open_page(app(frozen), "assemble")
    assert "transfer (frozen base), transfer with a fine-tune phase" in texts(at)
    at.button(key="asm-compare-modes").click().run()
    assert set(sweeps.sweep(spawned[0]).base_spec.search.variants) >= {"transfer", "transfer_fine_tune"}


def test_a_graph_cannot_compare_modes_and_says_why(spawned):
    at = open_page(app(TINY), "assemble")
    at.selectbox(key="draft-mode").set_value("graph").run()
    assert at.button(key="asm-compare-modes").disabled
    assert "A graph's topology is not one of the modes" in texts(at)
    assert spawned == [] and sweeps.list_sweeps() == []


def test_a_refusal_of_core_is_shown_and_starts_nothing(spawned, monkeypatch):
    def refuse(spec):
        raise SpecError("'train.batch_size' must be at least 1, received 0.")

    monkeypatch.setattr(sweeps, "compare_modes_spec", refuse)
    at = open_page(app(TINY), "assemble")
    at.button(key="asm-compare-modes").click().run()
    assert at.title[0].value == "Assemble"
    assert spawned == [] and sweeps.list_sweeps() == []
    assert any("'train.batch_size' must be at least 1, received 0." in error.value for error in at.error)
