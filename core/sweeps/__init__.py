"""Sweeps: Optuna searches over a spec's `search` section, each trial an ordinary run.

- `storage`: where sweeps live (`storage_url`: STACKLAB_SWEEPS_STORAGE or
  sqlite:///$STACKLAB_HOME/sweeps.db), `create_sweep`, `load_study`;
- `driver`: `drive`, the ask-and-tell loop (runs, pruning from epoch rows, re-attach);
- `process`: `spawn_driver`, `driver_alive`, `stop_sweep` (drivers as detached processes);
- `summary`: `sweep`, `list_sweeps`, `best_spec`, and their TrialRow / SweepSummary records;
- `compare`: `compare_modes_spec`, the same stack in every mode as one grid sweep;
- `space`: the search as Optuna distributions, sampler and pruner; `cli`: `python -m core sweep`.

Imports Optuna, never Keras, Streamlit or Plotly: the dashboard uses all of it.

Example:
    >>> from core import sweeps
    >>> study = sweeps.create_sweep(load_spec("examples/sweep_digits8.json"))
    >>> sweeps.drive(study).best.value
    0.93
"""

from core.sweeps.compare import compare_modes_spec, mode_variants
from core.sweeps.driver import drive
from core.sweeps.process import driver_alive, spawn_driver, stop_sweep
from core.sweeps.storage import STORAGE_ENV, create_sweep, load_study, log_path, storage_url
from core.sweeps.summary import SweepSummary, TrialRow, best_spec, list_sweeps, sweep, trial_spec

__all__ = [
    "STORAGE_ENV", "SweepSummary", "TrialRow", "best_spec", "compare_modes_spec", "create_sweep", "drive",
    "driver_alive", "list_sweeps", "load_study", "log_path", "mode_variants", "spawn_driver", "stop_sweep",
    "storage_url", "sweep", "trial_spec",
]
