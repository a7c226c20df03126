"""Sweeps without workers: storage, studies, the Optuna space, Compare modes' variants, the CLI's refusals."""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from core import sweeps
from core.spec import DatasetSpec, FineTuneSpec, MemberSpec, SearchSpec, StackSpec, TrainSpec, apply_params, load_spec
from core.sweeps import cli
from core.sweeps.space import decode, distributions, make_sampler

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "sweep_digits8.json"


def digits8(**members) -> StackSpec:
    return StackSpec(name="digits8-seq", members=(
        MemberSpec("features", template="cnn_features", params={"filters": [8]}, **members),
        MemberSpec("classifier", template="dense_head", params={"hidden_units": [16]})),
        train=TrainSpec(epochs=2, batch_size=64), dataset=DatasetSpec(name="digits8"))


def test_storage_url_follows_the_environment(monkeypatch, stacklab_home):
    monkeypatch.delenv(sweeps.STORAGE_ENV, raising=False)
    assert sweeps.storage_url() == f"sqlite:///{stacklab_home / 'sweeps.db'}"
    monkeypatch.setenv(sweeps.STORAGE_ENV, "postgresql://user@db/stacklab")
    assert sweeps.storage_url() == "postgresql://user@db/stacklab"


def test_create_sweep_keeps_the_base_spec_and_refuses_another_one():
    spec = load_spec(EXAMPLE)
    name = sweeps.create_sweep(spec)
    assert name == "sweep_digits8"
    assert sweeps.create_sweep(spec, trials=9) == name  # the same spec finds it again, with a new budget
    summary = sweeps.sweep(name)
    assert (summary.base_spec, summary.budget, summary.trials, summary.best) == (spec, 9, [], None)
    assert (summary.objective, summary.direction, summary.driver_alive) == ("val_accuracy", "maximize", False)
    assert [s.study for s in sweeps.list_sweeps()] == [name]
    other = spec.replace(train=spec.train.__class__(epochs=4))
    with pytest.raises(ValueError, match="Sweep 'sweep_digits8' already exists with another spec"):
        sweeps.create_sweep(other)
    with pytest.raises(ValueError, match="has no 'search' section"):
        sweeps.create_sweep(spec.replace(search=None))
    with pytest.raises(ValueError, match="has no finished trial yet"):
        sweeps.best_spec(name)
    with pytest.raises(KeyError, match=r"No sweep 'nope'.*\['sweep_digits8'\]"):
        sweeps.load_study("nope")


def test_the_space_as_optuna_sees_it_and_back():
    search = SearchSpec.from_dict({"space": {
        "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
        "train.epochs": {"type": "int", "low": 2, "high": 6, "step": 2},
        "members.features.params.filters": {"type": "categorical", "choices": [[8], [16, 32]]}},
        "variants": {"wide": {"train": {"batch_size": 16}}}})
    found = distributions(search)
    assert found["train.learning_rate"] == FloatDistribution(1e-4, 1e-2, log=True)
    assert found["train.epochs"] == IntDistribution(2, 6, step=2)
    assert found["members.features.params.filters"] == CategoricalDistribution(["[8]", "[16, 32]"])
    assert found["variant"] == CategoricalDistribution(["wide"])
    assert decode(search, {"members.features.params.filters": "[16, 32]", "variant": "wide"}) == {
        "members.features.params.filters": [16, 32], "variant": "wide"}
    space = {k: v for k, v in search.to_dict()["space"].items() if k != "train.learning_rate"}
    grid = SearchSpec.from_dict({**search.to_dict(), "sampler": "grid", "space": space})
    assert grid.grid_size() == 3 * 2 * 1
    assert type(make_sampler(grid, 6)).__name__ == "_GridSampler"


