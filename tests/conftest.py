"""Shared test set-up: an isolated StackLab home and quiet TensorFlow."""

import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


@pytest.fixture(autouse=True)
def stacklab_home(tmp_path, monkeypatch):
    """Every test gets its own $STACKLAB_HOME, so runs and uploads never leak between tests."""
    home = tmp_path / "stacklab-home"
    home.mkdir()
    monkeypatch.setenv("STACKLAB_HOME", str(home))
    # No GPUs unless a test fakes some: on a GPU machine the worker slots (one per GPU) and
    # the workers' CUDA_VISIBLE_DEVICES would otherwise follow the machine.
    monkeypatch.setenv("STACKLAB_GPUS", "")
    return home


def pytest_collection_modifyitems(config, items):
    """With pytest-xdist (`make test` runs two processes), the end-to-end tests stay together in
    one process: they share one dashboard server, one Chromium and test-artifacts/e2e/. They
    go first, so that one long group runs beside the rest instead of after it."""
    e2e = ROOT / "tests" / "e2e"
    for item in items:
        if item.path.is_relative_to(e2e):
            item.add_marker(pytest.mark.xdist_group("e2e"))
    items.sort(key=lambda item: not item.path.is_relative_to(e2e))  # stable: the order within each stays
