"""The run store: runs, their epoch metrics, step samples, progress, phases and artifacts, in SQLite.

The database lives at `$STACKLAB_HOME/stacklab.db`: WAL mode (readers never wait for the
worker writing), a busy timeout, and a versioned schema (`PRAGMA user_version`). Workers
write through `record`; the dashboard and the CLI read. `core.runs` is the API on top.
No Keras import.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable

from core.runs.records import (  # noqa: F401  (re-exported: the store's records are part of its interface)
    ACTIVE_STATUSES,
    RESUMABLE_STATUSES,
    STATUSES,
    Progress,
    Run,
    RunNotFound,
    RunStoreError,
    WorkerSigns,
    best_metric,
)
from core.runs.schema import MIGRATIONS, SCHEMA, SCHEMA_VERSION
from core.spec import StackSpec
from core.spec.events import (
    BatchProgress,
    EpochEnd,
    Event,
    PhaseChange,
    RunStarted,
    StepSample,
    epoch_from_history_row,
)
from core.storage.paths import run_dir, stacklab_home


def parse_gpus(text: str) -> tuple[int, ...]:
    """A run row's `gpus` column ("0,1", "" for none) as indices."""
    return tuple(int(part) for part in text.split(",") if part.strip())


def _is_busy(error: sqlite3.Error) -> bool:
    return "locked" in str(error) or "busy" in str(error)


