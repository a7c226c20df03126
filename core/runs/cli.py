"""The CLI's device side: the spec's device settings as flags (`train`, `runs start`), where a
run trains (`runs list/show`), and `python -m core devices`.

    python -m core devices [--json]              the GPUs, runs at once, what a worker's Keras sees
    python -m core runs start SPEC.json --distribution data_parallel --devices 2 [--cpu] [--xla]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
from typing import Callable

from core.spec import STRATEGIES, DistributionSpec, SpecError, StackSpec

# Flag -> field of train.distribution (core.spec.distribution.DistributionSpec).
DISTRIBUTION_FLAGS = {"distribution": "strategy", "devices": "devices", "coordinator": "coordinator",
                      "num_processes": "num_processes", "process_id": "process_id"}
MULTI_HOST_FIELDS = ("coordinator", "num_processes", "process_id")


def train_flags_given(args) -> list[str]:
    """The train-setting flags on the command line, as typed ('--devices 2', '--cpu', ...)."""
    given = [f"--{name.replace('_', '-')} {getattr(args, name)}" for name in (*DISTRIBUTION_FLAGS, "epochs")
             if getattr(args, name, None) is not None]
    if getattr(args, "cpu", False):
        given.append("--cpu")
    for name, flag in (("mixed_precision", "mixed-precision"), ("xla", "xla")):
        value = getattr(args, name, None)
        if value is not None:
            given.append(f"--{'' if value else 'no-'}{flag}")
    return given


def with_train_flags(spec: StackSpec, args) -> StackSpec:
    """`spec` with the train settings given as flags (`train`, `runs start`), checked.

    A flag that changes the strategy drops the spec's settings the new strategy has no use
    for (a coordinator when leaving multi_host, a device count when going to "none"),
    unless they were given as flags too.

    Raises:
        SpecError: a value out of range or a rule broken, with the flags that were given.
    """
    given = {field: getattr(args, flag) for flag, field in DISTRIBUTION_FLAGS.items()
             if getattr(args, flag, None) is not None}
    if getattr(args, "cpu", False):
        given["accelerator"] = "cpu"
    changes: dict = {}
    if given:
        strategy = given.get("strategy", spec.train.distribution.strategy)
        unused = list(MULTI_HOST_FIELDS) if strategy != "multi_host" else []
        if strategy == "none":
            unused.append("devices")
        reset = {field: getattr(DistributionSpec(), field) for field in unused if field not in given}
        changes["distribution"] = dataclasses.replace(spec.train.distribution, **reset, **given)
    if getattr(args, "epochs", None) is not None:
        changes["epochs"] = args.epochs
    if getattr(args, "mixed_precision", None) is not None:
        changes["mixed_precision"] = args.mixed_precision
    if getattr(args, "xla", None) is not None:
        changes["jit_compile"] = args.xla
    if not changes:
        return spec
    spec = spec.replace(train=dataclasses.replace(spec.train, **changes))
    try:
        spec.check_values()  # --epochs 0, --devices -1, multi_host without --coordinator, ...
    except SpecError as error:
        raise SpecError(f"{error} (The command line set: {' '.join(train_flags_given(args))}.)") from None
    return spec


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    """The spec's device settings as flags; each overrides the spec's value (`with_train_flags`)."""
    group = parser.add_argument_group("devices", "override the spec's train settings (train.distribution, "
                                                 "train.mixed_precision, train.jit_compile)")
    group.add_argument("--distribution", choices=STRATEGIES, help="one device, data parallel over this machine's "
                                                                  "devices, or over several machines (JAX)")
    group.add_argument("--devices", type=int, metavar="N", help="data parallel: devices per process (0 = all)")
    group.add_argument("--cpu", action="store_true", help="train on the CPU even where there are GPUs")
    group.add_argument("--coordinator", metavar="HOST:PORT", help="multi_host: process 0's address")
    group.add_argument("--num-processes", type=int, metavar="N", help="multi_host: processes in the cluster")
    group.add_argument("--process-id", type=int, metavar="K", help="multi_host: this process (0 .. N-1)")
    group.add_argument("--mixed-precision", action=argparse.BooleanOptionalAction, default=None,
                       help="float16 compute with float32 weights")
    group.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None,
                       help="XLA compilation of the train step (train.jit_compile)")


def where(run, names: bool = False) -> str:
    """Where a run trains: its devices as its worker reported them ('2 × GPU'), else the GPUs
    the scheduler gave it ('GPU 0,1'), else '-'."""
    if run.devices:
        return f"{run.device_label} ({', '.join(run.devices)})" if names else run.device_label
    if run.gpus:
        return f"GPU {','.join(map(str, run.gpus))}"
    return "-"


def cmd_devices(args, import_keras: Callable[[], None]) -> int:
    """The machine's GPUs, how many runs train at once and which GPU each gets, and what Keras
    sees in a worker given them all."""
    from core.runs.devices import gpu_source, machine_gpus
    from core.runs.scheduler import max_workers, worker_gpu_env

    gpus = machine_gpus()
    workers = max_workers()
    slots = [[gpus[slot].index] if slot < len(gpus) else [] for slot in range(workers)]
    # This process stands in for a worker given every GPU (as a data-parallel run over all
    # of them is): set before Keras starts, as the scheduler sets a worker's.
    os.environ.update(worker_gpu_env(tuple(gpu.index for gpu in gpus)))
    import_keras()
    from core.training.backend import device_report

    worker = device_report()
    if args.json:
        print(json.dumps({"gpus": [dataclasses.asdict(gpu) for gpu in gpus], "gpu_source": gpu_source(),
                          "max_workers": workers, "worker": worker,
                          "slots": [{"run": number, "gpus": slot} for number, slot in enumerate(slots, start=1)]},
                         indent=2))
        return 0
    print(f"GPUs ({gpu_source()}): {len(gpus) or 'none'}")
    for gpu in gpus:
        print(f"  {gpu.describe()}")
    limit = "STACKLAB_MAX_WORKERS" if os.environ.get("STACKLAB_MAX_WORKERS", "").strip() else (
        "one per GPU" if gpus else "the default without GPUs")
    print(f"Runs at once: {workers} ({limit}; STACKLAB_MAX_WORKERS sets it)")
    if gpus:
        for number, slot in enumerate(slots, start=1):
            where = f"GPU {slot[0]}" if slot else (f"the CPU only (a run with train.distribution.accelerator "
                                                   f"\"cpu\"; runs 1-{len(gpus)} hold every GPU)")
            print(f"  run {number}: {where}")
        print("A data-parallel run takes the GPUs it asks for (train.distribution.devices, 0 = all) when that "
              "many are free; the runs queued after it wait. Each worker sees only its own GPUs "
              "(CUDA_VISIBLE_DEVICES).")
    else:
        print(f"  {'it trains' if workers == 1 else 'each trains'} on the CPU")
    print(f"Keras in a worker given {'every GPU above' if gpus else 'no GPU'} (backend {worker['backend']}):")
    print(f"  accelerators: {', '.join(worker['accelerators']) or 'none'}")
    print(f"  CPU devices: {', '.join(worker['cpu_devices']) or 'none'}"
          f" (STACKLAB_CPU_DEVICES splits the CPU: {worker['cpu_split']})")
    visible = worker["visible_gpus_env"]
    print(f"  CUDA_VISIBLE_DEVICES: {visible!r}" if visible is not None else "  CUDA_VISIBLE_DEVICES: unset")
    return 0


def add_devices_parser(commands, import_keras: Callable[[], None]):
    """Add `devices` to the CLI's subcommands; `import_keras` imports Keras the CLI's way."""
    parser = commands.add_parser("devices", help="the GPUs, how many runs train at once, and what a worker's "
                                                 "Keras sees (imports Keras)")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(run=lambda args: cmd_devices(args, import_keras))
    return parser
