"""build(spec) -> one keras.Model; check(spec) -> the pre-flight report, without training.

A stack is one functional model whose top-level layers are the members (each a nested
`keras.Model` named after the member), the adapters between them and the layers that
combine them. One builder per mode, in `STACKING_MODES`:

- sequential: members chained A -> B -> ... (the head, if any, last);
- fusion: every member reads the input; their features (and optionally the flattened raw
  input) are concatenated and fed to the head;
- transfer: like sequential, with the members frozen (`freeze_base`) under a new head;
- ensemble: every member reads the input and predicts; predictions are averaged, or
  concatenated into a trainable meta-head.

Shapes are checked before anything trains. A mismatch becomes a `Problem` naming both
members, the shape received and the shape expected, with the adapters that were checked
to fix it (`core.build.adapters.choose_fix`); `auto_adapters` inserts them. An accepted adapter
that no longer applies is a problem of its own ("adapter", with its index in
`spec.adapters`). `build` raises `StackError` listing every problem.

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

from core.build import adapters as adapter_lib
from core.build import budget
from core.build.adapters import Need
from core.storage.paths import run_model_path
from core.spec import AdapterSpec, MemberSpec, StackSpec
from core.build.report import MemberReport, Problem, StackError, StackReport  # noqa: F401  (re-exported)
from core.spec.tasks import TaskInfo
from core.build.templates import TEMPLATES
from core.spec.shapes import format_shape
from core.build.trainability import apply_trainability, count_params, layer_table

MEMBER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")
RESERVED_NAMES = (
    "input", "output", "fusion", "ensemble",
    "fusion_concat", "raw_input_flatten", "ensemble_average", "ensemble_concat",
)
# Consumers that are steps of the stack rather than members, as messages name them.
STEP_LABELS = {"output": "the output", "fusion": "the fusion", "ensemble": "the ensemble"}
# Rows of training data passed to templates that adapt to data (Normalization).
ADAPT_SAMPLE_ROWS = 2000


def _shape(tensor) -> tuple:
    return tuple(tensor.shape[1:])


class _Assembler:
    """Wires members into one functional graph, collecting problems instead of stopping."""

    def __init__(self, spec: StackSpec, task: TaskInfo, sample: np.ndarray | None):
        self.spec = spec
        self.task = task
        self.sample = sample
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.applied: list[AdapterSpec] = []
        self.models: dict[str, keras.Model] = {}
        self.unused_adapters = list(spec.adapters)
        self.layer_names: set[str] = set()
        # Template members built without a sample, by (name, input shape): checking a fix
        # builds its consumer, and the stack then uses that same model.
        self.built: dict[tuple[str, tuple], keras.Model] = {}
        self.input = keras.Input(shape=task.input_shape, name="input")

    # -- members ---------------------------------------------------------------------------

    def need_of(self, member: MemberSpec) -> tuple[Need | None, keras.Model | None]:
        """What `member` accepts. File and run members are loaded here (their input is fixed)."""
        if member.source == "template":
            template = TEMPLATES.get(member.template or "")
            if template is None:
                self.problem("config", member.name, f"Member '{member.name}' uses template "
                             f"'{member.template}', which does not exist. Templates: {sorted(TEMPLATES)}.")
                return None, None
            try:
                params = template.resolve_params(member.params, where=member.name)
            except ValueError as error:
                self.problem("config", member.name, str(error))
                return None, None
            check = template.check_input
            return Need(
                description=" or ".join(f"rank {r}" for r in template.input_ranks),
                ranks=template.input_ranks,
                extra=(lambda shape: check(shape, params)) if check is not None else None,
                build=lambda shape: self.build_template(member, shape),
            ), None
        model = self.load(member)
        if model is None:
            return None, None
        return Need.fixed(tuple(model.input_shape[1:]), build=lambda shape: model), model

    def build_template(self, member: MemberSpec, shape: tuple, sample: np.ndarray | None = None) -> keras.Model:
        """Build template member `member` for inputs of `shape`, reusing a build without sample.

        Raises:
            ValueError: the template does not build on this shape.
        """
        key = (member.name, tuple(shape))
        if sample is None and key in self.built:
            return self.built[key]
        model = TEMPLATES[member.template].build(member.name, tuple(shape), self.task, member.params, sample=sample)
        if sample is None:
            self.built[key] = model
        return model

    def load(self, member: MemberSpec) -> keras.Model | None:
        from core.model_files import loading  # imported here: loading pulls in the child-process machinery

        try:
            if member.source == "file":
                if not member.file:
                    raise ValueError(f"Member '{member.name}' has source 'file' but no file. Upload a .keras or .h5 file.")
                model = loading.load_model_file(member.file)
            else:
                model = loading.load_model_file(str(_run_model(member)))
            if member.cut_at:
                model = loading.cut_model(model, member.cut_at, name=member.name)
        except (ValueError, OSError) as error:
            self.problem("source", member.name, f"Member '{member.name}': {error}")
            return None
        if len(model.inputs) != 1 or len(model.outputs) != 1:
            self.problem("source", member.name, f"Member '{member.name}' has {len(model.inputs)} inputs and "
                         f"{len(model.outputs)} outputs; a stack member takes one input and gives one output. "
                         f"Cut it at one layer (cut_at), or export a single-input model.")
            return None
        # A fresh functional wrapper gives the member its name in the stack.
        return keras.Model(model.inputs[0], model.outputs[0], name=member.name)

    def call_member(self, member: MemberSpec, tensor, producer: str):
        """Fit `tensor` to `member`'s input (adapters), build the member and call it."""
        need, loaded = self.need_of(member)
        if need is None:
            return None
        tensor = self.fit(tensor, producer, member.name, need)
        if tensor is None:
            return None
        if loaded is not None:
            model = loaded
        else:
            sample = self.sample if producer == "input" and tensor is self.input else None
            try:
                model = self.build_template(member, _shape(tensor), sample)
            except ValueError as error:
                self.problem("config", member.name, str(error))
                return None
        self.models[member.name] = model
        return model(tensor)

    # -- adapters --------------------------------------------------------------------------

    def fit(self, tensor, producer: str, consumer: str, need: Need):
        """Apply the spec's adapters between `producer` and `consumer`, then check `need`.

        An accepted adapter that does not apply (or no longer gives what the consumer takes)
        becomes an "adapter" problem. A mismatch with no accepted adapter gets the first fix
        that was checked to work: inserted with auto_adapters, otherwise a problem carrying it.
        """
        received = _shape(tensor)
        source, target = _node_label(producer), _node_label(consumer)
        accepted = [(index, adapter) for index, adapter in enumerate(self.spec.adapters)
                    if adapter.after == producer and adapter.before in ("", consumer)]
        for index, adapter in accepted:
            if adapter in self.unused_adapters:
                self.unused_adapters.remove(adapter)
            tensor = self.apply_adapter(tensor, adapter, index=index, consumer=consumer)
            if tensor is None:
                return None
        reason = need.problem(_shape(tensor))
        if reason is None:
            self.warn_if_long(_shape(tensor), need, producer, consumer, received, accepted)
            return tensor
        if accepted:
            adapted = adapter_lib.labels(a for _, a in accepted)
            for index, _ in accepted:
                self.adapter_problem(index, consumer, received,
                                     f"{source} outputs {format_shape(received)}, which {adapted} turns into "
                                     f"{format_shape(_shape(tensor))}, but {target} {reason}")
            return None
        choice = adapter_lib.choose_fix(received, need, producer, consumer, target, self.flattened_origin(producer))
        if choice.warning:
            self.warnings.append(choice.warning)
        if choice.fix and self.spec.auto_adapters:
            for adapter in choice.fix:
                tensor = self.apply_adapter(tensor, adapter)
            return tensor
        if choice.fix:
            remedy = f" Add {adapter_lib.labels(choice.fix)} between {source} and {target}, or turn on auto adapters."
            remedy += "".join(f" {clause[0].upper()}{clause[1:]}." for clause in (choice.note, choice.instead) if clause)
            remedy += f" Warning: {choice.warning}" if choice.warning else ""
        else:
            why = f": {choice.reason}." if choice.reason else " this."
            remedy = f" No adapter fits{why} {self.alternatives(consumer, received)}"
        self.problem(
            "shape", consumer,
            f"Cannot feed {source} into {target}: {source} outputs shape {format_shape(received)} "
            f"but {target} {reason}.{remedy}",
            received=received, expected=need.description, fix=choice.fix, fix_warning=choice.warning,
        )
        # Carry on as if fixed, so the rest of the stack is still checked and reported.
        for adapter in choice.fix:
            tensor = self.apply_adapter(tensor, adapter, record=False)
        return tensor if choice.fix else None

    def flattened_origin(self, producer: str) -> tuple | None:
        """The shape member `producer` flattens into its output, so a fix can restore it."""
        model = self.models.get(producer)
        return adapter_lib.flattened_from(model) if model is not None else None

    def alternatives(self, consumer: str, received: tuple) -> str:
        """What to do when no adapter fits: templates that take `received` as it is."""
        member = next((m for m in self.spec.all_members() if m.name == consumer), None)
        template = TEMPLATES.get(member.template or "") if member is not None else None
        if template is None:
            return "Choose another member or template parameters."
        fitting = sorted((t for t in TEMPLATES.values() if t.input_problem(received) is None),
                         key=lambda t: t.output != template.output)
        if not fitting:
            return f"Choose another member, or other parameters for '{consumer}'."
        names = ", ".join(f"'{t.name}'" for t in fitting[:4])
        return (f"Choose a template that takes {format_shape(received)} as it is, such as {names}, "
                f"or other parameters for '{consumer}'.")

    def warn_if_long(self, shape: tuple, need: Need, producer: str, consumer: str, received: tuple,
                     accepted: list[tuple[int, AdapterSpec]]) -> None:
        """Warn when a recurrent consumer reads a long sequence, naming a shorter fix if one fits."""
        if not adapter_lib.is_long_sequence(shape) or need.build is None:
            return
        try:
            model = need.build(shape)
        except ValueError:
            return  # call_member reports why the member does not build
        if not adapter_lib.is_recurrent(model):
            return
        target = _node_label(consumer)
        cheaper = adapter_lib.SHORTER_SEQUENCE_ADVICE
        if accepted:
            choice = adapter_lib.choose_fix(received, need, producer, consumer, target,
                                            self.flattened_origin(producer))
            if choice.fix and not choice.warning:
                note = f" ({choice.note})" if choice.note else ""
                cheaper = (f"Cheaper: remove {adapter_lib.labels(a for _, a in accepted)} and add "
                           f"{adapter_lib.labels(choice.fix)} instead{note}.")
        self.warnings.append(adapter_lib.long_sequence_warning(target, shape, cheaper))

    def apply_adapter(self, tensor, adapter: AdapterSpec, record: bool = True, index: int | None = None,
                      consumer: str = ""):
        """Apply one adapter; `index` marks an accepted one (spec.adapters[index]) for its problem."""
        base = f"adapter_{adapter.after}_{adapter.kind}"
        name, number = base, 2
        while name in self.layer_names:
            name, number = f"{base}_{number}", number + 1
        try:
            layer = adapter_lib.make_layer(adapter, _shape(tensor), name)
            result = layer(tensor)
        except ValueError as error:
            if index is None:
                self.problem("config", adapter.after, str(error))
            else:
                reason = adapter_lib.mismatch(adapter, _shape(tensor))
                self.adapter_problem(index, consumer, _shape(tensor),
                                     f"it {reason}" if reason else f"Keras refuses it: {error}")
            return None
        self.layer_names.add(name)
        if record:
            self.applied.append(adapter)
        return result

    def adapter_problem(self, index: int, consumer: str, received: tuple, why: str) -> None:
        """An accepted adapter (spec.adapters[index]) that no longer fits: the remedy is removing it."""
        adapter = self.spec.adapters[index]
        self.problem(
            "adapter", consumer,
            f"The accepted adapter {adapter.label()} between {_node_label(adapter.after)} and "
            f"{_node_label(consumer)} no longer fits: {why}. Remove it; the check then offers a fix "
            f"for {format_shape(received)} if one fits.",
            received=received, adapter_index=index,
        )

    def problem(self, kind: str, member: str, message: str, **details) -> None:
        self.problems.append(Problem(kind=kind, member=member, message=message, **details))

    # -- the whole stack -------------------------------------------------------------------

    def output_need(self) -> Need:
        return Need.fixed((self.task.output_units,), dense_activation=self.task.output_activation)

    def finish(self, tensor, producer: str):
        """Check the stack's output against the dataset's task."""
        if tensor is None:
            return None
        return self.fit(tensor, producer, "output", self.output_need())

    def require_head(self) -> MemberSpec | None:
        if self.spec.head is None:
            self.problem("config", "head", f"Mode '{self.spec.mode}' needs a head on top of the members. "
                         f"Add one, e.g. the 'dense_head' template.")
        return self.spec.head

    def check_names(self) -> bool:
        names = [m.name for m in self.spec.all_members()]
        for name in names:
            if not MEMBER_NAME.match(name):
                self.problem("config", name, f"Member name '{name}' is not allowed: use letters, digits "
                             f"and '_', starting with a letter (at most 64 characters).")
            elif name in RESERVED_NAMES:
                self.problem("config", name, f"Member name '{name}' is reserved; choose another name.")
            elif names.count(name) > 1:
                self.problem("config", name, f"Two members are named '{name}'; member names must be unique.")
        for index, adapter in enumerate(self.spec.adapters):
            if adapter.after not in names and adapter.after != "input":
                self.problem("adapter", adapter.after, f"The accepted adapter {adapter.label()} is placed after "
                             f"'{adapter.after}', which is not a member. Members: {names} (or 'input'). "
                             f"Remove it.", adapter_index=index)
        return not self.problems


