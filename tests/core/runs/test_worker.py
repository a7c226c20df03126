"""Real worker processes: isolation, kill -9 and resume, NaN, stop, transfer from a run.

Each worker imports Keras (~4-5 s), so these tests are the slow part of the core suite.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import keras
import numpy as np
import pytest

from core import runs
from core.spec import DatasetSpec, FineTuneSpec, MemberSpec, StackSpec, TrainSpec
from core.spec.events import EpochEnd, StepSample

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def iris_spec(name="iris", epochs=4, batch_size=8, **train) -> StackSpec:
    return StackSpec(
        name=name,
        members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [16]}),
                 MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(epochs=epochs, batch_size=batch_size, learning_rate=0.01, **train),
        dataset=DatasetSpec(name="iris"),
    )


def slow_spec(name="slow", epochs=6) -> StackSpec:
    """Epochs long enough (~1 s: 3,200 samples, batch size 2, ~0.6 ms a batch on an idle 2-core
    machine) to kill a worker in one; at batch size 8 an idle machine ran an epoch in 0.3 s,
    between two polls of the tests."""
    return StackSpec(
        name=name,
        members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [32]}),
                 MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        auto_adapters=True,  # waveforms are (64, 1) sequences: a Flatten goes in front
        train=TrainSpec(epochs=epochs, batch_size=2),
        dataset=DatasetSpec(name="waveforms"),
    )


def wait_for(condition, timeout_s=120.0, what="condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        runs.reconcile()
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def wait_status(run_id: str, status: str):
    return wait_for(lambda: run if (run := runs.get(run_id)).status == status else None, what=status)


def trainer_pid(run_id: str) -> int:
    """The trainer is the supervisor's only child."""
    import psutil

    supervisor = wait_for(lambda: runs.get(run_id).worker_pid, what="worker pid")
    return wait_for(lambda: [c.pid for c in psutil.Process(supervisor).children()], what="trainer")[0]


def assert_each_epoch_once(run_id: str, epochs: int) -> None:
    assert [row["epoch"] for row in runs.metrics(run_id)] == list(range(1, epochs + 1))


def test_two_runs_started_at_once_from_two_clients_stay_isolated(monkeypatch, stacklab_home):
    monkeypatch.setenv("STACKLAB_MAX_WORKERS", "2")
    code = ("import sys; from core import runs; from core.spec import load_spec; "
            "print(runs.start(load_spec(sys.argv[1])))")
    specs = []
    for i, learning_rate in enumerate((0.01, 0.05)):
        path = stacklab_home / f"spec{i}.json"
        path.write_text(iris_spec(f"client{i}", epochs=3).replace(
            train=TrainSpec(epochs=3, batch_size=8, learning_rate=learning_rate)).to_json())
        specs.append(path)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    clients = [subprocess.Popen([sys.executable, "-c", code, str(p)], stdout=subprocess.PIPE, text=True, env=env)
               for p in specs]
    ids = [c.communicate(timeout=60)[0].strip() for c in clients]
    assert len(set(ids)) == 2
    finished = [runs.wait(run_id, timeout_s=180) for run_id in ids]
    assert [r.status for r in finished] == ["finished", "finished"]
    assert {r.name for r in finished} == {"client0", "client1"}
    assert finished[0].worker_pid != finished[1].worker_pid
    assert finished[0].folder != finished[1].folder
    for run in finished:
        assert_each_epoch_once(run.id, 3)
        assert set(runs.artifacts(run.id)) >= {"model.keras", "history.csv", "stack.py", "spec.json"}
        assert StackSpec.from_json((run.folder / "spec.json").read_text()) == run.spec
    rates = {r.name: runs.metrics(r.id)[0]["learning_rate"] for r in finished}
    assert rates == pytest.approx({"client0": 0.01, "client1": 0.05})


def test_kill_9_mid_epoch_then_resume(stacklab_home):
    run_id = runs.start(slow_spec())
    wait_for(lambda: (p := runs.progress(run_id)) and p.epoch == 3 and p.step > 10, what="epoch 3 under way")
    os.kill(trainer_pid(run_id), signal.SIGKILL)
    run = wait_status(run_id, "failed")
    assert "SIGKILL" in run.error and "resume continues" in run.error
    assert (run.folder / "checkpoint.npz").exists()
    runs.resume(run_id)
    run = runs.wait(run_id, timeout_s=180)
    assert run.status == "finished", run.error
    assert_each_epoch_once(run_id, 6)
    model = keras.saving.load_model(runs.artifacts(run_id)["model.keras"])
    assert model.predict(np.zeros((2, 64, 1), "float32"), verbose=0).shape == (2, 4)


