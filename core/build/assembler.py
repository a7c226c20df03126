"""The Assembler: wires a stack's members into one functional graph, collecting problems.

A mode builder (`core.build.stacking.STACKING_MODES`) calls members through the assembler
and adapts each tensor to its consumer on the edges that `core.spec.rules.stack_edges` says
the mode wires. On each edge the assembler applies the adapters the spec accepted there,
checks what the consumer accepts, and otherwise finds a fix (`core.build.adapters.choose_fix`):
inserted with auto_adapters, else a `Problem` that carries it. Nothing stops at the first
problem, so the pre-flight report lists them all.

Example:
    >>> assembler = Assembler(spec, task, sample=None)
    >>> if assembler.check_names():
    ...     tensor = assembler.call_member(spec.members[0], assembler.input, "input")
    ...     tensor = assembler.adapt_to_output(tensor, spec.members[0].name)
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from core.build import adapters as adapter_lib
from core.build.adapters import Need
from core.build.report import Problem
from core.build.templates import TEMPLATES
from core.spec import AdapterSpec, MemberSpec, StackSpec, rules
from core.spec.shapes import format_shape
from core.spec.tasks import TaskInfo
from core.storage.paths import run_model_path


def _shape(tensor) -> tuple:
    return tuple(tensor.shape[1:])


class Assembler:
    """Wires members into one functional graph, collecting problems instead of stopping.

    Attributes:
        problems, warnings: what the pre-flight report lists.
        applied: every adapter in the graph, accepted or inserted by auto_adapters.
        models: the member models built so far, by member name.
        wired: the (producer, consumer) edges adapted so far, in order.
        input: the stack's `keras.Input`.
    """

    def __init__(self, spec: StackSpec, task: TaskInfo, sample: np.ndarray | None):
        self.spec = spec
        self.task = task
        self.sample = sample
        self.problems: list[Problem] = []
        self.warnings: list[str] = []
        self.applied: list[AdapterSpec] = []
        self.models: dict[str, keras.Model] = {}
        self.wired: list[tuple[str, str]] = []
        self.layer_names: set[str] = set()
        # Template members built without a sample, by (name, input shape): checking a fix
        # builds its consumer, and the stack then uses that same model.
        self.built: dict[tuple[str, tuple], keras.Model] = {}
        self.input = keras.Input(shape=task.input_shape, name=rules.INPUT)

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
                description=" or ".join(f"rank {rank}" for rank in template.input_ranks),
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
        """Load file or run member `member`, cut as the spec says; None (and a problem) when it cannot be."""
        from core.model_files import loading  # imported here: loading pulls in the child-process machinery

        try:
            if member.source == "file":
                if not member.file:
                    raise ValueError(f"Member '{member.name}' has source 'file' but no file. "
                                     f"Upload a .keras or .h5 file.")
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
        """Adapt `tensor` to `member`'s input, build the member and call it; None on a problem."""
        need, loaded = self.need_of(member)
        if need is None:
            return None
        tensor = self.adapt(tensor, producer, member.name, need)
        if tensor is None:
            return None
        if loaded is not None:
            model = loaded
        else:
            sample = self.sample if producer == rules.INPUT and tensor is self.input else None
            try:
                model = self.build_template(member, _shape(tensor), sample)
            except ValueError as error:
                self.problem("config", member.name, str(error))
                return None
        self.models[member.name] = model
        return model(tensor)

    # -- adapters --------------------------------------------------------------------------

    def adapt(self, tensor, producer: str, consumer: str, need: Need):
        """Adapt `tensor` on the edge `producer` -> `consumer`: the spec's adapters there, then `need`.

        An accepted adapter that does not apply (or no longer gives what the consumer takes)
        becomes an "adapter" problem. A mismatch with no accepted adapter gets the first fix
        that was checked to work: inserted with auto_adapters, otherwise a problem carrying it.

        Returns:
            The adapted tensor, or None when the edge cannot be adapted (a problem says why).
        """
        self.wired.append((producer, consumer))
        received = _shape(tensor)
        source, target = rules.node_label(producer), rules.node_label(consumer)
        accepted = [(index, adapter) for index, adapter in enumerate(self.spec.adapters)
                    if rules.on_edge(adapter, (producer, consumer))]
        for index, adapter in accepted:
            tensor = self.apply_adapter(tensor, adapter, index=index, consumer=consumer)
            if tensor is None:
                return None
        reason = need.problem(_shape(tensor))
        if reason is None:
            self.warn_if_long(_shape(tensor), need, producer, consumer, received, accepted)
            return tensor
        if accepted:
            adapted = adapter_lib.labels(adapter for _, adapter in accepted)
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
            clauses = (clause for clause in (choice.note, choice.instead) if clause)
            remedy += "".join(f" {clause[0].upper()}{clause[1:]}." for clause in clauses)
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
        member = next((candidate for candidate in self.spec.all_members() if candidate.name == consumer), None)
        template = TEMPLATES.get(member.template or "") if member is not None else None
        if template is None:
            return "Choose another member or template parameters."
        # Templates that give what the consumer's template gives (features, predictions) first.
        fitting = sorted((other for other in TEMPLATES.values() if other.input_problem(received) is None),
                         key=lambda other: other.output != template.output)
        if not fitting:
            return f"Choose another member, or other parameters for '{consumer}'."
        names = ", ".join(f"'{other.name}'" for other in fitting[:4])
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
        target = rules.node_label(consumer)
        cheaper = adapter_lib.SHORTER_SEQUENCE_ADVICE
        if accepted:
            choice = adapter_lib.choose_fix(received, need, producer, consumer, target,
                                            self.flattened_origin(producer))
            if choice.fix and not choice.warning:
                note = f" ({choice.note})" if choice.note else ""
                cheaper = (f"Cheaper: remove {adapter_lib.labels(adapter for _, adapter in accepted)} and add "
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
            f"The accepted adapter {adapter.label()} between {rules.node_label(adapter.after)} and "
            f"{rules.node_label(consumer)} no longer fits: {why}. Remove it; the check then offers a fix "
            f"for {format_shape(received)} if one fits.",
            received=received, adapter_index=index,
        )

    def problem(self, kind: str, member: str, message: str, **details) -> None:
        """Record a problem; `member` is the member or step it is at."""
        self.problems.append(Problem(kind=kind, member=member, message=message, **details))

    # -- the whole stack -------------------------------------------------------------------

    def output_need(self) -> Need:
        """What the stack's output must be: the dataset task's units and activation."""
        return Need.fixed((self.task.output_units,), dense_activation=self.task.output_activation)

    def adapt_to_output(self, tensor, producer: str):
        """Adapt the stack's last tensor to the dataset's task (the edge `producer` -> output)."""
        if tensor is None:
            return None
        return self.adapt(tensor, producer, rules.OUTPUT, self.output_need())

    def head(self) -> MemberSpec | None:
        """The spec's head if its mode uses one (`rules.allows_head`); a problem when the mode
        needs one (`rules.needs_head`) and there is none."""
        spec = self.spec
        if not rules.allows_head(spec.mode, spec.options):
            return None
        if spec.head is None and rules.needs_head(spec.mode, spec.options):
            self.problem("config", "head", f"Mode '{spec.mode}' needs a head on top of the members. "
                         f"Add one, e.g. the 'dense_head' template.")
        return spec.head

    def check_names(self) -> bool:
        """Record a problem for each member name the stack cannot use; True when there is none
        (member names become layer names, so the stack is wired only then)."""
        names = [member.name for member in self.spec.all_members()]
        for index, name in enumerate(names):
            reason = rules.member_name_problem(name, names[:index] + names[index + 1:])
            if reason:
                self.problem("config", name, reason)
        return not self.problems

    def check_adapter_placement(self) -> None:
        """Record a problem for each accepted adapter that sits on no edge of the stack (it
        would never be applied; the rest of the stack is still checked)."""
        for index, adapter in enumerate(self.spec.adapters):
            reason = rules.adapter_placement_problem(self.spec, adapter)
            if reason:
                self.problem("adapter", adapter.after, reason, adapter_index=index)



def _run_model(member: MemberSpec) -> Path:
    """The model file of run member `member`'s run."""
    path = run_model_path(member.run_id or "")
    if not path.exists():
        raise ValueError(
            f"run '{member.run_id}' has no trained model ({path} is missing): only finished or "
            f"stopped runs can be used as members. Pick another run, or wait for this one to finish."
        )
    return path