def _node_label(name: str) -> str:
    """A node as messages name it: "the input", "the output", or the member's quoted name."""
    return "the input" if name == "input" else STEP_LABELS.get(name, f"'{name}'")


def _run_model(member: MemberSpec) -> Path:
    path = run_model_path(member.run_id or "")
    if not path.exists():
        raise ValueError(
            f"run '{member.run_id}' has no trained model ({path} is missing): only finished or "
            f"stopped runs can be used as members. Pick another run, or wait for this one to finish."
        )
    return path


def _sequential(a: _Assembler, inputs):
    spec = a.spec
    chain = list(spec.members) + ([spec.head] if spec.head is not None else [])
    if len(chain) < 2:
        a.problem("config", "members", f"Mode 'sequential' chains two or more members; this stack has "
                  f"{len(chain)}. Add a member (e.g. a 'dense_head' after a feature extractor).")
        return None
    return _chain(a, inputs, chain)


def _chain(a: _Assembler, inputs, chain: list[MemberSpec]):
    tensor, producer = inputs, "input"
    for member in chain:
        tensor = a.call_member(member, tensor, producer)
        if tensor is None:
            return None
        producer = member.name
    return a.finish(tensor, producer)


def _transfer(a: _Assembler, inputs):
    head = a.require_head()
    if not a.spec.members:
        a.problem("config", "members", "Mode 'transfer' needs a pretrained member (an uploaded model file "
                  "or an earlier run) under the head.")
    if head is None or not a.spec.members:
        return None
    for member in a.spec.members:
        if member.source == "template" and a.spec.option("freeze_base"):
            a.warnings.append(
                f"Member '{member.name}' is a new '{member.template}' template with random weights; frozen, "
                f"it never learns. Use an uploaded model or an earlier run as the base, or set freeze_base off."
            )
    return _chain(a, inputs, list(a.spec.members) + [head])


