"""The one module that knows which Keras backend runs (TensorFlow by default, or JAX).

Everything else in `core` uses the Keras 3 API only; backend-specific calls (op
determinism, device listing, mixed-precision choice, distribution) live here so the core
also runs with `KERAS_BACKEND=jax`.

Distribution (`distributed(spec)`) uses each backend's own engine: TensorFlow's
`MirroredStrategy` on one machine; JAX's `keras.distribution.DataParallel`, over the
devices of several machines after `keras.distribution.initialize`. Without a GPU,
`STACKLAB_CPU_DEVICES=N` splits the CPU into N devices (TensorFlow logical devices, JAX
`jax_num_cpu_devices`) so data parallel can be tried and tested anywhere.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import keras
import numpy as np

from core.limits import positive_from_env
from core.spec.distribution import DistributionSpec, backend_problem

CPU_DEVICES_ENV = "STACKLAB_CPU_DEVICES"


def backend_name() -> str:
    return keras.backend.backend()


def seed_everything(seed: int, deterministic_ops: bool = False) -> None:
    """Seed Python, NumPy and the backend; optionally ask TensorFlow for deterministic ops.

    On CPU, seeding alone gives the same weights and the same history for the same data
    (tests/core/training/test_loop.py checks it). Deterministic ops are off by default: they
    cost speed, and matter only for GPU kernels that are not deterministic by default.
    """
    keras.utils.set_random_seed(seed)
    if deterministic_ops and backend_name() == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def accelerators() -> list[str]:
    """Names of GPUs (or TPUs) the backend can use; empty on a CPU-only machine."""
    if backend_name() == "tensorflow":
        import tensorflow as tf

        return [d.name for d in tf.config.list_physical_devices() if d.device_type in ("GPU", "TPU")]
    if backend_name() == "jax":
        import jax

        return [str(d) for d in jax.devices() if d.platform != "cpu"]
    return []


def mixed_precision_policy() -> str:
    """float16 on GPUs (tensor cores); bfloat16 on CPUs, where float16 math is emulated."""
    return "mixed_float16" if accelerators() else "mixed_bfloat16"


def tensorboard_writer(logdir: Path) -> Callable[[int, dict[str, float]], None]:
    """A function writing one epoch's scalars as TensorBoard summaries under `logdir`.

    Written from epoch events rather than with `keras.callbacks.TensorBoard`, whose batch
    hook would turn off Keras's asynchronous callback dispatch for the whole fit. Uses
    TensorFlow's summary writer (installed with StackLab) whichever backend trains.
    """
    import tensorflow as tf
    from tensorboard import version  # noqa: F401  (tf.summary needs the tensorboard package)

    writer = tf.summary.create_file_writer(str(logdir))

    def write(epoch: int, scalars: dict[str, float]) -> None:
        with writer.as_default(step=epoch):
            for name, value in scalars.items():
                if value is not None:
                    tf.summary.scalar(name, value)
        writer.flush()

    return write


# -- devices and distribution ------------------------------------------------------------------


def cpu_split() -> int:
    """How many devices the CPU is split into: STACKLAB_CPU_DEVICES, default 1.

    Raises:
        ValueError: the variable is set, but not to a positive whole number.
    """
    return positive_from_env(CPU_DEVICES_ENV, 1, whole=True)


def configure_devices() -> None:
    """Split the CPU into `cpu_split()` devices; call before the backend runs anything.

    A process whose backend already started (a test process, a notebook) keeps its devices:
    TensorFlow cannot change them any more, and `distributed` then sees what there is.
    """
    count = cpu_split()
    if count <= 1:
        return
    if backend_name() == "tensorflow":
        import tensorflow as tf

        cpu = tf.config.list_physical_devices("CPU")[0]
        try:
            tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * count)
        except RuntimeError:  # "Virtual devices cannot be modified after being initialized"
            if len(tf.config.list_logical_devices("CPU")) != count:
                import sys

                print(f"{CPU_DEVICES_ENV}={count} is ignored: TensorFlow started before the CPU could be split "
                      f"(set it before the process starts).", file=sys.stderr, flush=True)
    elif backend_name() == "jax":
        import jax

        jax.config.update("jax_num_cpu_devices", count)


def _tf_devices(cpu: bool) -> list[str]:
    import tensorflow as tf

    kinds = ("CPU",) if cpu else ("GPU", "TPU")
    names = [d.name for d in tf.config.list_logical_devices() if d.device_type in kinds]
    return names or [d.name for d in tf.config.list_logical_devices("CPU")]


def _jax_devices(cpu: bool, local: bool = True) -> list:
    import jax

    if cpu:
        return jax.local_devices(backend="cpu") if local else jax.devices("cpu")
    return jax.local_devices() if local else jax.devices()


def device_report() -> dict:
    """What a worker in this environment trains on: backend, accelerators, CPU devices.

    Returns:
        {"backend", "accelerators": [names], "cpu_devices": [names],
         "visible_gpus_env": CUDA_VISIBLE_DEVICES or None, "cpu_split": int}
    """
    configure_devices()
    if backend_name() == "tensorflow":
        cpu_devices = _tf_devices(cpu=True)
    elif backend_name() == "jax":
        cpu_devices = [str(d) for d in _jax_devices(cpu=True)]
    else:
        cpu_devices = []
    return {"backend": backend_name(), "accelerators": accelerators(), "cpu_devices": cpu_devices,
            "visible_gpus_env": os.environ.get("CUDA_VISIBLE_DEVICES"), "cpu_split": cpu_split()}


@dataclass(frozen=True)
class Placement:
    """Where one training runs: the devices (names), the strategy, and the process's place."""

    strategy: str
    devices: tuple[str, ...]
    num_processes: int = 1
    process_id: int = 0

    @property
    def replicas(self) -> int:
        return len(self.devices)

    @property
    def multi_process(self) -> bool:
        return self.num_processes > 1

    @property
    def trims_batches(self) -> bool:
        """Whether every batch must split evenly across the devices, the last one included:
        JAX shards the batch axis evenly, and MirroredStrategy fails on some uneven splits
        (a last batch of 63 over 2 devices)."""
        return self.strategy != "none"

    @property
    def async_callbacks(self) -> bool:
        """Whether batch callbacks may run on Keras's callback thread. Not for JAX over several
        CPU devices: a loss read on that thread while the next step's all-reduce waits for
        its devices deadlocks XLA's in-process collectives (2 runs in 3 on this machine)."""
        on_cpu = all(name.lower().startswith(("cpu", "tfrt_cpu")) for name in self.devices)
        return not (self.strategy != "none" and backend_name() == "jax" and on_cpu)

    @property
    def needs_jit(self) -> bool:
        """Whether the step must be compiled: JAX runs an uncompiled one op by op, and the
        devices' collectives then deadlock (seen with 4 CPU devices)."""
        return self.strategy != "none" and backend_name() == "jax"


