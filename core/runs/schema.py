"""The run store's tables, and how a store made by an older StackLab becomes this one's."""

SCHEMA_VERSION = 5
# The training loss sampled at most once a second, numbered per run by `seq` (1, 2, ...).
STEPS_TABLE = """
CREATE TABLE IF NOT EXISTS steps (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    epoch INTEGER NOT NULL,
    step INTEGER NOT NULL,
    steps INTEGER,
    loss REAL NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (run_id, seq)
);
"""

# What turns a store of schema version N into N + 1 (a store made by an older StackLab).
# Statements separated by ";"; a step that needs data from the rows is done in
# `RunStore._migrate` after them.
MIGRATIONS = {
    # 2: seconds per batch measured in the current epoch, for the time left.
    1: "ALTER TABLE progress ADD COLUMN step_time_s REAL",
    # 3: the best validation metric, kept when an epoch is recorded (not recomputed from
    # every epoch row each time the runs are listed).
    2: "ALTER TABLE runs ADD COLUMN best TEXT NOT NULL DEFAULT '{}'",
    # 4: the training loss sampled at most once a second (step samples), and the run's
    # last sample number, which never goes back (a resume deletes samples, not numbers).
    3: STEPS_TABLE + "ALTER TABLE runs ADD COLUMN step_seq INTEGER NOT NULL DEFAULT 0",
    # 5: where a run trains: the GPUs the scheduler gave it ("0,1"), the devices its worker
    # reported (a JSON list), its strategy, samples per epoch, global batch and samples/s.
    4: "ALTER TABLE runs ADD COLUMN gpus TEXT NOT NULL DEFAULT '';"
       "ALTER TABLE runs ADD COLUMN devices TEXT NOT NULL DEFAULT '';"
       "ALTER TABLE runs ADD COLUMN strategy TEXT NOT NULL DEFAULT 'none';"
       "ALTER TABLE runs ADD COLUMN train_samples INTEGER;"
       "ALTER TABLE runs ADD COLUMN batch_size INTEGER;"
       "ALTER TABLE runs ADD COLUMN samples_per_s REAL",
}

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    name TEXT NOT NULL,
    mode TEXT NOT NULL,
    spec TEXT NOT NULL,
    dataset TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    parent_id TEXT,
    error TEXT NOT NULL DEFAULT '',
    worker_pid INTEGER,
    worker_started REAL,
    heartbeat_at REAL,
    stop_requested INTEGER NOT NULL DEFAULT 0,
    best TEXT NOT NULL DEFAULT '{}',
    step_seq INTEGER NOT NULL DEFAULT 0,
    resume_requested INTEGER NOT NULL DEFAULT 0,
    epochs_total INTEGER NOT NULL DEFAULT 0,
    epochs_done INTEGER NOT NULL DEFAULT 0,
    phase TEXT NOT NULL DEFAULT 'train',
    total_params INTEGER,
    trainable_params INTEGER,
    gpus TEXT NOT NULL DEFAULT '',
    devices TEXT NOT NULL DEFAULT '',
    strategy TEXT NOT NULL DEFAULT 'none',
    train_samples INTEGER,
    batch_size INTEGER,
    samples_per_s REAL
);
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status, seq);
CREATE TABLE IF NOT EXISTS epochs (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    phase TEXT NOT NULL,
    metrics TEXT NOT NULL,
    duration_s REAL NOT NULL,
    learning_rate REAL,
    member_updates TEXT NOT NULL DEFAULT '{}',
    ended_at REAL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS progress (
    run_id TEXT PRIMARY KEY REFERENCES runs (id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    step INTEGER NOT NULL,
    steps INTEGER NOT NULL,
    elapsed_s REAL NOT NULL,
    updated_at REAL NOT NULL,
    step_time_s REAL
);
""" + STEPS_TABLE + """
CREATE TABLE IF NOT EXISTS phases (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    epoch INTEGER NOT NULL,
    phase TEXT NOT NULL,
    learning_rate REAL NOT NULL,
    trainable_params INTEGER NOT NULL,
    unfrozen_layers TEXT NOT NULL,
    PRIMARY KEY (run_id, epoch)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""
