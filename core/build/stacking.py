"""build(spec) -> one keras.Model; check(spec) -> the pre-flight report, without training.

A stack is one functional model whose top-level layers are the members (each a nested
`keras.Model` named after the member), the adapters between them and the layers that
combine them. One builder per mode, in `STACKING_MODES`, wiring the edges that
`core.spec.rules.stack_edges` names:

- sequential: members chained A -> B -> ... (the head, if any, last);
- fusion: every member reads the input; their features (and optionally the flattened raw
  input) are concatenated and fed to the head;
- transfer: like sequential, with the members frozen (`freeze_base`) under a new head;
- ensemble: every member reads the input and predicts; predictions are averaged, or
  concatenated into a trainable meta-head.

Shapes are checked before anything trains (`core.build.assembler.Assembler`). A mismatch
becomes a `Problem` naming both members, the shape received and the shape expected, with
the adapters that were checked to fix it (`core.build.adapters.choose_fix`);
`auto_adapters` inserts them. An accepted adapter that no longer applies is a problem of
its own ("adapter", with its index in `spec.adapters`). `build` raises `StackError`
listing every problem.

Example:
    >>> report = check(spec)
    >>> report.ok, report.total_params
    (True, 693962)
    >>> model = build(spec)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import keras
import numpy as np

from core.build import budget
from core.build.adapters import Need
from core.build.assembler import Assembler
from core.build.report import MemberReport, Problem, StackError, StackReport  # noqa: F401  (re-exported)
from core.build.templates import TEMPLATES
from core.build.trainability import apply_trainability, count_params, trainability_rows
from core.spec import MemberSpec, StackSpec, rules
from core.spec.tasks import TaskInfo
from core.storage.paths import run_model_path

# Rows of training data passed to templates that adapt to data (Normalization).
ADAPT_SAMPLE_ROWS = 2000


def _sequential(assembler: Assembler, inputs):
    spec = assembler.spec
    head = assembler.head()
    chain = list(spec.members) + ([head] if head is not None else [])
    if len(chain) < 2:
        assembler.problem("config", "members", f"Mode 'sequential' chains two or more members; this stack has "
                          f"{len(chain)}. Add a member (e.g. a 'dense_head' after a feature extractor).")
        return None
    return _chain(assembler, inputs, chain)


def _chain(assembler: Assembler, inputs, chain: list[MemberSpec]):
    tensor, producer = inputs, rules.INPUT
    for member in chain:
        tensor = assembler.call_member(member, tensor, producer)
        if tensor is None:
            return None
        producer = member.name
    return assembler.adapt_to_output(tensor, producer)


def _transfer(assembler: Assembler, inputs):
    spec = assembler.spec
    head = assembler.head()
    if not spec.members:
        assembler.problem("config", "members", "Mode 'transfer' needs a pretrained member (an uploaded model file "
                          "or an earlier run) under the head.")
    if head is None or not spec.members:
        return None
    for member in spec.members:
        if member.source == "template" and spec.option("freeze_base"):
            assembler.warnings.append(
                f"Member '{member.name}' is a new '{member.template}' template with random weights; frozen, "
                f"it never learns. Use an uploaded model or an earlier run as the base, or set freeze_base off."
            )
    return _chain(assembler, inputs, list(spec.members) + [head])


def _parallel_members(assembler: Assembler, inputs, step: str, need_for_output: Callable[[MemberSpec], Need]):
    """Call every member on the input; adapt each output to `step` and `need_for_output(member)`."""
    outputs = []
    for member in assembler.spec.members:
        tensor = assembler.call_member(member, inputs, rules.INPUT)
        if tensor is not None:
            tensor = assembler.adapt(tensor, member.name, step, need_for_output(member))
        outputs.append(tensor)
    return outputs


def _head_on(assembler: Assembler, head: MemberSpec, tensor, step: str):
    """`head` called on the combined `tensor` of `step`, adapted to the output."""
    tensor = assembler.call_member(head, tensor, step)
    return assembler.adapt_to_output(tensor, head.name)


def _fusion(assembler: Assembler, inputs):
    spec = assembler.spec
    head = assembler.head()
    if not spec.members:
        assembler.problem("config", "members", "Mode 'fusion' needs at least one member whose features are fused.")
        return None
    features = _parallel_members(assembler, inputs, rules.FUSION,
                                 lambda member: Need(description="a feature vector", ranks=(1,)))
    if spec.option("include_raw_input"):
        features.append(keras.layers.Flatten(name=rules.RAW_INPUT_FLATTEN)(inputs))
    if head is None or any(feature is None for feature in features):
        return None
    if len(features) < 2:
        assembler.problem("config", "members", "Fusion concatenates two or more feature vectors: add a member, or "
                          "turn on include_raw_input to fuse a member's features with the raw input.")
        return None
    fused = keras.layers.Concatenate(name=rules.FUSION_CONCAT)(features)
    return _head_on(assembler, head, fused, rules.FUSION)


def _ensemble(assembler: Assembler, inputs):
    spec, task = assembler.spec, assembler.task
    if len(spec.members) < 2:
        assembler.problem("config", "members", f"Mode 'ensemble' combines two or more complete models; this stack "
                          f"has {len(spec.members)}. Add members such as 'cnn_classifier' or 'mlp_classifier'.")
        return None
    head = assembler.head()
    for member in spec.members:
        template = TEMPLATES.get(member.template or "")
        if member.source == "template" and template is not None and template.output != "predictions":
            assembler.warnings.append(
                f"Member '{member.name}' ('{member.template}') is an encoder: its outputs are features, "
                f"not predictions. Ensembles average complete models such as 'cnn_classifier' or "
                f"'mlp_classifier'; otherwise a Dense({task.output_units}, {task.output_activation}) "
                f"adapter turns its features into predictions."
            )
    predictions_need = assembler.output_need()
    predictions = _parallel_members(assembler, inputs, rules.ENSEMBLE, lambda member: predictions_need)
    if any(prediction is None for prediction in predictions):
        return None
    if spec.option("combine") == "average":
        averaged = keras.layers.Average(name=rules.ENSEMBLE_AVERAGE)(predictions)
        return assembler.adapt_to_output(averaged, rules.ENSEMBLE)
    if head is None:
        return None
    stacked = keras.layers.Concatenate(name=rules.ENSEMBLE_CONCAT)(predictions)
    return _head_on(assembler, head, stacked, rules.ENSEMBLE)


STACKING_MODES: dict[str, Callable] = {
    "sequential": _sequential,
    "fusion": _fusion,
    "transfer": _transfer,
    "ensemble": _ensemble,
}


def resolve_task(spec: StackSpec, task: TaskInfo | None, sample: np.ndarray | None):
    """The task (and an adaptation sample) from the arguments, or from the spec's dataset."""
    if task is not None:
        return task, sample
    from core.data import load_dataset

    dataset = load_dataset(spec.dataset)
    return dataset.task, dataset.x[:ADAPT_SAMPLE_ROWS]


