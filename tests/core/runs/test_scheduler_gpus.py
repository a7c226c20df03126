"""The scheduler's GPU assignment on a fake machine (STACKLAB_GPUS), no GPU and no worker needed."""

import os

import pytest

from core import runs
from core.runs import devices, scheduler
from core.spec import DistributionSpec, MemberSpec, StackSpec, TrainSpec


def spec(name="demo", **distribution) -> StackSpec:
    return StackSpec(name=name, members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="dense_head")),
                     train=TrainSpec(epochs=1, distribution=DistributionSpec(**distribution)))


@pytest.fixture(autouse=True)
def machine(monkeypatch):
    """A machine with four GPUs, STACKLAB_MAX_WORKERS unset."""
    monkeypatch.setenv("STACKLAB_GPUS", "0,1,2,3")
    monkeypatch.delenv("STACKLAB_MAX_WORKERS", raising=False)
    devices.clear_cache()
    yield
    devices.clear_cache()


@pytest.fixture
def no_workers(monkeypatch):
    spawned = []
    monkeypatch.setattr(scheduler, "_spawn", spawned.append)
    return spawned


def state(run_id: str) -> tuple[str, tuple[int, ...]]:
    run = runs.get(run_id)
    return run.status, run.gpus


def test_one_run_per_gpu_by_default(no_workers):
    assert runs.max_workers() == 4
    ids = [runs.start(spec(f"run{i}")) for i in range(5)]
    assert [state(i) for i in ids] == [("running", (0,)), ("running", (1,)), ("running", (2,)),
                                       ("running", (3,)), ("queued", ())]
    runs.current_store().update(ids[1], status="finished")
    assert runs.schedule() == [ids[4]] and state(ids[4]) == ("running", (1,))  # the GPU set free


def test_a_two_gpu_run_waits_for_two_free_and_the_queue_waits_behind_it(no_workers):
    first, second, third = (runs.start(spec(f"one{i}")) for i in range(3))
    pair = runs.start(spec("pair", strategy="data_parallel", devices=2))
    after = runs.start(spec("after"))
    # One GPU (3) is free: not enough for the pair, and the run queued after it does not
    # jump the queue (it would take the GPU the pair waits for, again and again).
    assert state(pair) == ("queued", ()) and state(after) == ("queued", ())
    runs.current_store().update(second, status="finished")
    assert runs.schedule() == [pair]
    assert state(pair) == ("running", (1, 3)) and state(after) == ("queued", ())
    runs.current_store().update(first, status="stopped")
    assert runs.schedule() == [after] and state(after) == ("running", (0,))
    assert state(third) == ("running", (2,))


def test_data_parallel_over_every_gpu_takes_them_all(no_workers):
    everything = runs.start(spec("all", strategy="data_parallel"))
    single = runs.start(spec("single"))
    assert state(everything) == ("running", (0, 1, 2, 3)) and state(single) == ("queued", ())


def test_a_cpu_run_on_a_gpu_machine_takes_no_gpu_and_sees_none(no_workers):
    ids = [runs.start(spec(f"gpu{i}")) for i in range(3)]
    on_cpu = runs.start(spec("cpu", accelerator="cpu"))
    assert state(on_cpu) == ("running", ())
    last = runs.start(spec("gpu3"))
    assert state(last) == ("queued", ())  # four runs train: the worker limit, though GPU 3 is free
    runs.current_store().update(ids[0], status="finished")
    assert runs.schedule() == [last] and state(last) == ("running", (0,))
    assert scheduler.worker_gpu_env(()) == {"CUDA_VISIBLE_DEVICES": "", "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
                                            "STACKLAB_MACHINE_CUDA_VISIBLE_DEVICES": "*"}


def test_a_run_asking_for_more_gpus_than_the_machine_has_fails_and_the_queue_moves_on(no_workers):
    # runs.start refuses such a run; one queued before the machine lost GPUs (or from another
    # StackLab on the same home) still meets the scheduler.
    greedy = runs.current_store().create(spec("greedy", strategy="data_parallel", devices=8))
    after = runs.start(spec("after"))
    run = runs.get(greedy)
    assert run.status == "failed" and run.ended_at is not None
    assert "asks for 8 GPUs (train.distribution.devices), but this machine has 4" in run.error
    assert state(after) == ("running", (0,)) and no_workers == [after]


def test_stacklab_max_workers_still_wins(no_workers, monkeypatch):
    monkeypatch.setenv("STACKLAB_MAX_WORKERS", "2")
    assert runs.max_workers() == 2
    ids = [runs.start(spec(f"run{i}")) for i in range(3)]
    assert [state(i) for i in ids] == [("running", (0,)), ("running", (1,)), ("queued", ())]


def test_a_cpu_only_machine_is_unchanged(no_workers, monkeypatch):
    monkeypatch.setenv("STACKLAB_GPUS", "")
    assert runs.max_workers() == 1
    first = runs.start(spec("first", strategy="data_parallel", devices=2))  # over split CPU devices
    second = runs.start(spec("second"))
    assert state(first) == ("running", ()) and state(second) == ("queued", ())
    monkeypatch.setenv("STACKLAB_MAX_WORKERS", "2")
    assert runs.schedule() == [second] and state(second) == ("running", ())


class FakePopen:
    """subprocess.Popen that records the environment it was given and starts nothing."""

    envs: list = []

    def __init__(self, command, env=None, **kwargs):
        FakePopen.envs.append(env)
        self.pid = os.getpid()

    def wait(self):
        return 0


@pytest.fixture
def popen(monkeypatch):
    FakePopen.envs = []
    monkeypatch.setattr(scheduler.subprocess, "Popen", FakePopen)
    return FakePopen.envs


def test_each_worker_sees_only_its_own_gpus(popen, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0,1,2,3")  # the server's own: not what a worker gets
    runs.start(spec("one"))
    runs.start(spec("pair", strategy="data_parallel", devices=2))
    runs.start(spec("cpu", accelerator="cpu"))
    assert [env["CUDA_VISIBLE_DEVICES"] for env in popen] == ["0", "1,2", ""]
    assert all(env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID" for env in popen)  # nvidia-smi's numbering


def test_a_worker_on_a_machine_without_gpus_keeps_the_environment(popen, monkeypatch):
    monkeypatch.delenv("STACKLAB_GPUS")
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setattr(devices, "_nvidia_smi_gpus", lambda: ())  # no nvidia-smi, or no GPU
    runs.start(spec())
    assert len(popen) == 1 and "CUDA_VISIBLE_DEVICES" not in popen[0]
