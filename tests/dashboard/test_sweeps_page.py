"""The Sweeps page: empty state, starting a sweep, the trial table, Optuna's figures, the best
trial (its curves, its run on the Runs page, its spec into Assemble with Undo), Continue, and a
Compare-modes sweep's table. Studies are made in the test's $STACKLAB_HOME with fake runs; no
driver runs (spawn_driver is replaced)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from optuna.trial import TrialState

from core import runs, sweeps
from core.spec import SearchSpec, StackSpec
from core.storage import drafts
from core.sweeps.space import distributions
from dashboard import state
from dashboard.widgets import sweeps as sweep_widgets
from tests.dashboard.apptest import ROOT, TINY, app, elements, fake_run, open_page, texts

pytestmark = pytest.mark.usefixtures("inspector_home")

SEARCH = {"study": "tiny-lr", "objective": {"metric": "val_accuracy", "direction": "maximize"}, "trials": 3,
          "sampler": "random", "pruner": {"kind": "none"}, "seed": 0,
          "space": {"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
                    "members.encoder.params.hidden_units": {"type": "categorical", "choices": [[4], [8]]}}}
SWEEP_SPEC = TINY.replace(search=SearchSpec.from_dict(SEARCH))


@pytest.fixture
def spawned(monkeypatch) -> list[str]:
    """spawn_driver records the study instead of starting a driver process."""
    started: list[str] = []
    monkeypatch.setattr(sweeps, "spawn_driver", lambda study, storage=None: started.append(study) or 4242)
    return started


def add_trial(study: str, params: dict, value: float | None, epochs: int = 3, state_name: str = "complete") -> str:
    """A trial told to Optuna as the driver would, its run a fake finished run with `epochs` epochs."""
    loaded = sweeps.load_study(study)
    summary = sweeps.sweep(study)
    # An enqueued trial is asked with these values (Optuna's labels: a list as its JSON).
    loaded.enqueue_trial({path: json.dumps(v) if isinstance(v, list) else v for path, v in params.items()})
    trial = loaded.ask(fixed_distributions=distributions(summary.base_spec.search))
    spec = sweeps.trial_spec(summary.base_spec, params, trial.number)
    run_id = fake_run(spec, epochs=epochs, status="finished")
    trial.set_user_attr("run_id", run_id)
    if state_name == "complete":
        loaded.tell(trial, value)
    elif state_name == "pruned":
        trial.set_user_attr("pruned_epoch", 2)
        loaded.tell(trial, state=TrialState.PRUNED)
    return run_id


def table_with(at, column: str):
    """The dataframe on the page that has `column` (AppTest does not report a dataframe's key)."""
    return next(frame.value for frame in at.dataframe if column in frame.value.columns)


def sweeps_page(draft: StackSpec | None = None):
    return open_page(app(draft), "sweeps")


def test_without_sweeps_it_says_how_to_start_one():
    at = sweeps_page()
    assert "No sweeps yet." in texts(at)
    assert at.expander[0].label == "Start a sweep"
    # The default draft has no search section: an upload or the example.
    assert at.radio(key="sweeps-source").options == ["A sweep JSON file",
                                                     "The example (digits8: learning rate and filters)"]


def test_start_the_example_sweep_creates_it_and_spawns_its_driver(spawned):
    at = sweeps_page()
    at.radio(key="sweeps-source").set_value("example").run()
    assert "Sweep 'sweep_digits8': maximize val_accuracy" in texts(at)
    at.number_input(key="sweeps-trials-example").set_value(2).run()
    at.button(key="sweeps-start").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert spawned == ["sweep_digits8"]
    assert sweeps.sweep("sweep_digits8").budget == 2
    assert "Sweep 'sweep_digits8' started: 2 trials" in texts(at)
    assert "0 of 2 trials done · no driver running" in texts(at)  # the fake driver writes no pid file
    assert state.SELECTED_SWEEP in at.session_state and at.session_state[state.SELECTED_SWEEP] == "sweep_digits8"


def test_a_draft_without_search_cannot_be_swept_and_says_so(spawned):
    at = sweeps_page(TINY)
    assert "The draft (its search section)" not in at.radio(key="sweeps-source").options
    assert "The draft 'tiny' has no search section" in texts(at)


def test_a_sweep_already_made_with_another_spec_is_refused_with_the_reason(spawned):
    sweeps.create_sweep(SWEEP_SPEC)
    other = SWEEP_SPEC.replace(train=SWEEP_SPEC.train.__class__(epochs=5))
    at = sweeps_page(other)
    assert at.radio(key="sweeps-source").value == "draft"
    at.button(key="sweeps-start").click().run()
    assert any("Sweep 'tiny-lr' already exists with another spec" in e.value for e in at.error)
    assert spawned == []


def test_the_trial_table_figures_and_best_trial(no_workers):
    study = sweeps.create_sweep(SWEEP_SPEC)
    add_trial(study, {"train.learning_rate": 1e-3, "members.encoder.params.hidden_units": [8]}, 0.8)
    best_run = add_trial(study, {"train.learning_rate": 5e-3, "members.encoder.params.hidden_units": [4]}, 0.9)
    add_trial(study, {"train.learning_rate": 2e-4, "members.encoder.params.hidden_units": [4]}, None,
              state_name="pruned")
    at = sweeps_page()
    table = table_with(at, "pruned at epoch")
    assert list(table["trial"]) == [0, 1, 2]
    assert list(table["state"]) == ["complete", "complete", "pruned"]
    assert list(table["members.encoder.params.hidden_units"]) == ["[8]", "[4]", "[4]"]
    assert table["val_accuracy"].tolist()[:2] == [0.8, 0.9] and table["val_accuracy"].isna().tolist()[2]
    assert table["run"][1] == best_run and list(table["run status"]) == ["finished"] * 3
    assert list(table["pruned at epoch"].fillna(0)) == [0, 0, 2]
    assert list(table["epochs"]) == ["3 / 3"] * 3
    assert "3 of 3 trials done · finished · best val_accuracy 0.9000 (trial 1)" in texts(at)
    assert "Best: trial 1" in texts(at)
    assert len(elements(at, "plotly_chart")) == 3  # history, importances, parallel coordinate
    charts = [json.loads(c.proto.json) for c in elements(at, "bidi_component")]
    assert any(best_run in json.dumps(chart) for chart in charts)  # the best trial's curves


def test_open_the_best_trial_on_the_runs_page(no_workers):
    study = sweeps.create_sweep(SWEEP_SPEC)
    best_run = add_trial(study, {"train.learning_rate": 5e-3, "members.encoder.params.hidden_units": [4]}, 0.9)
    fake_run(epochs=1, status="finished")  # a newer run: the Runs page would show it without the selection
    at = sweeps_page()
    at.button(key="sweeps-open-best").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Runs"
    assert f"tiny-t0 · {best_run}" in texts(at)  # the best trial's run in detail, not the newest run


def test_use_this_spec_replaces_the_draft_and_undo_brings_it_back(no_workers):
    study = sweeps.create_sweep(SWEEP_SPEC)
    add_trial(study, {"train.learning_rate": 5e-3, "members.encoder.params.hidden_units": [4]}, 0.9)
    mine = TINY.replace(name="mine")
    drafts.save(mine)  # the draft as the app saves an edit
    at = sweeps_page()
    at.button(key="sweeps-use-best").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.title[0].value == "Assemble"
    at.switch_page("app_pages/assemble.py")  # AppTest's next run would go back to the page it was told
    at.button(key="asm-replace-yes").click().run()  # the draft had edits: asked first
    draft = at.session_state[state.DRAFT]
    assert draft.name == "tiny-t0" and draft.search is None
    assert draft.train.learning_rate == 5e-3 and draft.members[0].params["hidden_units"] == [4]
    at.button(key="asm-undo").click().run()
    assert at.session_state[state.DRAFT] == mine


def test_continue_sets_a_new_budget_and_starts_a_driver(no_workers, spawned):
    study = sweeps.create_sweep(SWEEP_SPEC.replace(search=SearchSpec.from_dict({**SEARCH, "trials": 1})))
    add_trial(study, {"train.learning_rate": 1e-3, "members.encoder.params.hidden_units": [8]}, 0.8)
    at = sweeps_page()
    assert "1 of 1 trials done · finished" in texts(at)
    assert not [b for b in at.button if b.key == "sweeps-continue"]  # the budget is spent
    at.number_input(key=f"sweeps-budget-{study}").set_value(3).run()
    at.button(key="sweeps-continue").click().run()
    assert spawned == [study] and sweeps.sweep(study).budget == 3
    assert "1 of 3 trials done" in texts(at)


def test_a_compare_modes_sweep_shows_its_modes_side_by_side(no_workers):
    compared = sweeps.compare_modes_spec(TINY)
    study = sweeps.create_sweep(compared)
    for position, variant in enumerate(compared.search.variants):
        add_trial(study, {"variant": variant}, 0.7 + 0.05 * position)
    at = sweeps_page()
    frame = table_with(at, "trainable parameters")
    assert list(frame["variant"]) == list(compared.search.variants)
    assert list(frame["mode"]) == [compared.search.variants[v]["mode"] for v in compared.search.variants]
    assert list(frame["parameters"]) == [67] * len(frame) and list(frame["trainable parameters"]) == [67] * len(frame)
    assert list(frame["best validation metric"]) == ["val_accuracy 0.7500 (epoch 3)"] * len(frame)
    overlay = [json.loads(c.proto.json) for c in elements(at, "bidi_component")]
    assert any(all(row.run_id in json.dumps(chart) for row in sweeps.sweep(study).trials) for chart in overlay)


def test_compare_frame_without_runs_says_so():
    compared = sweeps.compare_modes_spec(TINY)
    summary = sweeps.SweepSummary(study="s", objective="val_accuracy", direction="maximize", base_spec=compared,
                                  budget=3, trials=[sweeps.TrialRow(0, "running", {"variant": "ensemble"}, None,
                                                                    None, None, None, None)])
    frame = sweep_widgets.compare_frame(summary, lookup=lambda run_id: None)
    assert frame.iloc[0]["mode"] == "ensemble" and frame.iloc[0]["best validation metric"] == "–"
    assert runs.list_runs() == []


def test_the_sweeps_page_modules_import_no_keras():
    code = ("import sys, dashboard.widgets.sweeps, optuna.visualization; "
            "print([m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax', 'torch')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_a_driven_sweep_polls_and_stop_sweep_stops_it(no_workers, monkeypatch):
    from core.sweeps import summary as summary_module

    study = sweeps.create_sweep(SWEEP_SPEC)
    add_trial(study, {"train.learning_rate": 1e-3, "members.encoder.params.hidden_units": [8]}, 0.8)
    monkeypatch.setattr(summary_module, "driver_alive", lambda name: True)
    stopped: list[str] = []
    monkeypatch.setattr(sweeps, "stop_sweep", lambda name: stopped.append(name) or ["20261201-000000-abcdef"])
    at = sweeps_page()
    assert "1 of 3 trials done · driver running" in texts(at)
    assert "sweeps-continue" not in [b.key for b in at.button]
    at.button(key="sweeps-stop").click().run()
    assert stopped == [study]
    assert f"Sweep '{study}' stopped (1 run asked to stop)." in texts(at)
