"""The machine's GPU list: STACKLAB_GPUS, nvidia-smi's answer, CUDA_VISIBLE_DEVICES, the cache."""

import subprocess

import pytest

from core.runs import devices
from core.runs.devices import GpuInfo, machine_gpus, parse_nvidia_smi

SMI_OUTPUT = """0, NVIDIA H200, 143771, GPU-aaaa1111
1, NVIDIA H200, 143771, GPU-bbbb2222
2, NVIDIA H200, [N/A], GPU-cccc3333
"""


@pytest.fixture(autouse=True)
def fresh(monkeypatch):
    monkeypatch.delenv("STACKLAB_GPUS", raising=False)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    devices.clear_cache()
    yield
    devices.clear_cache()


@pytest.fixture
def smi(monkeypatch):
    """nvidia-smi answers SMI_OUTPUT; the calls made are listed."""
    calls = []

    def run(command, **kwargs):
        calls.append(command)
        return subprocess.CompletedProcess(command, 0, stdout=SMI_OUTPUT, stderr="")

    monkeypatch.setattr(devices.subprocess, "run", run)
    return calls


def test_stacklab_gpus_is_the_list_and_nvidia_smi_is_not_asked(monkeypatch, smi):
    monkeypatch.setenv("STACKLAB_GPUS", "0,1,2,3")
    assert [gpu.index for gpu in machine_gpus()] == [0, 1, 2, 3]
    assert machine_gpus()[2] == GpuInfo(2, "listed in STACKLAB_GPUS", None)
    monkeypatch.setenv("STACKLAB_GPUS", "")
    assert machine_gpus() == ()
    assert smi == []


@pytest.mark.parametrize("value, message", [
    ("0,x", "STACKLAB_GPUS must list GPU indices separated by commas.*'x' is not an index"),
    ("-1", "STACKLAB_GPUS must list GPU indices"),
    ("1,1", "STACKLAB_GPUS names GPU 1 twice"),
])
def test_a_bad_stacklab_gpus_names_the_variable(monkeypatch, value, message):
    monkeypatch.setenv("STACKLAB_GPUS", value)
    with pytest.raises(ValueError, match=message):
        machine_gpus()


def test_nvidia_smi_gives_index_name_and_memory(smi):
    assert machine_gpus() == (GpuInfo(0, "NVIDIA H200", 143771, "GPU-aaaa1111"),
                              GpuInfo(1, "NVIDIA H200", 143771, "GPU-bbbb2222"),
                              GpuInfo(2, "NVIDIA H200", None, "GPU-cccc3333"))
    assert smi[0][0] == "nvidia-smi" and "--format=csv,noheader,nounits" in smi[0]
    assert machine_gpus()[0].describe() == "GPU 0: NVIDIA H200 (143,771 MiB)"


@pytest.mark.parametrize("visible, indices", [
    ("2,0", [2, 0]),          # in CUDA_VISIBLE_DEVICES's order
    ("1,7,0", [1]),           # as CUDA does, the list ends at an entry that names no GPU
    ("GPU-cccc", [2]),        # a UUID prefix
    ("", []),
    ("-1", []),
])
def test_cuda_visible_devices_restricts_nvidia_smis_list(monkeypatch, smi, visible, indices):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
    assert [gpu.index for gpu in machine_gpus()] == indices


@pytest.mark.parametrize("failure", [FileNotFoundError("nvidia-smi"), subprocess.TimeoutExpired("nvidia-smi", 10),
                                     subprocess.CompletedProcess("nvidia-smi", 9, stdout="No devices were found")])
def test_no_working_nvidia_smi_means_no_gpus(monkeypatch, failure):
    def run(command, **kwargs):
        if isinstance(failure, BaseException):
            raise failure
        return failure

    monkeypatch.setattr(devices.subprocess, "run", run)
    assert machine_gpus() == ()


def test_the_list_is_cached_for_a_few_seconds_per_environment(monkeypatch, smi):
    machine_gpus()
    machine_gpus()
    assert len(smi) == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")  # another environment: asked again
    assert len(machine_gpus()) == 1 and len(smi) == 2
    monkeypatch.setattr(devices, "CACHE_S", 0.0)  # the cached answer is old: asked again
    machine_gpus()
    assert len(smi) == 3


def test_lines_nvidia_smi_may_print_that_are_not_gpus_are_skipped():
    assert parse_nvidia_smi("Failed to initialize NVML: Driver/library version mismatch\n") == ()
    assert parse_nvidia_smi("0, Tesla T4, 15360\n") == (GpuInfo(0, "Tesla T4", 15360),)


def test_a_worker_narrowed_to_its_own_gpus_still_sees_the_machine_s(smi, monkeypatch):
    """A worker's supervisor schedules the next run: it must not take its own CUDA_VISIBLE_DEVICES
    (one GPU, or "" for a CPU run) for the machine's."""
    from core.runs import scheduler

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,2")  # StackLab started with GPUs 1 and 2
    given = scheduler.worker_gpu_env((2,))
    assert given["STACKLAB_MACHINE_CUDA_VISIBLE_DEVICES"] == "1,2"
    for name, value in given.items():  # inside the worker
        monkeypatch.setenv(name, value)
    devices.clear_cache()
    assert [gpu.index for gpu in machine_gpus()] == [1, 2]
    for name in given:  # StackLab started again, with every GPU visible
        monkeypatch.delenv(name)
    devices.clear_cache()
    for name, value in scheduler.worker_gpu_env(()).items():  # a CPU run's worker
        monkeypatch.setenv(name, value)
    devices.clear_cache()
    assert len(machine_gpus()) == len(parse_nvidia_smi(SMI_OUTPUT)) > 0
