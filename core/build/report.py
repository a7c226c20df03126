"""What `core.build.stacking.check` reports: shapes, parameter counts and problems, as plain data.

A `Problem` names the members involved, the shape received and the shape expected, and
carries the adapters that would fix it (`fix`), so the dashboard can offer the fix as a
button and the CLI can print it. `to_dict()` gives JSON for the inspector and `--json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from core.spec import AdapterSpec


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
    removing it), "config" (the spec asks for something impossible), "source" (a member
    file or run cannot be used) or "budget" (the stack would be larger than the limits in
    core.build.budget allow; nothing was built).

    fix_warning: a caution that goes with `fix` (it makes a long sequence for a recurrent
    layer), also in `message` and in the report's warnings; "" when there is none.
    """

    kind: str
    member: str
    message: str
    received: tuple | None = None
    expected: str = ""
    fix: tuple[AdapterSpec, ...] = ()
    adapter_index: int | None = None
    fix_warning: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "member": self.member, "message": self.message,
            "received": list(self.received) if self.received is not None else None,
            "expected": self.expected, "fix": [adapter.to_dict() for adapter in self.fix],
            "fix_label": " + ".join(adapter.label() for adapter in self.fix),
            "adapter_index": self.adapter_index, "fix_warning": self.fix_warning,
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
        }


def _listed(shape: tuple | None) -> list | None:
    return None if shape is None else list(shape)
