"""core.inspector: the dashboard's Keras questions answered by a separate, restartable process.

One inspector (each start imports Keras, ~5 s) serves the whole module, in a home of its
own: tests that write runs or uploads point $STACKLAB_HOME there (the `home` fixture).
The tests that kill, time out or exhaust the process come last; each leaves a fresh one.
"""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import keras
import psutil
import pytest

from core.build.templates import TEMPLATES
from core.inspector import InspectorClient, InspectorError
from core.inspector.protocol import GIB, TEST_OPS_ENV
from core.spec import AdapterSpec, DatasetSpec, MemberSpec, StackSpec, TrainSpec
from core.storage import uploads

ROOT = Path(__file__).resolve().parents[3]
SEED = StackSpec(name="seed", members=(
    MemberSpec("features", template="cnn_features", params={"filters": [32]}),
    MemberSpec("classifier", template="dense_head", params={"hidden_units": [128]})))
MISMATCHED = StackSpec(name="mismatched", members=(
    MemberSpec("features", template="cnn_features", params={"filters": [4], "pooling": "flatten"}),
    MemberSpec("seq", template="conv1d_encoder"),
    MemberSpec("classifier", template="dense_head", params={"hidden_units": [8]})))


@pytest.fixture(scope="module")
def inspector_home(tmp_path_factory):
    return tmp_path_factory.mktemp("inspector-home")


@pytest.fixture(scope="module")
def client(inspector_home):
    client = InspectorClient(memory_bytes=2 * GIB, env={"STACKLAB_HOME": str(inspector_home), TEST_OPS_ENV: "1"})
    client.start()  # Keras loads there while this module sets up
    yield client
    client.close()


@pytest.fixture
def home(inspector_home, monkeypatch):
    """This test's runs and uploads go where the inspector looks."""
    monkeypatch.setenv("STACKLAB_HOME", str(inspector_home))
    return inspector_home


def save_small_model(path: Path) -> Path:
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu", name="hidden"),
                              keras.layers.Dense(2, name="out")], name="small")
    model.save(path)
    return path


