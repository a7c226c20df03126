"""Member ablation: which member carries a finished fusion, ensemble or graph run.

`ablate_run(run_id)` scores the run's stack on its validation split (as `evaluate_run`
does) and again once per member with that member's contribution removed at the merge it
feeds:

- a concatenate (a fusion's "fusion_concat", an ensemble's meta-head "ensemble_concat", a
  graph's concatenate): the member's features, or predictions, are zeroed there, so the
  layers after it keep the inputs they were built for;
- an elementwise merge (an ensemble's "ensemble_average", a graph's add, average, multiply,
  maximum): the member is dropped from it, so an average becomes the mean of the others.

The stack itself is not changed: each ablated model is a clone of the saved functional
graph (stack.keras) that reuses its layers and weights and rewires only the merge
(`keras.models.clone_model` with a `call_function`). What feeds which merge comes from the
run's spec (`core.spec.presets.graph_of`): the edges into a merge are its inputs in order.
The metric is the run's validation accuracy (classification) or mean absolute error
(regression), the same number `evaluate_run` reports; the result is cached in the run folder
as ablation.json while it is newer than the model file.

Example:
    >>> result = ablate_run(run_id)
    >>> result["metric"], result["full"], [(row["member"], row["drop"]) for row in result["members"]]
    ('val_accuracy', 0.94, [('encoder_a', 0.61), ('encoder_b', 0.0)])
    >>> result["reading"]
    "Without 'encoder_a', val_accuracy drops 0.61 (0.94 -> 0.33): it carries the stack."
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import keras

from core.spec import StackSpec, rules
from core.spec.presets import graph_of
from core.spec.schema import ABLATION_MODES
from core.storage.atomic import write_text_atomically
from core.storage.paths import run_dir, run_stack_path
from core.storage.plain import to_plain
from core.training.evaluation import predict, read_cache, scored_split

CACHE_NAME = "ablation.json"
RAW_INPUT = "raw input"  # the row of a fusion's flattened raw input (include_raw_input)
# Merges whose inputs line up position by position: the removed input is zeroed there.
ZEROED_MERGES = ("concatenate",)


@dataclass(frozen=True)
class Removal:
    """One input of one merge that a member's ablation takes away.

    merge: the merge node's id (its Keras layer has that name).
    position: the input's index in the merge's inputs (the order of the edges into it).
    kind: the merge kind (concatenate: zeroed there; add, average, ...: dropped from it).
    """

    merge: str
    position: int
    kind: str


def ablate_run(run_id: str) -> dict:
    """The validation metric of a finished fusion, ensemble or graph run, whole and per member removed.

    Args:
        run_id: a finished run (see `python -m core runs list`).

    Returns:
        Plain data: run_id, mode, kind ("classification" or "regression"), subset
        ("validation" or "all"), num_samples, note, metric ("val_accuracy" or "val_mae";
        without a validation split "accuracy" or "mae"), higher_is_better, full (the whole
        stack's metric, evaluate_run's accuracy or mae), members (one row per member that
        feeds a merge, and the fusion's raw input: member, removed (how, in words), value
        (the metric without it), drop (how much worse the metric is without it: positive
        means the member helps)), skipped (member, reason: members whose contribution
        reaches a merge only through another member, or that no merge follows), carrier
        (the member whose removal hurts most, or None), reading (one line saying so), cached.

    Raises:
        ValueError: an invalid run id; a sequential or transfer run, or a graph without a
            merge (nothing to remove a member from); a model that does not fit the dataset.
        FileNotFoundError: the run has no stack.keras/model.keras or no spec.json.
        DataError: the run's dataset cannot be loaded.

    Example:
        >>> ablate_run(run_id)["carrier"]
        'encoder_a'
    """
    folder, model_path = run_dir(run_id), run_stack_path(run_id)
    spec_path = folder / "spec.json"
    if not spec_path.is_file():
        raise FileNotFoundError(
            f"Run '{run_id}' has no spec.json ({spec_path}): only a finished run can be ablated "
            f"(see `python -m core runs list`).")
    spec = StackSpec.from_json(spec_path.read_text(encoding="utf-8"), check_values=False)  # a stored run's spec
    rows, skipped = removals(spec, run_id)  # before anything loads: a sequential run is refused at once
    if not model_path.is_file():
        raise FileNotFoundError(
            f"Run '{run_id}' has no model.keras or stack.keras (in {folder}); only a finished run can be ablated.")
    cache = folder / CACHE_NAME
    cached = read_cache(cache, model_path)
    if cached is not None:
        return cached
    split = scored_split(spec)
    x, y, subset, note, task = split.x, split.y, split.subset, split.note, split.task
    model = keras.saving.load_model(model_path, safe_mode=True, compile=False)
    _check_merges(model, rows, run_id)

    def score(scored: keras.Model) -> float | None:
        return split.scores(predict(scored, x))["accuracy" if task.is_classification else "mae"]

    higher_is_better = task.is_classification
    metric = ("val_" if subset == "validation" else "") + ("accuracy" if higher_is_better else "mae")
    full = score(model)
    members = []
    for name, taken in rows.items():
        value = score(without(model, taken))
        drop = None if full is None or value is None else (full - value if higher_is_better else value - full)
        members.append({"member": name, "removed": _removed_words(taken), "value": value, "drop": drop})
    carrier, reading = _reading(metric, full, members)
    result = to_plain({
        "run_id": run_id, "mode": spec.mode, "kind": "classification" if higher_is_better else "regression",
        "subset": subset, "num_samples": len(y), "note": note, "metric": metric,
        "higher_is_better": higher_is_better, "full": full, "members": members, "skipped": skipped,
        "carrier": carrier, "reading": reading})
    write_text_atomically(cache, json.dumps(result))
    return {**result, "cached": False}


def removals(spec: StackSpec, run_id: str = "") -> tuple[dict[str, list[Removal]], list[dict]]:
    """What each member's ablation removes: ({member: [Removal, ...]}, [{member, reason}, ...]).

    A member's contribution is the branch from it, through adapters, into a merge; a merge
    input that comes from the raw input (a fusion's include_raw_input) is the RAW_INPUT row.

    Raises:
        ValueError: a mode without a merge (sequential, transfer), or a graph with no merge
            fed by a member.
    """
    label = f"Run '{run_id}'" if run_id else f"Stack '{spec.name}'"
    if spec.mode not in ABLATION_MODES:
        raise ValueError(
            f"{label} is a {spec.mode} stack: its members are chained, every prediction passes through every "
            f"one of them, so there is no merge to remove a member from. Member ablation needs a fusion, "
            f"ensemble or graph run: train the same members with mode 'fusion' or 'ensemble' (Compare modes on "
            f"the Assemble page does it in one click) and ablate that run.")
    graph = graph_of(spec)
    kinds = {node.id: node.kind for node in graph.nodes}
    merges = {node.id: node.merge for node in graph.nodes if node.kind == "merge"}
    rows: dict[str, list[Removal]] = {}
    for merge_id, kind in merges.items():
        for position, source in enumerate(graph.inputs_of(merge_id)):
            origin = source
            while kinds.get(origin) == "adapter" and len(graph.inputs_of(origin)) == 1:
                origin = graph.inputs_of(origin)[0]
            if kinds.get(origin) == "member":
                rows.setdefault(origin, []).append(Removal(merge_id, position, kind))
            elif origin == rules.INPUT:
                rows.setdefault(RAW_INPUT, []).append(Removal(merge_id, position, kind))
    if not rows:
        raise ValueError(
            f"{label} is a graph without a merge that a member feeds, so there is no merge to remove a member "
            f"from. Member ablation compares members that are combined: add a merge node (concatenate, add, "
            f"average) that two members feed, train it and ablate that run.")
    skipped = []
    for node in graph.nodes:
        if node.kind != "member" or node.id in rows:
            continue
        consumers = [target for target in graph.consumers_of(node.id) if target != rules.OUTPUT]
        reason = (f"it feeds {', '.join(repr(target) for target in consumers)}, not a merge: its contribution is in "
                  f"the rows of what it feeds" if consumers else
                  "it comes after the merge (the head): every prediction passes through it")
        skipped.append({"member": node.id, "reason": reason})
    return rows, skipped


def without(model: keras.Model, taken: list[Removal]) -> keras.Model:
    """A clone of `model` (same layers, same weights) with the inputs in `taken` removed at their merges.

    A concatenate gets zeros in their place; an elementwise merge is called on the other
    inputs (one left: that input itself).
    """
    by_merge: dict[str, set[int]] = {}
    for removal in taken:
        by_merge.setdefault(removal.merge, set()).add(removal.position)

    def call(layer, *args, **kwargs):
        positions = by_merge.get(layer.name)
        if positions is None:
            return layer(*args, **kwargs)
        inputs = list(args[0])
        if isinstance(layer, keras.layers.Concatenate):
            return layer([keras.ops.zeros_like(tensor) if index in positions else tensor
                          for index, tensor in enumerate(inputs)], **kwargs)
        kept = [tensor for index, tensor in enumerate(inputs) if index not in positions]
        if not kept:  # the member fed every input: nothing of the merge is left
            return keras.ops.zeros_like(layer(inputs, **kwargs))
        if len(kept) == 1:
            return kept[0]
        # A fresh layer of the same kind (merges hold no weights) for the smaller number of inputs.
        return type(layer)(name=f"{layer.name}_ablated")(kept)

    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)


def _check_merges(model: keras.Model, rows: dict[str, list[Removal]], run_id: str) -> None:
    names = {layer.name for layer in model.layers}
    missing = sorted({removal.merge for taken in rows.values() for removal in taken} - names)
    if missing:
        raise ValueError(
            f"Run '{run_id}''s stack.keras has no layer {', '.join(repr(name) for name in missing)}, though its "
            f"spec.json has such a merge: was the run folder changed after it trained? Train the spec again.")


def _removed_words(taken: list[Removal]) -> str:
    parts = []
    for removal in taken:
        how = "zeroed at" if removal.kind in ZEROED_MERGES else "dropped from"
        parts.append(f"{how} '{removal.merge}' ({removal.kind})")
    return "; ".join(parts)


def _reading(metric: str, full: float | None, members: list[dict]) -> tuple[str | None, str]:
    """(the member that carries the stack or None, the one line that says it)."""
    scored = [row for row in members if row["drop"] is not None]
    if full is None or not scored:
        return None, f"No {metric} to compare: the split has no samples."
    best = max(scored, key=lambda row: row["drop"])
    who = "the raw input" if best["member"] == RAW_INPUT else f"'{best['member']}'"
    if best["drop"] <= 0:
        return None, (f"Removing any one member leaves {metric} as good or better ({_number(full)} for the whole "
                      f"stack): no single member carries it.")
    worse = "drops" if metric.endswith("accuracy") else "rises"
    return best["member"], (f"Without {who}, {metric} {worse} {_number(best['drop'])} "
                            f"({_number(full)} -> {_number(best['value'])}): it carries the stack.")


def _number(value: float) -> str:
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
