"""`python -m core mlflow RUN_ID`: the add_parser pattern, its output, its refusals."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow import MlflowClient

from core.processes import child_env
from core.tracking import RUN_ID_TAG, cli
from tests.core.tracking.conftest import make_run

pytestmark = pytest.mark.usefixtures("no_workers")
ROOT = Path(__file__).resolve().parents[3]


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m core")
    cli.add_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(argv)


def test_the_command_logs_the_run_and_says_where(tracking_uri, capsys):
    run_id = make_run()
    args = parse(["mlflow", run_id, "--tracking-uri", tracking_uri, "--experiment", "from-cli"])
    assert args.run(args) == 0
    printed = capsys.readouterr().out
    assert f"Logged run {run_id} as MLflow run " in printed and "experiment 'from-cli'" in printed
    found = MlflowClient(tracking_uri=tracking_uri).search_runs(
        [MlflowClient(tracking_uri=tracking_uri).get_experiment_by_name("from-cli").experiment_id],
        filter_string=f"tags.`{RUN_ID_TAG}` = '{run_id}'")
    assert len(found) == 1 and found[0].info.run_id in printed


def test_the_experiment_defaults_to_the_variable(tracking_uri, monkeypatch, capsys):
    monkeypatch.setenv("STACKLAB_MLFLOW_EXPERIMENT", "team-runs")
    args = parse(["mlflow", make_run(), "--tracking-uri", tracking_uri])
    assert args.run(args) == 0
    assert "experiment 'team-runs'" in capsys.readouterr().out


def test_a_refusal_is_one_line_and_exit_code_1(capsys, monkeypatch):
    monkeypatch.delenv("STACKLAB_MLFLOW_TRACKING_URI", raising=False)
    args = parse(["mlflow", make_run()])
    assert args.run(args) == 1
    assert capsys.readouterr().err.strip().startswith("error: No MLflow tracking URI: pass --tracking-uri")
    args = parse(["mlflow", "nope", "--tracking-uri", "sqlite:////tmp/unused.db"])
    assert args.run(args) == 1
    assert "No run with id 'nope'" in capsys.readouterr().err


def test_json_answer_from_a_child_as_the_dashboard_runs_it(tracking_uri, stacklab_home):
    run_id = make_run()
    done = subprocess.run([sys.executable, "-m", "core.tracking.cli", run_id, "--tracking-uri", tracking_uri, "--json"],
                          capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])  # mlflow's log lines went to stderr
    assert len(done.stdout.strip().splitlines()) == 1
    assert answer["ok"] and answer["run_id"] == run_id and answer["created"] is True
    assert "model/model.keras" in answer["artifacts"] and answer["summary"].startswith(f"Logged run {run_id}")
    refused = subprocess.run([sys.executable, "-m", "core.tracking.cli", "nope", "--tracking-uri", tracking_uri,
                              "--json"], capture_output=True, text=True, env=child_env(), cwd=ROOT, timeout=120)
    assert refused.returncode == 1
    assert json.loads(refused.stdout.strip().splitlines()[-1]) == {
        "ok": False, "error": "No run with id 'nope'. `python -m core runs list` shows the runs."}
