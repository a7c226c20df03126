"""The Train page's device choice (dashboard/widgets/devices.py): the choices a machine has,
what each writes to `train.distribution`, the global-batch words, and the problems that keep
Train disabled. GPUs are faked with STACKLAB_GPUS (core.runs.devices); no GPU is needed."""

import dataclasses

import pytest

from core.spec import DistributionSpec
from dashboard import state
from dashboard.widgets import devices
from dashboard.widgets.devices import Machine
from tests.dashboard.apptest import TINY, app, fake_run, texts

pytestmark = pytest.mark.usefixtures("inspector_home")

MULTI_HOST = DistributionSpec("multi_host", coordinator="10.0.0.1:1234", num_processes=2, process_id=1)


@pytest.fixture
def gpus(monkeypatch):
    """A machine with the GPUs given ("" for none), the CPU split into `cpu` devices."""
    def machine(listed: str, cpu: int | None = None) -> None:
        monkeypatch.setenv("STACKLAB_GPUS", listed)
        if cpu is None:
            monkeypatch.delenv("STACKLAB_CPU_DEVICES", raising=False)
        else:
            monkeypatch.setenv("STACKLAB_CPU_DEVICES", str(cpu))
    return machine


def with_distribution(distribution: DistributionSpec):
    return TINY.replace(train=dataclasses.replace(TINY.train, distribution=distribution))


def labels(machine: Machine) -> list[str]:
    return [choice.label for choice in devices.choices(machine)]


def radio(at):
    (choice,) = [r for r in at.radio if r.label == "Devices"]
    return choice


def distribution(at) -> DistributionSpec:
    return at.session_state[state.DRAFT].train.distribution


def test_the_choices_are_the_ones_the_machine_has():
    assert labels(Machine(gpus=0)) == ["CPU"]
    assert labels(Machine(gpus=0, cpu_split=4)) == ["CPU", "CPU (4 devices)"]
    assert labels(Machine(gpus=1)) == ["CPU", "One GPU"]
    assert labels(Machine(gpus=2)) == ["CPU", "One GPU", "All GPUs (2)"]
    assert labels(Machine(gpus=4)) == ["CPU", "One GPU", "All GPUs (4)", "N GPUs"]


@pytest.mark.parametrize("machine", [Machine(gpus=0), Machine(gpus=0, cpu_split=4), Machine(gpus=4, cpu_split=2)])
def test_each_choice_is_read_back_from_the_distribution_it_writes(machine):
    for choice in devices.choices(machine):
        assert devices.choice_of(choice.distribution, machine) == choice
    # The default spec is "the CPU" without a GPU and "one GPU" with one: opening the page changes nothing.
    assert devices.choice_of(DistributionSpec(), machine).label == ("One GPU" if machine.gpus else "CPU")
    # What no choice describes stays as the spec says.
    assert devices.choice_of(DistributionSpec("data_parallel", devices=7), machine) is None


def test_the_batch_words_say_the_global_batch_splits_and_the_learning_rate_is_not_scaled():
    four = Machine(gpus=4)
    assert devices.batch_words(256, DistributionSpec("data_parallel"), four) == (
        "Batch 256 = 4 devices × 64 per device; the learning rate is not scaled.")
    assert devices.batch_words(256, DistributionSpec("data_parallel", devices=2), four).startswith(
        "Batch 256 = 2 devices × 128 per device")
    assert devices.batch_words(64, DistributionSpec("data_parallel", accelerator="cpu"), Machine(0, cpu_split=4)) == (
        "Batch 64 = 4 devices × 16 per device; the learning rate is not scaled.")
    assert devices.batch_words(250, DistributionSpec("data_parallel"), four) == (
        "Batch 250 does not split evenly over 4 devices (62.5 per device): a multiple of 4 (248 or 252) gives "
        "every device the same share; the learning rate is not scaled.")
    assert "split over every device of the 2 processes" in devices.batch_words(256, MULTI_HOST, four)
    assert devices.batch_words(32, DistributionSpec(), four).startswith("Batch 32 on one device.")


def test_the_problems_are_the_backend_the_gpu_count_and_an_uneven_batch():
    four = Machine(gpus=4)
    assert devices.problems(DistributionSpec("data_parallel", devices=2), four, 256, "tensorflow") == []
    (problem,) = devices.problems(MULTI_HOST, four, 256, "tensorflow")
    assert "Multi-host training needs the JAX backend" in problem
    assert devices.problems(MULTI_HOST, four, 256, "jax") == []
    (problem,) = devices.problems(DistributionSpec("data_parallel", devices=8), Machine(gpus=2), 256, "jax")
    assert "asks for 8 GPUs" in problem
    # Every device takes the same share, on either backend.
    for backend in ("tensorflow", "jax"):
        (problem,) = devices.problems(DistributionSpec("data_parallel"), four, 250, backend)
        assert problem.startswith("batch_size 250 is the global batch, split across 4 devices, and every device "
                                  "takes the same share, so it must be a multiple of 4: use 248 or 252")
    assert devices.problems(DistributionSpec(), four, 250, "jax") == []


