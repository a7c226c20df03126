"""The Sweeps page end to end: upload a small sweep, start it, watch its trial table fill while
its driver (a detached `python -m core sweep` process) trains each trial as a run, then open
the best trial's run on the Runs page. Screenshots go to test-artifacts/e2e/ (sweeps-*.png).
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from tests.e2e import ui

pytestmark = pytest.mark.e2e

STUDY = "e2e-iris-lr"
TRIALS = 2
# Two trials of a tiny MLP on iris, two epochs each: most of the time is the workers' Keras import.
SWEEP = {
    "schema_version": 2, "name": "e2e_iris", "mode": "sequential",
    "members": [{"name": "encoder", "template": "mlp", "params": {"hidden_units": [8]}},
                {"name": "classifier", "template": "dense_head", "params": {"hidden_units": []}}],
    "train": {"epochs": 2, "batch_size": 32, "validation_split": 0.2, "seed": 0},
    "dataset": {"source": "builtin", "name": "iris"},
    "search": {"study": STUDY, "objective": {"metric": "val_accuracy", "direction": "maximize"}, "trials": 3,
               "sampler": "random", "pruner": {"kind": "none"}, "seed": 0,
               "space": {"train.learning_rate": {"type": "float", "low": 0.001, "high": 0.05, "log": True}}},
}


def status_line(page):
    return page.get_by_text(re.compile(r"\d+ of \d+ trials done"))


def test_start_a_sweep_watch_its_trials_and_open_the_best(tab, server, server_runs, artifacts, tmp_path):
    from core import sweeps  # reads the server's home: server_runs pointed $STACKLAB_HOME there

    spec_file = tmp_path / "sweep.json"
    spec_file.write_text(json.dumps(SWEEP))
    tab.goto(f"{server.url}/sweeps")
    ui.heading(tab, "Sweeps").wait_for()
    ui.wait_idle(tab)
    tab.get_by_text("A sweep JSON file").click()
    ui.wait_idle(tab)
    ui.upload(tab, "sweeps-upload", spec_file)
    expect(tab.get_by_text(f"Sweep '{STUDY}': maximize val_accuracy")).to_be_visible()
    ui.set_number(tab, "sweeps-trials-upload", TRIALS)
    ui.shot(tab, artifacts, "sweeps-start")
    ui.button(tab, "sweeps-start").click()
    expect(tab.get_by_text(f"Sweep '{STUDY}' started: {TRIALS} trials")).to_be_visible()
    expect(status_line(tab)).to_contain_text(f"of {TRIALS} trials done")
    try:
        # The table fills while the driver runs (the fragment polls): first a trial running...
        expect(status_line(tab)).to_contain_text("running", timeout=ui.TRAIN_TIMEOUT_MS)
        # ... then every trial done, the best named.
        expect(status_line(tab)).to_contain_text(f"{TRIALS} of {TRIALS} trials done · finished · best val_accuracy",
                                                 timeout=ui.TRAIN_TIMEOUT_MS)
    finally:
        sweeps.stop_sweep(STUDY)  # a failure leaves no driver training on the shared server
    summary = sweeps.sweep(STUDY)
    assert [row.state for row in summary.trials] == ["complete"] * TRIALS, [r.reason for r in summary.trials]
    assert all(server_runs.get(row.run_id).status == "finished" for row in summary.trials)
    ui.wait_idle(tab)
    expect(tab.get_by_text(f"Best: trial {summary.best.number}", exact=True)).to_be_visible()
    expect(tab.get_by_test_id("stPlotlyChart").first).to_be_visible()  # Optuna's history
    ui.shot(tab, artifacts, "sweeps-done", focus=tab.get_by_text(f"Best: trial {summary.best.number}", exact=True))

    ui.button(tab, "sweeps-open-best").click()
    ui.heading(tab, "Runs").wait_for()
    ui.wait_idle(tab)
    best = server_runs.get(summary.best.run_id)
    expect(tab.get_by_role("heading", name=f"{best.name} · {best.id}")).to_be_visible()
    ui.shot(tab, artifacts, "sweeps-best-run")
    ui.no_app_exception(tab)
