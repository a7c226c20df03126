"""`python -m core ...` as a user runs it: exit codes, output, artifacts."""

import csv
import json
import os
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
