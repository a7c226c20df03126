"""The Assembler: wires the graph of a stack into one functional model, collecting problems.

`core.build.wiring.wire` walks the graph (`core.spec.presets.stack_graph`) from the input,
and for every edge into a node asks the assembler to adapt the tensor on it to what the
node accepts (`adapt`). On each edge the assembler checks what the consumer accepts (after
the adapters a preset spec accepted there), and otherwise finds a fix
(`core.build.adapters.choose_fix`): inserted with auto_adapters, else a `Problem` that
carries it, and an `EdgeReport` for the edge either way. Nothing stops at the first
problem, so the pre-flight report lists them all.

Nodes are named in messages and adapters as the preset names them (`StackGraph.name`:
"fusion_concat" is "the fusion"); a graph spec's nodes by their ids.

Example:
    >>> assembler = Assembler(spec, task, sample=None)
    >>> if assembler.check_names():
    ...     output = wire(assembler)
"""

from __future__ import annotations

from pathlib import Path

import keras
import numpy as np

from core.build import adapters as adapter_lib
from core.build.adapters import Need
from core.build.report import EdgeReport, Problem
from core.build.templates import TEMPLATES
from core.spec import GRAPH_MODE, AdapterSpec, MemberSpec, NodeSpec, StackSpec, rules, stack_graph
from core.spec.shapes import format_shape
from core.spec.tasks import TaskInfo
from core.storage.paths import run_stack_path


def _shape(tensor) -> tuple:
    return tuple(tensor.shape[1:])


