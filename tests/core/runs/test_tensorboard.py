"""core/runs/tensorboard.py: TensorBoard for chosen runs, on localhost, gone with its parent."""

import json
import os
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from core.runs import tensorboard
from core.storage.paths import run_dir
from tests.conftest import ROOT


def write_scalar(folder, tag: str, value: float) -> None:
    """One scalar event, written with TensorBoard's own writer (no TensorFlow needed)."""
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    summary = summary_pb2.Summary(value=[summary_pb2.Summary.Value(tag=tag, simple_value=value)])
    writer.add_event(event_pb2.Event(wall_time=time.time(), step=1, summary=summary))
    writer.close()


def run_with_logs(run_id: str) -> None:
    folder = run_dir(run_id) / "tensorboard"
    folder.mkdir(parents=True)
    write_scalar(folder, "val_accuracy", 0.9)


def runs_served(url: str, timeout_s: float = 30.0) -> list[str]:
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(url + "data/plugin/scalars/tags", timeout=5) as response:
            served = sorted(json.loads(response.read()))
        if served or time.monotonic() > deadline:
            return served
        time.sleep(0.5)


def test_serves_the_chosen_runs_on_localhost_and_stops():
    run_with_logs("run-a")
    run_with_logs("run-b")
    run_with_logs("run-other")
    try:
        board = tensorboard.start(["run-a", "run-b", "run-without-logs"])
        assert board.url.startswith("http://localhost:") and board.run_ids == ("run-a", "run-b")
        assert runs_served(board.url) == ["run-a", "run-b"]
        assert tensorboard.start(["run-b", "run-a"]) == board  # the same runs: the same server
        other = tensorboard.start(["run-other"])  # other runs replace it
        assert other.pid != board.pid and not psutil.pid_exists(board.pid)
        assert runs_served(other.url) == ["run-other"]
    finally:
        tensorboard.stop()
    assert tensorboard.current() is None


def test_runs_without_logs_are_refused_with_the_reason():
    with pytest.raises(tensorboard.TensorBoardError, match="has TensorBoard logs yet"):
        tensorboard.start(["never-trained"])


def test_tensorboard_exits_when_the_process_that_started_it_is_killed(tmp_path):
    run_with_logs("run-a")
    parent = subprocess.Popen(
        [sys.executable, "-c", "import time; from core.runs import tensorboard as t; "
                               "print(t.start(['run-a']).pid, flush=True); time.sleep(600)"],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.PIPE, text=True)
    try:
        child = psutil.Process(int(parent.stdout.readline()))
        parent.kill()
        parent.wait()
        child.wait(timeout=15)  # raises TimeoutExpired if it outlived its parent
    finally:
        parent.kill()