def test_kill_9_mid_checkpoint_keeps_the_previous_checkpoint(stacklab_home):
    run_id = runs.start(slow_spec())
    wait_for(lambda: runs.get(run_id).epochs_done >= 2, what="two epochs")
    folder = runs.get(run_id).folder
    # Kill right as a checkpoint is being written: freeze the trainer, leave a torn temp
    # file where the writer would be, then kill it.
    pid = trainer_pid(run_id)
    os.kill(pid, signal.SIGSTOP)
    (folder / "checkpoint.npz.tmp").write_bytes(b"half a checkpoint")
    os.kill(pid, signal.SIGKILL)
    wait_status(run_id, "failed")
    runs.resume(run_id)
    run = runs.wait(run_id, timeout_s=180)
    assert run.status == "finished", run.error
    assert_each_epoch_once(run_id, 6)
    keras.saving.load_model(runs.artifacts(run_id)["model.keras"])


def test_a_killed_supervisor_leaves_an_interrupted_run_that_resumes(stacklab_home):
    run_id = runs.start(slow_spec(epochs=4))
    wait_for(lambda: runs.get(run_id).epochs_done >= 1, what="one epoch")
    supervisor = runs.get(run_id).worker_pid
    os.killpg(os.getpgid(supervisor), signal.SIGKILL)  # the whole worker, as a machine restart would
    run = wait_status(run_id, "interrupted")
    assert "is gone" in run.error
    runs.resume(run_id)
    assert runs.wait(run_id, timeout_s=180).status == "finished"
    assert_each_epoch_once(run_id, 4)


def test_stop_is_graceful_and_keeps_artifacts(stacklab_home):
    run_id = runs.start(slow_spec(epochs=20))
    wait_for(lambda: runs.get(run_id).epochs_done >= 1, what="one epoch")
    assert runs.stop(run_id).status == "stopping"
    run = runs.wait(run_id, timeout_s=60)
    assert run.status == "stopped"
    assert 1 <= run.epochs_done < 20
    assert_each_epoch_once(run_id, run.epochs_done)
    assert "model.keras" in runs.artifacts(run_id)


def test_nan_run_fails_with_a_reason_and_a_downloadable_model(stacklab_home):
    spec = StackSpec(
        name="diverges", members=(MemberSpec("encoder", template="mlp"),
                                  MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(optimizer="sgd", learning_rate=1e8, epochs=5, batch_size=16),
        dataset=DatasetSpec(name="diabetes"))
    run = runs.wait(runs.start(spec), timeout_s=120)
    assert run.status == "failed"
    assert "lower the learning rate" in run.error
    model = keras.saving.load_model(runs.artifacts(run.id)["model.keras"])
    assert all(np.all(np.isfinite(w)) for w in model.get_weights())


def test_an_exception_fails_the_run_with_a_one_line_reason(stacklab_home):
    broken = iris_spec().replace(members=(MemberSpec("encoder", template="cnn_features"),
                                          MemberSpec("head", template="dense_head")))
    run = runs.wait(runs.start(broken), timeout_s=120)
    assert run.status == "failed"
    assert "\n" not in run.error and "Cannot feed the input into 'encoder'" in run.error
    assert (run.folder / "traceback.txt").exists()


def test_a_finished_run_becomes_a_frozen_member_of_a_new_run(stacklab_home):
    base = runs.wait(runs.start(iris_spec("base", epochs=2)), timeout_s=120)
    assert base.status == "finished"
    transfer = StackSpec(
        name="from-run", mode="transfer",
        members=(MemberSpec("base", source="run", run_id=base.id, cut_at="encoder"),),
        head=MemberSpec("head", template="dense_head", params={"hidden_units": [4]}),
        train=TrainSpec(epochs=3, batch_size=8, fine_tune=FineTuneSpec(start_epoch=3)),
        dataset=DatasetSpec(name="iris"))
    run = runs.wait(runs.start(transfer, parent_id=base.id), timeout_s=120)
    assert run.status == "finished", run.error
    assert run.parent_id == base.id
    rows = runs.metrics(run.id)
    assert [r["member_updates"]["base"] for r in rows[:2]] == [0.0, 0.0]
    assert rows[2]["member_updates"]["base"] > 0 and rows[2]["phase"] == "fine_tune"
    assert runs.phases(run.id)[0]["epoch"] == 3
    assert list((run.folder / "tensorboard").glob("events.out.tfevents.*"))


def test_cli_runs_commands(stacklab_home, tmp_path):
    spec_path = tmp_path / "spec.json"
    spec_path.write_text(iris_spec(epochs=2).to_json())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "core", "runs", *args], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=180)

    started = cli("start", str(spec_path), "--wait")
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.split()[0]
    assert "finished" in started.stdout
    assert run_id in cli("list").stdout
    import json

    shown = json.loads(cli("show", run_id, "--json").stdout)
    assert shown["status"] == "finished" and shown["epochs_done"] == 2
    assert "val_accuracy" in shown["last_metrics"] and shown["worker_pid"]
    assert cli("resume", run_id).returncode == 1
    assert cli("delete", run_id).returncode == 0
    missing = cli("show", run_id)
    assert missing.returncode == 1 and "No run with id" in missing.stderr


