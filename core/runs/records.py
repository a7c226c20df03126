"""What the run store hands out: a run, its batch progress, its worker's signs of life, its best
metric; and the errors it raises. Plain frozen records, no database, no Keras."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from core.spec import DatasetSpec, StackSpec
from core.storage.paths import run_dir

STATUSES = ("queued", "running", "stopping", "finished", "stopped", "failed", "interrupted")
ACTIVE_STATUSES = ("queued", "running", "stopping")
RESUMABLE_STATUSES = ("stopped", "failed", "interrupted")


class RunStoreError(RuntimeError):
    """The run store cannot be used (damaged or locked database); the message says what to do."""


class RunNotFound(KeyError):
    def __str__(self) -> str:
        return f"No run with id '{self.args[0]}'. `python -m core runs list` shows the runs."


@dataclass(frozen=True)
class Run:
    id: str
    name: str
    mode: str
    spec: StackSpec
    dataset: DatasetSpec
    status: str
    created_at: float
    started_at: float | None
    ended_at: float | None
    parent_id: str | None
    error: str
    worker_pid: int | None
    heartbeat_at: float | None
    stop_requested: bool
    epochs_total: int
    epochs_done: int
    phase: str
    total_params: int | None
    trainable_params: int | None
    best: dict[str, Any] = field(default_factory=dict)
    # The GPUs the scheduler gave the run (nvidia-smi indices; () on a CPU-only machine or a
    # CPU run), and where it trained as its worker reported (RunStarted): the backend's
    # device names, the strategy, the samples of an epoch and the global batch.
    gpus: tuple[int, ...] = ()
    devices: tuple[str, ...] = ()
    strategy: str = "none"
    train_samples: int | None = None
    batch_size: int | None = None
    # train_samples / the last epoch's duration (which includes its validation pass).
    samples_per_s: float | None = None

    @property
    def device_label(self) -> str:
        """Where the run trained, for tables: '2 × GPU', 'CPU', '4 × CPU'; '' until its worker said."""
        return device_label(self.devices)

    @property
    def folder(self) -> Path:
        return run_dir(self.id)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "name": self.name, "mode": self.mode, "status": self.status,
            "dataset": self.dataset.name if self.dataset.source == "builtin" else self.dataset.path,
            "created_at": _iso(self.created_at), "started_at": _iso(self.started_at),
            "ended_at": _iso(self.ended_at), "duration_s": self.duration_s, "parent_id": self.parent_id,
            "error": self.error, "worker_pid": self.worker_pid, "epochs_total": self.epochs_total,
            "epochs_done": self.epochs_done, "phase": self.phase, "total_params": self.total_params,
            "trainable_params": self.trainable_params, "best": self.best, "gpus": list(self.gpus),
            "devices": list(self.devices), "device_label": self.device_label, "strategy": self.strategy,
            "train_samples": self.train_samples, "batch_size": self.batch_size, "samples_per_s": self.samples_per_s,
        }


@dataclass(frozen=True)
class Progress:
    epoch: int
    step: int
    steps: int
    elapsed_s: float
    updated_at: float
    # Seconds per batch measured in this epoch after its first batch (which also traces and
    # compiles); None until a few batches were timed.
    step_time_s: float | None = None


def device_kind(name: str) -> str:
    """'GPU', 'TPU' or 'CPU' for a backend's device name ('/device:GPU:0', 'cuda:0', 'TFRT_CPU_0', 'cpu:1')."""
    lowered = name.lower()
    if "gpu" in lowered or "cuda" in lowered or "rocm" in lowered:
        return "GPU"
    if "tpu" in lowered:
        return "TPU"
    return "CPU"


def device_label(devices: tuple[str, ...] | list[str]) -> str:
    """Devices as a person counts them: ('cuda:0', 'cuda:1') -> '2 × GPU', ('cpu:0',) -> 'CPU', () -> ''."""
    counts: dict[str, int] = {}
    for name in devices:
        kind = device_kind(name)
        counts[kind] = counts.get(kind, 0) + 1
    return " + ".join(kind if count == 1 else f"{count} × {kind}" for kind, count in counts.items())


def _iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, tz=timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class WorkerSigns:
    """Signs that a run's worker lives: its process's start time (pids get reused), its last
    heartbeat, and when the run started (for a worker that has not reported yet)."""

    worker_started: float | None
    heartbeat_at: float | None
    started_at: float | None


def best_metric(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The best validation metric over epoch rows: val_accuracy (max) or val_loss (min)."""
    for name, better in (("val_accuracy", max), ("val_auc", max), ("val_loss", min), ("loss", min)):
        values = [(row["metrics"][name], row["epoch"]) for row in rows if name in row["metrics"]]
        if values:
            value, epoch = better(values, key=lambda pair: pair[0])
            return {"name": name, "value": value, "epoch": epoch}
    return {}
