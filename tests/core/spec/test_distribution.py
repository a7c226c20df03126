"""train.distribution: reading, the rules between its keys, the backend check, GPUs wanted."""

import pytest

from core.spec import DistributionSpec, SpecError, TrainSpec, backend_problem, gpus_wanted
from core.spec.distribution import batch_problem


def test_the_shorthand_and_the_full_form_read_the_same_and_round_trip():
    short = TrainSpec.from_dict({"distribution": "data_parallel"})
    full = TrainSpec.from_dict({"distribution": {"strategy": "data_parallel", "devices": 0}})
    assert short == full
    assert TrainSpec.from_dict(short.to_dict()) == short
    assert TrainSpec().distribution == DistributionSpec()  # one device unless asked


@pytest.mark.parametrize("distribution, message", [
    ({"strategy": "none", "devices": 2}, r"'train.distribution.devices' is 2, but .*strategy' is 'none'"),
    ({"strategy": "multi_host", "num_processes": 2}, r"'train.distribution.coordinator' is missing"),
    ({"strategy": "multi_host", "coordinator": "h:0", "num_processes": 2}, r"port from 1 to 65535.*'h:0'"),
    ({"strategy": "multi_host", "coordinator": "no port", "num_processes": 2}, r"must be \"host:port\""),
    ({"strategy": "multi_host", "coordinator": "h:1234"}, r"'train.distribution.num_processes' must be at least 2"),
    ({"strategy": "multi_host", "coordinator": "h:1234", "num_processes": 2, "process_id": 2},
     r"'train.distribution.process_id' must be from 0 to 1"),
    ({"strategy": "data_parallel", "coordinator": "h:1234"}, r"are for 'train.distribution.strategy' 'multi_host'"),
    ({"strategy": "pipeline"}, r"'train.distribution.strategy' must be one of"),
    ({"accelerator": "tpu"}, r"'train.distribution.accelerator' must be one of"),
    ({"devices": -1}, r"'train.distribution.devices'"),
])
def test_a_bad_distribution_names_its_key(distribution, message):
    with pytest.raises(SpecError, match=message):
        TrainSpec.from_dict({"distribution": distribution}, where="train")


def test_multi_host_is_refused_on_tensorflow_with_the_jax_alternative():
    spec = DistributionSpec(strategy="multi_host", coordinator="10.0.0.1:1234", num_processes=2)
    assert "KERAS_BACKEND=jax" in backend_problem(spec, "tensorflow")
    assert backend_problem(spec, "jax") is None
    assert backend_problem(DistributionSpec(strategy="data_parallel"), "tensorflow") is None


@pytest.mark.parametrize("distribution, machine_gpus, wanted", [
    (DistributionSpec(), 0, 0),  # a CPU-only machine: nothing changes
    (DistributionSpec(strategy="data_parallel"), 0, 0),
    (DistributionSpec(), 4, 1),  # one GPU per run
    (DistributionSpec(accelerator="cpu"), 4, 0),
    (DistributionSpec(strategy="data_parallel"), 4, 4),  # every GPU
    (DistributionSpec(strategy="data_parallel", devices=2), 4, 2),
])
def test_gpus_wanted(distribution, machine_gpus, wanted):
    assert gpus_wanted(distribution, machine_gpus) == wanted


def test_asking_for_more_gpus_than_the_machine_has_says_how_many_it_has():
    with pytest.raises(ValueError, match="asks for 3 GPUs .* this machine has 2. Ask for at most 2"):
        gpus_wanted(DistributionSpec(strategy="data_parallel", devices=3), 2)


def test_describe():
    assert DistributionSpec().describe() == "one device"
    assert DistributionSpec(strategy="data_parallel", devices=2).describe() == "data parallel over 2 devices"
    assert "process 1 of 2" in DistributionSpec(strategy="multi_host", coordinator="h:1", num_processes=2,
                                                process_id=1).describe()


def test_a_batch_that_jax_cannot_split_evenly_names_the_nearest_that_it_can():
    assert batch_problem(256, 4) is None
    assert batch_problem(250, 1) is None
    assert "must be a multiple of 4: use 248 or 252" in batch_problem(250, 4)
    assert "use 3." in batch_problem(2, 3)