def _chosen(available: list, wanted: int, what: str) -> list:
    if wanted > len(available):
        raise ValueError(
            f"The run asks for {wanted} devices (train.distribution.devices), but this worker sees "
            f"{len(available)} {what}. Ask for at most {len(available)} (0 = all of them); on a "
            f"machine without GPUs, {CPU_DEVICES_ENV}=N splits the CPU into N devices.")
    return available[:wanted] if wanted else available


_cluster: tuple[str, int, int] | None = None  # (coordinator, processes, id): initialized once per process


def _join_cluster(spec: DistributionSpec) -> None:
    """keras.distribution.initialize, once per process (JAX allows no second one)."""
    global _cluster
    wanted = (spec.coordinator, spec.num_processes, spec.process_id)
    if _cluster == wanted:
        return
    if _cluster is not None:
        raise ValueError(f"This process already joined the cluster {_cluster[0]} as process {_cluster[2]} of "
                         f"{_cluster[1]}; a process joins one cluster. Start a new worker.")
    keras.distribution.initialize(job_addresses=spec.coordinator, num_processes=spec.num_processes,
                                  process_id=spec.process_id)
    _cluster = wanted


def join_cluster_first(spec: DistributionSpec) -> None:
    """Join a multi-host cluster before anything computes (JAX must be initialized first).

    Raises:
        ValueError: the backend cannot run `spec` (`backend_problem`).
    """
    problem = backend_problem(spec, backend_name())
    if problem:
        raise ValueError(problem)
    configure_devices()
    if spec.strategy == "multi_host":
        _join_cluster(spec)


