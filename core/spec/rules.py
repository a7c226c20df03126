"""Rules of a stack that need no Keras: names, heads, the edges of a stack, fixes, fine-tuning.

Both sides use these: `core.build` when it builds a stack, the dashboard when it edits or
draws one, so the two never disagree. Each rule is written here once:

- member names: `MEMBER_NAME`, `RESERVED_NAMES`, `member_name_problem`;
- heads: `needs_head`, `allows_head`;
- how each mode wires its members: `stack_edges` (producer -> consumer, in the names
  adapters use), `on_edge` (which adapters sit on an edge), `adapter_placement_problem`,
  `node_label` (a node as messages name it);
- accepting a fix: `accept_fix`;
- fine-tuning: `earliest_fine_tune_start`, `default_fine_tune_start`;
- trainability rules: `compile_layer_pattern`, `layer_pattern_matches`.

Example:
    >>> stack_edges(StackSpec(members=(MemberSpec("a"), MemberSpec("b"))))
    [('input', 'a'), ('a', 'b'), ('b', 'output')]
"""

from __future__ import annotations

import re
from typing import Any, Collection, Iterable, Mapping

from core.spec.schema import MODE_OPTIONS, AdapterSpec, FineTuneSpec, StackSpec

# ---- names -----------------------------------------------------------------------------

# A member's name becomes a Keras layer name and a Python identifier in the exported script.
MEMBER_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]{0,63}$")

# The nodes of a stack that are not members, as adapters name them (`AdapterSpec.after` and
# `.before`): the raw input, the combining step of fusion and ensemble stacks, the output.
INPUT, FUSION, ENSEMBLE, OUTPUT = "input", "fusion", "ensemble", "output"
STEPS = (INPUT, FUSION, ENSEMBLE, OUTPUT)
# Layers the builder adds to the model between members; a member of the same name would clash.
FUSION_CONCAT = "fusion_concat"
RAW_INPUT_FLATTEN = "raw_input_flatten"
ENSEMBLE_AVERAGE = "ensemble_average"
ENSEMBLE_CONCAT = "ensemble_concat"
RESERVED_NAMES = STEPS + (FUSION_CONCAT, RAW_INPUT_FLATTEN, ENSEMBLE_AVERAGE, ENSEMBLE_CONCAT)

STEP_LABELS = {INPUT: "the input", FUSION: "the fusion", ENSEMBLE: "the ensemble", OUTPUT: "the output"}


def member_name_problem(name: str, others: Collection[str] = ()) -> str | None:
    """Why `name` cannot name a member, as a sentence; None when it can.

    Args:
        name: the member name.
        others: the names of the stack's other members (a name must be unique).

    Example:
        >>> member_name_problem("input")
        "Member name 'input' is reserved for a step of the stack; choose another name."
    """
    if not MEMBER_NAME.match(name):
        return (f"Member name '{name}' is not allowed: use a letter first, then letters, digits or '_' "
                f"(at most 64 characters).")
    if name in RESERVED_NAMES:
        return f"Member name '{name}' is reserved for a step of the stack; choose another name."
    if name in others:
        return f"A member named '{name}' already exists; member names must be unique, so choose another name."
    return None


def node_label(name: str) -> str:
    """A node as messages name it: "the input", "the fusion", "the output", or "'member'"."""
    return STEP_LABELS.get(name, f"'{name}'")


# ---- heads -----------------------------------------------------------------------------


def needs_head(mode: str, options: Mapping[str, Any]) -> bool:
    """Whether a mode requires a head: fusion, transfer, and ensemble with a meta-head."""
    if mode in ("fusion", "transfer"):
        return True
    return mode == "ensemble" and options.get("combine", MODE_OPTIONS["ensemble"]["combine"]) == "meta_head"


def allows_head(mode: str, options: Mapping[str, Any]) -> bool:
    """Whether a head is used at all: required ones, and the optional last step of a sequential
    stack. A head an averaging ensemble is given is not part of the stack."""
    return mode == "sequential" or needs_head(mode, options)


# ---- the edges of a stack --------------------------------------------------------------

# Fusion's raw input (include_raw_input) is flattened by the fusion step itself: no adapter
# sits on this edge.
RAW_INPUT_EDGE = (INPUT, FUSION)


