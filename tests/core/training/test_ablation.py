"""core.training.ablation: which member carries a finished fusion, ensemble or graph run.

The runs are real but tiny: trained by `core.training.loop.train` on digits8 (diabetes for
regression) for a few epochs and exported with `core.export.artifacts.export_run` into a run
folder, as the worker does. One member of each classification run is made useless: frozen
with its Dense weights set to zero when training begins, it outputs zeros (features) or a
uniform softmax (predictions) all along, so removing it cannot change the metric, while
removing the member that learned must. The runs are trained once for the module.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest

from core.build.preprocessing import prepare
from core.export.artifacts import export_run
from core.inspector import InspectorClient, InspectorError
from core.spec import DatasetSpec, EdgeSpec, GraphSpec, MemberSpec, NodeSpec, StackSpec, TrainSpec
from core.spec.presets import to_graph_spec
from core.training import cli
from core.training.ablation import RAW_INPUT, Removal, ablate_run, removals, without
from core.training.evaluation import evaluate_run
from core.training.loop import train

ROOT = Path(__file__).resolve().parents[3]
MLP = {"hidden_units": [32]}
TRAIN = TrainSpec(epochs=4, batch_size=32, learning_rate=0.01, validation_split=0.2, seed=0)


class FrozenAtZero(keras.callbacks.Callback):
    """Sets the Dense weights of a frozen member to zero before the first batch."""

    def __init__(self, member: str):
        super().__init__()
        self.member = member

    def on_train_begin(self, logs=None):
        for layer in self.model.get_layer(self.member).layers:
            if isinstance(layer, keras.layers.Dense):
                layer.set_weights([np.zeros_like(weight) for weight in layer.get_weights()])


def fusion_spec(**options) -> StackSpec:
    return StackSpec(
        name="fusion", mode="fusion",
        members=(MemberSpec("useful", template="mlp", params=MLP),
                 MemberSpec("useless", template="mlp", params=MLP, trainable=False)),
        head=MemberSpec("head", template="dense_head", params={"hidden_units": []}),
        options=options, train=TRAIN, dataset=DatasetSpec(name="digits8"), auto_adapters=True)


def ensemble_spec() -> StackSpec:
    return StackSpec(
        name="ensemble", mode="ensemble",
        members=(MemberSpec("useful", template="mlp_classifier", params=MLP),
                 MemberSpec("useless", template="mlp_classifier", params=MLP, trainable=False)),
        train=TRAIN, dataset=DatasetSpec(name="digits8"), auto_adapters=True)


def trained_run(run_id: str, spec: StackSpec, useless: str | None = "useless") -> str:
    result = train(spec, extra_callbacks=[FrozenAtZero(useless)] if useless else [])
    assert result.status == "finished", result.reason
    export_run(result.model, spec, result.history, Path(os.environ["STACKLAB_HOME"]) / "runs" / run_id,
               compile_args=result.compile_args, prepared=result.prepared)
    return run_id


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """Four finished runs: a fusion and an ensemble (digits8), the fusion as a graph, a regression fusion."""
    folder = tmp_path_factory.mktemp("ablation-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STACKLAB_HOME", str(folder))
        trained_run("fusion-run", fusion_spec())
        trained_run("ensemble-run", ensemble_spec())
        trained_run("graph-run", to_graph_spec(fusion_spec(include_raw_input=True)))
        regression = StackSpec(
            name="regression", mode="fusion",
            members=(MemberSpec("left", template="mlp", params={"hidden_units": [8]}),
                     MemberSpec("right", template="mlp", params={"hidden_units": [8]})),
            head=MemberSpec("head", template="dense_head", params={"hidden_units": []}),
            train=TrainSpec(epochs=2, batch_size=32, validation_split=0.2, seed=0),
            dataset=DatasetSpec(name="diabetes"))
        trained_run("regression-run", regression, useless=None)
    return folder


@pytest.fixture
def in_home(home, monkeypatch):
    monkeypatch.setenv("STACKLAB_HOME", str(home))
    return home


def validation_x(spec: StackSpec) -> np.ndarray:
    return prepare(spec.dataset, spec.train).split.x_val


def test_fusion_the_learned_member_carries_the_stack_and_the_zeroed_one_drops_nothing(in_home):
    result = ablate_run("fusion-run")
    assert result["metric"] == "val_accuracy" and result["higher_is_better"] and result["subset"] == "validation"
    assert result["full"] == evaluate_run("fusion-run")["accuracy"]  # the same number, the same split
    assert result["full"] > 0.7
    rows = {row["member"]: row for row in result["members"]}
    assert set(rows) == {"useful", "useless"}
    assert rows["useless"]["drop"] == pytest.approx(0.0, abs=1e-12)  # its features were zeros already
    assert rows["useful"]["drop"] > 0.4 and rows["useful"]["value"] < 0.3  # the head then sees nothing
    assert rows["useful"]["removed"] == "zeroed at 'fusion_concat' (concatenate)"
    assert result["carrier"] == "useful"
    assert result["reading"].startswith("Without 'useful', val_accuracy drops ")
    assert result["reading"].endswith(": it carries the stack.")
    assert result["skipped"] == [{"member": "head", "reason": "it comes after the merge (the head): every "
                                                               "prediction passes through it"}]
    assert not result["cached"] and ablate_run("fusion-run") == {**result, "cached": True}
    assert json.loads((in_home / "runs" / "fusion-run" / "ablation.json").read_text())["full"] == result["full"]


def test_fusion_zeroes_the_member_at_the_concatenate_and_keeps_the_rest(in_home):
    model = keras.saving.load_model(in_home / "runs" / "fusion-run" / "stack.keras", safe_mode=True, compile=False)
    x = validation_x(fusion_spec())
    ablated = without(model, [Removal("fusion_concat", 0, "concatenate")])
    useless = model.get_layer("useless").predict(x.reshape(len(x), -1), verbose=0)  # after its Flatten adapter
    kernel, bias = model.get_layer("head").layers[-1].get_weights()
    width = model.get_layer("useful").output.shape[-1]
    expected = keras.activations.softmax(useless @ kernel[width:] + bias).numpy()
    np.testing.assert_allclose(ablated.predict(x, verbose=0), expected, atol=1e-5)
    # The clone reuses the stack's layers: nothing was retrained or copied.
    assert ablated.get_layer("useful") is model.get_layer("useful")


def test_ensemble_average_drops_the_member_from_the_mean(in_home):
    result = ablate_run("ensemble-run")
    assert result["full"] == evaluate_run("ensemble-run")["accuracy"]
    rows = {row["member"]: row for row in result["members"]}
    assert rows["useless"]["removed"] == "dropped from 'ensemble_average' (average)"
    assert rows["useless"]["drop"] == pytest.approx(0.0, abs=1e-12)  # averaging a uniform guess moves no argmax
    assert rows["useful"]["drop"] > 0.4 and result["carrier"] == "useful"
    model = keras.saving.load_model(in_home / "runs" / "ensemble-run" / "stack.keras", safe_mode=True,
                                    compile=False)
    x = validation_x(ensemble_spec())
    # The mean of the others (here: the useful member alone), not the sum of the others over two.
    np.testing.assert_allclose(without(model, [Removal("ensemble_average", 1, "average")]).predict(x, verbose=0),
                               model.get_layer("useful").predict(x.reshape(len(x), -1), verbose=0), atol=1e-6)


def test_a_graph_run_ablates_its_members_and_the_raw_input(in_home):
    result = ablate_run("graph-run")
    assert result["mode"] == "graph" and result["full"] == evaluate_run("graph-run")["accuracy"]
    rows = {row["member"]: row for row in result["members"]}
    assert set(rows) == {"useful", "useless", RAW_INPUT}
    assert rows[RAW_INPUT]["removed"] == "zeroed at 'fusion_concat' (concatenate)"
    assert rows["useless"]["drop"] == pytest.approx(0.0, abs=1e-12)


def test_a_regression_run_is_scored_by_its_mae(in_home):
    result = ablate_run("regression-run")
    assert result["metric"] == "val_mae" and not result["higher_is_better"] and result["kind"] == "regression"
    assert result["full"] == pytest.approx(evaluate_run("regression-run")["mae"], rel=1e-12)
    for row in result["members"]:
        assert row["drop"] == pytest.approx(row["value"] - result["full"])  # worse = a larger error
    assert {row["member"] for row in result["members"]} == {"left", "right"}


def test_removals_of_a_meta_head_and_of_a_graph_chain():
    meta = StackSpec(mode="ensemble", members=(MemberSpec("a", template="mlp_classifier"),
                                               MemberSpec("b", template="mlp_classifier")),
                     head=MemberSpec("meta", template="dense_head"), options={"combine": "meta_head"})
    rows, skipped = removals(meta)
    assert rows == {"a": [Removal("ensemble_concat", 0, "concatenate")],
                    "b": [Removal("ensemble_concat", 1, "concatenate")]}
    assert [row["member"] for row in skipped] == ["meta"]
    # A graph: input -> first -> a -> concat, input -> b -> concat, concat -> head -> output.
    nodes = (NodeSpec("input", "input"), NodeSpec("first", "member", member=MemberSpec("first")),
             NodeSpec("a", "member", member=MemberSpec("a")), NodeSpec("b", "member", member=MemberSpec("b")),
             NodeSpec("concat", "merge", merge="concatenate"),
             NodeSpec("head", "member", member=MemberSpec("head", template="dense_head")),
             NodeSpec("output", "output"))
    pairs = [("input", "first"), ("first", "a"), ("input", "b"), ("b", "concat"), ("a", "concat"),
             ("concat", "head"), ("head", "output")]
    chain = StackSpec(mode="graph", graph=GraphSpec(nodes=nodes, edges=tuple(EdgeSpec(*pair) for pair in pairs)))
    rows, skipped = removals(chain)
    assert rows == {"b": [Removal("concat", 0, "concatenate")], "a": [Removal("concat", 1, "concatenate")]}
    assert skipped[0] == {"member": "first", "reason": "it feeds 'a', not a merge: its contribution is in the "
                                                       "rows of what it feeds"}


@pytest.mark.parametrize("mode", ["sequential", "transfer"])
def test_a_chained_run_is_refused_with_the_reason_and_what_to_do(stacklab_home, mode):
    folder = stacklab_home / "runs" / f"{mode}-run"
    folder.mkdir(parents=True)
    spec = StackSpec(name=mode, mode=mode, members=(MemberSpec("encoder", template="mlp"),),
                     head=MemberSpec("head", template="dense_head"), dataset=DatasetSpec(name="iris"))
    (folder / "spec.json").write_text(spec.to_json())
    with pytest.raises(ValueError, match=f"Run '{mode}-run' is a {mode} stack: .* no merge to remove a member "
                                         f"from. .* mode 'fusion' or 'ensemble'"):
        ablate_run(f"{mode}-run")


def test_a_graph_without_a_merge_is_refused():
    graph = to_graph_spec(StackSpec(members=(MemberSpec("a"), MemberSpec("b", template="dense_head"))))
    with pytest.raises(ValueError, match="a graph without a merge that a member feeds"):
        removals(graph)


def test_the_cli_prints_the_scores_and_the_ablation_table(in_home, capsys):
    parser = argparse.ArgumentParser()
    cli.add_parser(parser.add_subparsers())
    args = parser.parse_args(["evaluate", "fusion-run", "--ablation"])
    assert args.run(args) == 0
    out = capsys.readouterr().out
    assert "run fusion-run: 359 validation samples" in out and "accuracy 0." in out
    assert "member ablation (fusion; drop: how much worse val_accuracy is without the member)" in out
    lines = out.splitlines()
    assert any(line.split()[:1] == ["useful"] and "zeroed at 'fusion_concat'" in line for line in lines)
    assert "not ablated: head (it comes after the merge" in out
    assert lines[-1].startswith("Without 'useful', val_accuracy drops")
    args = parser.parse_args(["evaluate", "fusion-run"])
    assert args.run(args) == 0 and "member ablation" not in capsys.readouterr().out


def test_the_cli_answers_json_and_refuses_a_sequential_run(in_home):
    folder = in_home / "runs" / "chain-run"
    folder.mkdir(exist_ok=True)
    (folder / "spec.json").write_text(StackSpec(name="chain", members=(MemberSpec("a"), MemberSpec("b"))).to_json())
    script = ("import argparse, sys\nfrom core.training import cli\nparser = argparse.ArgumentParser()\n"
              "cli.add_parser(parser.add_subparsers())\nargs = parser.parse_args(sys.argv[1:])\n"
              "sys.exit(args.run(args))\n")
    env = {**os.environ, "STACKLAB_HOME": str(in_home), "TF_CPP_MIN_LOG_LEVEL": "3"}
    done = subprocess.run([sys.executable, "-c", script, "evaluate", "ensemble-run", "--ablation", "--json"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)  # one JSON line, nothing else on stdout
    assert answer["ok"] and answer["evaluation"]["accuracy"] == answer["ablation"]["full"]
    assert answer["ablation"]["carrier"] == "useful"
    # Refused from its spec, before any model loads (this run has none).
    refused = subprocess.run([sys.executable, "-c", script, "evaluate", "chain-run", "--ablation"],
                             cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and "is a sequential stack" in refused.stderr


def test_the_inspector_answers_an_ablation_request(in_home):
    with InspectorClient(env={"STACKLAB_HOME": str(in_home)}) as client:
        answer = client.ablation("ensemble-run")
        assert answer["carrier"] == "useful" and answer["full"] == ablate_run("ensemble-run")["full"]
        with pytest.raises(InspectorError, match="no spec.json") as refused:
            client.ablation("no-such-run")
        assert refused.value.kind == "invalid"
