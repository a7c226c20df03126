"""The Train page's device choice: where a run trains, written to the draft's `train.distribution`.

The choices are the ones this machine has: "CPU", "One GPU", "All GPUs (n)" and "N GPUs"
(a count) on a GPU machine (core.runs.devices.machine_gpus); on a machine without one, the
CPU, or data parallel over the CPU split into STACKLAB_CPU_DEVICES devices when that is more
than 1 (else the choice is shown disabled with the way to get one). A distribution that none
of them describes (read from a JSON spec) is kept and offered as "As in the spec: ...", so
opening the page never rewrites it; a multi-host one is shown read-only.

The batch size stays the global batch (core.spec.distribution): the page says how it splits,
"batch 256 = 4 devices × 64 per device", and that the learning rate is not scaled.

Example:
    >>> machine = Machine(gpus=4, cpu_split=1)
    >>> [choice.label for choice in choices(machine)]
    ['CPU', 'One GPU', 'All GPUs (4)', 'N GPUs']
    >>> batch_words(256, DistributionSpec("data_parallel"), machine)
    'Batch 256 = 4 devices × 64 per device; the learning rate is not scaled.'
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import streamlit as st

from core.runs.devices import machine_gpus
from core.spec import DistributionSpec, backend_problem, gpus_wanted
from core.spec.distribution import batch_problem
from dashboard import state

CPU_SPLIT_ENV = "STACKLAB_CPU_DEVICES"
N_GPUS = "N GPUs"
FROM_SPEC = "As in the spec: "


@dataclass(frozen=True)
class Machine:
    """What this machine offers a run: its GPUs, and how many devices the CPU is split into."""

    gpus: int
    cpu_split: int = 1
    problem: str | None = None  # a bad STACKLAB_GPUS or STACKLAB_CPU_DEVICES, said on the page


@dataclass(frozen=True)
class Choice:
    label: str
    distribution: DistributionSpec  # for N_GPUS: the count comes from its own input


def this_machine() -> Machine:
    """The GPUs workers can get (STACKLAB_GPUS or nvidia-smi) and the CPU split (STACKLAB_CPU_DEVICES)."""
    problems = []
    try:
        gpus = len(machine_gpus())
    except ValueError as error:
        gpus = 0
        problems.append(str(error))
    raw = os.environ.get(CPU_SPLIT_ENV, "").strip()
    cpu_split = 1
    if raw:
        if raw.isdigit() and int(raw) >= 1:
            cpu_split = int(raw)
        else:
            problems.append(f"{CPU_SPLIT_ENV} must be a whole number of CPU devices (1 or more), received {raw!r}. "
                            f"Start StackLab with e.g. {CPU_SPLIT_ENV}=4, or unset it; the CPU is one device.")
    return Machine(gpus=gpus, cpu_split=cpu_split, problem=" ".join(problems) or None)


def choices(machine: Machine) -> list[Choice]:
    """The device choices this machine has, in the order shown."""
    if machine.gpus == 0:
        found = [Choice("CPU", DistributionSpec())]
    else:
        found = [Choice("CPU", DistributionSpec(accelerator="cpu")), Choice("One GPU", DistributionSpec())]
    if machine.cpu_split > 1:
        found.append(Choice(f"CPU ({machine.cpu_split} devices)",
                            DistributionSpec("data_parallel", accelerator="cpu")))
    if machine.gpus > 1:
        found.append(Choice(f"All GPUs ({machine.gpus})", DistributionSpec("data_parallel")))
    if machine.gpus > 2:
        found.append(Choice(N_GPUS, DistributionSpec("data_parallel", devices=2)))
    return found


def _same(distribution: DistributionSpec, choice: Choice, machine: Machine) -> bool:
    """Whether `distribution` trains where `choice` does on this machine."""
    wanted = choice.distribution
    if choice.label == N_GPUS:
        return (distribution.strategy == "data_parallel" and distribution.accelerator == "auto"
                and 2 <= distribution.devices < machine.gpus)
    if wanted.strategy == "none":
        # Without a GPU, "auto" and "cpu" both train on the CPU.
        cpu = machine.gpus == 0 or distribution.accelerator == "cpu"
        return distribution.strategy == "none" and cpu == (machine.gpus == 0 or wanted.accelerator == "cpu")
    if distribution.strategy != "data_parallel":
        return False
    on_cpu = machine.gpus == 0 or distribution.accelerator == "cpu"
    if wanted.accelerator == "cpu":
        return on_cpu and distribution.devices in (0, machine.cpu_split)
    return not on_cpu and distribution.devices in (0, machine.gpus)


def choice_of(distribution: DistributionSpec, machine: Machine) -> Choice | None:
    """The choice that describes `distribution` here, or None (it stays as the spec says)."""
    return next((choice for choice in choices(machine) if _same(distribution, choice, machine)), None)


def replicas(distribution: DistributionSpec, machine: Machine) -> int | None:
    """Devices one global batch is split over, on this machine; None when other machines decide."""
    if distribution.strategy == "none":
        return 1
    if distribution.strategy == "multi_host":
        return distribution.num_processes * distribution.devices if distribution.devices else None
    on_cpu = machine.gpus == 0 or distribution.accelerator == "cpu"
    return distribution.devices or (machine.cpu_split if on_cpu else machine.gpus)


def batch_words(batch_size: int, distribution: DistributionSpec, machine: Machine) -> str:
    """How the global batch splits: 'Batch 256 = 4 devices × 64 per device; the learning rate is not scaled.'"""
    count = replicas(distribution, machine)
    unscaled = "the learning rate is not scaled"
    if count is None:
        return (f"Batch {batch_size} is the global batch, split over every device of the "
                f"{distribution.num_processes} processes; {unscaled}.")
    if count == 1:
        return (f"Batch {batch_size} on one device. The batch size is the global batch: over several "
                f"devices each computes its share, and {unscaled}.")
    share, rest = divmod(batch_size, count)
    if rest == 0:
        return f"Batch {batch_size} = {count} devices × {share} per device; {unscaled}."
    lower, upper = batch_size - rest, batch_size - rest + count
    even = f"{lower} or {upper}" if lower else f"{upper}"
    return (f"Batch {batch_size} does not split evenly over {count} devices ({batch_size / count:.4g} per device): "
            f"a multiple of {count} ({even}) gives every device the same share; {unscaled}.")


def summary(distribution: DistributionSpec, machine: Machine) -> str:
    """Where a run trains, in a few words: 'the CPU', 'one GPU', 'data parallel over all 4 GPUs', ..."""
    choice = choice_of(distribution, machine)
    if choice is None:
        return distribution.describe()
    if distribution.strategy == "none":
        return "the CPU" if choice.label == "CPU" else "one GPU"
    if choice.label == N_GPUS:
        return f"data parallel over {distribution.devices} of the {machine.gpus} GPUs"
    if choice.distribution.accelerator == "cpu":
        return f"data parallel over {machine.cpu_split} CPU devices"
    return f"data parallel over all {machine.gpus} GPUs"


def problems(distribution: DistributionSpec, machine: Machine, batch_size: int,
             backend: str | None = None) -> list[str]:
    """Why a run with `distribution` cannot train here: the Keras backend's, the GPU count's,
    and a global batch that does not split evenly across the devices (the trainer refuses it
    at its start: `core.spec.distribution.batch_problem`)."""
    backend = backend or os.environ.get("KERAS_BACKEND", "tensorflow")
    found = []
    problem = backend_problem(distribution, backend)
    if problem:
        found.append(problem)
    try:
        gpus_wanted(distribution, machine.gpus)
    except ValueError as error:
        found.append(str(error))
    count = replicas(distribution, machine)
    problem = batch_problem(batch_size, count) if count else None
    if problem:
        found.append(problem)
    return found


def _no_split_reason(machine: Machine) -> str:
    return (f"No GPU on this machine (nvidia-smi finds none), so runs train on the CPU. To try data parallel "
            f"without a GPU, start StackLab with {CPU_SPLIT_ENV}=2 (or more): the CPU is split into that many "
            f"devices.")


def _set_distribution(distribution: DistributionSpec) -> None:
    """A callback: the draft trains on `distribution`. Before the page reruns, so the choices
    drawn next are the ones for it (an "As in the spec" entry goes at once)."""
    draft = state.draft()
    state.set_draft(draft.replace(train=dataclasses.replace(draft.train, distribution=distribution)))


def _multi_host(distribution: DistributionSpec, key: tuple) -> None:
    """A multi-host spec, read-only: it is started on every machine from the command line."""
    st.markdown(f"**Devices** {distribution.describe()}")
    st.caption(f"Set in the spec: coordinator {distribution.coordinator}, process {distribution.process_id} of "
               f"{distribution.num_processes}. Each machine starts its process with `python -m core runs start "
               f"SPEC.json` and its own `--process-id`.")
    st.button("Train on this machine instead", key=state.widget_key(*key, "devices-local"),
              icon=":material/computer:", on_click=_set_distribution, args=(DistributionSpec(),))


def device_choice(distribution: DistributionSpec, batch_size: int, machine: Machine,
                  key: tuple = ("draft", "train")) -> DistributionSpec:
    """The device choice and its batch words; returns the distribution chosen (the same object
    when the choice did not change, so the draft is not rewritten)."""
    if machine.problem:
        st.warning(machine.problem, icon=":material/warning:")
    if distribution.strategy == "multi_host":
        _multi_host(distribution, key)
        chosen = distribution
    else:
        chosen = _pick(distribution, machine, key)
    st.caption(batch_words(batch_size, chosen, machine))
    return chosen


def _pick(distribution: DistributionSpec, machine: Machine, key: tuple) -> DistributionSpec:
    options = choices(machine)
    current = choice_of(distribution, machine)
    if current is None:
        current = Choice(FROM_SPEC + distribution.describe(), distribution)
        options = [current, *options]
    labels = [choice.label for choice in options]
    only_cpu = labels == ["CPU"]
    radio_key = state.widget_key(*key, "devices", len(labels))

    def choose() -> None:
        picked = state.widget_value(radio_key)
        _set_distribution(next(choice.distribution for choice in options if choice.label == picked))

    # The options are part of the key: when "As in the spec" goes, the radio starts afresh
    # from the spec instead of keeping a position in a list that changed.
    label = st.radio("Devices", labels, index=labels.index(current.label), horizontal=True, disabled=only_cpu,
                     key=radio_key, on_change=choose,
                     help=_no_split_reason(machine) if only_cpu else
                     "Several devices: data parallel, each batch split across copies of the model.")
    if only_cpu:
        st.caption(_no_split_reason(machine))
    if label != N_GPUS:
        return distribution  # the choice wrote the draft itself (`choose`)
    # Every GPU is "All GPUs"; this count is one of the others.
    count = st.number_input("GPUs", min_value=2, max_value=machine.gpus - 1,
                            value=min(max(distribution.devices, 2), machine.gpus - 1), step=1,
                            key=state.widget_key(*key, "gpu-count"))
    return dataclasses.replace(distribution, devices=int(count))
