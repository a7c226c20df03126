"""Benchmark: samples/s of a StackLab run against plain `model.fit` of the same model.

Two stacks:

- sequential: the seed's stack (examples/seed_sequential.json: a 32-filter CNN and a dense
  head) at batch 256, on `--digits` 28x28 digits (the built-in 1,797 shifted by up to
  2 pixels, written as an NPZ upload would be);
- transfer: a MobileNetV2 backbone at 96x96 (template `applications_backbone`,
  weights "none", so nothing is downloaded), frozen, under a dense head, batch 64, on
  `--images` random 96x96x3 images of 10 classes (an NPZ made on the fly).

Each is trained (a) with plain Keras: the same model (`core.build.stacking.build` +
`core.training.compile.compile_model`) fitted with `model.fit` on the same prepared arrays,
the same batch, validation and shuffling, under Keras's own distribution engine for data
parallel (TensorFlow `MirroredStrategy`, JAX `keras.distribution.DataParallel`); and (b)
as a StackLab run, through `core.runs.start` and its worker process: events, SQLite rows,
checkpoints and TensorBoard included, since that is what a user's run pays. Each side runs
in a fresh process; a/b alternate (ab, ba, ...) for `--pairs` pairs per configuration.

samples/s = training samples an epoch (the run's RunStarted.train_samples, the same count
on the plain side) / the median time between consecutive epoch ends: the first epoch
(tracing) is skipped, everything done per epoch counts on both sides (validation, and for
the run its event, rows, TensorBoard scalars and checkpoint), and the median keeps one
epoch disturbed by another process of a shared machine from deciding. The ratio over the
whole time from the end of epoch 1 to the last end (one-time costs of the second epoch
included) is printed beside it. The bench reads the run's status once a second, as a
light caller would (`runs.wait`, which reconciles every 0.2 s, costs a 2-core machine
visibly more).

Printed: each pair, then per stack and device count the median ratio run / plain
(target on a GPU: >= 0.97), and where the workers see more than one device, the
data-parallel scaling efficiency per device count: samples/s on N devices / (N x samples/s
on 1), for either side (the global batch stays the same, so each device gets batch / N).
The devices are counted in a child process through `core.training.backend.device_report`
(GPUs, else the CPU split). On a CPU-only machine there is one device and the data-parallel
part is skipped; `--cpu-devices N` splits the CPU into N devices (STACKLAB_CPU_DEVICES)
to try it, which shares the same cores: not a scaling figure.

Ratios are measured within one invocation, on the same machine, because absolute times on
a shared machine are noise. Run from the repo root:

    .venv/bin/python bench/throughput.py [--pairs 7] [--epochs 5] [--digits 6400] [--images 320]
        [--stacks sequential,transfer] [--cpu-devices N] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from core.spec import DatasetSpec, DistributionSpec, MemberSpec, StackSpec  # noqa: E402

# Plain Keras: prepare, build and compile as the trainer does, then a bare model.fit with one
# callback taking the time of each epoch end. argv: the spec's JSON file.
PLAIN_FIT = r"""
import dataclasses, json, sys, time
import keras
from core.build.preprocessing import prepare
from core.build.stacking import ADAPT_SAMPLE_ROWS, build
from core.spec import StackSpec
from core.training import backend
from core.training.compile import ONE_HOT_LOSSES, compile_model
from core.training.loop import with_target_units

spec = StackSpec.from_json(open(sys.argv[1]).read())
train_spec, dist = spec.train, spec.train.distribution
backend.configure_devices()  # STACKLAB_CPU_DEVICES, as a worker does, before the backend starts
data = prepare(spec.dataset, train_spec)
parts, task = data.split, data.task
scope, replicas, trim = None, 1, False
if dist.strategy == "data_parallel" and keras.backend.backend() == "tensorflow":
    import tensorflow as tf
    kinds = ("GPU", "TPU") if backend.accelerators() else ("CPU",)
    names = [d.name for d in tf.config.list_logical_devices() if d.device_type in kinds]
    names = names[:dist.devices] if dist.devices else names
    scope, replicas = tf.distribute.MirroredStrategy(devices=names).scope(), len(names)
