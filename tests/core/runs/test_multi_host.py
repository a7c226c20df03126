"""A multi-host run on one machine: two StackLab homes (two "machines"), one JAX cluster.

Each home queues the same spec with its own process id, as a user does on each machine
(`KERAS_BACKEND=jax python -m core runs start SPEC.json --process-id K`); the workers join
the cluster through `keras.distribution.initialize` and train data parallel over one CPU
device each. Killing one process fails the other's run with a clear reason; resuming both
continues from process 0's checkpoint.
"""

import os
import signal
import socket

import pytest

from core import runs
from core.spec import DatasetSpec, DistributionSpec, MemberSpec, StackSpec, TrainSpec
from tests.core.runs.test_worker import trainer_pid, wait_for

pytestmark = pytest.mark.slow
EPOCHS = 5


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        return probe.getsockname()[1]


def cluster_spec(port: int, process_id: int) -> StackSpec:
    # Epochs of ~1 s (200 steps of a global batch of 16, an all-reduce each): long enough to
    # kill a process in the middle of one.
    return StackSpec(
        name="two-hosts",
        members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [32]}),
                 MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        auto_adapters=True,
        train=TrainSpec(epochs=EPOCHS, batch_size=16, distribution=DistributionSpec(
            strategy="multi_host", coordinator=f"localhost:{port}", num_processes=2, process_id=process_id)),
        dataset=DatasetSpec(name="waveforms"),
    )


def test_two_processes_train_one_run_a_killed_one_fails_it_and_resume_finishes(stacklab_home, tmp_path,
                                                                               monkeypatch):
    homes = [stacklab_home, tmp_path / "machine-1"]
    homes[1].mkdir()
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # the workers' backend (this process keeps its own)

    def on(machine: int) -> None:
        monkeypatch.setenv("STACKLAB_HOME", str(homes[machine]))

    port = free_port()
    ids = []
    for machine in (1, 0):  # process 1 first: it waits for its coordinator
        on(machine)
        ids.insert(0, runs.start(cluster_spec(port, process_id=machine)))

    on(0)
    wait_for(lambda: runs.get(ids[0]).epochs_done >= 2, timeout_s=240, what="2 epochs on process 0")
    on(1)
    assert runs.get(ids[1]).devices == ("cpu:0", "cpu:2048")  # one CPU device per process, both in the mesh
    os.kill(trainer_pid(ids[1]), signal.SIGKILL)

    on(0)
    failed = wait_for(lambda: run if (run := runs.get(ids[0])).status == "failed" else None, what="process 0 fails")
    assert "Another process of this multi-host run stopped answering" in failed.error, failed.error
    assert "Start every process again" in failed.error
    on(1)
    killed = wait_for(lambda: run if (run := runs.get(ids[1])).status == "failed" else None, what="process 1 fails")
    assert "killed" in killed.error, killed.error

    for machine in (1, 0):
        on(machine)
        runs.resume(ids[machine])
    histories = []
    for machine in (0, 1):
        on(machine)
        run = runs.wait(ids[machine], timeout_s=300)
        assert run.status == "finished", run.error
        rows = runs.metrics(ids[machine])
        assert [row["epoch"] for row in rows] == list(range(1, EPOCHS + 1))  # every epoch once
        histories.append([row["metrics"]["loss"] for row in rows])
    # Both processes trained the same model: the same losses, epoch by epoch, resume included.
    assert histories[0] == pytest.approx(histories[1], rel=1e-6)


def test_a_stop_on_one_process_stops_every_process_after_the_same_epoch(stacklab_home, tmp_path, monkeypatch):
    homes = [stacklab_home, tmp_path / "machine-1"]
    homes[1].mkdir()
    monkeypatch.setenv("KERAS_BACKEND", "jax")

    def on(machine: int) -> None:
        monkeypatch.setenv("STACKLAB_HOME", str(homes[machine]))

    port = free_port()
    ids = []
    for machine in (1, 0):
        on(machine)
        ids.insert(0, runs.start(cluster_spec(port, process_id=machine)))
    on(1)
    wait_for(lambda: runs.get(ids[1]).epochs_done >= 1, timeout_s=240, what="an epoch on process 1")
    runs.stop(ids[1])  # asked on one machine only
    ended = []
    for machine in (0, 1):
        on(machine)
        ended.append(runs.wait(ids[machine], timeout_s=120))
    assert [run.status for run in ended] == ["stopped", "stopped"], [run.error for run in ended]
    assert ended[0].epochs_done == ended[1].epochs_done < EPOCHS


@pytest.mark.parametrize("backend", ["tensorflow", None])
def test_a_multi_host_run_on_tensorflow_is_refused_before_it_is_queued(stacklab_home, monkeypatch, backend):
    if backend is None:
        monkeypatch.delenv("KERAS_BACKEND", raising=False)  # TensorFlow is the default
    else:
        monkeypatch.setenv("KERAS_BACKEND", backend)
    with pytest.raises(ValueError, match="Multi-host training needs the JAX backend.*KERAS_BACKEND=jax"):
        runs.start(cluster_spec(free_port(), process_id=0))
    assert runs.list_runs() == []


def test_a_run_asking_for_more_gpus_than_the_machine_has_is_refused_before_it_is_queued(stacklab_home,
                                                                                        monkeypatch):
    monkeypatch.setenv("STACKLAB_GPUS", "0,1")
    spec = cluster_spec(free_port(), 0)
    spec = spec.replace(train=TrainSpec(distribution=DistributionSpec(strategy="data_parallel", devices=4)))
    with pytest.raises(ValueError, match="asks for 4 GPUs.*this machine has 2"):
        runs.start(spec)
    assert runs.list_runs() == []
