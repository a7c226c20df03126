"""build(spec) -> one keras.Model; check(spec) -> the pre-flight report, without training.

A stack is one functional model whose top-level layers are the members (each a nested
`keras.Model` named after the member), the adapters between them and the layers that
combine them. Every stack is a graph (`core.spec.presets.graph_of`), and one builder wires
graphs (`core.build.wiring.wire`); the four modes are presets that produce graphs:

- sequential: members chained A -> B -> ... (the head, if any, last);
- fusion: every member reads the input; their features (and optionally the flattened raw
  input) are concatenated and fed to the head;
- transfer: like sequential, with the members frozen (`freeze_base`) under a new head;
- ensemble: every member reads the input and predicts; predictions are averaged, or
  concatenated into a trainable meta-head;
- graph: the spec's own nodes and edges (branches, two towers, residual adds).

Shapes are checked before anything trains, edge by edge (`core.build.assembler.Assembler`).
A mismatch becomes a `Problem` naming both nodes, the shape received and the shape
expected, with the adapters that were checked to fix it (`core.build.adapters.choose_fix`);
`auto_adapters` inserts them. An accepted adapter that no longer applies is a problem of
its own ("adapter", with its index in `spec.adapters`); a graph that is not a stack (a
cycle, a dangling input, ...) is a "graph" problem naming its nodes. `build` raises
`StackError` listing every problem.

Example:
    >>> report = check(spec)
    >>> report.ok, report.total_params
    (True, 693962)
    >>> model = build(spec)
"""

from __future__ import annotations

import re
from pathlib import Path

import keras
import numpy as np

from core.build import budget
from core.build.assembler import Assembler
from core.build.report import EdgeReport, MemberReport, Problem, StackError, StackReport  # noqa: F401  (re-exported)
from core.build.templates import TEMPLATES
from core.build.trainability import apply_trainability, count_params, trainability_rows
from core.build.wiring import wire
from core.spec import GRAPH_MODE, STACKING_MODES, StackSpec  # noqa: F401  (STACKING_MODES re-exported)
from core.spec.tasks import TaskInfo
from core.storage.paths import run_stack_path

# Rows of training data passed to templates that adapt to data (Normalization).
ADAPT_SAMPLE_ROWS = 2000


def _wire_stack(assembler: Assembler):
    """The stack's problems before wiring (an unfinished preset, a graph that is not a stack,
    names), then the graph wired; the output tensor or None."""
    for where, message in assembler.stack.problems:
        assembler.problem("config", where, message)
    if not assembler.check_names():
        return None
    # A finished preset always makes a graph that is a stack; a drawn graph is checked here.
    if not assembler.stack.problems:
        for found in assembler.graph.problems():
            assembler.problem("graph", found.nodes[0] if found.nodes else "graph", found.message,
                              edge=found.edge, nodes=found.nodes)
    assembler.check_adapter_placement()
    _warn_about_members(assembler)
    return wire(assembler)


def _warn_about_members(assembler: Assembler) -> None:
    """What a preset's members suggest about the stack: a frozen base with random weights, an
    ensemble of encoders (a graph: any frozen template member)."""
    spec, task = assembler.spec, assembler.task
    if spec.mode == "transfer" and spec.option("freeze_base") and not assembler.stack.problems:
        for member in spec.members:
            if member.source == "template":
                assembler.warnings.append(
                    f"Member '{member.name}' is a new '{member.template}' template with random weights; frozen, "
                    f"it never learns. Use an uploaded model or an earlier run as the base, or set freeze_base off."
                )
    if spec.mode == GRAPH_MODE:
        for member in spec.all_members():
            if member.source == "template" and not member.trainable:
                assembler.warnings.append(
                    f"Member '{member.name}' is a new '{member.template}' template with random weights; frozen, "
                    f"it never learns. Use an uploaded model or an earlier run there, or make it trainable."
                )
    if spec.mode == "ensemble" and len(spec.members) >= 2:
        for member in spec.members:
            template = TEMPLATES.get(member.template or "")
            if member.source == "template" and template is not None and template.output != "predictions":
                assembler.warnings.append(
                    f"Member '{member.name}' ('{member.template}') is an encoder: its outputs are features, "
                    f"not predictions. Ensembles average complete models such as 'cnn_classifier' or "
                    f"'mlp_classifier'; otherwise a Dense({task.output_units}, {task.output_activation}) "
                    f"adapter turns its features into predictions."
                )


def resolve_task(spec: StackSpec, task: TaskInfo | None, sample: np.ndarray | None):
    """The task (and an adaptation sample) from the arguments, or from the spec's prepared data.

    The stack's input shape is that of the ENCODED samples (a CSV's one-hot widths come from
    its training split), so the spec's dataset goes through `core.build.preprocessing.prepare` (cached).
    """
    if task is not None:
        return task, sample
    from core.build.preprocessing import prepare

    prepared = prepare(spec.dataset, spec.train)
    return prepared.task, prepared.split.x_train[:ADAPT_SAMPLE_ROWS]


def _assemble(spec: StackSpec, task: TaskInfo | None, sample: np.ndarray | None):
    """Wire the stack twice: a dry pass for the budget, then the real one; (model or None, assembler, task)."""
    task, sample = resolve_task(spec, task, sample)
    # Shapes before weights: the stack is wired once with its variables deferred (nothing
    # allocated), and built for real only if it fits the budget (core.build.budget). That pass
    # gets no sample: adapting a Normalization layer would compute with its variables.
    with budget.deferred_variables() as created:
        dry = Assembler(spec, task, None)
        outputs = _wire_stack(dry)
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
    outputs = _wire_stack(assembler)
    if outputs is not None:
        if not assembler.problems:
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
    if spec.mode == GRAPH_MODE:  # a graph's head: a member that feeds the output
        head_name = next((source for source in assembler.graph.inputs_of("output")
                          if any(member.name == source for member in spec.all_members())), None)
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
        edges=tuple(assembler.edge_reports[index] for index in sorted(assembler.edge_reports)),
        node_shapes={node_id: tuple(tensor.shape[1:]) for node_id, tensor in assembler.outputs.items()
                     if tensor is not None},
    )


def member_files(spec: StackSpec) -> dict[str, Path]:
    """The model file behind each file or run member, for export next to stack.py."""
    from core.storage.uploads import resolve

    files = {}
    for member in spec.all_members():
        if member.source == "file" and member.file:
            files[member.name] = resolve(member.file)
        elif member.source == "run" and member.run_id:
            files[member.name] = run_stack_path(member.run_id)
    return files


