"""The spec as MLflow params and epoch rows as metric points: pure functions, no tracking store."""

import json
import math
from pathlib import Path

from core.spec import load_spec
from core.tracking.params import MAX_KEY_LENGTH, MAX_PARAM_VALUE_LENGTH, clean_key, metric_points, spec_params
from tests.core.tracking.conftest import SPEC, epoch_end

ROOT = Path(__file__).resolve().parents[3]


def test_members_are_keyed_by_name_and_values_are_strings():
    params = spec_params(SPEC.to_dict())
    assert params["members.encoder.template"] == "mlp" and params["members.classifier.template"] == "dense_head"
    assert params["members.encoder.params.hidden_units"] == "[8]" and params["members.classifier.trainable"] == "true"
    assert params["train.learning_rate"] == "0.002" and params["train.fine_tune"] == "null"
    assert params["train.distribution.strategy"] == "none" and params["options"] == "{}"
    assert "members.encoder.name" not in params and not any(key.startswith("layout") for key in params)
    assert all(isinstance(value, str) for value in params.values())


def test_graph_nodes_are_keyed_by_id_and_edges_kept_as_json():
    spec = load_spec(ROOT / "examples" / "residual_stack.json")
    params = spec_params(spec.to_dict())
    assert params["graph.nodes.block.kind"] == "member"
    assert params["graph.nodes.block.member.params.hidden_units"] == "[32, 32]"
    assert params["graph.nodes.shortcut.units"] == "32" and "graph.nodes.block.id" not in params
    assert {"source": "input", "target": "block"} in json.loads(params["graph.edges"])


def test_long_values_are_cut_to_mlflow_limits_and_say_so():
    params = spec_params({"name": "x" * 10_000, "options": {"y" * 400: 1, "y" * 399 + "z": 2}})
    assert len(params["name"]) == MAX_PARAM_VALUE_LENGTH
    assert params["name"].endswith("(10000 characters; see spec.json)")
    long_keys = [key for key in params if key.startswith("options.")]
    assert len(long_keys) == 2 and all(len(key) == MAX_KEY_LENGTH for key in long_keys)


def test_names_mlflow_refuses_are_cleaned():
    assert clean_key("update/encoder#1") == "update/encoder_1"
    assert clean_key("/a..b") == "a._b" and clean_key("val_accuracy") == "val_accuracy"


def test_epoch_rows_become_points_at_step_epoch():
    rows = [{"epoch": row.epoch, "metrics": row.metrics, "learning_rate": row.learning_rate,
             "duration_s": row.duration_s, "member_updates": row.member_updates, "ended_at": row.ended_at}
            for row in (epoch_end(1), epoch_end(2))]
    rows[1]["metrics"] = {**rows[1]["metrics"], "loss": math.nan, "note": "text", "flag": True}
    rows[1]["learning_rate"] = None
    points = {(point.key, point.step): point for point in metric_points(rows)}
    assert points[("val_accuracy", 1)].value == 0.55 and points[("val_accuracy", 1)].timestamp_ms == 1_700_000_010_000
    assert points[("update/classifier", 2)].value == 0.1 and points[("duration_s", 2)].value == 4.0
    assert math.isnan(points[("loss", 2)].value)
    assert ("learning_rate", 2) not in points and ("note", 2) not in points and ("flag", 2) not in points
    assert points[("loss", 2)].identity == ("loss", 2, "nan")
