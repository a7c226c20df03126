"""Tests for core/model_files/child.py: the child process's limits, crashes and command line."""

import json
import re
import signal
import subprocess
import sys

import pytest

from core.model_files import child, loading
from core.model_files.loading import LoadLimits, ModelFileRefused
from tests.core.model_files.loading_models import LIMITS, dense_config, rewrite_keras

pytest_plugins = ["tests.core.model_files.loading_fixtures"]  # the fixtures saved and summaries


def test_child_timeout_is_a_clean_refusal(saved, summaries):
    path, _ = saved["sequential", "keras"]  # verified under LIMITS; other limits: a new child
    with pytest.raises(ModelFileRefused, match="did not finish within 0.5 s.*STACKLAB_LOAD_TIMEOUT_S"):
        loading.summarize_model_file(path, LoadLimits(timeout_s=0.5))


def test_child_memory_limit_is_a_clean_refusal(saved):
    path, _ = saved["sequential", "h5"]
    with pytest.raises(ModelFileRefused, match="more than the 512.0 MiB memory limit"):
        loading.summarize_model_file(path, LoadLimits(memory_bytes=512 * 2**20))


def test_model_too_big_for_memory_is_refused_by_the_child(saved, tmp_path):
    def inflate(config):  # an 80 GB kernel, declared in a 10 KB file
        config["config"]["layers"][0]["config"]["batch_shape"] = [None, 100_000]
        hidden = dense_config(config)
        hidden["config"]["units"] = 200_000
        hidden["build_config"]["input_shape"] = [None, 100_000]
        dense_config(config, "out")["build_config"]["input_shape"] = [None, 200_000]

    path = rewrite_keras(saved["sequential", "keras"][0], tmp_path / "wide.keras", inflate)
    assert loading.inspect_model_file(path, LIMITS).weight_bytes < 1000  # static checks pass
    # TensorFlow raises ResourceExhaustedError; XLA (JAX) aborts the child: both refusals.
    with pytest.raises(ModelFileRefused, match="more than the 3.0 GiB memory limit"):
        loading.summarize_model_file(path, LoadLimits(memory_bytes=3 * 2**30))


@pytest.mark.parametrize("returncode, match", [
    (-signal.SIGKILL, "died \\(SIGKILL\\); most likely loading needs more than the 4.0 GiB"),
    (-signal.SIGSEGV, "died \\(SIGSEGV\\)"),
    (-signal.SIGXCPU, "used up its CPU time"),
    (3, "exited with status 3 and no result"),
])
def test_a_dead_child_gives_a_reason(returncode, match):
    assert re.search(match, child.death_reason(returncode, LIMITS))


def test_verify_command_refuses_hostile_files_by_itself(saved, tmp_path):
    path = rewrite_keras(saved["sequential", "keras"][0], tmp_path / "model.keras",
                         members={"../marker": b""})
    done = subprocess.run([sys.executable, "-m", "core.model_files.loading", "--verify", str(path)],
                          capture_output=True, cwd=child.PROJECT_ROOT, timeout=60)
    assert done.returncode == 1
    assert json.loads(done.stdout) == {
        "ok": False, "reason": "the archive member '../marker' points outside the archive ('..')."}
