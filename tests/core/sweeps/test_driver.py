"""Sweeps through real workers: a whole sweep, pruning, a killed driver, two drivers, Compare modes.

Each trial's worker imports Keras (~5 s): the trials are tiny (iris, 2 epochs) and few.
"""

import os
import signal

import pytest

from core import runs, sweeps
from core.spec import DatasetSpec, MemberSpec, SearchSpec, StackSpec, TrainSpec
from core.sweeps.summary import trial_spec
from tests.core.runs.test_worker import wait_for

pytestmark = pytest.mark.slow


def iris_sweep(trials=4, pruner=None, epochs=2, **search) -> StackSpec:
    return StackSpec(
        name="iris-sweep",
        members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [8]}),
                 MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(epochs=epochs, batch_size=16, learning_rate=0.01),
        dataset=DatasetSpec(name="iris"),
        search=SearchSpec.from_dict({
            "trials": trials, "parallel": 1, "seed": 0, "pruner": pruner or {"kind": "none"},
            "space": {"train.learning_rate": {"type": "float", "low": 1e-3, "high": 5e-2, "log": True},
                      "members.encoder.params.hidden_units": {"type": "categorical", "choices": [[4], [16]]}},
            **search}))


def test_a_four_trial_sweep_runs_to_the_end_through_workers():
    study = sweeps.create_sweep(iris_sweep())
    seen = []
    summary = sweeps.drive(study, poll_s=0.2, on_trial=seen.append)
    assert [row.number for row in seen] == [0, 1, 2, 3]
    assert [row.state for row in summary.trials] == ["complete"] * 4
    assert {row.run_status for row in summary.trials} == {"finished"}
    assert len(runs.list_runs()) == 4 and summary.done == 4 and not summary.driver_alive
    for row in summary.trials:
        run = runs.get(row.run_id)
        assert run.spec == trial_spec(summary.base_spec, row.params, row.number)  # what the trial asked for
        assert run.spec.search is None and run.name == f"iris-sweep-t{row.number}"
        best_epoch = max(m["metrics"]["val_accuracy"] for m in runs.metrics(row.run_id))
        assert row.value == pytest.approx(best_epoch)
    assert summary.best.value == max(row.value for row in summary.trials)
    assert sweeps.best_spec(study) == runs.get(summary.best.run_id).spec
    assert len({tuple(row.params.items()).__repr__() for row in summary.trials}) == 4  # four different trials


def test_a_hopeless_trial_is_pruned_and_its_run_stops():
    # The loss is never below 1e-6 after one epoch: a threshold there prunes for certain. Waveforms in
    # batches of 2 take about a second an epoch, so the run is still training when it is pruned.
    spec = StackSpec(
        name="pruned",
        members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [32]}),
                 MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        auto_adapters=True, train=TrainSpec(epochs=8, batch_size=2), dataset=DatasetSpec(name="waveforms"),
        search=SearchSpec.from_dict({"trials": 1, "objective": {"metric": "loss"},
                                     "pruner": {"kind": "threshold", "upper": 1e-6, "warmup_epochs": 1},
                                     "space": {"train.learning_rate": {"type": "float", "low": 1e-3, "high": 1e-2}}}))
    summary = sweeps.drive(sweeps.create_sweep(spec), poll_s=0.1)
    (row,) = summary.trials
    assert row.state == "pruned" and row.value is None
    assert row.pruned_epoch >= 1 and "Pruned by sweep 'pruned' at epoch" in row.reason
    run = runs.get(row.run_id)
    assert run.status == "stopped" and run.epochs_done < 8
    assert run.error.startswith("Pruned by sweep 'pruned'")


def test_a_killed_driver_started_again_continues_with_the_remaining_trials():
    study = sweeps.create_sweep(iris_sweep(trials=3))
    pid = sweeps.spawn_driver(study)
    assert sweeps.driver_alive(study)
    # Kill it while trial 1 trains: trial 0 is done, trial 1 stays RUNNING in the study.
    wait_for(lambda: any(row.number == 1 and row.run_id for row in sweeps.sweep(study).trials), timeout_s=180,
             what="trial 1")
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: not sweeps.driver_alive(study), timeout_s=180, what="the driver gone")
    before = sweeps.sweep(study)
    assert [row.state for row in before.trials] == ["complete", "running"]
    summary = sweeps.drive(study, poll_s=0.2)
    assert [row.state for row in summary.trials] == ["complete"] * 3
    assert summary.trials[1].run_id == before.trials[1].run_id  # re-attached, not started again
    assert len(runs.list_runs()) == 3
    assert "trial 0  complete" in sweeps.log_path(study).read_text()  # what the spawned driver printed


def test_stop_sweep_stops_the_driver_and_its_run_and_a_new_driver_resumes_it():
    study = sweeps.create_sweep(iris_sweep(trials=1, epochs=40))
    sweeps.spawn_driver(study)
    run_id = wait_for(lambda: next((r.run_id for r in sweeps.sweep(study).trials if r.run_status == "running"), None),
                      timeout_s=180, what="the trial's run training")
    assert sweeps.stop_sweep(study) == [run_id]
    assert not sweeps.driver_alive(study)
    assert runs.wait(run_id, timeout_s=60).status == "stopped"
    assert sweeps.sweep(study).trials[0].state == "running"  # paused, not failed
    summary = sweeps.drive(study, poll_s=0.2)
    assert summary.trials[0].state == "complete" and summary.trials[0].run_id == run_id
    assert [row["epoch"] for row in runs.metrics(run_id)] == list(range(1, 41))


def test_two_driver_processes_share_one_study_on_one_sqlite_storage(monkeypatch):
    monkeypatch.setenv("STACKLAB_MAX_WORKERS", "2")  # the drivers' workers train side by side
    study = sweeps.create_sweep(iris_sweep(trials=4))
    pids = {sweeps.spawn_driver(study), sweeps.spawn_driver(study)}
    wait_for(lambda: not sweeps.driver_alive(study), timeout_s=300, what="both drivers done")
    loaded = sweeps.load_study(study)
    trials = loaded.get_trials()
    # Two drivers asking at the same instant can both take the last slot (as with Optuna's own
    # MaxTrialsCallback): at most one trial over the budget.
    assert 4 <= len(trials) <= 5
    assert {t.state.name for t in trials} == {"COMPLETE"}
    assert {t.user_attrs["driver_pid"] for t in trials} == pids
    assert len({t.user_attrs["run_id"] for t in trials}) == len(trials)


def test_compare_modes_on_digits8_trains_one_run_per_mode():
    spec = StackSpec(name="digits8-modes", members=(
        MemberSpec("features", template="cnn_features", params={"filters": [4]}),
        MemberSpec("classifier", template="dense_head", params={"hidden_units": [8]})),
        train=TrainSpec(epochs=1, batch_size=64), dataset=DatasetSpec(name="digits8"))
    compared = sweeps.compare_modes_spec(spec)
    summary = sweeps.drive(sweeps.create_sweep(compared), poll_s=0.2)
    assert [row.state for row in summary.trials] == ["complete"] * 3, [row.reason for row in summary.trials]
    modes = {row.params["variant"]: runs.get(row.run_id).mode for row in summary.trials}
    assert modes == {"sequential": "sequential", "fusion_raw": "fusion", "ensemble": "ensemble"}
    assert {runs.get(row.run_id).spec.train.seed for row in summary.trials} == {0}
