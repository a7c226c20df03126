"""The names of a stack's nodes: members, the fixed steps, and the layers the builder adds.

One floor below the schema and the rules, so the graph model (`core.spec.graph`), the rules
(`core.spec.rules`, which re-exports all of these) and the presets read the same names.
"""

from __future__ import annotations

import re
from typing import Collection

# A member's name becomes a Keras layer name and a Python identifier in the exported script;
# so does every node id of a graph (except the fixed "input" and "output").
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