def test_compare_modes_builds_the_modes_that_make_sense():
    spec = digits8()
    compared = sweeps.compare_modes_spec(spec)
    search = compared.search
    assert list(search.variants) == ["sequential", "fusion_raw", "ensemble"]
    assert (search.sampler, search.pruner.kind, search.trials, search.seed) == ("grid", "none", 3, 0)
    assert search.objective.metric == "val_accuracy"
    assert search.study.startswith("digits8-seq-modes-")
    trials = {name: apply_params(compared, {"variant": name}) for name in search.variants}
    assert trials["sequential"].members == spec.members
    fusion = trials["fusion_raw"]
    assert (fusion.mode, fusion.options, fusion.members, fusion.head) == (
        "fusion", {"include_raw_input": True}, spec.members[:1], spec.members[1])
    ensemble = trials["ensemble"]
    assert [(m.name, m.template) for m in ensemble.members] == [("features", "cnn_classifier"),
                                                                ("features_2", "cnn_classifier")]
    assert {t.train for t in trials.values()} == {spec.train}  # same seed, same epochs
    assert sweeps.compare_modes_spec(spec).search.study == search.study  # the same spec: the same comparison


def test_compare_modes_chains_several_feature_members_too():
    spec = StackSpec(name="two", mode="fusion",
                     members=(MemberSpec("cnn", template="cnn_features"), MemberSpec("mlp", template="mlp")),
                     head=MemberSpec("head", template="dense_head"), dataset=DatasetSpec(name="digits8"))
    compared = sweeps.compare_modes_spec(spec)
    assert list(compared.search.variants) == ["sequential", "fusion_raw", "fusion", "ensemble"]
    chain = apply_params(compared, {"variant": "sequential"})
    assert (chain.mode, [m.name for m in chain.members], chain.head) == ("sequential", ["cnn", "mlp", "head"], None)


def test_compare_modes_adds_transfer_for_a_frozen_base():
    spec = digits8(trainable=False).replace(train=TrainSpec(epochs=4))
    variants = sweeps.compare_modes_spec(spec).search.variants
    assert set(variants) >= {"transfer", "transfer_fine_tune"}
    tuned = apply_params(sweeps.compare_modes_spec(spec), {"variant": "transfer_fine_tune"})
    assert (tuned.mode, tuned.train.fine_tune) == ("transfer", FineTuneSpec(start_epoch=3))
    with pytest.raises(ValueError, match="is a graph"):
        sweeps.compare_modes_spec(spec.replace(mode="graph", members=()))


def test_core_sweeps_imports_no_keras_streamlit_or_plotly():
    code = ("import sys, core.sweeps, core.sweeps.cli; "
            "print([m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax', 'streamlit', "
            "'plotly')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


def test_the_cli_says_what_is_missing(capsys):
    assert cli.main([]) == 1
    assert "Give a SPEC.json with a 'search' section" in capsys.readouterr().err
    # --json points file descriptor 1 at stderr for good: a child process, as the dashboard runs it.
    out = subprocess.run([sys.executable, "-m", "core.sweeps.cli", "--study", "nope", "--json"], cwd=ROOT,
                         capture_output=True, text=True)
    assert out.returncode == 1
    assert json.loads(out.stdout) == {"ok": False, "error": json.loads(out.stdout)["error"]}
    assert json.loads(out.stdout)["error"].startswith("No sweep 'nope' in sqlite:///")


def test_add_parser_adds_the_sweep_command():
    parser = argparse.ArgumentParser(prog="python -m core")
    cli.add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["sweep", "spec.json", "--trials", "3", "--study", "s", "--storage", "sqlite:///x.db"])
    assert (args.run, args.spec, args.trials, args.study, args.storage, args.json) == (
        cli.run, "spec.json", 3, "s", "sqlite:///x.db", False)
    assert parser.parse_args(["sweep", "--study", "s"]).spec is None


def test_the_cli_describes_the_search():
    spec = load_spec(EXAMPLE)
    lines = cli.describe_search(spec.search, 6)
    assert lines[0].startswith("objective: val_accuracy (maximize), 6 trials")
    assert "  train.learning_rate: float from 0.0001 to 0.01, log scale" in lines
    assert "  members.features.params.filters: one of [8], [16], [32]" in lines
