"""Train the seed's stack on one device, then data parallel over every device a worker sees.

Both runs go through the run engine (queued, trained by a worker, visible on the Runs
page). On a GPU box the second run takes every GPU (MirroredStrategy on TensorFlow,
DataParallel on JAX); on a machine without GPUs, split the CPU to try it:

    STACKLAB_CPU_DEVICES=2 python examples/more_devices.py [--epochs 3] [--batch-size 256]

With `--two-processes` it instead forms a two-process JAX cluster on this machine (two
StackLab homes stand for two machines) and trains one multi-host run, as two machines would:

    python examples/more_devices.py --two-processes

The batch size is the global batch: with 4 devices and 256, each device computes 64 samples
a step. The learning rate stays as the spec says.
"""

import argparse
import dataclasses
import os
import socket
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from core import runs  # noqa: E402
from core.spec import DistributionSpec, load_spec  # noqa: E402


def seed_spec(epochs: int, batch_size: int, distribution: DistributionSpec):
    spec = load_spec(HERE / "seed_sequential.json")
    return spec.replace(name=f"seed-{distribution.strategy}", train=dataclasses.replace(
        spec.train, epochs=epochs, batch_size=batch_size, distribution=distribution))


def report(run) -> str:
    last = runs.metrics(run.id)[-1]["metrics"] if run.epochs_done else {}
    speed = f"{run.samples_per_s:,.0f} samples/s" if run.samples_per_s else "samples/s unknown"
    accuracy = f", val_accuracy {last['val_accuracy']:.3f}" if "val_accuracy" in last else ""
    return (f"{run.name}: {run.status}, {run.epochs_done} epochs on {run.device_label or 'no device'} "
            f"({', '.join(run.devices)}), batch {run.batch_size}, {speed} (last epoch){accuracy}")


def one_machine(epochs: int, batch_size: int) -> None:
    for distribution in (DistributionSpec(), DistributionSpec(strategy="data_parallel")):
        run = runs.wait(runs.start(seed_spec(epochs, batch_size, distribution)))
        print(report(run), flush=True)


def two_processes(epochs: int, batch_size: int) -> None:
    """A two-process JAX cluster on localhost: each "machine" is its own StackLab home."""
    os.environ["KERAS_BACKEND"] = "jax"  # the workers' backend: multi-host runs on JAX
    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    homes = [Path(tempfile.mkdtemp(prefix=f"stacklab-machine-{k}-")) for k in (0, 1)]
    ids = {}
    for process_id in (1, 0):
        os.environ["STACKLAB_HOME"] = str(homes[process_id])
        distribution = DistributionSpec(strategy="multi_host", coordinator=f"localhost:{port}", num_processes=2,
                                        process_id=process_id)
        ids[process_id] = runs.start(seed_spec(epochs, batch_size, distribution))
    for process_id in (0, 1):
        os.environ["STACKLAB_HOME"] = str(homes[process_id])
        print(f"process {process_id} ({homes[process_id]}): {report(runs.wait(ids[process_id]))}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=256, help="the global batch")
    parser.add_argument("--two-processes", action="store_true", help="a two-process JAX cluster on localhost")
    args = parser.parse_args()
    if args.two_processes:
        two_processes(args.epochs, args.batch_size)
    else:
        os.environ.setdefault("STACKLAB_HOME", tempfile.mkdtemp(prefix="stacklab-devices-"))
        one_machine(args.epochs, args.batch_size)


if __name__ == "__main__":
    main()
