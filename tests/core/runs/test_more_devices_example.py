"""examples/more_devices.py as a user runs it: one device, then data parallel through workers."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def test_the_example_trains_one_device_then_data_parallel_over_the_split_cpu(stacklab_home):
    # STACKLAB_CPU_DEVICES reaches the worker, which splits the CPU before TensorFlow starts
    # (its TensorBoard writer would start it first).
    result = subprocess.run([sys.executable, "examples/more_devices.py", "--epochs", "1", "--batch-size", "64"],
                            capture_output=True, text=True, cwd=ROOT, timeout=600,
                            env={**os.environ, "STACKLAB_CPU_DEVICES": "2", "KERAS_BACKEND": "tensorflow"})
    assert result.returncode == 0, result.stderr[-3000:]
    one, parallel = [line for line in result.stdout.splitlines() if line.startswith("seed-")]
    assert one.startswith("seed-none: finished, 1 epochs on CPU (/device:CPU:0), batch 64"), one
    assert parallel.startswith("seed-data_parallel: finished, 1 epochs on 2 × CPU (/device:CPU:0, /device:CPU:1)"), \
        parallel
    assert "samples/s (last epoch)" in parallel