class Assembler:
    """Wires a stack's graph into one functional model, collecting problems instead of stopping.

    Attributes:
        problems, warnings: what the pre-flight report lists.
        applied: every adapter in the model, accepted or inserted by auto_adapters.
        models: the member models built so far, by member name.
        wired: the (producer, consumer) edges adapted so far, in order, named as adapters
            name them (for a preset: the edges of `core.spec.rules.stack_edges`).
        input: the stack's `keras.Input`.
        stack: the spec's `StackGraph`; graph: its `GraphSpec`.
        outputs: node id -> the tensor it produces (None: it could not be built).
        edge_reports: edge index in `graph.edges` -> its `EdgeReport`.
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
        self.stack = stack_graph(spec)
        self.graph = self.stack.graph
        self.outputs: dict[str, object] = {}
        self.edge_reports: dict[int, EdgeReport] = {}
        # Layer names taken: every node's (members, merges, adapter nodes), and each
        # adapter a fix inserts.
        self.layer_names: set[str] = set(self.graph.ids())
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

    def call_member(self, member: MemberSpec, tensor, edge_index: int):
        """Adapt `tensor` (on edge `edge_index`) to `member`'s input, build the member and call
        it; None on a problem."""
        need, loaded = self.need_of(member)
        if need is None:
            self.unchecked(edge_index, f"{rules.node_label(self.name(member.name))} does not build (see its problem).")
            return None
        tensor = self.adapt(tensor, edge_index, need)
        if tensor is None:
            return None
        if loaded is not None:
            model = loaded
        else:
            source = self.graph.edges[edge_index].source
            sample = self.sample if source == rules.INPUT and tensor is self.input else None
            try:
                model = self.build_template(member, _shape(tensor), sample)
            except ValueError as error:
                self.problem("config", member.name, str(error))
                return None
        self.models[member.name] = model
        return model(tensor)

    # -- naming --------------------------------------------------------------------------

    def name(self, node_id: str) -> str:
        """The node as adapters and messages name it (a preset's step, or the node id)."""
        return self.stack.name(node_id)

    def is_graph(self) -> bool:
        return self.spec.mode == GRAPH_MODE

    def chain(self, node_id: str) -> tuple[str, list[tuple[int, AdapterSpec]]]:
        """Walk back from `node_id` through the adapters a preset accepted: (the node that
        produced the tensor before them, those adapters in order with their indexes)."""
        accepted: list[tuple[int, AdapterSpec]] = []
        while node_id in self.stack.adapter_indexes:
            index = self.stack.adapter_indexes[node_id]
            accepted.insert(0, (index, self.spec.adapters[index]))
            node_id = self.graph.inputs_of(node_id)[0]
        return node_id, accepted

    def chain_end(self, node_id: str) -> str:
        """Walk on from an accepted adapter node to the node the adapters feed."""
        while node_id in self.stack.adapter_indexes:
            node_id = self.graph.consumers_of(node_id)[0]
        return node_id

    # -- adapters --------------------------------------------------------------------------

    def adapt(self, tensor, edge_index: int, need: Need):
        """Adapt `tensor` on edge `edge_index` of the graph to `need`, what its target accepts.

        The tensor has passed the adapters a preset accepted on this edge (adapter nodes
        before it); a result its consumer does not take is an "adapter" problem. A mismatch
        with no accepted adapter gets the first fix that was checked to work: inserted with
        auto_adapters, otherwise a problem carrying it. The edge's `EdgeReport` is recorded.

        Returns:
            The adapted tensor, or None when the edge cannot be adapted (a problem says why).
        """
        source, target = self.graph.edges[edge_index].pair()
        producer, accepted = self.chain(source)
        received = _shape(self.outputs[producer])
        producer_name, consumer = self.name(producer), self.name(target)
        self.wired.append((producer_name, consumer))
        source_label, target_label = rules.node_label(producer_name), rules.node_label(consumer)
        reason = need.problem(_shape(tensor))
        if reason is None:
            self.warn_if_long(_shape(tensor), need, producer_name, consumer, received, accepted)
            self.edge_report(edge_index, need, ok=True)
            return tensor
        if accepted:
            adapted = adapter_lib.labels(adapter for _, adapter in accepted)
            for index, _ in accepted:
                self.adapter_problem(index, consumer, received,
                                     f"{source_label} outputs {format_shape(received)}, which {adapted} turns into "
                                     f"{format_shape(_shape(tensor))}, but {target_label} {reason}",
                                     edge=(source, target))
            self.edge_report(edge_index, need, ok=False, message=self.problems[-1].message)
            return None
        choice = adapter_lib.choose_fix(received, need, producer_name, consumer, target_label,
                                        self.flattened_origin(producer))
        if choice.warning:
            self.warnings.append(choice.warning)
        if choice.fix and self.spec.auto_adapters:
            for adapter in choice.fix:
                tensor = self.apply_adapter(tensor, adapter)
            self.edge_report(edge_index, need, ok=True,
                             message=f"Auto adapters insert {adapter_lib.labels(choice.fix)} on this edge.")
            return tensor
        if choice.fix:
            remedy = (f" Add {adapter_lib.labels(choice.fix)} between {source_label} and {target_label}, or turn "
                      f"on auto adapters.")
            clauses = (clause for clause in (choice.note, choice.instead) if clause)
            remedy += "".join(f" {clause[0].upper()}{clause[1:]}." for clause in clauses)
            remedy += f" Warning: {choice.warning}" if choice.warning else ""
        else:
            why = f": {choice.reason}." if choice.reason else " this."
            remedy = f" No adapter fits{why} {self.alternatives(target, received)}"
        self.problem(
            "shape", consumer,
            f"Cannot feed {source_label} into {target_label}: {source_label} outputs shape "
            f"{format_shape(received)} but {target_label} {reason}.{remedy}",
            received=received, expected=need.description, fix=choice.fix, fix_warning=choice.warning,
            edge=(source, target),
        )
        self.edge_report(edge_index, need, ok=False, message=self.problems[-1].message,
                         fix=self.fix_nodes(source, choice.fix))
        # Carry on as if fixed, so the rest of the stack is still checked and reported.
        for adapter in choice.fix:
            tensor = self.apply_adapter(tensor, adapter, record=False)
        return tensor if choice.fix else None

    def fix_nodes(self, source: str, fix: tuple[AdapterSpec, ...]) -> tuple[NodeSpec, ...]:
        """A fix as adapter nodes to insert after `source`, with ids not yet in the graph."""
        taken, nodes = set(self.graph.ids()), []
        for adapter in fix:
            base = f"adapter_{adapter.after}_{adapter.kind}"
            node_id, number = base, 2
            while node_id in taken:
                node_id, number = f"{base}_{number}", number + 1
            taken.add(node_id)
            nodes.append(NodeSpec.from_adapter(node_id, adapter))
        return tuple(nodes)

    def edge_report(self, edge_index: int, need: Need | None, ok: bool, message: str = "",
                    fix: tuple[NodeSpec, ...] = ()) -> None:
        """Record what edge `edge_index` carries and whether it fits (the first record wins)."""
        if edge_index in self.edge_reports:
            return
        source, target = self.graph.edges[edge_index].pair()
        produced = self.outputs.get(source)
        self.edge_reports[edge_index] = EdgeReport(
            source=source, target=target, shape=_shape(produced) if produced is not None else None,
            accepts=need.accepts() if need is not None else "", ok=ok, message=message, fix=fix)

    def unchecked(self, edge_index: int, why: str) -> None:
        """Record an edge that could not be checked, and why."""
        self.edge_report(edge_index, None, ok=False, message=f"Not checked: {why}")

    def flattened_origin(self, producer: str) -> tuple | None:
        """The shape member `producer` flattens into its output, so a fix can restore it."""
        model = self.models.get(producer)
        return adapter_lib.flattened_from(model) if model is not None else None

    def alternatives(self, consumer: str, received: tuple) -> str:
        """What to do when no adapter fits: templates that take `received` as it is."""
        node = self.graph.node(consumer)
        if node is not None and node.kind == "adapter":
            return f"Change {node.label()} or remove it."
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
                      consumer: str = "", name: str = "", edge: tuple[str, str] | None = None):
        """Apply one adapter; `index` marks an accepted one (spec.adapters[index]) for its problem.
        `name` is an adapter node's id (its layer name); without one, the layer is named
        "adapter_<after>_<kind>", numbered when taken."""
        if not name:
            base = f"adapter_{adapter.after}_{adapter.kind}"
            name, number = base, 2
            while name in self.layer_names:
                name, number = f"{base}_{number}", number + 1
        try:
            layer = adapter_lib.make_layer(adapter, _shape(tensor), name)
            result = layer(tensor)
        except ValueError as error:
            if index is None:
                self.problem("config", adapter.after, str(error), edge=edge)
            else:
                reason = adapter_lib.mismatch(adapter, _shape(tensor))
                self.adapter_problem(index, consumer, _shape(tensor),
                                     f"it {reason}" if reason else f"Keras refuses it: {error}", edge=edge)
            return None
        self.layer_names.add(name)
        if record:
            self.applied.append(adapter)
        return result

    def adapter_problem(self, index: int, consumer: str, received: tuple, why: str,
                        edge: tuple[str, str] | None = None) -> None:
        """An accepted adapter (spec.adapters[index]) that no longer fits: the remedy is removing it."""
        adapter = self.spec.adapters[index]
        self.problem(
            "adapter", consumer,
            f"The accepted adapter {adapter.label()} between {rules.node_label(adapter.after)} and "
            f"{rules.node_label(consumer)} no longer fits: {why}. Remove it; the check then offers a fix "
            f"for {format_shape(received)} if one fits.",
            received=received, adapter_index=index, edge=edge,
        )

    def problem(self, kind: str, member: str, message: str, **details) -> None:
        """Record a problem; `member` is the member or step it is at."""
        self.problems.append(Problem(kind=kind, member=member, message=message, **details))

    # -- the whole stack -------------------------------------------------------------------

    def output_need(self) -> Need:
        """What the stack's output must be: the dataset task's units and activation."""
        return Need.fixed((self.task.output_units,), dense_activation=self.task.output_activation)

    def check_names(self) -> bool:
        """Record a problem for each member name the stack cannot use; True when there is none
        (member names become layer names, so the stack is wired only then). A graph's node
        ids are checked with the graph (`GraphSpec.problems`)."""
        if self.is_graph():
            return True
        names = [member.name for member in self.spec.all_members()]
        for index, name in enumerate(names):
            reason = rules.member_name_problem(name, names[:index] + names[index + 1:])
            if reason:
                self.problem("config", name, reason)
        return not self.problems

    def check_adapter_placement(self) -> None:
        """Record a problem for each accepted adapter that sits on no edge of the stack (it
        would never be applied; the rest of the stack is still checked)."""
        if self.is_graph():
            return
        for index, adapter in enumerate(self.spec.adapters):
            reason = rules.adapter_placement_problem(self.spec, adapter)
            if reason:
                self.problem("adapter", adapter.after, reason, adapter_index=index)



def _run_model(member: MemberSpec) -> Path:
    """The model file of run member `member`'s run."""
    path = run_stack_path(member.run_id or "")
    if not path.exists():
        raise ValueError(
            f"run '{member.run_id}' has no trained model ({path} is missing): only finished or "
            f"stopped runs can be used as members. Pick another run, or wait for this one to finish."
        )
    return path