elif dist.strategy == "data_parallel":
    import jax
    devices = jax.local_devices() if backend.accelerators() else jax.local_devices(backend="cpu")
    devices = devices[:dist.devices] if dist.devices else devices
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    # JAX shards every batch evenly and runs an unjitted step op by op: as the trainer does.
    replicas, trim = len(devices), True
    train_spec = dataclasses.replace(train_spec, jit_compile=True)
n = len(parts.x_train) - (len(parts.x_train) % replicas if trim else 0)
n_val = len(parts.x_val) - (len(parts.x_val) % replicas if trim else 0)
steps = -(-n // train_spec.batch_size)
keras.utils.set_random_seed(train_spec.seed)
if scope is not None:
    scope.__enter__()
model = build(spec, task, sample=parts.x_train[:ADAPT_SAMPLE_ROWS])
if data.preprocessing.target is not None:
    model = with_target_units(model, data.preprocessing.target)
args = compile_model(model, train_spec, task, epochs=train_spec.epochs, steps_per_epoch=steps,
                     target=data.preprocessing.target)
one_hot = args["loss"] in ONE_HOT_LOSSES
targets = (lambda y: keras.utils.to_categorical(y, task.num_classes)) if one_hot else (lambda y: y)
ends = []

class EpochEnds(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
        ends.append(time.time())

model.fit(parts.x_train[:n], targets(parts.y_train)[:n], batch_size=train_spec.batch_size,
          epochs=train_spec.epochs,
          validation_data=(parts.x_val[:n_val], targets(parts.y_val)[:n_val]) if n_val else None,
          shuffle=True, verbose=0, callbacks=[EpochEnds()])
print(json.dumps({"ends": ends, "train_samples": n}))
"""

DEVICE_REPORT = ("import json; from core.training.backend import device_report; "
                 "print(json.dumps(device_report()))")


@dataclass(frozen=True)
class Measure:
    samples_per_s: float  # over the median epoch after the first
    overall_per_s: float  # over every epoch after the first
    train_samples: int
    devices: tuple[str, ...] = ()


def throughput(ends: list[float], train_samples: int, devices: tuple[str, ...] = ()) -> Measure:
    """Samples per second from epoch end times, the first epoch (tracing) skipped."""
    if len(ends) < 2:
        raise SystemExit("throughput needs at least 2 epochs (the first one is skipped): raise --epochs")
    gaps = [b - a for a, b in zip(ends, ends[1:])]
    return Measure(train_samples / statistics.median(gaps), train_samples * len(gaps) / (ends[-1] - ends[0]),
                   train_samples, devices)


def make_digits(folder: Path, count: int) -> Path:
    """`count` digits: the built-in 1,797 shifted by up to 2 pixels, as an NPZ upload would be."""
    from core.data import load_dataset

    digits = load_dataset(DatasetSpec(name="digits28"))
    rng = np.random.default_rng(0)
    picks = rng.integers(0, digits.num_samples, count)
    shifts = rng.integers(-2, 3, size=(count, 2))
    x = np.stack([np.roll(digits.x[i], tuple(s), axis=(0, 1)) for i, s in zip(picks, shifts)])
    path = folder / f"digits{count}.npz"
    np.savez(path, x=x.astype("float32"), y=digits.y[picks])
    return path


def make_images(folder: Path, count: int) -> Path:
    """`count` random 96x96 RGB images in [0, 1] with 10 classes: throughput does not need meaning."""
    rng = np.random.default_rng(0)
    path = folder / f"images{count}.npz"
    np.savez(path, x=rng.random((count, 96, 96, 3), dtype=np.float32), y=rng.integers(0, 10, count))
    return path


def sequential_spec(data: Path, epochs: int) -> StackSpec:
    seed = StackSpec.from_json((ROOT / "examples" / "seed_sequential.json").read_text())
    train = replace(seed.train, epochs=epochs, batch_size=256)
    return seed.replace(name="bench-sequential", train=train,
                        dataset=DatasetSpec(source="npz", path=str(data), scaling="none"))


def transfer_spec(data: Path, epochs: int) -> StackSpec:
    base = MemberSpec("base", template="applications_backbone",
                      params={"architecture": "MobileNetV2", "weights": "none", "input_size": 96})
    head = MemberSpec("head", template="dense_head", params={"hidden_units": [64]})
    seed = StackSpec.from_json((ROOT / "examples" / "seed_sequential.json").read_text())
    train = replace(seed.train, epochs=epochs, batch_size=64, fine_tune=None)
    return StackSpec(name="bench-transfer", mode="transfer", members=(base,), head=head,
                     options={"freeze_base": True}, train=train,
                     dataset=DatasetSpec(source="npz", path=str(data), scaling="none"))


def on_devices(spec: StackSpec, count: int) -> StackSpec:
    """The spec on one device (strategy none) or data parallel over `count` devices."""
    dist = DistributionSpec() if count == 1 else DistributionSpec(strategy="data_parallel", devices=count)
    return spec.replace(train=replace(spec.train, distribution=dist))


def _gpu_env(count: int) -> dict[str, str]:
    """What the scheduler gives a worker that trains on `count` GPUs (the first free ones,
    here the first ones): the plain side sees the same; nothing on a CPU-only machine."""
    from core.runs import machine_gpus
    from core.runs.scheduler import worker_gpu_env

    return worker_gpu_env(tuple(range(count))) if machine_gpus() else {}


def plain_fit(spec: StackSpec, folder: Path, count: int) -> Measure:
    from core.processes import child_env

    path = folder / f"{spec.name}-{count}.json"
    path.write_text(spec.to_json())
    result = subprocess.run([sys.executable, "-c", PLAIN_FIT, str(path)], capture_output=True, text=True,
                            env=child_env(**_gpu_env(count)), cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"plain fit of {spec.name} on {count} device(s) failed:\n{result.stderr[-3000:]}")
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    return throughput(answer["ends"], answer["train_samples"])


def through_run(spec: StackSpec) -> Measure:
    from core import runs

    run_id = runs.start(spec)
    while (run := runs.get(run_id)).is_active:
        time.sleep(1.0)
    if run.status != "finished":
        raise SystemExit(f"run {run.id} of {spec.name} {run.status}: {run.error}")
    ends = [row["ended_at"] for row in runs.metrics(run.id)]
    return throughput(ends, run.train_samples, tuple(run.devices))


def count_devices() -> tuple[int, str]:
    """How many devices a worker would train on, and what they are, asked in a child process
    (this one keeps Keras unimported, as the dashboard does)."""
    from core.processes import child_env

    result = subprocess.run([sys.executable, "-c", DEVICE_REPORT], capture_output=True, text=True,
                            env=child_env(), cwd=ROOT, check=True)
    report = json.loads(result.stdout.strip().splitlines()[-1])
    if report["accelerators"]:
        return len(report["accelerators"]), f"{len(report['accelerators'])} accelerator(s) ({report['backend']})"
    return len(report["cpu_devices"]), f"{len(report['cpu_devices'])} CPU device(s) ({report['backend']})"


def device_counts(total: int) -> list[int]:
    """1, then 2, 4, 8, ... up to `total`, and `total` itself."""
    counts, n = [1], 2
    while n < total:
        counts.append(n)
        n *= 2
    return counts + ([total] if total > 1 else [])


def measure(spec: StackSpec, count: int, pairs: int, folder: Path) -> tuple[list[Measure], list[Measure]]:
    spec = on_devices(spec, count)
    plains, engines = [], []
    for pair in range(pairs):
        # ABBA: which runs first alternates, so a load that rises or falls over the minutes
        # of the bench does not favour one side.
        if pair % 2 == 0:
            plain, engine = plain_fit(spec, folder, count), through_run(spec)
        else:
            engine = through_run(spec)
            plain = plain_fit(spec, folder, count)
        plains.append(plain)
        engines.append(engine)
        print(f"  pair {pair + 1}: plain fit {plain.samples_per_s:,.0f} samples/s, StackLab run "
              f"{engine.samples_per_s:,.0f} samples/s, ratio {engine.samples_per_s / plain.samples_per_s:.3f} "
              f"(over all epochs after the first {engine.overall_per_s / plain.overall_per_s:.3f}; "
              f"{engine.train_samples} samples an epoch on {', '.join(engine.devices) or '?'})", flush=True)
    return plains, engines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=5, help="epochs per training; the first is not counted")
    parser.add_argument("--digits", type=int, default=6400,
                        help="samples of the sequential stack's dataset (rounded up to a multiple of 1280)")
    parser.add_argument("--images", type=int, default=320,
                        help="samples of the transfer stack's dataset (rounded up to a multiple of 320)")
    parser.add_argument("--stacks", default="sequential,transfer", help="which stacks, comma-separated")
    parser.add_argument("--cpu-devices", type=int, default=0,
                        help="split the CPU into N devices (STACKLAB_CPU_DEVICES) for a data-parallel run "
                             "on the same cores: it checks the path, it is not a scaling figure")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 pair, 2 epochs, small datasets")
    args = parser.parse_args()
    if args.quick:
        args.pairs, args.epochs, args.digits, args.images = 1, 2, 1280, 320
    # Whole batches of training and validation samples (validation_split 0.2 of 5 batches), so
    # that every batch splits evenly across 2, 4, 8, ... devices: under TensorFlow's
    # MirroredStrategy a batch that splits unevenly fails (AddN of [101,...] and [100,...]).
    args.digits, args.images = -(-args.digits // 1280) * 1280, -(-args.images // 320) * 320
    stacks = [name.strip() for name in args.stacks.split(",") if name.strip()]
    unknown = set(stacks) - {"sequential", "transfer"}
    if unknown:
        parser.error(f"--stacks takes sequential and/or transfer, not {', '.join(sorted(unknown))}")
    if args.cpu_devices:
        os.environ["STACKLAB_CPU_DEVICES"] = str(args.cpu_devices)
    with tempfile.TemporaryDirectory(prefix="stacklab-bench-") as tmp:
        folder = Path(tmp)
        os.environ["STACKLAB_HOME"] = str(folder / "home")
        total, what = count_devices()
        split_cpu = args.cpu_devices > 1 and "CPU" in what
        print(f"backend {os.environ.get('KERAS_BACKEND', 'tensorflow')}; workers see {what}; "
              f"{args.pairs} pair(s) of {args.epochs} epochs per configuration", flush=True)
        if total == 1:
            print("one device: the data-parallel part is skipped (--cpu-devices N splits the CPU to try it)")
        elif split_cpu:
            print(f"data parallel over {total} CPU devices split from the same cores (--cpu-devices): "
                  f"it checks the path; the efficiency below is NOT a scaling figure")
        specs = {}
        if "sequential" in stacks:
            specs["sequential (seed CNN, batch 256)"] = sequential_spec(make_digits(folder, args.digits), args.epochs)
        if "transfer" in stacks:
            specs["transfer (MobileNetV2 96x96 frozen, batch 64)"] = transfer_spec(
                make_images(folder, args.images), args.epochs)
        summary = []
        for label, spec in specs.items():
            single = {}
            for count in device_counts(total):
                print(f"\n{label}, {'1 device' if count == 1 else f'data parallel on {count} devices'}:", flush=True)
                plains, engines = measure(spec, count, args.pairs, folder)
                ratios = [e.samples_per_s / p.samples_per_s for p, e in zip(plains, engines)]
                overall = statistics.median(e.overall_per_s / p.overall_per_s for p, e in zip(plains, engines))
                plain_sps = statistics.median(p.samples_per_s for p in plains)
                engine_sps = statistics.median(e.samples_per_s for e in engines)
                line = (f"{label}, {count} device(s): median ratio StackLab run / plain fit "
                        f"{statistics.median(ratios):.3f} (pairs {min(ratios):.2f}-{max(ratios):.2f}; target on a "
                        f"GPU >= 0.97; over all epochs after the first {overall:.3f}); "
                        f"{engine_sps:,.0f} vs {plain_sps:,.0f} samples/s")
                if count == 1:
                    single = {"plain": plain_sps, "engine": engine_sps}
                else:
                    line += (f"; scaling efficiency StackLab {engine_sps / (count * single['engine']):.2f}, "
                             f"plain {plain_sps / (count * single['plain']):.2f}"
                             + (" (split CPU: not a scaling figure)" if split_cpu else ""))
                summary.append(line)
    print()
    for line in summary:
        print(line)


if __name__ == "__main__":
    main()