def _assemble(spec: StackSpec, task: TaskInfo | None, sample: np.ndarray | None):
    """Wire the stack twice: a dry pass for the budget, then the real one; (model or None, assembler, task)."""
    task, sample = resolve_task(spec, task, sample)
    # Shapes before weights: the stack is wired once with its variables deferred (nothing
    # allocated), and built for real only if it fits the budget (core.build.budget). That pass
    # gets no sample: adapting a Normalization layer would compute with its variables.
    with budget.deferred_variables() as created:
        dry = Assembler(spec, task, None)
        outputs = STACKING_MODES[spec.mode](dry, dry.input) if dry.check_names() else None
        estimated = (keras.Model(dry.input, outputs, name="budget_estimate")
                     if outputs is not None and not dry.problems else None)
    over = budget.refusals(budget.estimate(created, estimated, dry.models, spec.train.batch_size))
    if over:
        # Reported from the dry pass: its member tables hold shapes and counts, and reading
        # a weight of its models would allocate it; `build` raises with these problems.
        dry.problems.extend(over)
        return None, dry, task
    del dry, estimated, outputs, created  # freed before the real build, with what a loaded member read
    assembler = Assembler(spec, task, sample)
    model = None
    if assembler.check_names():
        assembler.check_adapter_placement()
        outputs = STACKING_MODES[spec.mode](assembler, assembler.input)
        if outputs is not None and not assembler.problems:
            model = keras.Model(assembler.input, outputs, name=_model_name(spec.name))
            try:
                apply_trainability(model, spec)
            except ValueError as error:
                assembler.problem("config", "trainability", str(error))
                model = None
    if model is not None:
        _warn_about_output(assembler, model)
    return model, assembler, task