def _parallel_members(a: _Assembler, inputs, need_for_output: Callable[[MemberSpec], Need]):
    """Call every member on the input; fit each output to `need_for_output(member)`."""
    outputs = []
    for member in a.spec.members:
        tensor = a.call_member(member, inputs, "input")
        if tensor is not None:
            tensor = a.fit(tensor, member.name, "fusion", need_for_output(member))
        outputs.append(tensor)
    return outputs


def _fusion(a: _Assembler, inputs):
    head = a.require_head()
    if not a.spec.members:
        a.problem("config", "members", "Mode 'fusion' needs at least one member whose features are fused.")
        return None
    features = _parallel_members(a, inputs, lambda m: Need(description="a feature vector", ranks=(1,)))
    if a.spec.option("include_raw_input"):
        features.append(keras.layers.Flatten(name="raw_input_flatten")(inputs))
    if head is None or any(f is None for f in features):
        return None
    if len(features) < 2:
        a.problem("config", "members", "Fusion concatenates two or more feature vectors: add a member, or "
                  "turn on include_raw_input to fuse a member's features with the raw input.")
        return None
    fused = keras.layers.Concatenate(name="fusion_concat")(features)
    tensor = a.call_member(head, fused, "fusion_concat")
    return a.finish(tensor, head.name)


