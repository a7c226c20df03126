"""Training runs, each in its own worker process; what the dashboard and the CLI call. No Keras.

- `jobs`: start, list_runs, get, metrics, progress, phases, artifacts, stop, resume, delete, wait;
  `store.step_samples`: the training loss sampled at most once a second;
- `store`: the run store (SQLite under $STACKLAB_HOME), its Run and Progress records;
- `scheduler`: which queued run gets a worker and which GPUs (STACKLAB_MAX_WORKERS), which worker is gone;
- `devices`: the machine's GPUs (`machine_gpus`, STACKLAB_GPUS, nvidia-smi, CUDA_VISIBLE_DEVICES);
- `worker`: `python -m core.runs.worker RUN_ID`, the process that trains one run;
- `bundle`: a run's files as one zip; `tensorboard`: TensorBoard for chosen runs.

Example:
    >>> from core import runs
    >>> run_id = runs.start(spec)
    >>> runs.wait(run_id).status
    'finished'
"""

from core.runs.devices import GpuInfo, machine_gpus
from core.runs.jobs import (
    artifacts,
    delete,
    get,
    list_runs,
    metrics,
    phases,
    progress,
    resume,
    start,
    stop,
    wait,
)
from core.runs.records import device_label
from core.runs.scheduler import max_workers, reconcile, schedule
from core.runs.store import (
    ACTIVE_STATUSES,
    RESUMABLE_STATUSES,
    STATUSES,
    Progress,
    Run,
    RunNotFound,
    RunStore,
    RunStoreError,
    current_store,
    step_samples,
)

__all__ = [
    "ACTIVE_STATUSES", "RESUMABLE_STATUSES", "STATUSES", "GpuInfo", "Progress", "Run", "RunNotFound", "RunStore",
    "RunStoreError", "artifacts", "current_store", "delete", "device_label", "get", "list_runs", "machine_gpus",
    "max_workers", "metrics", "phases", "progress", "reconcile", "resume", "schedule", "start", "step_samples", "stop",
    "wait",
]
