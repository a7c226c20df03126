"""Log a StackLab run to MLflow and read it back as a teammate would.

Trains a small iris stack through the run engine with STACKLAB_MLFLOW_TRACKING_URI set, so
the worker logs the run when it ends: its spec as params, every epoch's metrics, its files
and the model. Then reads the tracking store with plain MLflow (no StackLab import).

    pip install -r requirements-tracking.txt
    python examples/mlflow_export.py [--tracking-uri sqlite:////tmp/mlflow.db] [--epochs 4]

Without --tracking-uri, a SQLite store in a temporary folder is used. Any MLflow tracking
server works the same (`--tracking-uri http://mlflow.example:5000`).
"""

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from core import runs  # noqa: E402
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec  # noqa: E402
from core.tracking import export_note  # noqa: E402


def train_logged(epochs: int) -> str:
    spec = StackSpec(name="iris-tracked",
                     members=(MemberSpec("encoder", template="mlp", params={"hidden_units": [16]}),
                              MemberSpec("head", template="dense_head", params={"hidden_units": []})),
                     train=TrainSpec(epochs=epochs, batch_size=16, learning_rate=0.01),
                     dataset=DatasetSpec(name="iris"))
    run = runs.wait(runs.start(spec))
    print(f"run {run.id}: {run.status}, {run.epochs_done} epochs")
    deadline = time.monotonic() + 120
    while (note := export_note(run.id)) is None and time.monotonic() < deadline:
        time.sleep(0.5)  # the worker's supervisor exports once the run is recorded
    if note is None or not note.get("ok"):
        raise SystemExit(f"the export did not happen: {note}")
    print(f"logged to {note['tracking_uri']} as MLflow run {note['mlflow_run_id']}")
    return note["mlflow_run_id"]


def read_back(tracking_uri: str, mlflow_run_id: str) -> None:
    """What a teammate sees, with MLflow alone."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    logged = client.get_run(mlflow_run_id)
    print(f"status {logged.info.status}; params: " + ", ".join(
        f"{key}={value}" for key, value in sorted(logged.data.params.items()) if key.startswith("train.")))
    for point in client.get_metric_history(mlflow_run_id, "val_accuracy"):
        print(f"  epoch {point.step}: val_accuracy {point.value:.4f}")
    print("files: " + ", ".join(sorted(item.path for item in client.list_artifacts(mlflow_run_id))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tracking-uri", help="an MLflow tracking URI (default: a SQLite store in a temporary folder)")
    parser.add_argument("--epochs", type=int, default=4)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="stacklab-mlflow-"))
    uri = args.tracking_uri or f"sqlite:///{folder / 'mlflow.db'}"
    os.environ["STACKLAB_MLFLOW_TRACKING_URI"] = uri  # the workers inherit it
    os.environ.setdefault("STACKLAB_HOME", str(folder / "home"))
    read_back(uri, train_logged(args.epochs))


if __name__ == "__main__":
    main()