def _ensemble(a: _Assembler, inputs):
    spec = a.spec
    combine = spec.option("combine")
    if len(spec.members) < 2:
        a.problem("config", "members", f"Mode 'ensemble' combines two or more complete models; this stack has "
                  f"{len(spec.members)}. Add members such as 'cnn_classifier' or 'mlp_classifier'.")
        return None
    head = a.require_head() if combine == "meta_head" else None
    predictions_need = a.output_need()
    outputs = []
    for member in spec.members:
        template = TEMPLATES.get(member.template or "")
        if member.source == "template" and template is not None and template.output != "predictions":
            a.warnings.append(
                f"Member '{member.name}' ('{member.template}') is an encoder: its outputs are features, "
                f"not predictions. Ensembles average complete models such as 'cnn_classifier' or "
                f"'mlp_classifier'; otherwise a Dense({a.task.output_units}, {a.task.output_activation}) "
                f"adapter turns its features into predictions."
            )
        tensor = a.call_member(member, inputs, "input")
        if tensor is not None:
            tensor = a.fit(tensor, member.name, "ensemble", predictions_need)
        outputs.append(tensor)
    if any(o is None for o in outputs):
        return None
    if combine == "average":
        return keras.layers.Average(name="ensemble_average")(outputs)
    if head is None:
        return None
    stacked = keras.layers.Concatenate(name="ensemble_concat")(outputs)
    tensor = a.call_member(head, stacked, "ensemble_concat")
    return a.finish(tensor, head.name)


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
    task, sample = resolve_task(spec, task, sample)
    # Shapes before weights: the stack is wired once with its variables deferred (nothing
    # allocated), and built for real only if it fits the budget (core.build.budget). That pass
    # gets no sample: adapting a Normalization layer would compute with its variables.
    with budget.deferred_variables() as created:
        dry = _Assembler(spec, task, None)
        outputs = STACKING_MODES[spec.mode](dry, dry.input) if dry.check_names() else None
        wired = (keras.Model(dry.input, outputs, name="budget_estimate")
                 if outputs is not None and not dry.problems else None)
    over = budget.refusals(budget.estimate(created, wired, dry.models, spec.train.batch_size))
    if over:
        # Reported from the dry pass: its member tables hold shapes and counts, and reading
        # a weight of its models would allocate it; `build` raises with these problems.
        dry.problems.extend(over)
        return None, dry, task
    del dry, wired, outputs, created  # freed before the real build, with what a loaded member read
    a = _Assembler(spec, task, sample)
    model = None
    if a.check_names():
        outputs = STACKING_MODES[spec.mode](a, a.input)
        for leftover in a.unused_adapters if outputs is not None else ():
            a.problem("adapter", leftover.after, f"The adapter {leftover.label()} after "
                      f"'{leftover.after}' is never used: '{leftover.after}' does not feed "
                      f"{leftover.before or 'anything'} in mode '{spec.mode}'. Remove it.",
                      adapter_index=spec.adapters.index(leftover))
        if outputs is not None and not a.problems:
            model = keras.Model(a.input, outputs, name=_model_name(spec.name))
            try:
                apply_trainability(model, spec)
            except ValueError as error:
                a.problem("config", "trainability", str(error))
                model = None
    if model is not None:
        _warn_about_output(a, model)
    return model, a, task


