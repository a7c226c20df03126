"""The pieces a stack is made of: members (templates, model files, earlier runs) and adapters.

One floor below the schema, so both a preset stack (`core.spec.schema.StackSpec`) and a
graph's nodes (`core.spec.graph.NodeSpec`) hold the same `MemberSpec`. No Keras import.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.spec.base import Range, SpecError, _SpecBase

MEMBER_SOURCES = ("template", "file", "run")
ADAPTER_KINDS = ("flatten", "global_average_pooling", "reshape", "dense", "resizing")


@dataclass(frozen=True)
class MemberSpec(_SpecBase):
    """One sub-model of a stack: a built-in template, a user model file or an earlier run.

    Example:
        MemberSpec(name="features", template="cnn_features", params={"filters": [32]})
        MemberSpec(name="base", source="file", file="sha256:ab12...", cut_at="flatten")
    """

    name: str
    source: str = "template"
    # source="template": a name from core.build.templates.registry.TEMPLATES and its parameters; missing
    # parameters take the template's declared defaults.
    template: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    # source="file": a path to a .keras/.h5 file, or "sha256:<hex>" for an upload in the
    # content-addressed upload store (so a run finds it after the browser session ends).
    file: str | None = None
    # source="run": the id of an earlier finished run whose model.keras becomes the member.
    run_id: str | None = None
    # For file and run members: keep the model only up to (and including) this layer.
    cut_at: str | None = None
    trainable: bool = True

    _choices: typing.ClassVar = {"source": MEMBER_SOURCES}

    @classmethod
    def _read(cls, data: Mapping[str, Any], where: str):
        # A member given only a template name is obviously a template member.
        if isinstance(data, Mapping) and "source" not in data:
            if data.get("file") is not None:
                data = {**data, "source": "file"}
            elif data.get("run_id") is not None:
                data = {**data, "source": "run"}
        return super()._read(data, where)


@dataclass(frozen=True)
class AdapterSpec(_SpecBase):
    """A shape adapter on the output of member `after` (or "input", the raw input).

    Adapters are what a pre-flight problem suggests as its fix: Flatten, global average
    pooling, Reshape to `target_shape`, a Dense projection to `units`, or Resizing to
    `target_shape` (height, width). `before` names the consumer when the output of `after`
    feeds several (the input in fusion and ensemble stacks): a member name, or "fusion",
    "ensemble", "output" for the combining step and the stack's output. Empty: any consumer.
    """

    after: str
    kind: str
    before: str = ""
    target_shape: tuple[int, ...] = ()
    units: int = 0
    activation: str = "linear"

    _choices: typing.ClassVar = {"kind": ADAPTER_KINDS}
    # units is 0 for the kinds that have none; _check_rules asks a dense adapter for one.
    _ranges: typing.ClassVar = {"target_shape": Range(1), "units": Range(0)}

    def _check_rules(self, prefix: str) -> None:
        if self.kind == "dense" and self.units < 1:
            raise SpecError(f"'{prefix}units' must be at least 1 for a dense adapter, received {self.units}.")

    def label(self) -> str:
        """A short human name: 'Flatten', 'Dense(10, softmax)', 'Reshape(28, 28, 1)'."""
        shape = ", ".join(str(d) for d in self.target_shape)
        return {
            "flatten": "Flatten",
            "global_average_pooling": "GlobalAveragePooling",
            "reshape": f"Reshape({shape})",
            "resizing": f"Resizing({shape})",
        }.get(self.kind, f"Dense({self.units}, {self.activation})")


