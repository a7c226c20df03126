"""core.build.budget: a stack's size from its shapes, before any weight is allocated, and its limits."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import keras
import psutil
import pytest

from core.build import budget
from core.build.stacking import StackError, build, check
from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec

ROOT = Path(__file__).resolve().parents[3]
GIB = 2**30
# Three 1,024-filter conv layers without pooling, Flatten, 4,096 dense units: about two
# billion parameters (8 GB of float32 weights) on 28x28 digits.
BOMB = StackSpec(name="bomb", members=(
    MemberSpec("features", template="cnn_features",
               params={"filters": [1024, 1024, 1024], "pool_size": 1, "dense_units": 4096}),
    MemberSpec("head", template="dense_head")), dataset=DatasetSpec(name="digits28"))
BOMB_FEATURES_PARAMS = 2_048_933_888  # what keras's count_params() says for that member
TINY = StackSpec(name="tiny", members=(
    MemberSpec("encoder", template="mlp", params={"hidden_units": [8]}),
    MemberSpec("head", template="dense_head", params={"hidden_units": []})), dataset=DatasetSpec(name="iris"))


def test_deferred_variables_allocate_nothing_and_leave_keras_state_as_it_was():
    from keras.src.backend.common import global_state

    before = global_state.get_global_attribute("uninitialized_variables")
    with budget.deferred_variables() as created:
        dense = keras.layers.Dense(3)
        dense.build((None, 5))
    assert len(created) == 2 and all(v._value is None for v in created)
    assert global_state.get_global_attribute("uninitialized_variables") is before
    # The exit of a later StatelessScope initializes what Keras still lists: these are gone from it.
    with keras.StatelessScope():
        pass
    assert dense.kernel._value is None and dense.bias._value is None


def test_the_estimate_counts_parameters_and_activations_from_shapes():
    with budget.deferred_variables() as created:
        inputs = keras.Input((28, 28, 1))
        x = inputs
        for index in range(3):
            x = keras.layers.Conv2D(1024, 3, name=f"conv{index}")(x)
        x = keras.layers.Dense(4096, name="dense")(keras.layers.Flatten(name="flatten")(x))
        model = keras.Model(inputs, x, name="bomb")
    size = budget.estimate(created, model, {"bomb": model}, batch_size=2)
    assert size.params == model.count_params() == BOMB_FEATURES_PARAMS
    assert size.weight_bytes == 4 * BOMB_FEATURES_PARAMS
    per_sample = (26 * 26 + 24 * 24 + 22 * 22) * 1024 + 22 * 22 * 1024 + 4096
    assert size.activation_bytes == 2 * 4 * per_sample
    assert size.largest_output == "'conv0' (batch, 26, 26, 1024)"
    assert size.member_params == {"bomb": BOMB_FEATURES_PARAMS}


def test_the_bomb_is_a_budget_problem_and_nothing_is_built(monkeypatch):
    started = time.monotonic()
    report = check(BOMB)
    assert time.monotonic() - started < 10
    assert not report.ok
    (problem,) = report.problems
    assert problem.kind == "budget" and problem.member == "features"
    assert problem.message.startswith("The stack would have about 2,049,459,594 parameters (7.6 GiB of weights, "
                                      "'features' alone 2,048,933,888), over the limit of 100,000,000 "
                                      "(STACKLAB_MAX_PARAMS)")
    assert [m.total_params for m in report.members] == [BOMB_FEATURES_PARAMS, 525_706]  # from shapes
    with pytest.raises(StackError, match="STACKLAB_MAX_PARAMS"):
        build(BOMB)


def test_the_limits_come_from_the_environment(monkeypatch):
    assert check(TINY).ok
    monkeypatch.setenv("STACKLAB_MAX_PARAMS", "50")
    report = check(TINY)
    assert [p.kind for p in report.problems] == ["budget"]
    assert "over the limit of 50 (STACKLAB_MAX_PARAMS)" in report.problems[0].message
    monkeypatch.setenv("STACKLAB_MAX_PARAMS", "2e8")
    assert budget.Limits.from_env().max_params == 200_000_000
    monkeypatch.setenv("STACKLAB_MAX_PARAMS", "lots")
    with pytest.raises(ValueError, match="STACKLAB_MAX_PARAMS must be a positive whole number, received 'lots'"):
        check(TINY)


def test_activations_over_the_limit_say_which_batch_size_fits(monkeypatch):
    spec = TINY.replace(train=TrainSpec(batch_size=1000))
    # iris: 4 inputs -> 8 hidden -> 3 outputs, float32: (8 + 3) * 4 = 44 bytes a sample.
    monkeypatch.setenv("STACKLAB_MAX_ACTIVATION_BYTES", "4400")
    (problem,) = check(spec).problems
    assert problem.kind == "budget"
    # 44,000 and 4,400 bytes, as core.limits.format_bytes writes them.
    assert problem.message.startswith("One batch of 1000 would hold about 43.0 KiB of layer outputs (the "
                                      "largest: 'encoder/encoder_dense1' (batch, 8)), over the limit of 4.3 KiB "
                                      "(STACKLAB_MAX_ACTIVATION_BYTES). Lower train.batch_size to 100 or less")
    assert check(spec.replace(train=TrainSpec(batch_size=100))).ok


def test_a_stack_within_the_budget_builds_as_before_with_adapted_normalization():
    spec = StackSpec(name="tabular", members=(
        MemberSpec("encoder", template="tabular_encoder"),
        MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        dataset=DatasetSpec(name="iris", scaling="none"))
    model = build(spec)
    normalization = next(layer for layer in model.get_layer("encoder").layers
                         if isinstance(layer, keras.layers.Normalization))
    assert 5.5 < float(normalization.mean.numpy().ravel()[0]) < 6.2  # adapted: iris sepals are ~5.8 cm long
    assert check(spec).total_params == model.count_params()


def test_check_of_the_bomb_from_the_cli_is_quick_and_small(tmp_path):
    """In a child whose memory is watched: without the budget it would allocate 8 GB."""
    path = tmp_path / "bomb.json"
    path.write_text(BOMB.to_json())
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-m", "core", "check", str(path), "--json"], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak, deadline = 0, time.monotonic() + 120
    watched = psutil.Process(child.pid)
    while child.poll() is None and time.monotonic() < deadline and peak < 3 * GIB:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.Error:
            break
        time.sleep(0.05)
    if child.poll() is None:
        child.kill()
    stdout, stderr = child.communicate(timeout=60)
    assert peak < 3 * GIB, f"the check grew to {peak / GIB:.1f} GiB"
    assert child.returncode == 1, stderr
    report = json.loads(stdout)
    assert [p["kind"] for p in report["problems"]] == ["budget"]
    assert "2,049,459,594 parameters" in report["problems"][0]["message"]


@pytest.mark.slow
def test_the_budget_on_jax(tmp_path):
    code = (
        "import json, keras\n"
        "from core.spec import StackSpec\n"
        "from core.build.stacking import check\n"
        "from tests.core.build.test_budget import BOMB, TINY\n"
        "assert keras.backend.backend() == 'jax'\n"
        "bomb, tiny = check(BOMB), check(TINY)\n"
        "print(json.dumps([[p.kind for p in bomb.problems], bomb.members[0].total_params, tiny.ok]))\n"
    )
    env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [["budget"], BOMB_FEATURES_PARAMS, True]
