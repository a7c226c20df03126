"""`python -m core.runs.worker RUN_ID`: trains one run and writes everything to the run store.

Two processes per run:
- the supervisor (this module's `main`, no Keras import) starts the trainer, forwards a
  SIGTERM to it as a stop request, and waits; if the trainer dies without recording an
  end (killed by a signal, for example by the out-of-memory killer), the supervisor marks
  the run failed with a reason naming the signal, then starts the next queued run;
- the trainer (`--trainer`) builds, fits through `core.training.loop`, heartbeats, checkpoints
  every epoch, exports the artifacts (model.keras end to end, stack.keras, data.json, ...)
  and records the end.

A resumed run continues from its checkpoint; epoch rows written after that checkpoint are
dropped first (their epochs are trained again), so every epoch appears exactly once, and
the rows through it stay exactly as recorded (`RunStore.resume_epochs`).
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
import traceback
from pathlib import Path

from core import runs
from core.processes import child_env, exit_words
from core.storage.paths import run_dir

HEARTBEAT_S = 0.5


def supervise(run_id: str) -> int:
    """Run the trainer as a child process and record how it ended."""
    store = runs.current_store()
    trainer = subprocess.Popen([sys.executable, "-m", "core.runs.worker", "--trainer", run_id], env=child_env())

    def forward(signum, frame):
        trainer.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    code = trainer.wait()
    with store.transaction():
        run = store.get(run_id)
        # Another worker's run now: the trainer recorded its end and the run was resumed
        # while this process was still exiting; the new worker owns the row.
        resumed_since = run.worker_pid != os.getpid()
        if run.status in runs.ACTIVE_STATUSES and not resumed_since:
            if code < 0:
                advice = "; try a smaller batch size or model" if code == -signal.SIGKILL else ""
                reason = (f"The training process was {exit_words(code)}{advice}. The last checkpoint "
                          f"(epoch {run.epochs_done}) is kept; resume continues from it.")
            else:
                reason = (f"The training process exited with code {code} before finishing; see "
                          f"{run_dir(run_id) / 'worker.log'}. Resume continues from the last checkpoint.")
            store.update(run_id, status="failed", ended_at=time.time(), error=reason)
    runs.schedule()  # this slot is free: start the next queued run
    if not resumed_since:
        # With STACKLAB_MLFLOW_TRACKING_URI set, log the run to MLflow (never fails the run). Here
        # rather than in the trainer: it also covers a trainer killed by a signal or a multi-host
        # trainer's os._exit, and the next queued run does not wait for it.
        from core.tracking import after_run

        after_run(run_id)
    return 0


class _Heartbeat(threading.Thread):
    """Writes a heartbeat, reads stop requests, and ends the trainer if the supervisor died."""

    def __init__(self, store: runs.RunStore, run_id: str, stop: threading.Event):
        super().__init__(daemon=True, name="stacklab-heartbeat")
        self.store, self.run_id, self.stop = store, run_id, stop
        self.parent = os.getppid()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(HEARTBEAT_S):
            if os.getppid() != self.parent:
                # Orphaned: the supervisor was killed. The run will be marked interrupted;
                # exiting now keeps a second worker from ever training the same run.
                os._exit(3)
            self.store.update(self.run_id, heartbeat_at=time.time())
            if self.store.stop_requested(self.run_id):
                self.stop.set()


class _EventWriter(threading.Thread):
    """Writes training events (run store rows, TensorBoard scalars) on its own thread, in order.

    Training only puts an event in a queue: an epoch's end never waits for an SQLite commit
    (which syncs the disk) or for TensorBoard, and neither does the batch callback, whose
    pending calls Keras waits for at every epoch end. `close()` drains the queue, so every
    event is stored before the run's end is recorded; the first error is raised there.
    """

    _CLOSE = object()

    def __init__(self, write):
        super().__init__(daemon=True, name="stacklab-event-writer")
        self.write = write
        self.queue: queue.SimpleQueue = queue.SimpleQueue()
        self.error: BaseException | None = None

    def __call__(self, event) -> None:
        self.queue.put(event)

    def run(self) -> None:
        while (event := self.queue.get()) is not self._CLOSE:
            try:
                self.write(event)
            except Exception as error:  # noqa: BLE001 - kept, and raised by close() on the trainer's thread
                self.error = self.error or error

    def close(self) -> None:
        """Write what is queued, stop the thread, and raise the first error a write met."""
        if self.is_alive():
            self.queue.put(self._CLOSE)
            self.join()
        if self.error is not None:
            error, self.error = self.error, None
            raise error


def _epoch_logger(folder: Path):
    """A sink writing epoch metrics as TensorBoard scalars (`tensorboard --logdir runs/`)."""
    from core.spec.events import EpochEnd
    from core.training.backend import tensorboard_writer

    try:
        write = tensorboard_writer(folder / "tensorboard")
    except ImportError as error:  # TensorBoard logs are a convenience; training goes on without them
        print(f"TensorBoard logs are off: {error}", file=sys.stderr, flush=True)
        return lambda event: None

    def sink(event) -> None:
        if isinstance(event, EpochEnd):
            write(event.epoch, {**event.metrics, "learning_rate": event.learning_rate,
                                **{f"update/{k}": v for k, v in event.member_updates.items()}})

    return sink


def train_run(run_id: str) -> int:
    """The trainer: train the run, export its artifacts, record how it ended."""
    from core.build.stacking import member_files
    from core.export.artifacts import export_run
    from core.training.backend import configure_devices
    from core.training.checkpoints import read_checkpoint
    from core.training.loop import train

    # Before anything starts the backend (the TensorBoard writer does): STACKLAB_CPU_DEVICES.
    configure_devices()
    store = runs.current_store()
    run = store.get(run_id)
    folder = run_dir(run_id)
    checkpoint = folder / "checkpoint.npz"
    stop = threading.Event()
    store.update(run_id, worker_pid=os.getppid(), heartbeat_at=time.time(), error="")
    if run.stop_requested:
        stop.set()
    signal.signal(signal.SIGTERM, lambda signum, frame: stop.set())
    heartbeat = _Heartbeat(store, run_id, stop)
    heartbeat.start()
    writer = None
    status, reason = "failed", ""
    try:
        if run.spec.train.distribution.strategy == "multi_host":
            # Every process resumes from process 0's checkpoint (or none, as process 0).
            from core.training.backend import join_cluster_first, share_from_chief

            join_cluster_first(run.spec.train.distribution)
            share_from_chief(checkpoint)
        resume = checkpoint.exists()
        if resume:
            # Rows written after the checkpoint belong to epochs the model never kept: drop
            # them now, or a resumed run that ends before re-training them would keep them.
            state = read_checkpoint(checkpoint)
            store.resume_epochs(run_id, keep_through=state.epoch, history=state.history)
        else:
            store.truncate_epochs(run_id, 0)
        log_epoch = _epoch_logger(folder)

        def write(event) -> None:
            store.record(run_id, event)
            log_epoch(event)

        writer = _EventWriter(write)
        writer.start()
        spec = run.spec
        result = train(spec, None, writer, should_stop=stop.is_set, checkpoint_path=checkpoint, resume=resume)
        writer.close()  # every epoch row is stored before the artifacts and the end
        # model.keras is the end-to-end model (the preprocessing fitted on the training split in
        # front of the stack), stack.keras the stack alone, data.json the data card.
        paths = export_run(result.model, spec, result.history, folder, member_sources=member_files(spec),
                           compile_args=result.compile_args, prepared=result.prepared)
        for name, path in paths.items():
            store.add_artifact(run_id, name, path)
        status, reason = result.status, result.reason
        if status == "finished":
            checkpoint.unlink(missing_ok=True)  # model.keras has everything now
    except (ValueError, OSError) as error:  # bad spec, data or file: the message is the reason
        (folder / "traceback.txt").write_text(traceback.format_exc())
        reason = (_lost_peer(error, run.spec)
                  or " ".join(line.strip() for line in str(error).splitlines()) or type(error).__name__)
    except Exception as error:  # noqa: BLE001 - a bug must still end the run with a reason
        (folder / "traceback.txt").write_text(traceback.format_exc())
        reason = (_lost_peer(error, run.spec)
                  or f"{type(error).__name__}: {error} (traceback in {folder / 'traceback.txt'})")
    finally:
        heartbeat.done.set()
        if writer is not None and writer.is_alive():
            try:
                writer.close()
            except Exception as error:  # noqa: BLE001 - the run already failed; its first reason stands
                print(f"Writing training events failed too: {error}", file=sys.stderr, flush=True)
    store.update(run_id, status=status, ended_at=time.time(), error=reason if status != "finished" else "",
                 stop_requested=0)
    if run.spec.train.distribution.strategy == "multi_host":
        # JAX's exit handler waits for every process of the cluster to shut down together;
        # when one is gone it waits forever. The run is recorded: leave now.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


def _lost_peer(error: BaseException, spec) -> str | None:
    from core.training.backend import lost_peer_reason

    return lost_peer_reason(error, spec.train.distribution)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "--trainer":
        return train_run(args[1])
    if len(args) != 1:
        print("usage: python -m core.runs.worker RUN_ID", file=sys.stderr)
        return 2
    return supervise(args[0])


if __name__ == "__main__":
    sys.exit(main())
