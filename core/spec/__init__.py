"""The stack as data: what a stack is, and the rules about it that need no Keras.

- `schema`: StackSpec and its parts (members, adapters, trainability rules, training,
  dataset), with the allowed choices; JSON with `schema_version`.
- `base`: how those dataclasses read and check themselves (SpecError, Range, size and
  nesting limits).
- `reading`: spec files; `rules`: Keras-free rules of a stack; `tasks`: what a dataset
  asks of a model; `events`: what training reports.

Nothing here imports Keras: the dashboard uses all of it.
"""

from core.spec.base import DEFAULT_MAX_SPEC_BYTES, MAX_SPEC_BYTES_ENV, MAX_SPEC_DEPTH, Range, SpecError, max_spec_bytes
from core.spec.reading import load_spec, resolve_paths
from core.spec.rules import compile_layer_pattern, layer_pattern_matches
from core.spec.schema import (
    ADAPTER_KINDS,
    DATASET_SOURCES,
    LOSSES,
    LR_SCHEDULES,
    MEMBER_SOURCES,
    METRICS,
    MODE_OPTION_CHOICES,
    MODE_OPTIONS,
    OPTIMIZERS,
    SCALINGS,
    SCHEMA_VERSION,
    STACKING_MODES,
    TASKS,
    AdapterSpec,
    DatasetSpec,
    EarlyStoppingSpec,
    FineTuneSpec,
    LayerRule,
    MemberSpec,
    StackSpec,
    TrainSpec,
)

__all__ = [
    "ADAPTER_KINDS", "DATASET_SOURCES", "DEFAULT_MAX_SPEC_BYTES", "LOSSES", "LR_SCHEDULES", "MAX_SPEC_BYTES_ENV",
    "MAX_SPEC_DEPTH", "MEMBER_SOURCES", "METRICS", "MODE_OPTIONS", "MODE_OPTION_CHOICES", "OPTIMIZERS", "SCALINGS",
    "SCHEMA_VERSION", "STACKING_MODES", "TASKS", "AdapterSpec", "DatasetSpec", "EarlyStoppingSpec", "FineTuneSpec",
    "LayerRule", "MemberSpec", "Range", "SpecError", "StackSpec", "TrainSpec", "compile_layer_pattern",
    "layer_pattern_matches", "load_spec", "max_spec_bytes", "resolve_paths",
]
