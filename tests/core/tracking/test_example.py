"""examples/mlflow_export.py as a user runs it: a run logged by its worker, read back with MLflow alone."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def test_the_example_logs_a_run_and_reads_it_back(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    result = subprocess.run([sys.executable, "examples/mlflow_export.py", "--epochs", "2", "--tracking-uri", uri],
                            capture_output=True, text=True, cwd=ROOT, timeout=300,
                            env={**os.environ, "STACKLAB_HOME": str(tmp_path / "home")})
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert re.search(r"^run \S+: finished, 2 epochs$", out, re.M), out
    assert f"logged to {uri} as MLflow run " in out
    assert "status FINISHED; params: " in out and "train.epochs=2" in out
    assert re.findall(r"^  epoch (\d): val_accuracy [\d.]+$", out, re.M) == ["1", "2"]
    assert re.search(r"^files: .*history\.csv, model, spec\.json", out, re.M), out