def _model_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "stack"
    return cleaned if cleaned[0].isalpha() else f"stack_{cleaned}"


def _warn_about_output(assembler: Assembler, model: keras.Model) -> None:
    last = model.layers[-1]
    while isinstance(last, keras.Model):
        last = last.layers[-1]
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", "")
    task = assembler.task
    if task.is_classification and name == "linear":
        assembler.warnings.append(
            f"The last layer '{last.name}' has a linear activation, but the task is classification: "
            f"the loss expects probabilities. Use output activation 'auto' or '{task.output_activation}'."
        )


def build(spec: StackSpec, task: TaskInfo | None = None, sample: np.ndarray | None = None) -> keras.Model:
    """Build the stack as one trainable keras.Model, with trainability applied.

    Args:
        spec: the stack.
        task: the dataset's task (input shape, classes); loaded from `spec.dataset` if None.
        sample: training inputs for templates that adapt to data (Normalization).

    Returns:
        An uncompiled functional model whose top-level layers are the members.

    Raises:
        StackError: the stack does not build; `.problems` lists every reason with its fix.
    """
    model, assembler, _ = _assemble(spec, task, sample)
    if model is None:
        raise StackError(assembler.problems)
    return model


def check(spec: StackSpec, task: TaskInfo | None = None, sample: np.ndarray | None = None) -> StackReport:
    """The pre-flight report: shapes and parameter counts per member, and every problem.

    Never raises for a stack that does not fit; the problems are in the report.

    Example:
        >>> report = check(spec)
        >>> [p.message for p in report.problems]
        ["Cannot feed 'features' into 'classifier': 'features' outputs shape (batch, 13, 13, 32) ..."]
    """
    model, assembler, task = _assemble(spec, task, sample)
    reports = []
    head_name = spec.head.name if spec.head is not None else None
    for member in spec.all_members():
        sub = assembler.models.get(member.name)
        counts = count_params(sub) if sub is not None else None
        reports.append(MemberReport(
            name=member.name, source=member.source,
            role="head" if member.name == head_name else "member",
            input_shape=tuple(sub.input_shape[1:]) if sub is not None else None,
            output_shape=tuple(sub.output_shape[1:]) if sub is not None else None,
            total_params=counts.total if counts else 0,
            trainable_params=counts.trainable if counts else 0,
            frozen_params=counts.frozen if counts else 0,
            layers=tuple(trainability_rows(sub)) if sub is not None else (),
        ))
    totals = count_params(model) if model is not None else None
    return StackReport(
        mode=spec.mode, ok=model is not None,
        input_shape=tuple(task.input_shape),
        output_shape=tuple(model.output_shape[1:]) if model is not None else None,
        total_params=totals.total if totals else sum(report.total_params for report in reports),
        trainable_params=totals.trainable if totals else sum(report.trainable_params for report in reports),
        frozen_params=totals.frozen if totals else sum(report.frozen_params for report in reports),
        members=tuple(reports), problems=tuple(assembler.problems), warnings=tuple(assembler.warnings),
        adapters=tuple(assembler.applied), task=task.to_dict(),
    )


def member_files(spec: StackSpec) -> dict[str, Path]:
    """The model file behind each file or run member, for export next to stack.py."""
    from core.storage.uploads import resolve

    files = {}
    for member in spec.all_members():
        if member.source == "file" and member.file:
            files[member.name] = resolve(member.file)
        elif member.source == "run" and member.run_id:
            files[member.name] = run_model_path(member.run_id)
    return files