@contextlib.contextmanager
def distributed(spec: DistributionSpec) -> Iterator[Placement]:
    """Build, compile and fit inside this context to train as `spec` says.

    - "none": the backend's default device (the GPU the scheduler gave the worker, or the CPU).
    - "data_parallel": TensorFlow, a `MirroredStrategy` scope over the visible GPUs (or the
      split CPU devices); JAX, `keras.distribution.DataParallel` set for the duration.
    - "multi_host" (JAX): DataParallel over `spec.devices` (or all) local devices of every
      process of the cluster joined by `join_cluster_first`.

    Raises:
        ValueError: the backend cannot run `spec`, or it asks for more devices than there are.
    """
    join_cluster_first(spec)
    cpu = spec.accelerator == "cpu"
    if spec.strategy == "none":
        names = _tf_devices(cpu)[:1] if backend_name() == "tensorflow" else [str(d) for d in _jax_devices(cpu)[:1]]
        if backend_name() == "tensorflow" and cpu and accelerators():
            import tensorflow as tf

            with tf.device(names[0]):
                yield Placement("none", tuple(names))
            return
        yield Placement("none", tuple(names))
        return
    if backend_name() == "tensorflow":
        import tensorflow as tf

        names = _chosen(_tf_devices(cpu), spec.devices, "devices")
        strategy = tf.distribute.MirroredStrategy(devices=names)
        with strategy.scope():
            yield Placement(spec.strategy, tuple(names))
        return
    if backend_name() != "jax":
        raise ValueError(f"Data parallel training runs on the TensorFlow or JAX backend, not '{backend_name()}'.")
    import jax

    if spec.strategy == "multi_host":
        local = _chosen(_jax_devices(cpu), spec.devices, "local devices")
        every = _jax_devices(cpu, local=False)
        per_process = len(local)
        devices = [d for p in range(jax.process_count())
                   for d in [d for d in every if d.process_index == p][:per_process]]
    else:
        devices = _chosen(_jax_devices(cpu), spec.devices, "devices")
    previous = keras.distribution.distribution()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
    try:
        yield Placement(spec.strategy, tuple(str(d) for d in devices), num_processes=jax.process_count(),
                        process_id=jax.process_index())
    finally:
        keras.distribution.set_distribution(previous)


def any_process(flag: bool, placement: Placement) -> bool:
    """Whether `flag` is True in any process of a multi-process run (a collective: every
    process must call it at the same point); `flag` itself in a single-process run."""
    if not placement.multi_process:
        return flag
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.array([1 if flag else 0], dtype=np.int32))
    return bool(np.asarray(flags).any())


def share_from_chief(path: Path) -> None:
    """Make this process's file at `path` the same as process 0's (or absent, as there), in a
    process of a multi-host cluster; nothing otherwise.

    A multi-host run resumes from process 0's checkpoint on every process, so the processes
    never start from different epochs. A collective: every process calls it at the same point.
    """
    if _cluster is None:
        return
    import jax
    from jax.experimental import multihost_utils

    chief = jax.process_index() == 0
    data = path.read_bytes() if chief and path.exists() else b""
    size = int(multihost_utils.broadcast_one_to_all(np.array(len(data), dtype=np.int64)))
    if size == 0:
        if not chief:
            path.unlink(missing_ok=True)
        return
    buffer = np.frombuffer(data, dtype=np.uint8) if chief else np.zeros(size, dtype=np.uint8)
    shared = np.asarray(multihost_utils.broadcast_one_to_all(buffer))
    if not chief:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_bytes(shared.astype(np.uint8).tobytes())
        os.replace(tmp, path)


LOST_PEER_SIGNS = ("Gloo", "Connection reset by peer", "coordination service", "DEADLINE_EXCEEDED",
                   "heartbeat", "barrier")


def lost_peer_reason(error: BaseException, spec: DistributionSpec) -> str | None:
    """A clear reason when `error` means another process of a multi-host run is gone; else None."""
    if spec.strategy != "multi_host":
        return None
    text = str(error)
    if not any(sign.lower() in text.lower() for sign in LOST_PEER_SIGNS):
        return None
    first = text.strip().splitlines()[0][:200] if text.strip() else type(error).__name__
    return (f"Another process of this multi-host run stopped answering (process {spec.process_id} of "
            f"{spec.num_processes}, coordinator {spec.coordinator}): it was killed, its machine restarted, or "
            f"the network between them broke ({first}). Start every process again; each resumes from "
            f"process 0's last checkpoint.")


def batched_dataset(x: np.ndarray, y: np.ndarray, batch_size: int, shuffle_seed: int | None):
    """A `tf.data` pipeline of whole batches of (x, y), reshuffled every pass when a seed is
    given, repeated, prefetched: what a multi-process run feeds `fit` with counted steps
    (Keras shards it per process).

    The same seed on every process gives every process the same order, so each takes its
    own share of the same global batch.
    """
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(x), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size, drop_remainder=True).repeat().prefetch(tf.data.AUTOTUNE)
