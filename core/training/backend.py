"""The one module that knows which Keras backend runs (TensorFlow by default, or JAX).

Everything else in `core` uses the Keras 3 API only; backend-specific calls (op
determinism, device listing, mixed-precision choice) live here so the core also runs with
`KERAS_BACKEND=jax`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import keras


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
