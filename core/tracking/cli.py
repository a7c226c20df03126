"""`python -m core mlflow RUN_ID [--tracking-uri URI] [--experiment NAME] [--json]`.

Logs a run to MLflow (`core.tracking.mlflow_export.log_run`) and prints what it did: the
MLflow run id, the experiment, the counts and, for an http(s) server, the run's page. With
`--json` the answer is one JSON line on stdout (`{"ok": true, ...MlflowExport fields,
"summary"}` or `{"ok": false, "error"}`), for the dashboard, which runs this in a child
process (`python -m core.tracking.cli RUN_ID --json`, the same command without the
top-level CLI) so the Streamlit server never imports mlflow. No Keras import.
"""

from __future__ import annotations

import argparse
import os
import sys

from core.processes import answer, refused, reserve_stdout
from core.runs.store import RunNotFound, RunStoreError
from core.tracking.mlflow_export import (
    DEFAULT_EXPERIMENT,
    EXPERIMENT_ENV,
    INSTALL_HINT,
    TRACKING_URI_ENV,
    MlflowMissing,
    TrackingError,
    log_run,
)


def add_parser(commands):
    """Add `mlflow` to the CLI's subcommands (`commands` from `add_subparsers`); returns its parser."""
    parser = commands.add_parser(
        "mlflow", help="log a run to MLflow: spec as params, epoch metrics, tags, model and files",
        description=f"Logs the run's spec as params, every epoch's metrics (step = epoch), tags (mode, dataset, "
                    f"status, devices), its files and model.keras (under model/) to an MLflow tracking server or "
                    f"store. Exporting again updates the same MLflow run. Needs `{INSTALL_HINT}`.")
    parser.add_argument("run_id", metavar="RUN_ID", help="the run (see `python -m core runs list`)")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help=f"the tracking server or store, e.g. http://mlflow.example:5000 or "
                             f"sqlite:////abs/path/mlflow.db (default: ${TRACKING_URI_ENV})")
    parser.add_argument("--experiment", metavar="NAME",
                        help=f"the MLflow experiment, created if missing (default: ${EXPERIMENT_ENV}, "
                             f"else '{DEFAULT_EXPERIMENT}')")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.set_defaults(run=run)
    return parser


def run(args) -> int:
    """`python -m core mlflow ...`: 0 with the run logged, 1 with a one-line reason on stderr."""
    answers = reserve_stdout() if args.json else None  # what mlflow prints goes to stderr
    experiment = args.experiment or os.environ.get(EXPERIMENT_ENV, "").strip() or DEFAULT_EXPERIMENT
    try:
        result = log_run(args.run_id, args.tracking_uri, experiment)
    except (MlflowMissing, TrackingError, ValueError, OSError, RunNotFound, RunStoreError) as error:
        return refused(error, answers)
    if answers is not None:
        answer(answers, ok=True, **result.to_dict(), summary=result.summary())
    else:
        print(result.summary())
        if result.url:
            print(f"open: {result.url}")
        if result.params_kept:
            print(f"kept as MLflow had them (MLflow never changes a param): {', '.join(result.params_kept)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m core.tracking.cli RUN_ID ...`: the `mlflow` command on its own."""
    parser = argparse.ArgumentParser(prog="python -m core.tracking.cli")
    commands = parser.add_subparsers(dest="command", required=True)
    add_parser(commands)
    args = parser.parse_args(["mlflow", *(sys.argv[1:] if argv is None else argv)])
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
