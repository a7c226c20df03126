"""bench/throughput.py runs end to end in its quick mode (about 40 s on two shared cores).

A smoke test of the benchmark's plumbing (plain fit child, run through a worker, device
count, summary), not of its figures: one pair of 2 epochs on a shared machine is noise.
"""

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT

SUMMARY = re.compile(r"^(sequential|transfer) \(.*\), 1 device\(s\): median ratio StackLab run / plain fit "
                     r"(\d+\.\d{3}) .*; ([\d,]+) vs ([\d,]+) samples/s$", re.MULTILINE)


@pytest.mark.slow
def test_quick_mode_measures_both_stacks_on_one_device():
    done = subprocess.run([sys.executable, "bench/throughput.py", "--quick"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    summaries = SUMMARY.findall(done.stdout)
    assert [stack for stack, *_ in summaries] == ["sequential", "transfer"], done.stdout
    for _, ratio, engine, plain in summaries:
        assert float(ratio) > 0 and int(engine.replace(",", "")) > 0 and int(plain.replace(",", "")) > 0
    assert "1024 samples an epoch" in done.stdout and "256 samples an epoch" in done.stdout
    if "workers see 1 " in done.stdout:
        assert "one device: the data-parallel part is skipped" in done.stdout
