"""`python -m core ...` as a user runs it: exit codes, output, artifacts."""

import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from core.spec import DatasetSpec, MemberSpec, StackSpec, TrainSpec

ROOT = Path(__file__).resolve().parents[2]


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "core", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=timeout)


def test_check_json_reports_the_seed_counts():
    result = cli("check", "examples/seed_sequential.json", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["total_params"] == 693_962
    assert report["trainable_params"] == 693_962
    assert report["output_shape"] == [10]
    assert [m["name"] for m in report["members"]] == ["model_a", "model_b"]


def test_check_text_and_a_stack_that_does_not_build(tmp_path):
    assert "Total params: 456,458" in cli("check", "examples/seed_fusion.json").stdout
    bad = StackSpec(members=(MemberSpec("features", template="cnn_features"),
                             MemberSpec("sequence", template="rnn_encoder"),
                             MemberSpec("head", template="dense_head")))
    path = tmp_path / "bad.json"
    path.write_text(bad.to_json())
    result = cli("check", str(path))
    assert result.returncode == 1
    assert "Cannot feed 'features' into 'sequence'" in result.stderr
    assert "Reshape(5408, 1)" in result.stderr
    as_json = cli("check", str(path), "--json")
    assert as_json.returncode == 1 and json.loads(as_json.stdout)["problems"][0]["fix"][0]["kind"] == "reshape"


def test_a_bad_spec_file_is_one_clear_line(tmp_path):
    path = tmp_path / "typo.json"
    path.write_text(json.dumps({"mode": "sequentail"}))
    result = cli("check", str(path))
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith("error: 'mode' must be one of")
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_train_writes_the_same_artifacts_as_a_run(tmp_path):
    spec = StackSpec(name="cli-iris", members=(
        MemberSpec("encoder", template="mlp", params={"hidden_units": [8]}),
        MemberSpec("head", template="dense_head", params={"hidden_units": []})),
        train=TrainSpec(epochs=5, batch_size=16), dataset=DatasetSpec(name="iris"))
    path = tmp_path / "spec.json"
    path.write_text(spec.to_json())
    out = tmp_path / "out"
    result = cli("train", str(path), "--out", str(out), "--epochs", "2")
    assert result.returncode == 0, result.stderr
    epoch_lines = [line for line in result.stdout.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and epoch_lines[0].startswith("epoch 1/2 [train]")
    assert "val_accuracy" in epoch_lines[0]
    assert {p.name for p in out.iterdir()} >= {"model.keras", "history.csv", "spec.json", "stack.py"}
    with open(out / "history.csv") as handle:
        assert [row["epoch"] for row in csv.DictReader(handle)] == ["1", "2"]
    model = keras.saving.load_model(out / "model.keras")
    assert model.predict(np.zeros((1, 4), "float32"), verbose=0).shape == (1, 3)
    assert json.loads((out / "spec.json").read_text())["train"]["epochs"] == 2


def test_inspect_a_model_file_and_a_refused_one(tmp_path):
    good = tmp_path / "good.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Dense(2, name="dense")]).save(good)
    result = cli("inspect", str(good))
    assert result.returncode == 0, result.stderr
    assert "dense" in result.stdout
    lam = tmp_path / "lam.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)]).save(lam)
    refused = cli("inspect", str(lam))
    assert refused.returncode == 1
    last = refused.stderr.strip().splitlines()[-1]
    assert last.startswith("Refused 'lam.keras'") and "Lambda" in last


def test_inspect_data_files(tmp_path):
    data = tmp_path / "d.csv"
    data.write_text("a,b,label\n1,2,x\n3,4,y\n5,6,x\n7,8,y\n")
    result = cli("inspect", str(data), "--target", "label")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["num_samples"] == 4
    missing = cli("inspect", str(data), "--target", "nope")
    assert missing.returncode == 1 and "nope" in missing.stderr
    assert cli("inspect", str(tmp_path / "x.txt")).returncode == 1


def test_datasets_lists_the_builtins():
    result = cli("datasets")
    assert result.returncode == 0
    for name in ("digits28", "iris", "transactions", "waveforms"):
        assert name in result.stdout
    assert json.loads(cli("datasets", "--json").stdout)[0]["name"] == "digits28"


# -- TensorFlow's start-up lines stay off the terminal (issue 8, item 10) --------------------

NATIVE_LINE = r"^[IWEF]\d{4} [\d:.]+\s+\d+ \S+:\d+\] "


def lambda_model(folder: Path) -> Path:
    path = folder / "lam.keras"
    keras.Sequential([keras.Input((3,)), keras.layers.Lambda(lambda x: x * 2)]).save(path)
    return path


def test_a_refused_inspect_prints_exactly_one_line_on_stderr(tmp_path):
    refused = cli("inspect", str(lambda_model(tmp_path)))  # its checks import Keras (and TensorFlow)
    assert refused.returncode == 1
    assert refused.stderr.splitlines() == [refused.stderr.strip()]
    assert refused.stderr.startswith("Refused 'lam.keras'") and "Lambda" in refused.stderr


def test_a_check_that_builds_prints_nothing_on_stderr():
    result = cli("check", "examples/seed_fusion.json")
    assert result.returncode == 0 and "Total params" in result.stdout
    assert result.stderr == ""


def test_an_explicit_tf_cpp_min_log_level_0_still_shows_tensorflow_lines(tmp_path):
    import re

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "PYTHONPATH": str(ROOT)}
    bare = subprocess.run([sys.executable, "-c", "import tensorflow"], capture_output=True, text=True, env=env,
                          timeout=300)
    if not any(re.match(NATIVE_LINE, line) for line in bare.stderr.splitlines()):
        pytest.skip("this TensorFlow build prints no start-up lines")
    shown = subprocess.run([sys.executable, "-m", "core", "inspect", str(lambda_model(tmp_path))],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=300)
    assert shown.returncode == 1
    assert any(re.match(NATIVE_LINE, line) for line in shown.stderr.splitlines())
    assert shown.stderr.strip().splitlines()[-1].startswith("Refused 'lam.keras'")


# -- bad numbers, bad documents, missing example files (issue 8, items 21, 23 and 11) --------


def test_a_number_out_of_range_is_one_line_before_any_training(tmp_path):
    path = tmp_path / "zero.json"
    path.write_text(json.dumps({"members": [{"name": "a", "template": "mlp"}], "train": {"batch_size": 0}}))
    for command in (["check", str(path)], ["train", str(path), "--out", str(tmp_path / "out")]):
        result = cli(*command)
        assert result.returncode == 1
        assert result.stderr == "error: 'train.batch_size' must be at least 1, received 0.\n"
    fine_tune = cli("train", "examples/seed_transfer.json", "--out", str(tmp_path / "out"), "--epochs", "3")
    assert fine_tune.returncode == 1
    assert fine_tune.stderr.startswith("error: 'train.fine_tune.start_epoch' must be at most 'train.epochs' (3), "
                                       "received 6") and len(fine_tune.stderr.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_deeply_nested_or_huge_spec_file_is_one_line(tmp_path):
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    result = cli("check", str(deep))
    assert result.returncode == 1
    assert result.stderr.startswith("error: The spec is nested more than 32 levels deep")
    assert len(result.stderr.splitlines()) == 1
    huge = tmp_path / "huge.json"
    huge.write_text(json.dumps({"name": "x" * (2**20 + 1)}))
    result = cli("check", str(huge))
    assert result.returncode == 1
    assert result.stderr.startswith("error: 'huge.json' is 1.0 MiB, over the 1.0 MiB limit for a spec file "
                                    "(STACKLAB_MAX_SPEC_BYTES)") and len(result.stderr.splitlines()) == 1


def test_a_missing_example_model_file_says_which_script_makes_it(tmp_path):
    import shutil

    for name in ("seed_transfer.json", "made_by.toml"):
        shutil.copy(ROOT / "examples" / name, tmp_path / name)  # a fresh clone: no pretrained_model.keras
    result = cli("check", str(tmp_path / "seed_transfer.json"))
    assert result.returncode == 1
    problem = next(line for line in result.stderr.splitlines() if line.startswith("problem:"))
    assert f"File '{tmp_path / 'pretrained_model.keras'}' does not exist. It is made by a script: run " \
           f"`python {tmp_path / 'make_pretrained.py'}` first." in problem


def test_every_file_an_example_spec_needs_is_in_git_or_made_by_a_declared_script():
    import tomllib

    from core.spec import load_spec

    examples = ROOT / "examples"
    made_by = tomllib.loads((examples / "made_by.toml").read_text())["files"]
    tracked = set(subprocess.run(["git", "ls-files", "examples"], capture_output=True, text=True, cwd=ROOT,
                                 check=True).stdout.split())
    for path in examples.glob("*.json"):
        spec = load_spec(path)
        for member in spec.all_members():
            if member.source == "file":
                name = Path(member.file).relative_to(examples).as_posix()
                assert f"examples/{name}" in tracked or (examples / made_by[name]).is_file(), (path.name, name)
    for script in set(made_by.values()):
        assert f"examples/{script}" in tracked


def test_the_dashboard_command_serves_the_app_with_the_projects_streamlit_settings(tmp_path):
    import socket
    import time
    import urllib.request

    with socket.socket() as probe:
        probe.bind(("localhost", 0))
        port = probe.getsockname()[1]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "STACKLAB_HOME": str(tmp_path)}
    server = subprocess.Popen([sys.executable, "-m", "core", "dashboard", "--server.headless", "true",
                               "--server.port", str(port)], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=2) as answer:
                    assert answer.read() == b"ok"
                    break
            except OSError:
                assert server.poll() is None and time.monotonic() < deadline, server.stdout.read()
                time.sleep(0.3)
    finally:
        os.killpg(server.pid, 15)
        output = server.communicate(timeout=30)[0]
    # .streamlit/config.toml was read, though the command ran from another folder: bound to
    # localhost, Streamlit names one URL, and no network URL.
    assert f"URL: http://localhost:{port}" in output and "Network URL" not in output, output


def test_only_the_dashboard_passes_unknown_options_on():
    result = cli("datasets", "--server.port", "1")
    assert result.returncode == 2 and "unrecognized arguments: --server.port 1" in result.stderr


# ---- graph specs (issue 10) ----------------------------------------------------------------


def test_check_a_graph_spec_prints_its_nodes_and_edges():
    result = cli("check", "examples/two_tower_fusion.json")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "Stack 'two_tower_fusion' (graph) on digits28: input (batch, 28, 28, 1) -> output (batch, 10)"
    assert lines[1].split() == ["node", "kind", "output", "params", "trainable"]
    assert lines[3].split() == ["features", "member", "(cnn_features)", "(batch,", "64)", "346,496", "346,496"]
    assert lines[4].split() == ["flat", "adapter", "(Flatten)", "(batch,", "784)"]
    assert any(line.split()[:3] == ["fusion", "merge", "(concatenate)"] for line in lines)
    edge_rows = [line for line in lines if " -> " in line and not line.startswith("Stack")]
    assert len(edge_rows) == 7 and edge_rows[0].split()[:3] == ["input", "->", "features"]
    assert all(row.split()[-1] == "yes" for row in edge_rows)
    assert "Total params: 414,538" in result.stdout and lines[-1] == "OK"
    report = json.loads(cli("check", "examples/two_tower_fusion.json", "--json").stdout)
    assert [(edge["source"], edge["target"]) for edge in report["edges"]][:2] == [("input", "features"),
                                                                                  ("input", "flat")]
    assert report["node_shapes"]["fusion"] == [128]


def test_check_a_graph_with_a_mismatched_edge(tmp_path):
    spec = StackSpec.from_dict({"mode": "graph", "dataset": {"name": "digits28"}, "graph": {
        "nodes": [{"id": "input", "kind": "input"},
                  {"id": "head", "kind": "member", "member": {"name": "head", "template": "dense_head"}},
                  {"id": "output", "kind": "output"}],
        "edges": [{"source": "input", "target": "head"}, {"source": "head", "target": "output"}]}})
    path = tmp_path / "graph.json"
    path.write_text(spec.to_json())
    result = cli("check", str(path))
    assert result.returncode == 1
    assert any(line.split()[:3] == ["input", "->", "head"] and line.split()[-1] == "no"
               for line in result.stdout.splitlines())
    assert "problem: Cannot feed the input into 'head'" in result.stderr and "Add Flatten" in result.stderr


@pytest.mark.slow
def test_a_graph_runs_in_a_worker_and_its_run_is_a_member_of_a_later_graph(tmp_path):
    spec = json.loads((ROOT / "examples" / "residual_stack.json").read_text())
    spec["train"]["epochs"] = 2
    path = tmp_path / "residual.json"
    path.write_text(json.dumps(spec))
    started = cli("runs", "start", str(path), "--wait")
    assert started.returncode == 0, started.stderr
    run_id, status = started.stdout.split()
    assert status == "finished"
    shown = json.loads(cli("runs", "show", run_id, "--json").stdout)
    assert shown["mode"] == "graph" and shown["epochs_done"] == 2
    later = StackSpec.from_dict({"mode": "graph", "dataset": {"name": "wine"}, "graph": {
        "nodes": [{"id": "input", "kind": "input"},
                  {"id": "earlier", "kind": "member",
                   "member": {"name": "earlier", "run_id": run_id, "cut_at": "residual", "trainable": False}},
                  {"id": "head", "kind": "member", "member": {"name": "head", "template": "dense_head",
                                                              "params": {"hidden_units": []}}},
                  {"id": "output", "kind": "output"}],
        "edges": [{"source": "input", "target": "earlier"}, {"source": "earlier", "target": "head"},
                  {"source": "head", "target": "output"}]}})
    later_path = tmp_path / "later.json"
    later_path.write_text(later.to_json())
    report = json.loads(cli("check", str(later_path), "--json").stdout)
    assert report["ok"], report["problems"]
    earlier, head = report["members"]
    assert (earlier["source"], earlier["output_shape"], earlier["trainable_params"]) == ("run", [32], 0)
    assert earlier["total_params"] == 1_504 + 448  # the run's block and shortcut, cut after their add
    assert head["total_params"] == 32 * 3 + 3


@pytest.mark.slow
def test_train_a_graph_spec_writes_a_stack_py_that_rebuilds_it(tmp_path):
    import importlib.util

    out = tmp_path / "out"
    result = cli("train", "examples/residual_stack.json", "--out", str(out), "--epochs", "1")
    assert result.returncode == 0, result.stderr
    trained = keras.saving.load_model(out / "stack.keras")  # model.keras is end to end
    assert isinstance(trained.get_layer("residual"), keras.layers.Add)
    module_spec = importlib.util.spec_from_file_location("residual_stack_py", out / "stack.py")
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    rebuilt = module.build_model()
    assert rebuilt.count_params() == trained.count_params() == 2_531
    assert [layer.name for layer in rebuilt.layers] == [layer.name for layer in trained.layers]
    assert json.loads((out / "spec.json").read_text())["mode"] == "graph"


@pytest.mark.slow
def test_a_finished_run_is_predicted_and_exported_from_the_command_line(tmp_path):
    spec = StackSpec.from_dict({"name": "iris-cli", "dataset": {"name": "iris"}, "train": {"epochs": 1},
                                "members": [{"name": "encoder", "template": "mlp"},
                                            {"name": "head", "template": "dense_head"}]})
    path = tmp_path / "iris.json"
    path.write_text(spec.to_json())
    started = cli("runs", "start", str(path), "--wait")
    run_id, status = started.stdout.split()
    assert status == "finished", started.stderr
    out = tmp_path / "predictions.csv"
    predicted = cli("predict", run_id, "--validation", "--out", str(out))
    assert predicted.returncode == 0, predicted.stderr
    header = out.read_text().splitlines()[0].split(",")
    assert {"setosa", "versicolor", "virginica"} <= set(header), header  # the classes by name
    exported = cli("export", run_id, "--format", "onnx", "--json")
    assert exported.returncode == 0, exported.stderr
    answer = json.loads(exported.stdout.strip().splitlines()[-1])
    assert answer["ok"] and answer["max_abs_diff"] <= 1e-4 and answer["samples"] > 0
    shown = json.loads(cli("runs", "show", run_id, "--json").stdout)
    assert "model.onnx" in json.dumps(shown["artifacts"])  # listed with the run's downloads
    assert "oneDNN" not in exported.stderr + predicted.stderr  # TensorFlow's start-up lines stay off


# ---- devices (issue 13) --------------------------------------------------------------------


def small_spec(tmp_path, **train) -> Path:
    spec = StackSpec(name="small", members=(MemberSpec("a", template="mlp"), MemberSpec("b", template="dense_head")),
                     dataset=DatasetSpec(name="iris"), train=TrainSpec(epochs=1, **train))
    path = tmp_path / "small.json"
    path.write_text(spec.to_json())
    return path


@pytest.fixture
def no_workers(monkeypatch):
    """`runs start` in this process queues and claims runs, and starts no worker."""
    from core.runs import devices, scheduler

    monkeypatch.setenv("STACKLAB_GPUS", "")
    monkeypatch.delenv("STACKLAB_MAX_WORKERS", raising=False)
    devices.clear_cache()
    monkeypatch.setattr(scheduler, "_spawn", lambda run_id: None)
    yield
    devices.clear_cache()


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    from core.__main__ import main

    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_runs_start_takes_the_device_settings_as_flags(tmp_path, capsys, no_workers, monkeypatch):
    from core import runs
    from core.spec import DistributionSpec

    path = small_spec(tmp_path)
    code, out, err = run_main(capsys, "runs", "start", str(path), "--distribution", "data_parallel", "--devices", "2",
                              "--cpu", "--mixed-precision", "--xla")
    assert code == 0, err
    train = runs.get(out.strip()).spec.train
    assert train.distribution == DistributionSpec(strategy="data_parallel", devices=2, accelerator="cpu")
    assert (train.mixed_precision, train.jit_compile) == (True, True)
    # A multi-host spec run on one machine: the coordinator and process settings go with the strategy.
    multi = small_spec(tmp_path, jit_compile=True, distribution=DistributionSpec(
        strategy="multi_host", coordinator="10.0.0.1:1234", num_processes=2, process_id=1))
    code, out, err = run_main(capsys, "runs", "start", str(multi), "--distribution", "none", "--no-xla")
    assert code == 0, err
    train = runs.get(out.strip()).spec.train
    assert train.distribution == DistributionSpec() and train.jit_compile is False
    code, out, err = run_main(capsys, "runs", "start", str(multi), "--process-id", "0")
    assert code == 1 and "Multi-host training needs the JAX backend" in err  # the workers run TensorFlow
    monkeypatch.setenv("KERAS_BACKEND", "jax")  # the workers' backend (no worker starts here)
    code, out, err = run_main(capsys, "runs", "start", str(multi), "--process-id", "0")
    assert code == 0, err
    assert runs.get(out.strip()).spec.train.distribution.process_id == 0


@pytest.mark.parametrize("flags, message", [
    (["--devices", "-1"], "error: 'train.distribution.devices' must be at least 0, received -1. "
                          "(The command line set: --devices -1.)"),
    (["--devices", "2"], "'train.distribution.devices' is 2, but 'train.distribution.strategy' is 'none'"),
    (["--distribution", "multi_host"], "'train.distribution.coordinator' is missing"),
    (["--distribution", "multi_host", "--coordinator", "nowhere", "--num-processes", "2"],
     "'train.distribution.coordinator' must be \"host:port\""),
])
def test_a_bad_device_flag_is_one_clear_error_before_anything_starts(tmp_path, capsys, no_workers, flags, message):
    from core import runs

    path = small_spec(tmp_path)
    for command in (["runs", "start", str(path)], ["train", str(path), "--out", str(tmp_path / "out")]):
        code, out, err = run_main(capsys, *command, *flags)
        assert code == 1 and message in err and len(err.splitlines()) == 1
    assert runs.list_runs() == [] and not (tmp_path / "out").exists()


def test_device_flags_that_argparse_refuses_or_that_are_for_start_only(capsys, no_workers):
    from core.__main__ import main

    with pytest.raises(SystemExit) as exited:
        main(["runs", "start", "x.json", "--distribution", "mirrored"])
    assert exited.value.code == 2
    assert "argument --distribution: invalid choice: 'mirrored'" in capsys.readouterr().err
    code, out, err = run_main(capsys, "runs", "list", "--devices", "2")
    assert code == 1 and "--devices 2: only for `runs start` (and `train`)" in err


def test_train_trains_the_spec_with_the_flags(tmp_path, monkeypatch):
    from core.__main__ import main
    from core.training import loop

    trained = []

    class Trained(Exception):
        pass

    def train(spec, **kwargs):
        trained.append(spec)
        raise Trained

    monkeypatch.setattr(loop, "train", train)
    interrupt = signal.getsignal(signal.SIGINT)  # `train` sets its own Ctrl-C handler
    try:
        with pytest.raises(Trained):
            main(["train", str(small_spec(tmp_path)), "--out", str(tmp_path / "out"), "--distribution",
                  "data_parallel", "--epochs", "2", "--mixed-precision"])
    finally:
        signal.signal(signal.SIGINT, interrupt)
    assert trained[0].train.distribution.strategy == "data_parallel"
    assert (trained[0].train.epochs, trained[0].train.mixed_precision) == (2, True)


def test_runs_list_and_show_say_where_a_run_trains_and_how_fast(tmp_path, capsys, no_workers, monkeypatch):
    from core import runs
    from core.runs import devices
    from core.spec.events import EpochEnd, RunStarted

    code, out, err = run_main(capsys, "runs", "start", str(small_spec(tmp_path)))
    run_id = out.strip()
    store = runs.current_store()
    store.record(run_id, RunStarted(epochs=1, steps_per_epoch=4, total_params=10, trainable_params=10,
                                    devices=("cuda:0", "cuda:1"), strategy="data_parallel", train_samples=1000,
                                    batch_size=256))
    store.record(run_id, EpochEnd(epoch=1, phase="train", metrics={"loss": 1.0}, duration_s=2.0, learning_rate=0.1))
    monkeypatch.setenv("STACKLAB_GPUS", "0,1,2")
    devices.clear_cache()
    code, out, err = run_main(capsys, "runs", "start", str(small_spec(tmp_path)), "--distribution", "data_parallel",
                              "--devices", "2")
    given = out.strip()
    code, out, err = run_main(capsys, "runs", "list")
    header, *lines = out.splitlines()
    assert header.split()[5:8] == ["best", "devices", "samples/s"]
    line = next(line for line in lines if line.startswith(run_id))
    assert "2 × GPU" in line and " 500 " in line
    assert "GPU 0,1" in next(line for line in lines if line.startswith(given))  # not started yet: its GPUs
    code, out, err = run_main(capsys, "runs", "show", run_id)
    for expected in ("strategy: data_parallel", "devices: 2 × GPU (cuda:0, cuda:1)", "batch_size: 256",
                     "train_samples: 1000", "samples_per_s: 500"):
        assert expected in out.splitlines()
    code, out, err = run_main(capsys, "runs", "show", given, "--json")
    assert json.loads(out)["gpus"] == [0, 1] and json.loads(out)["samples_per_s"] is None


def fake_report() -> dict:
    return {"backend": "jax", "accelerators": ["cuda:0", "cuda:1", "cuda:2"], "cpu_devices": ["TFRT_CPU_0"],
            "visible_gpus_env": os.environ.get("CUDA_VISIBLE_DEVICES"), "cpu_split": 1}


@pytest.fixture
def gpu_env(monkeypatch):
    """`devices` sets the worker's GPU variables in its own process: restore them after."""
    for name in ("CUDA_VISIBLE_DEVICES", "CUDA_DEVICE_ORDER", "STACKLAB_MACHINE_CUDA_VISIBLE_DEVICES"):
        monkeypatch.setenv(name, "")
        monkeypatch.delenv(name)


def test_devices_lists_the_gpus_the_runs_at_once_and_what_keras_sees(capsys, monkeypatch, gpu_env):
    from core.runs import devices
    from core.training import backend

    monkeypatch.setenv("STACKLAB_GPUS", "0,1,2")
    monkeypatch.setenv("STACKLAB_MAX_WORKERS", "4")
    devices.clear_cache()
    monkeypatch.setattr(backend, "device_report", fake_report)
    code, out, err = run_main(capsys, "devices")
    assert code == 0, err
    lines = out.splitlines()
    assert lines[:2] == ["GPUs (STACKLAB_GPUS='0,1,2'): 3", "  GPU 0: listed in STACKLAB_GPUS"]
    assert "Runs at once: 4 (STACKLAB_MAX_WORKERS; STACKLAB_MAX_WORKERS sets it)" in lines
    assert "  run 3: GPU 2" in lines
    assert any(line.startswith("  run 4: the CPU only") for line in lines)
    assert "  accelerators: cuda:0, cuda:1, cuda:2" in lines
    assert "  CUDA_VISIBLE_DEVICES: '0,1,2'" in lines  # what a worker given every GPU gets
    code, out, err = run_main(capsys, "devices", "--json")
    report = json.loads(out)
    assert report["max_workers"] == 4 and [gpu["index"] for gpu in report["gpus"]] == [0, 1, 2]
    assert report["slots"][3] == {"run": 4, "gpus": []}
    assert report["worker"] == fake_report()


def test_devices_on_a_machine_without_gpus_runs_keras(monkeypatch):
    monkeypatch.delenv("STACKLAB_MAX_WORKERS", raising=False)
    monkeypatch.setenv("STACKLAB_GPUS", "")
    result = cli("devices", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["gpus"], report["max_workers"], report["slots"]) == ([], 1, [{"run": 1, "gpus": []}])
    assert report["worker"]["backend"] == keras.backend.backend()
    assert report["worker"]["accelerators"] == [] and report["worker"]["visible_gpus_env"] == ""
