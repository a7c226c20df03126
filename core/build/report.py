"""What `core.build.stacking.check` reports: shapes, parameter counts and problems, as plain data.

A `Problem` names the members involved, the shape received and the shape expected, and
carries the adapters that would fix it (`fix`), so the dashboard can offer the fix as a
button and the CLI can print it. An `EdgeReport` says, for one edge of the stack's graph
(`core.spec.presets.graph_of`), the shape on it, what its consumer accepts and, when they do
not fit, why and the adapter nodes that fix it there. `to_dict()` gives JSON for the
inspector and `--json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.spec import AdapterSpec, NodeSpec


class StackError(ValueError):
    """The stack cannot be built; `problems` lists every reason, each with its fix."""

    def __init__(self, problems: list["Problem"]):
        self.problems = list(problems)
        lines = "\n".join(f"- {problem.message}" for problem in self.problems)
        super().__init__(f"The stack cannot be built ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Problem:
    """One reason the stack does not build.

    kind: "shape" (pieces don't fit; `fix` holds adapters that were checked to make them
    fit, or is empty when none does), "adapter" (the accepted adapter
    `spec.adapters[adapter_index]` does not apply any more, or is never used: the remedy is
    removing it; in a graph, an adapter node that does not fit, with no index), "config"
    (the spec asks for something impossible), "source" (a member file or run cannot be
    used), "graph" (the graph is not a stack: a cycle, a node nothing reaches, ...; `nodes`
    names them) or "budget" (the stack would be larger than the limits in
    core.build.budget allow; nothing was built).

    member: the member or step the problem is at (in a graph: the node id).
    fix_warning: a caution that goes with `fix` (it makes a long sequence for a recurrent
    layer), also in `message` and in the report's warnings; "" when there is none.
    edge: (source, target) node ids of the edge of `graph_of(spec)` the problem is about, or None.
    nodes: the node ids a graph problem names (kind "graph"), else ().
    """

    kind: str
    member: str
    message: str
    received: tuple | None = None
    expected: str = ""
    fix: tuple[AdapterSpec, ...] = ()
    adapter_index: int | None = None
    fix_warning: str = ""
    edge: tuple[str, str] | None = None
    nodes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        data = {
            "kind": self.kind, "member": self.member, "message": self.message,
            "received": list(self.received) if self.received is not None else None,
            "expected": self.expected, "fix": [adapter.to_dict() for adapter in self.fix],
            "fix_label": " + ".join(adapter.label() for adapter in self.fix),
            "adapter_index": self.adapter_index, "fix_warning": self.fix_warning,
        }
        if self.edge is not None:
            data["edge"] = list(self.edge)
        if self.nodes:
            data["nodes"] = list(self.nodes)
        return data


@dataclass(frozen=True)
class EdgeReport:
    """One edge of the stack's graph, checked.

    shape: what `source` produces (one sample, without batch), None when it was not built.
    accepts: what `target` accepts, in words ("a feature vector", "(batch, 10)"), "" when unknown.
    ok: the shape fits (after the adapters the spec accepted there).
    message: why not ("" when ok): the problem's message, or why the edge was not checked.
    fix: adapter nodes that were checked to make it fit, to insert on this edge
        (`core.spec.rules.insert_on_edge`); () when none does.
    """

    source: str
    target: str
    shape: tuple | None
    accepts: str = ""
    ok: bool = False
    message: str = ""
    fix: tuple[NodeSpec, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "target": self.target, "shape": _listed(self.shape),
            "accepts": self.accepts, "ok": self.ok, "message": self.message,
            "fix": [node.to_dict() for node in self.fix],
            "fix_label": " + ".join(node.adapter_spec().label() for node in self.fix),
        }


@dataclass(frozen=True)
class MemberReport:
    name: str
    source: str
    role: str  # "member" or "head"
    input_shape: tuple | None
    output_shape: tuple | None
    total_params: int
    trainable_params: int
    layers: tuple[dict, ...] = ()
    # Of the non-trainable weights, those frozen by the stack's choices (member flag,
    # freeze_base, layer rules); the rest never train (Normalization and BatchNormalization
    # statistics). The member is "frozen" when trainable_params == 0 < frozen_params, and
    # "partly frozen" when both are above 0.
    frozen_params: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "source": self.source, "role": self.role,
            "input_shape": _listed(self.input_shape), "output_shape": _listed(self.output_shape),
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "non_trainable_params": self.total_params - self.trainable_params,
            "frozen_params": self.frozen_params,
            "never_trainable_params": self.total_params - self.trainable_params - self.frozen_params,
            "layers": list(self.layers),
        }


@dataclass(frozen=True)
class StackReport:
    """The pre-flight report: shapes, parameter counts, problems. Plain data."""

    mode: str
    ok: bool
    input_shape: tuple
    output_shape: tuple | None
    total_params: int
    trainable_params: int
    members: tuple[MemberReport, ...]
    problems: tuple[Problem, ...]
    warnings: tuple[str, ...] = ()
    adapters: tuple[AdapterSpec, ...] = ()  # every adapter in the model, accepted or auto
    task: dict = field(default_factory=dict)
    frozen_params: int = 0  # non-trainable weights frozen by choice, as in MemberReport
    edges: tuple[EdgeReport, ...] = ()  # one per edge of graph_of(spec), in its order
    # Node id -> its output shape (one sample), for every node of the graph that was built.
    node_shapes: dict[str, tuple] = field(default_factory=dict)

    @property
    def non_trainable_params(self) -> int:
        return self.total_params - self.trainable_params

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode, "ok": self.ok,
            "input_shape": _listed(self.input_shape), "output_shape": _listed(self.output_shape),
            "total_params": self.total_params, "trainable_params": self.trainable_params,
            "non_trainable_params": self.non_trainable_params,
            "frozen_params": self.frozen_params,
            "never_trainable_params": self.non_trainable_params - self.frozen_params,
            "members": [member.to_dict() for member in self.members],
            "problems": [problem.to_dict() for problem in self.problems],
            "warnings": list(self.warnings),
            "adapters": [adapter.to_dict() for adapter in self.adapters],
            "task": self.task,
            "edges": [edge.to_dict() for edge in self.edges],
            "node_shapes": {node_id: list(shape) for node_id, shape in self.node_shapes.items()},
        }


def _listed(shape: tuple | None) -> list | None:
    return None if shape is None else list(shape)