class RunStore:
    """The SQLite run store of one StackLab home. Thread-safe: one connection, one lock."""

    def __init__(self, home: Path | None = None, timeout_s: float = 10.0):
        self.home = Path(home) if home is not None else stacklab_home()
        self.path = self.home / "stacklab.db"
        self._lock = threading.RLock()
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._open(timeout_s)
                return
            except sqlite3.OperationalError as error:
                # Two processes opening a new store at once can deadlock on the switch to WAL;
                # SQLite then answers "locked" to one of them at once, without waiting.
                if _is_busy(error) and time.monotonic() < deadline:
                    time.sleep(0.05)
                    continue
                raise self._explain(error) from None
            except sqlite3.DatabaseError as error:
                raise self._explain(error) from None

    def _open(self, timeout_s: float) -> None:
        """Connect, switch to WAL and migrate; a failed attempt leaves no connection open."""
        self._db = sqlite3.connect(self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False)
        try:
            self._db.row_factory = sqlite3.Row
            self._db.execute(f"PRAGMA busy_timeout = {int(timeout_s * 1000)}")
            self._db.execute("PRAGMA journal_mode = WAL")
            self._db.execute("PRAGMA foreign_keys = ON")
            self._migrate()
        except BaseException:
            self._db.close()
            raise

    def _explain(self, error: sqlite3.Error) -> RunStoreError:
        text = str(error)
        if _is_busy(error):
            return RunStoreError(
                f"The run store {self.path} is locked by another process ({text}). Wait a moment and "
                f"retry; if it persists, close other StackLab processes using this STACKLAB_HOME.")
        return RunStoreError(
            f"The run store {self.path} cannot be read ({text}). It may be damaged: move it aside "
            f"(run folders under {self.home / 'runs'} keep their models) and StackLab starts a new one.")

    def _migrate(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version == SCHEMA_VERSION:
            return
        if version > SCHEMA_VERSION:
            raise RunStoreError(f"The run store {self.path} has schema version {version}, newer than this "
                                f"StackLab ({SCHEMA_VERSION}). Update StackLab or use another STACKLAB_HOME.")
        self._db.execute("BEGIN IMMEDIATE")
        try:
            # Read again under the write lock: another process may have migrated meanwhile.
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                for statement in SCHEMA.split(";"):  # IF NOT EXISTS: two processes may create it at once
                    if statement.strip():
                        self._db.execute(statement)
            else:
                for step in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS[step].split(";"):
                        if statement.strip():
                            self._db.execute(statement)
                if version < 3:
                    run_ids = [row[0] for row in self._db.execute("SELECT id FROM runs").fetchall()]
                    for run_id in run_ids:
                        self._update_best(run_id)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def transaction(self):
        return _Transaction(self)

    def execute(self, sql: str, params: tuple = ()) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._db.execute(sql, params)
            except sqlite3.OperationalError as error:
                raise self._explain(error) from None
            except sqlite3.DatabaseError as error:
                raise self._explain(error) from None

    def close(self) -> None:
        self._db.close()

    # -- runs ------------------------------------------------------------------------------

    def create(self, spec: StackSpec, parent_id: str | None = None) -> str:
        run_id = f"{datetime.now():%Y%m%d-%H%M%S}-{secrets.token_hex(3)}"
        folder = run_dir(run_id)
        folder.mkdir(parents=True)
        (folder / "spec.json").write_text(spec.to_json())
        with self.transaction():
            seq = self.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM runs").fetchone()[0]
            self.execute(
                "INSERT INTO runs (id, seq, name, mode, spec, dataset, status, created_at, parent_id, epochs_total)"
                " VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
                (run_id, seq, spec.name, spec.mode, spec.to_json(), json.dumps(spec.dataset.to_dict()),
                 time.time(), parent_id, spec.train.epochs))
        return run_id

    def get(self, run_id: str) -> Run:
        row = self.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return self._run(row)

    def list_runs(self, statuses: tuple[str, ...] | None = None, limit: int | None = None) -> list[Run]:
        """Runs, newest first, optionally only those with the given statuses."""
        sql, params = "SELECT * FROM runs", ()
        if statuses:
            sql += f" WHERE status IN ({','.join('?' * len(statuses))})"
            params = tuple(statuses)
        sql += " ORDER BY seq DESC"
        if limit:
            sql += f" LIMIT {int(limit)}"
        return [self._run(row) for row in self.execute(sql, params).fetchall()]

    def _run(self, row: sqlite3.Row) -> Run:
        spec = StackSpec.from_json(row["spec"], check_values=False)  # stored: read back as it was
        best = json.loads(row["best"])
        return Run(
            id=row["id"], name=row["name"], mode=row["mode"], spec=spec, dataset=spec.dataset,
            status=row["status"], created_at=row["created_at"], started_at=row["started_at"],
            ended_at=row["ended_at"], parent_id=row["parent_id"], error=row["error"],
            worker_pid=row["worker_pid"], heartbeat_at=row["heartbeat_at"],
            stop_requested=bool(row["stop_requested"]), epochs_total=row["epochs_total"],
            epochs_done=row["epochs_done"], phase=row["phase"], total_params=row["total_params"],
            trainable_params=row["trainable_params"], best=best, gpus=parse_gpus(row["gpus"]),
            devices=tuple(json.loads(row["devices"])) if row["devices"] else (), strategy=row["strategy"],
            train_samples=row["train_samples"], batch_size=row["batch_size"], samples_per_s=row["samples_per_s"])

    def update(self, run_id: str, **values: Any) -> None:
        columns = ", ".join(f"{name} = ?" for name in values)
        self.execute(f"UPDATE runs SET {columns} WHERE id = ?", (*values.values(), run_id))

    def delete(self, run_id: str) -> None:
        self.execute("DELETE FROM runs WHERE id = ?", (run_id,))

    # -- what a worker writes ---------------------------------------------------------------

    def record(self, run_id: str, event: Event) -> None:
        """Store one training event (the worker's sink)."""
        now = time.time()
        if isinstance(event, BatchProgress):
            self.execute(
                "INSERT INTO progress (run_id, epoch, step, steps, elapsed_s, updated_at, step_time_s)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (run_id) DO UPDATE SET epoch = excluded.epoch, step = excluded.step,"
                " steps = excluded.steps, elapsed_s = excluded.elapsed_s, updated_at = excluded.updated_at,"
                " step_time_s = excluded.step_time_s",
                (run_id, event.epoch, event.step, event.steps, event.elapsed_s, now, event.step_time_s))
        elif isinstance(event, StepSample):
            self.add_step_sample(run_id, event.epoch, event.step, event.steps, event.loss, event.recorded_at)
        elif isinstance(event, EpochEnd):
            with self.transaction():
                # REPLACE: an epoch re-trained after a resume appears once, with its new values.
                self.execute(
                    "INSERT OR REPLACE INTO epochs (run_id, epoch, phase, metrics, duration_s, learning_rate,"
                    " member_updates, ended_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, event.epoch, event.phase, json.dumps(event.metrics), event.duration_s,
                     event.learning_rate, json.dumps(event.member_updates), event.ended_at or now, now))
                # samples/s of this epoch; CAST: SQLite divides two integers as integers.
                self.execute("UPDATE runs SET epochs_done = ?, phase = ?, heartbeat_at = ?, samples_per_s ="
                             " CASE WHEN train_samples > 0 AND ? > 0 THEN CAST(train_samples AS REAL) / ?"
                             " ELSE samples_per_s END WHERE id = ?",
                             (event.epoch, event.phase, now, event.duration_s, event.duration_s, run_id))
                self._update_best(run_id)
        elif isinstance(event, PhaseChange):
            self.execute(
                "INSERT OR REPLACE INTO phases (run_id, epoch, phase, learning_rate, trainable_params,"
                " unfrozen_layers) VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, event.epoch, event.phase, event.learning_rate, event.trainable_params,
                 json.dumps(list(event.unfrozen_layers))))
            self.update(run_id, phase=event.phase, trainable_params=event.trainable_params)
        elif isinstance(event, RunStarted):
            # samples_per_s starts again: a resumed run may train on other devices.
            self.update(run_id, epochs_total=event.epochs, total_params=event.total_params,
                        trainable_params=event.trainable_params, epochs_done=event.initial_epoch,
                        devices=json.dumps(list(event.devices)), strategy=event.strategy,
                        train_samples=event.train_samples or None, batch_size=event.batch_size or None,
                        samples_per_s=None)

    def add_step_sample(self, run_id: str, epoch: int, step: int, steps: int | None, loss: float,
                        recorded_at: float) -> int:
        """Store one step sample of the training loss; returns its number (`seq`).

        Numbers increase per run from 1 and are never given twice, not even after a resume
        deleted the samples of the epochs it trains again: a reader's cursor stays valid.
        """
        with self.transaction():
            self.execute("UPDATE runs SET step_seq = step_seq + 1 WHERE id = ?", (run_id,))
            row = self.execute("SELECT step_seq FROM runs WHERE id = ?", (run_id,)).fetchone()
            if row is None:
                raise RunNotFound(run_id)
            self.execute("INSERT INTO steps (run_id, seq, epoch, step, steps, loss, recorded_at)"
                         " VALUES (?, ?, ?, ?, ?, ?, ?)", (run_id, row[0], epoch, step, steps, loss, recorded_at))
        return row[0]

    def truncate_epochs(self, run_id: str, keep_through: int) -> None:
        """Forget epochs after `keep_through` (they were not checkpointed and will be re-trained),
        with their step samples."""
        with self.transaction():
            self.execute("DELETE FROM epochs WHERE run_id = ? AND epoch > ?", (run_id, keep_through))
            self.execute("DELETE FROM steps WHERE run_id = ? AND epoch > ?", (run_id, keep_through))
            self.execute("DELETE FROM phases WHERE run_id = ? AND epoch > ?", (run_id, keep_through + 1))
            self.execute("UPDATE runs SET epochs_done = ? WHERE id = ?", (keep_through, run_id))
            self._update_best(run_id)

    def _update_best(self, run_id: str) -> None:
        """Keep the run's best metric column right after its epoch rows changed (once an
        epoch, inside the caller's transaction)."""
        self.execute("UPDATE runs SET best = ? WHERE id = ?", (json.dumps(best_metric(self.metrics(run_id))), run_id))

    def resume_epochs(self, run_id: str, keep_through: int, history: list[dict[str, Any]]) -> None:
        """Prepare the epoch rows for a resume from a checkpoint taken after `keep_through` epochs.

        The stored rows are the source of truth: rows through `keep_through` stay exactly as
        recorded (metrics, member updates, duration, learning rate, times); rows after it
        are dropped, because the model never kept those epochs and trains them again. Only
        an epoch the store lacks is rebuilt from the checkpoint's `history`.

        Args:
            run_id: the run being resumed.
            keep_through: epochs finished in the checkpoint.
            history: the checkpoint's rows (`history_row`), one per finished epoch.
        """
        with self.transaction():
            self.truncate_epochs(run_id, keep_through)
            for row in history:
                if row["epoch"] > keep_through:
                    continue
                event = epoch_from_history_row(row)
                # OR IGNORE: a stored row wins over the checkpoint's copy of it.
                self.execute(
                    "INSERT OR IGNORE INTO epochs (run_id, epoch, phase, metrics, duration_s, learning_rate,"
                    " member_updates, ended_at, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (run_id, event.epoch, event.phase, json.dumps(event.metrics), event.duration_s,
                     event.learning_rate, json.dumps(event.member_updates), event.ended_at or None, time.time()))
            self._update_best(run_id)

    # -- what the scheduler asks ---------------------------------------------------------------

    def claim_queued(self, max_active: int, machine_gpus: tuple[int, ...] = (),
                     gpus_for: Callable[[StackSpec], int] | None = None) -> list[str]:
        """Mark the oldest queued runs running while fewer than `max_active` runs are, giving
        each the GPUs it needs; returns their ids (the caller starts their workers).

        First in, first out: a run waiting for more GPUs than are free holds the runs queued
        after it, so a run that needs several GPUs is not starved by one-GPU runs. Two
        processes claiming at once cannot both see a free slot: the write lock is taken first.

        Args:
            max_active: how many runs may be running or stopping at once.
            machine_gpus: the indices of the GPUs runs may get, in the order they are given.
            gpus_for: how many GPUs a run of a spec needs; a ValueError it raises fails that
                run with its message (it asks for more than the machine has). None: no GPUs.

        Returns:
            The ids claimed, oldest first; each row has status running and its `gpus`.
        """
        # A read first: the dashboard calls this every second, and most of the time nothing
        # is queued, so it should not take the write lock for nothing.
        if self.execute("SELECT 1 FROM runs WHERE status = 'queued' LIMIT 1").fetchone() is None:
            return []
        claimed = []
        with self.transaction():
            active = self.execute("SELECT gpus FROM runs WHERE status IN ('running', 'stopping')").fetchall()
            held = {index for row in active for index in parse_gpus(row["gpus"])}
            free = [index for index in machine_gpus if index not in held]
            slots = max_active - len(active)
            rows = self.execute("SELECT id, started_at, spec FROM runs WHERE status = 'queued' ORDER BY seq"
                                ).fetchall() if slots > 0 else []
            now = time.time()
            for row in rows:
                if slots <= 0:
                    break
                try:
                    wanted = gpus_for(StackSpec.from_json(row["spec"], check_values=False)) if gpus_for else 0
                except ValueError as error:  # more GPUs than the machine has: it would wait forever
                    self.update(row["id"], status="failed", ended_at=now, error=str(error))
                    continue
                if wanted > len(free):
                    break
                given, free = free[:wanted], free[wanted:]
                self.update(row["id"], status="running", started_at=row["started_at"] or now, heartbeat_at=now,
                            worker_pid=None, worker_started=None, gpus=",".join(map(str, given)))
                claimed.append(row["id"])
                slots -= 1
        return claimed

    def worker_signs(self, run_id: str) -> WorkerSigns:
        """When the run's worker process started, last wrote a heartbeat, and the run started."""
        row = self.execute("SELECT worker_started, heartbeat_at, started_at FROM runs WHERE id = ?",
                           (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(run_id)
        return WorkerSigns(row["worker_started"], row["heartbeat_at"], row["started_at"])

    def stop_requested(self, run_id: str) -> bool:
        row = self.execute("SELECT stop_requested FROM runs WHERE id = ?", (run_id,)).fetchone()
        return bool(row and row[0])

    def add_artifact(self, run_id: str, name: str, path: Path) -> None:
        self.execute("INSERT OR REPLACE INTO artifacts (run_id, name, path, size, created_at) VALUES (?, ?, ?, ?, ?)",
                     (run_id, name, str(path), Path(path).stat().st_size, time.time()))

    # -- what the dashboard reads ------------------------------------------------------------

    def metrics(self, run_id: str, since_epoch: int = 0) -> list[dict[str, Any]]:
        rows = self.execute(
            "SELECT epoch, phase, metrics, duration_s, learning_rate, member_updates, ended_at, recorded_at"
            " FROM epochs"
            " WHERE run_id = ? AND epoch > ? ORDER BY epoch", (run_id, since_epoch)).fetchall()
        return [{"epoch": r["epoch"], "phase": r["phase"], "metrics": json.loads(r["metrics"]),
                 "duration_s": r["duration_s"], "learning_rate": r["learning_rate"],
                 "member_updates": json.loads(r["member_updates"]), "ended_at": r["ended_at"],
                 "recorded_at": r["recorded_at"]}
                for r in rows]

    def step_samples(self, run_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
        """The run's step samples numbered after `after_seq`, oldest first (see `step_samples`)."""
        rows = self.execute("SELECT seq, epoch, step, steps, loss, recorded_at FROM steps"
                            " WHERE run_id = ? AND seq > ? ORDER BY seq", (run_id, after_seq)).fetchall()
        return [dict(r) for r in rows]

    def progress(self, run_id: str) -> Progress | None:
        row = self.execute("SELECT * FROM progress WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            return None
        return Progress(epoch=row["epoch"], step=row["step"], steps=row["steps"], elapsed_s=row["elapsed_s"],
                        updated_at=row["updated_at"], step_time_s=row["step_time_s"])

    def phases(self, run_id: str) -> list[dict[str, Any]]:
        rows = self.execute("SELECT * FROM phases WHERE run_id = ? ORDER BY epoch", (run_id,)).fetchall()
        return [{"epoch": r["epoch"], "phase": r["phase"], "learning_rate": r["learning_rate"],
                 "trainable_params": r["trainable_params"], "unfrozen_layers": json.loads(r["unfrozen_layers"])}
                for r in rows]

    def artifacts(self, run_id: str) -> dict[str, Path]:
        rows = self.execute("SELECT name, path FROM artifacts WHERE run_id = ? ORDER BY name", (run_id,)).fetchall()
        return {r["name"]: Path(r["path"]) for r in rows if Path(r["path"]).exists()}


class _Transaction:
    """`BEGIN IMMEDIATE` ... `COMMIT`: takes the write lock at once, so two processes
    claiming the next queued run cannot both see a free slot."""

    def __init__(self, store: RunStore):
        self.store = store

    def __enter__(self):
        self.store._lock.acquire()
        if self.store._db.in_transaction:
            self.nested = True
            return self
        self.nested = False
        try:
            self.store._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as error:
            self.store._lock.release()
            raise self.store._explain(error) from None
        return self

    def __exit__(self, kind, value, traceback):
        try:
            if not self.nested:
                self.store._db.execute("ROLLBACK" if kind else "COMMIT")
        finally:
            self.store._lock.release()
        return False


_stores: dict[Path, RunStore] = {}
_stores_lock = threading.Lock()


def current_store() -> RunStore:
    """The run store of the current `$STACKLAB_HOME` (one per home and process)."""
    home = stacklab_home()
    with _stores_lock:
        if home not in _stores:
            _stores[home] = RunStore(home)
        return _stores[home]


def step_samples(run_id: str, after_seq: int = 0) -> list[dict[str, Any]]:
    """The training loss of a run sampled at most once a second, oldest first.

    Args:
        run_id: the run.
        after_seq: only samples numbered after this one (a reader's cursor; 0: all).

    Returns:
        One dict per sample: seq (1-based, increasing per run), epoch (1-based), step
        (1-based batch within the epoch), steps (batches per epoch, or None), loss (the
        running mean of the epoch's training loss at that batch) and recorded_at (unix time).
        A resume deletes the samples of the epochs after its checkpoint; their numbers are
        not given again.

    Example:
        >>> samples = step_samples(run_id)
        >>> newer = step_samples(run_id, after_seq=samples[-1]["seq"])
    """
    return current_store().step_samples(run_id, after_seq)
