"""Experiment tracking: StackLab runs logged to MLflow (optional; `pip install -r requirements-tracking.txt`).

- `mlflow_export`: `export_run_to_mlflow(run_id, tracking_uri=None, experiment="stacklab")`, the
  same as `log_run` with what it did, `after_run(run_id)` for the worker (when
  $STACKLAB_MLFLOW_TRACKING_URI is set; never raises), `export_note(run_id)` (the last export,
  or why the automatic one failed, for the Runs page);
- `params`: the spec as flat params and epoch rows as metric points (pure, no mlflow);
- `cli`: `python -m core mlflow RUN_ID [--tracking-uri URI] [--experiment NAME] [--json]`.

Importing this package imports neither mlflow (only an export does) nor Keras: the model
is logged as its .keras file, so the dashboard may import it.

Example:
    >>> from core.tracking import export_run_to_mlflow
    >>> export_run_to_mlflow(run_id, "sqlite:////home/me/mlflow.db")
    '3f0c2a...'
"""

from core.tracking.mlflow_export import (
    DEFAULT_EXPERIMENT,
    EXPERIMENT_ENV,
    INSTALL_HINT,
    RUN_ID_TAG,
    TRACKING_URI_ENV,
    MlflowExport,
    MlflowMissing,
    TrackingError,
    after_run,
    export_note,
    export_run_to_mlflow,
    log_run,
    resolve_tracking_uri,
)
from core.tracking.params import metric_points, spec_params

__all__ = [
    "DEFAULT_EXPERIMENT", "EXPERIMENT_ENV", "INSTALL_HINT", "RUN_ID_TAG", "TRACKING_URI_ENV", "MlflowExport",
    "MlflowMissing", "TrackingError", "after_run", "export_note", "export_run_to_mlflow", "log_run", "metric_points",
    "resolve_tracking_uri", "spec_params",
]
