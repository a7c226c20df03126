"""How a run spreads over devices: `train.distribution` in the spec. No Keras import.

Three strategies, each on an engine Keras or its backend already has:
- "none": one device. A GPU if the machine has one (the scheduler gives each run its own),
  else the CPU.
- "data_parallel": the model is copied on several devices of this machine and each global
  batch is split across them. TensorFlow: `tf.distribute.MirroredStrategy`; JAX:
  `keras.distribution.DataParallel`.
- "multi_host": data parallel over the devices of several machines, one process each. JAX
  only, through `keras.distribution.initialize` (TensorFlow's multi-worker strategy with
  Keras 3 is unresolved upstream).

`batch_size` stays the GLOBAL batch: with 4 replicas and batch 256, each device computes 64
samples a step. The learning rate is never scaled for you.

Example:
    >>> DistributionSpec.from_dict({"strategy": "data_parallel", "devices": 2})
    DistributionSpec(strategy='data_parallel', devices=2, accelerator='auto', ...)
    >>> TrainSpec.from_dict({"distribution": "data_parallel"}).distribution.strategy
    'data_parallel'
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Any

from core.spec.base import Range, SpecError, _SpecBase

STRATEGIES = ("none", "data_parallel", "multi_host")
# "auto": the GPUs the scheduler gives the run (one for "none"), or the CPU on a machine
# without any; "cpu": GPUs hidden, the run trains on the CPU (its split devices, for data
# parallel: STACKLAB_CPU_DEVICES).
ACCELERATORS = ("auto", "cpu")
BACKENDS_WITH_MULTI_HOST = ("jax",)
# host:port, host a name or an IPv4 address (an IPv6 address in brackets).
_ADDRESS = re.compile(r"^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):(\d{1,5})$")


@dataclass(frozen=True)
class DistributionSpec(_SpecBase):
    strategy: str = "none"
    # data_parallel / multi_host: devices used by each process; 0 = every visible one.
    devices: int = 0
    accelerator: str = "auto"
    # multi_host: process 0's "host:port" (every process gives the same), how many processes
    # form the cluster, and this one's id (0 .. num_processes - 1; `--process-id` on the CLI).
    coordinator: str | None = None
    num_processes: int = 1
    process_id: int = 0

    _choices: typing.ClassVar = {"strategy": STRATEGIES, "accelerator": ACCELERATORS}
    _ranges: typing.ClassVar = {"devices": Range(0), "num_processes": Range(1), "process_id": Range(0)}

    @classmethod
    def _read(cls, data: Any, where: str):
        # "distribution": "data_parallel" is short for {"strategy": "data_parallel"}.
        if isinstance(data, str):
            data = {"strategy": data}
        return super()._read(data, where)

    def _check_rules(self, prefix: str) -> None:
        if self.strategy == "none" and self.devices > 1:
            raise SpecError(
                f"'{prefix}devices' is {self.devices}, but '{prefix}strategy' is 'none' (one device). "
                f"Set '{prefix}strategy' to 'data_parallel' to train on {self.devices} devices, or "
                f"remove '{prefix}devices'.")
        if self.strategy != "multi_host":
            if self.coordinator is not None or self.num_processes != 1 or self.process_id != 0:
                raise SpecError(
                    f"'{prefix}coordinator', '{prefix}num_processes' and '{prefix}process_id' are for "
                    f"'{prefix}strategy' 'multi_host', received strategy '{self.strategy}'. Set "
                    f"the strategy to 'multi_host' or remove them.")
            return
        if self.coordinator is None:
            raise SpecError(
                f"'{prefix}coordinator' is missing: a multi_host run needs process 0's address as "
                f"\"host:port\", the same on every machine, e.g. \"10.0.0.1:1234\".")
        match = _ADDRESS.match(self.coordinator)
        if match is None or not 1 <= int(match.group(2)) <= 65535:
            raise SpecError(
                f"'{prefix}coordinator' must be \"host:port\" with a port from 1 to 65535, received "
                f"{self.coordinator!r}. Example: \"10.0.0.1:1234\".")
        if self.num_processes < 2:
            raise SpecError(
                f"'{prefix}num_processes' must be at least 2 for 'multi_host', received "
                f"{self.num_processes}. For one machine use 'data_parallel'.")
        if self.process_id >= self.num_processes:
            raise SpecError(
                f"'{prefix}process_id' must be from 0 to {self.num_processes - 1} "
                f"('{prefix}num_processes' - 1), received {self.process_id}.")

    @property
    def parallel(self) -> bool:
        return self.strategy != "none"

    def describe(self) -> str:
        """A short phrase for pages and the CLI: 'one device', 'data parallel over 2 devices', ..."""
        where = " on the CPU" if self.accelerator == "cpu" else ""
        count = "every visible device" if self.devices == 0 else f"{self.devices} device{'s' * (self.devices > 1)}"
        if self.strategy == "none":
            return f"one device{where}"
        if self.strategy == "data_parallel":
            return f"data parallel over {count}{where}"
        return (f"multi-host data parallel, process {self.process_id} of {self.num_processes} "
                f"(coordinator {self.coordinator}), {count} each{where}")


def backend_problem(distribution: DistributionSpec, backend: str) -> str | None:
    """Why `distribution` cannot run on the Keras backend `backend`, with the alternative; None if it can."""
    if distribution.strategy == "multi_host" and backend not in BACKENDS_WITH_MULTI_HOST:
        return (f"Multi-host training needs the JAX backend: TensorFlow's multi-worker strategy does not "
                f"work with Keras 3 (unresolved upstream), and this process runs Keras on '{backend}'. "
                f"Start StackLab and its workers with KERAS_BACKEND=jax on every machine, or use "
                f"'data_parallel' over the GPUs of one machine.")
    return None


def gpus_wanted(distribution: DistributionSpec, machine_gpus: int) -> int:
    """How many of this machine's `machine_gpus` GPUs a run with `distribution` needs at once.

    0 on a CPU-only machine (nothing changes there) or for accelerator "cpu"; 1 for "none";
    every GPU, or `devices` of them, for data parallel (per process for multi_host).

    Raises:
        ValueError: the run asks for more GPUs than the machine has.
    """
    if machine_gpus == 0 or distribution.accelerator == "cpu":
        return 0
    if distribution.strategy == "none":
        return 1
    if distribution.devices > machine_gpus:
        raise ValueError(
            f"The run asks for {distribution.devices} GPUs (train.distribution.devices), but this machine "
            f"has {machine_gpus}. Ask for at most {machine_gpus}, or 0 for all of them.")
    return distribution.devices or machine_gpus



def batch_problem(batch_size: int, replicas: int) -> str | None:
    """Why the global `batch_size` cannot be split across `replicas` devices; None if it can.

    Every device takes the same share of a batch: JAX shards the batch axis evenly, and
    TensorFlow's MirroredStrategy (Keras 3.15, TF 2.21) fails on some uneven splits (63 over
    2 devices: "Inputs to operation AddN must have the same size"). So the batch must be a
    multiple of the device count.
    """
    if replicas <= 1 or batch_size % replicas == 0:
        return None
    lower = batch_size - batch_size % replicas
    nearest = f"{lower} or {lower + replicas}" if lower else f"{replicas}"
    return (f"batch_size {batch_size} is the global batch, split across {replicas} devices, and every device "
            f"takes the same share, so it must be a multiple of {replicas}: use {nearest}. Each device then "
            f"computes batch_size / {replicas} samples a step.")