def _model_name(name: str) -> str:
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", name).strip("_") or "stack"
    return cleaned if cleaned[0].isalpha() else f"stack_{cleaned}"


def _warn_about_output(a: _Assembler, model: keras.Model) -> None:
    last = model.layers[-1]
    while isinstance(last, keras.Model):
        last = last.layers[-1]
    activation = getattr(last, "activation", None)
    name = getattr(activation, "__name__", "")
    if a.task.is_classification and name == "linear":
        a.warnings.append(
            f"The last layer '{last.name}' has a linear activation, but the task is classification: "
            f"the loss expects probabilities. Use output activation 'auto' or '{a.task.output_activation}'."
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
    model, a, _ = _assemble(spec, task, sample)
    if model is None:
        raise StackError(a.problems)
    return model


def check(spec: StackSpec, task: TaskInfo | None = None, sample: np.ndarray | None = None) -> StackReport:
    """The pre-flight report: shapes and parameter counts per member, and every problem.

    Never raises for a stack that does not fit; the problems are in the report.

    Example:
        >>> report = check(spec)
        >>> [p.message for p in report.problems]
        ["Cannot feed 'features' into 'classifier': 'features' outputs shape (batch, 13, 13, 32) ..."]
    """
    model, a, task = _assemble(spec, task, sample)
    reports = []
    head_name = spec.head.name if spec.head is not None else None
    for member in spec.all_members():
        sub = a.models.get(member.name)
        counts = count_params(sub) if sub is not None else None
        reports.append(MemberReport(
            name=member.name, source=member.source,
            role="head" if member.name == head_name else "member",
            input_shape=tuple(sub.input_shape[1:]) if sub is not None else None,
            output_shape=tuple(sub.output_shape[1:]) if sub is not None else None,
            total_params=counts.total if counts else 0,
            trainable_params=counts.trainable if counts else 0,
            frozen_params=counts.frozen if counts else 0,
            layers=tuple(layer_table(sub)) if sub is not None else (),
        ))
    totals = count_params(model) if model is not None else None
    return StackReport(
        mode=spec.mode, ok=model is not None,
        input_shape=tuple(task.input_shape),
        output_shape=tuple(model.output_shape[1:]) if model is not None else None,
        total_params=totals.total if totals else sum(r.total_params for r in reports),
        trainable_params=totals.trainable if totals else sum(r.trainable_params for r in reports),
        frozen_params=totals.frozen if totals else sum(r.frozen_params for r in reports),
        members=tuple(reports), problems=tuple(a.problems), warnings=tuple(a.warnings),
        adapters=tuple(a.applied), task=task.to_dict(),
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


def with_fix(spec: StackSpec, problem: Problem) -> StackSpec:
    """The spec with a problem's suggested adapters accepted (the dashboard's "apply fix")."""
    return spec.replace(adapters=spec.adapters + tuple(problem.fix))