def test_on_a_gpu_machine_the_choice_writes_train_distribution(gpus):
    gpus("0,1,2,3")
    at = app(TINY)
    assert radio(at).options == ["CPU", "One GPU", "All GPUs (4)", "N GPUs"]
    assert radio(at).value == "One GPU" and distribution(at) == DistributionSpec()
    assert "**Devices** one GPU" in texts(at)
    radio(at).set_value("All GPUs (4)").run()
    assert distribution(at) == DistributionSpec("data_parallel")
    assert "Batch 32 = 4 devices × 8 per device; the learning rate is not scaled." in texts(at)
    assert "**Devices** data parallel over all 4 GPUs" in texts(at)
    radio(at).set_value("N GPUs").run()
    assert distribution(at) == DistributionSpec("data_parallel", devices=2)
    at.number_input(key="draft-train-gpu-count").set_value(3).run()
    assert distribution(at) == DistributionSpec("data_parallel", devices=3)
    assert "**Devices** data parallel over 3 of the 4 GPUs" in texts(at)
    assert "Batch 32 does not split evenly over 3 devices" in texts(at)
    radio(at).set_value("CPU").run()
    assert distribution(at) == DistributionSpec(accelerator="cpu")
    assert not at.button(key="train-start").disabled


def test_without_a_gpu_the_choice_is_disabled_with_the_way_to_split_the_cpu(gpus):
    gpus("")
    at = app(TINY)
    assert radio(at).options == ["CPU"] and radio(at).disabled
    assert "start StackLab with STACKLAB_CPU_DEVICES=2 (or more)" in texts(at)
    assert not at.button(key="train-start").disabled


def test_a_split_cpu_offers_data_parallel_over_its_devices(gpus):
    gpus("", cpu=2)
    at = app(TINY)
    assert radio(at).options == ["CPU", "CPU (2 devices)"] and not radio(at).disabled
    radio(at).set_value("CPU (2 devices)").run()
    assert distribution(at) == DistributionSpec("data_parallel", accelerator="cpu")
    assert "Batch 32 = 2 devices × 16 per device" in texts(at)
    assert "**Devices** data parallel over 2 CPU devices" in texts(at)


def test_a_distribution_no_choice_describes_is_kept_and_more_gpus_than_the_machine_has_block_train(gpus):
    gpus("0,1")
    wanted = DistributionSpec("data_parallel", devices=8)
    at = app(with_distribution(wanted))
    assert radio(at).value == "As in the spec: data parallel over 8 devices"
    assert "**Devices** data parallel over 8 devices" in texts(at)
    assert distribution(at) == wanted  # opening the page did not rewrite it
    assert any("asks for 8 GPUs" in error.value and "this machine has 2" in error.value for error in at.error)
    assert at.button(key="train-start").disabled
    radio(at).set_value("All GPUs (2)").run()
    assert distribution(at) == DistributionSpec("data_parallel")
    assert radio(at).options == ["CPU", "One GPU", "All GPUs (2)"] and radio(at).value == "All GPUs (2)"
    assert not at.button(key="train-start").disabled


def test_a_multi_host_spec_is_shown_read_only_with_the_backend_problem(gpus, monkeypatch):
    gpus("")
    monkeypatch.delenv("KERAS_BACKEND", raising=False)  # the default: TensorFlow
    at = app(with_distribution(MULTI_HOST))
    assert not [r for r in at.radio if r.label == "Devices"]
    shown = texts(at)
    assert "coordinator 10.0.0.1:1234, process 1 of 2" in shown
    assert any("Multi-host training needs the JAX backend" in error.value for error in at.error)
    assert at.button(key="train-start").disabled
    at.button(key="draft-train-devices-local").click().run()
    assert distribution(at) == DistributionSpec()
    assert not at.button(key="train-start").disabled


def test_the_live_view_says_where_a_run_trained_and_how_fast(no_workers):
    fake_run(epochs=3, status="finished", devices=("cpu:0", "cpu:1"), train_samples=90)
    at = app(TINY)
    assert "· on 2 × CPU · started" in texts(at)
    assert at.success[0].value.startswith("Finished 3 epochs in ")
    assert " on 2 × CPU at 45 samples/s. Best: " in at.success[0].value


def test_a_bad_gpu_list_or_cpu_split_is_said_and_counts_as_none(gpus, monkeypatch):
    gpus("0,1", cpu=3)
    assert devices.this_machine() == Machine(gpus=2, cpu_split=3)
    monkeypatch.setenv("STACKLAB_GPUS", "zero")
    monkeypatch.setenv("STACKLAB_CPU_DEVICES", "two")
    machine = devices.this_machine()
    assert (machine.gpus, machine.cpu_split) == (0, 1)
    assert "STACKLAB_GPUS must list GPU indices" in machine.problem
    assert "STACKLAB_CPU_DEVICES must be a whole number of CPU devices (1 or more), received 'two'" in machine.problem
