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
    return home
