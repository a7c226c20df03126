"""A run as MLflow sees it: the spec as flat params, epoch rows as metric points, names MLflow accepts.

Pure functions over plain data (no mlflow import), so they are tested without a tracking store.
The limits are MLflow's (`mlflow.utils.validation`, 3.x): keys of at most 250 characters made
of letters, digits and `_ - . space : /`; param values of at most 6000 characters; tag values
of at most 8000.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
# Canvas positions say nothing about the model; spec.json (an artifact) keeps them.
SKIPPED_SPEC_KEYS = ("layout",)
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_\-. :/]")


@dataclass(frozen=True)
class MetricPoint:
    """One value of one metric at one epoch, as MLflow stores it (timestamp in milliseconds)."""

    key: str
    value: float
    step: int
    timestamp_ms: int

    @property
    def identity(self) -> tuple[str, int, str]:
        """What makes two points the same point (NaN equals NaN here, unlike in float)."""
        return self.key, self.step, "nan" if math.isnan(self.value) else repr(float(self.value))


def clean_key(key: str) -> str:
    """`key` as a name MLflow accepts: other characters become '_', no '..' or leading '/',
    at most 250 characters (a long key keeps its start and gets a short hash of the whole,
    so two long keys stay apart)."""
    cleaned = _NOT_ALLOWED.sub("_", key).lstrip("/")
    while ".." in cleaned:
        cleaned = cleaned.replace("..", "._")
    if len(cleaned) > MAX_KEY_LENGTH:
        digest = hashlib.sha1(key.encode("utf-8")).hexdigest()[:8]
        cleaned = f"{cleaned[:MAX_KEY_LENGTH - 9]}~{digest}"
    return cleaned or "_"


def clip(text: str, limit: int) -> str:
    """`text` cut to `limit` characters, saying so at its end when it was cut."""
    if len(text) <= limit:
        return text
    marker = f"... ({len(text)} characters; see spec.json)"
    return text[:limit - len(marker)] + marker


def _plain(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _flatten(value: Any, prefix: str, out: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    elif (isinstance(value, list) and value and all(isinstance(item, dict) for item in value)
          and all(isinstance(item.get("name", item.get("id")), str) for item in value)):
        # Members and graph nodes by name, as a sweep's search space addresses them
        # ("members.encoder.params.hidden_units"), not by position.
        for item in value:
            label = "name" if isinstance(item.get("name"), str) else "id"
            _flatten({k: v for k, v in item.items() if k != label}, f"{prefix}.{item[label]}", out)
    else:
        out[prefix] = _plain(value)


def spec_params(spec: dict[str, Any]) -> dict[str, str]:
    """A spec's dict (`StackSpec.to_dict()`) as MLflow params: dotted keys, string values.

    Nested sections become dotted keys (`train.learning_rate`), members and graph nodes are
    keyed by their name (`members.encoder.template`), other lists and empty sections are
    JSON (`members.encoder.params.hidden_units` = "[8]"), strings stay as they are and
    other scalars are JSON (`true`, `null`, `0.001`). Keys and values are cut to MLflow's
    limits.

    Args:
        spec: the spec as a dict.

    Returns:
        Param key -> value, keys sorted.

    Example:
        >>> spec_params({"name": "tiny", "train": {"epochs": 3, "seed": None}})
        {'name': 'tiny', 'train.epochs': '3', 'train.seed': 'null'}
    """
    flat: dict[str, str] = {}
    _flatten({k: v for k, v in spec.items() if k not in SKIPPED_SPEC_KEYS}, "", flat)
    return {clean_key(key): clip(value, MAX_PARAM_VALUE_LENGTH) for key, value in sorted(flat.items())}


def metric_points(rows: list[dict[str, Any]]) -> list[MetricPoint]:
    """Epoch rows (`core.runs.metrics`) as metric points, step = epoch, at the epoch's end.

    Each row gives its metrics, `learning_rate`, `duration_s` and each member's relative
    weight update as `update/<member>` (the names TensorBoard shows). Values that are not
    numbers (None) are left out; NaN and infinities are kept (a diverged run shows as one).

    Args:
        rows: dicts with epoch, metrics, learning_rate, duration_s, member_updates, ended_at.

    Returns:
        The points, in row order.
    """
    points = []
    for row in rows:
        timestamp_ms = int(round((row.get("ended_at") or row.get("recorded_at") or 0.0) * 1000))
        values = {**row.get("metrics", {}), "learning_rate": row.get("learning_rate"),
                  "duration_s": row.get("duration_s"),
                  **{f"update/{name}": value for name, value in (row.get("member_updates") or {}).items()}}
        for key, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                continue
            points.append(MetricPoint(clean_key(key), float(value), int(row["epoch"]), timestamp_ms))
    return points