def test_the_client_imports_no_keras_and_test_requests_need_their_switch(tmp_path):
    code = (
        "import json, sys\n"
        "from core.inspector import InspectorError, get_client\n"
        "client = get_client()\n"
        "assert client is get_client()\n"
        "backend = client.ping()['backend']\n"
        "try:\n"
        "    client.request('sleep', {'seconds': 0})\n"
        "    kind = None\n"
        "except InspectorError as error:\n"
        "    kind, message = error.kind, str(error)\n"
        "loaded = [name for name in ('keras', 'tensorflow', 'jax', 'torch') if name in sys.modules]\n"
        "print(json.dumps({'loaded': loaded, 'backend': backend, 'kind': kind, 'message': message}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != TEST_OPS_ENV}
    env.update(STACKLAB_HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    assert result["backend"] == keras.backend.backend()
    assert result["kind"] == "invalid" and "Unknown request 'sleep'" in result["message"]
    assert (tmp_path / "inspector.log").exists()  # the server's stderr went to its home


def test_python_m_core_inspector_still_runs_the_server(tmp_path):
    # The client starts core.inspector.server; the old command must keep working too.
    done = subprocess.run([sys.executable, "-m", "core.inspector"], cwd=ROOT, capture_output=True,
                          input='{"id": 7, "op": "ping", "args": {}}\n', text=True, timeout=120,
                          env={**os.environ, "STACKLAB_HOME": str(tmp_path), "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    ready, answer = [json.loads(line) for line in done.stdout.splitlines()]
    assert ready["ready"] is True and answer["id"] == 7 and answer["ok"] is True
    assert answer["result"]["pid"] == ready["pid"]


def test_check_of_the_seed_stack_gives_its_counts(client):
    report = client.check(SEED)
    assert report["ok"] and report["problems"] == []
    assert report["total_params"] == 693962 and report["non_trainable_params"] == 0
    assert [m["name"] for m in report["members"]] == ["features", "classifier"]
    assert report["input_shape"] == [28, 28, 1] and report["output_shape"] == [10]
    assert json.loads(json.dumps(report)) == report  # plain data


def test_check_of_a_mismatch_gives_problems_with_fixes(client):
    report = client.check(MISMATCHED)
    assert not report["ok"]
    problem = report["problems"][0]
    assert problem["kind"] == "shape" and "Cannot feed 'features' into 'seq'" in problem["message"]
    assert [AdapterSpec.from_dict(fix) for fix in problem["fix"]] == [
        AdapterSpec(after="features", before="seq", kind="reshape", target_shape=(676, 1))]
    fixed = MISMATCHED.replace(adapters=tuple(AdapterSpec.from_dict(fix) for fix in problem["fix"]))
    assert client.check(fixed)["ok"]


def test_a_spec_that_cannot_be_used_is_an_invalid_request(client):
    with pytest.raises(InspectorError, match="Unknown built-in dataset 'nope'") as caught:
        client.check(SEED.replace(dataset=DatasetSpec(name="nope")))
    assert caught.value.kind == "invalid"
    with pytest.raises(InspectorError, match="needs 'spec' as a JSON object") as caught:
        client.request("check", {"spec": [1]})
    assert caught.value.kind == "invalid"


def test_templates_lists_every_template(client):
    listed = client.templates()
    assert [t["name"] for t in listed] == list(TEMPLATES)
    assert listed == [json.loads(json.dumps(t.to_dict())) for t in TEMPLATES.values()]


def test_inspect_file_by_path_and_by_upload_reference(client, home, tmp_path, monkeypatch):
    path = save_small_model(tmp_path / "small.keras")
    monkeypatch.chdir(tmp_path)  # a relative path means this process's working directory
    summary = client.inspect_file("small.keras")
    assert [row["name"] for row in summary["layers"]] == ["hidden", "out"]
    assert summary["total_params"] == (4 * 3 + 3) + (3 * 2 + 2)
    assert summary["file"]["file_name"] == "small.keras"
    ref = uploads.store_bytes(path.read_bytes(), "mine.keras")
    by_ref = client.inspect_file(ref)
    assert by_ref["file"]["file_name"] == "mine.keras" and by_ref["layers"] == summary["layers"]


def test_a_refused_file_gives_its_reason_and_the_inspector_goes_on(client, tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2, name="lambda")])
    model.save(tmp_path / "lambda.keras")
    pid = client.ping()["pid"]
    with pytest.raises(InspectorError) as caught:
        client.inspect_file(str(tmp_path / "lambda.keras"))
    message = str(caught.value)
    assert caught.value.kind == "refused"
    assert message.startswith("Refused 'lambda.keras': ") and "Lambda" in message and "\n" not in message
    with pytest.raises(InspectorError, match="does not exist") as caught:
        client.inspect_file(str(tmp_path / "missing.keras"))
    assert caught.value.kind == "invalid"
    assert client.ping()["pid"] == pid


def test_a_bug_is_an_internal_error_and_the_inspector_goes_on(client):
    pid = client.ping()["pid"]
    with pytest.raises(InspectorError, match="^RuntimeError: kaboom") as caught:
        client.request("raise", {"message": "kaboom"})
    assert caught.value.kind == "internal"
    assert client.ping()["pid"] == pid


def test_requests_from_several_threads_take_turns(client):
    with ThreadPoolExecutor(max_workers=4) as pool:
        reports = list(pool.map(lambda _: client.check(SEED)["total_params"], range(4)))
        pings = list(pool.map(lambda _: client.ping()["pid"], range(8)))
    assert reports == [693962] * 4 and len(set(pings)) == 1


def test_evaluate_needs_a_finished_run(client, home):
    with pytest.raises(InspectorError, match="no model.keras") as caught:
        client.evaluate("never-ran")
    assert caught.value.kind == "invalid"
    with pytest.raises(InspectorError, match="Invalid run id"):
        client.evaluate("../escape")


def test_a_parameter_bomb_is_answered_with_a_budget_problem_and_the_inspector_goes_on(client):
    # Two billion parameters: built for real, 8 GB of weights, far over this inspector's 2 GiB.
    bomb = StackSpec(name="bomb", members=(
        MemberSpec("features", template="cnn_features",
                   params={"filters": [1024, 1024, 1024], "pool_size": 1, "dense_units": 4096}),
        MemberSpec("head", template="dense_head")))
    pid = client.ping()["pid"]
    report = client.check(bomb, timeout_s=60)
    assert not report["ok"] and [p["kind"] for p in report["problems"]] == ["budget"]
    assert "about 2,049,459,594 parameters" in report["problems"][0]["message"]
    assert client.ping()["pid"] == pid and client.ping()["rss_bytes"] < 2 * GIB
    assert client.check(SEED)["total_params"] == 693962


def test_numbers_out_of_range_are_an_invalid_request(client):
    with pytest.raises(InspectorError, match=r"'train.batch_size' must be at least 1, received 0") as caught:
        client.check(SEED.replace(train=TrainSpec(batch_size=0)))
    assert caught.value.kind == "invalid"


def test_a_killed_inspector_restarts_on_the_next_request(client):
    pid = client.ping()["pid"]
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while client.pid is not None and time.monotonic() < deadline:  # until the kill has landed
        time.sleep(0.05)
    info = client.ping()
    assert info["pid"] != pid
    assert client.check(SEED)["total_params"] == 693962


def test_a_request_over_its_timeout_restarts_the_inspector(client):
    pid = client.ping()["pid"]
    started = time.monotonic()
    expected = "The 'sleep' request took longer than 1 s; the inspector was restarted"
    with pytest.raises(InspectorError, match=expected) as caught:
        client.request("sleep", {"seconds": 60}, timeout_s=1)
    assert caught.value.kind == "timeout" and time.monotonic() - started < 10
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    assert client.ping()["pid"] not in (pid, None)


def test_a_request_over_the_memory_limit_restarts_the_inspector(client):
    pid = client.ping()["pid"]
    with pytest.raises(InspectorError, match="ran out of memory handling the 'allocate' request") as caught:
        client.request("allocate", {"bytes": 2 * GIB, "hold_s": 60})
    assert caught.value.kind == "memory" and "2.0 GiB" in str(caught.value)
    assert client.ping()["pid"] != pid
    assert "resident memory" in (Path(client.env["STACKLAB_HOME"]) / "inspector.log").read_text()


def test_a_limit_too_low_to_start_says_so(inspector_home):
    with InspectorClient(memory_bytes=200 * 2**20, env={"STACKLAB_HOME": str(inspector_home)}) as low:
        with pytest.raises(InspectorError, match="more memory than its 200.0 MiB limit just to start") as caught:
            low.ping()
    assert caught.value.kind == "start"
