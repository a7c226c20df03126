"""Spec files: read one (bounded in size), and make its relative file references absolute."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from core.limits import format_bytes
from core.spec.base import MAX_SPEC_BYTES_ENV, SpecError, max_spec_bytes
from core.spec.schema import MemberSpec, StackSpec


def load_spec(path: str | Path) -> StackSpec:
    """Read a StackSpec from a JSON file.

    Relative member file paths (graph member nodes included) and dataset paths are resolved against the spec file's
    folder, so an example spec next to its model file works from any working directory.

    Raises:
        SpecError: the file is over STACKLAB_MAX_SPEC_BYTES, not valid JSON or not a
            valid spec.
        OSError: the file cannot be read.
    """
    path = Path(path)
    size, limit = path.stat().st_size, max_spec_bytes()
    if size > limit:  # before reading it: a wrong file may be gigabytes
        raise SpecError(f"'{path.name}' is {format_bytes(size)}, over the {format_bytes(limit)} limit for a spec file "
                        f"({MAX_SPEC_BYTES_ENV}); a spec is a few kilobytes. Check that it is a StackLab spec, "
                        f"or raise {MAX_SPEC_BYTES_ENV}.")
    spec = StackSpec.from_json(path.read_text(encoding="utf-8"))
    return resolve_paths(spec, path.parent)


def resolve_paths(spec: StackSpec, base: Path) -> StackSpec:
    """Make relative file references in `spec` absolute against `base`."""

    def resolve(ref: str | None) -> str | None:
        if ref is None or ref.startswith("sha256:") or Path(ref).is_absolute():
            return ref
        return str((base / ref).resolve())

    def member(m: MemberSpec | None) -> MemberSpec | None:
        if m is None or m.source != "file":
            return m
        return dataclasses.replace(m, file=resolve(m.file))

    dataset = spec.dataset
    if dataset.source != "builtin":
        dataset = dataclasses.replace(dataset, path=resolve(dataset.path))
    graph = spec.graph
    if graph is not None:
        graph = dataclasses.replace(graph, nodes=tuple(
            dataclasses.replace(node, member=member(node.member)) if node.member is not None else node
            for node in graph.nodes))
    return dataclasses.replace(
        spec,
        members=tuple(member(m) for m in spec.members),
        head=member(spec.head),
        dataset=dataset,
        graph=graph,
    )
