"""examples/compare_and_ablate.py as a user runs it: Compare modes through workers, then member ablation."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
pytestmark = pytest.mark.slow


def test_the_example_compares_the_modes_and_ablates_the_fusion(stacklab_home):
    result = subprocess.run([sys.executable, "examples/compare_and_ablate.py", "--epochs", "1"], capture_output=True,
                            text=True, cwd=ROOT, timeout=600, env={**os.environ, "STACKLAB_HOME": str(stacklab_home)})
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    row = re.compile(r"^\w+\s+[\d,]+\s+[\d,]+\s+[\d.]+s\s+[\d.]+$")  # variant, params, trainable, time, best
    table = {line.split()[0] for line in out.splitlines() if row.match(line)}
    assert table == {"sequential", "fusion", "fusion_raw", "ensemble"}, out  # one run per mode
    assert re.search(r"^best mode: \w+ \(val_accuracy [\d.]+\)$", out, re.M), out
    assert re.search(r"^  without cnn\s+[\d.]+\s+\(drop [+-][\d.]+\)$", out, re.M), out
    assert re.search(r"^  without mlp\s+[\d.]+\s+\(drop [+-][\d.]+\)$", out, re.M), out
    assert "it carries the stack" in out