def stack_edges(spec: StackSpec) -> list[tuple[str, str]]:
    """How the spec's mode wires its members: (producer, consumer) pairs, input to output.

    Nodes are named as adapters name them: member names, "input", "fusion", "ensemble",
    "output". `core.build` adapts a tensor on exactly these edges; the dashboard draws them.
    """
    members = [member.name for member in spec.members]
    head = spec.head.name if spec.head is not None and allows_head(spec.mode, spec.options) else None
    top = [head, OUTPUT] if head else [OUTPUT]
    if spec.mode in ("sequential", "transfer"):
        chain = [INPUT, *members, *top]
        return list(zip(chain, chain[1:]))
    step = FUSION if spec.mode == "fusion" else ENSEMBLE
    edges = [(INPUT, member) for member in members] + [(member, step) for member in members]
    if spec.mode == "fusion" and spec.option("include_raw_input"):
        edges.append(RAW_INPUT_EDGE)
    chain = [step, *top]
    return edges + list(zip(chain, chain[1:]))


def on_edge(adapter: AdapterSpec, edge: tuple[str, str]) -> bool:
    """Whether `adapter` sits on `edge`: after its producer, before its consumer (or before
    any consumer when `adapter.before` is empty). None sits on the raw input's edge."""
    producer, consumer = edge
    return edge != RAW_INPUT_EDGE and adapter.after == producer and adapter.before in ("", consumer)


def adapter_placement_problem(spec: StackSpec, adapter: AdapterSpec) -> str | None:
    """Why an accepted adapter sits on no edge of the stack, as a sentence; None when it sits on one."""
    edges = [edge for edge in stack_edges(spec) if edge != RAW_INPUT_EDGE]
    if any(on_edge(adapter, edge) for edge in edges):
        return None
    producers = list(dict.fromkeys(producer for producer, _ in edges))
    if adapter.after not in producers:
        return (f"The accepted adapter {adapter.label()} is placed after '{adapter.after}', which is not a member "
                f"or a step that feeds another in mode '{spec.mode}' (adapters can follow {producers}). Remove it.")
    return (f"The adapter {adapter.label()} after '{adapter.after}' is never used: '{adapter.after}' does not "
            f"feed {adapter.before or 'anything'} in mode '{spec.mode}'. Remove it.")


# ---- accepting a fix -------------------------------------------------------------------


def accept_fix(spec: StackSpec, fix: Iterable[AdapterSpec]) -> StackSpec:
    """The spec with a problem's suggested adapters accepted, skipping any it already has.

    Accepting the same fix twice (a double click, a second tab) leaves one copy.
    """
    adapters = list(spec.adapters)
    for adapter in fix:
        if adapter not in adapters:
            adapters.append(adapter)
    return spec.replace(adapters=tuple(adapters))


# ---- fine-tuning -----------------------------------------------------------------------


def earliest_fine_tune_start() -> int:
    """The first epoch a fine-tune phase may start at (FineTuneSpec's range on start_epoch)."""
    return int(FineTuneSpec.range_of("start_epoch").minimum)


def default_fine_tune_start(epochs: int) -> int:
    """The epoch a new fine-tune phase starts at: the second half of a run of `epochs`, so the
    head first trains on the frozen base, and never before `earliest_fine_tune_start()`.

    Example:
        >>> default_fine_tune_start(10), default_fine_tune_start(1)
        (6, 2)
    """
    return max(earliest_fine_tune_start(), int(epochs) // 2 + 1)


# ---- trainability rules ----------------------------------------------------------------


def compile_layer_pattern(pattern: str, where: str = "") -> re.Pattern:
    """A LayerRule's `layers` regex, compiled.

    Raises:
        ValueError: not a valid regular expression; the message starts with `where` if given.
    """
    try:
        return re.compile(pattern)
    except re.error as error:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}'{pattern}' is not a valid regular expression ({error}).") from None


def layer_pattern_matches(pattern: re.Pattern, path: str) -> bool:
    """Whether a LayerRule's regex selects the layer at `path` ("member/.../layer", relative to
    its member): it fully matches the path or the layer's own name."""
    return bool(pattern.fullmatch(path) or pattern.fullmatch(path.rsplit("/", 1)[-1]))