def stop_after(run_id: str, epochs: int):
    wait_for(lambda: runs.get(run_id).epochs_done >= epochs, what=f"{epochs} epochs")
    runs.stop(run_id)
    run = runs.wait(run_id, timeout_s=60)
    assert run.status == "stopped", run.error
    return run


def test_resume_keeps_every_field_of_the_epochs_before_it(stacklab_home):
    run_id = runs.start(iris_spec("resumed", epochs=60, batch_size=4))
    stopped = stop_after(run_id, 2)
    before = runs.metrics(run_id)
    assert len(before) == stopped.epochs_done
    assert all(set(row["member_updates"]) == {"encoder", "head"} for row in before)
    runs.resume(run_id)
    run = runs.wait(run_id, timeout_s=180)
    assert run.status == "finished", run.error
    assert_each_epoch_once(run_id, 60)
    # Member updates, durations, learning rates, phases, times: every row exactly as recorded.
    assert runs.metrics(run_id)[:len(before)] == before


def test_a_resume_drops_epoch_rows_written_after_the_checkpoint(stacklab_home):
    run_id = runs.start(iris_spec("stale", epochs=60, batch_size=4))
    kept = stop_after(run_id, 2).epochs_done
    # A trainer killed after recording an epoch but before its checkpoint was written leaves
    # a row for an epoch the model never kept.
    runs.current_store().record(run_id, EpochEnd(epoch=kept + 1, phase="train", metrics={"loss": 0.1},
                                         duration_s=1.0, learning_rate=0.01))
    runs.current_store().record(run_id, StepSample(epoch=kept + 1, step=3, steps=30, loss=0.1, recorded_at=1.0))
    assert runs.resume(run_id).status == "running"
    runs.stop(run_id)  # read as the trainer starts: it stops at its first batch, before re-training that epoch
    run = runs.wait(run_id, timeout_s=120)
    assert run.status == "stopped", run.error
    assert run.epochs_done == kept
    assert_each_epoch_once(run_id, kept)
    # The sample of the dropped epoch went with its row (one of the new trainer's own may be there).
    assert all(sample["recorded_at"] != 1.0 for sample in runs.step_samples(run_id))


def test_resume_right_after_the_worker_was_killed_does_not_wait_for_the_grace(stacklab_home):
    import psutil

    run_id = runs.start(slow_spec(epochs=3))
    wait_for(lambda: runs.get(run_id).epochs_done >= 1, what="one epoch")
    supervisor = runs.get(run_id).worker_pid
    os.killpg(os.getpgid(supervisor), signal.SIGKILL)
    wait_for(lambda: not psutil.pid_exists(supervisor) or psutil.Process(supervisor).status() == psutil.STATUS_ZOMBIE,
             timeout_s=10, what="the worker to die")
    # Well within DEAD_WORKER_GRACE_S of the last heartbeat: reconcile would not yet call it
    # interrupted, but resume sees that the pid is gone.
    assert runs.get(run_id).status == "running"
    resumed = runs.resume(run_id)
    assert resumed.status in ("queued", "running") and resumed.worker_pid != supervisor
    run = runs.wait(run_id, timeout_s=180)
    assert run.status == "finished", run.error
    assert_each_epoch_once(run_id, 3)


def test_resume_of_a_run_whose_worker_is_alive_is_refused(stacklab_home):
    run_id = runs.start(slow_spec(epochs=20))
    wait_for(lambda: runs.get(run_id).worker_pid, what="a worker")
    with pytest.raises(ValueError, match=f"Run '{run_id}' is running; only stopped, failed, interrupted runs"):
        runs.resume(run_id)
    runs.stop(run_id)
    assert runs.wait(run_id, timeout_s=120).status == "stopped"


def test_a_run_records_its_loss_at_most_once_a_second(stacklab_home):
    run = runs.wait(runs.start(slow_spec(epochs=3)), timeout_s=180)
    assert run.status == "finished", run.error
    samples = runs.step_samples(run.id)
    trained_s = sum(row["duration_s"] for row in runs.metrics(run.id))
    assert 1 <= len(samples) <= trained_s + 1, (len(samples), trained_s)
    assert [s["seq"] for s in samples] == list(range(1, len(samples) + 1))
    times = [s["recorded_at"] for s in samples]
    assert all(later - earlier >= 0.95 for earlier, later in zip(times, times[1:]))
    assert all(1 <= s["epoch"] <= 3 and 1 <= s["step"] <= s["steps"] and s["loss"] > 0 for s in samples)
    assert runs.step_samples(run.id, after_seq=samples[0]["seq"]) == samples[1:]
