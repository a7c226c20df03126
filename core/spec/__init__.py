"""The stack as data: what a stack is, and the rules about it that need no Keras.

- `schema`: StackSpec and its parts (members, adapters, trainability rules, training,
  dataset), with the allowed choices; JSON with `schema_version` (2; version 1 is read too);
- `graph`: a stack as a graph (GraphSpec: NodeSpec, EdgeSpec) and what makes one a stack;
  `presets`: the four modes as the graphs they wire (`graph_of`, `to_graph_spec`);
- `parts`: members and adapters; `names`: the names of a stack's nodes.
- `base`: how those dataclasses read and check themselves (SpecError, Range, size and
  nesting limits).
- `search`: the `search` section of a spec (SearchSpec, ParamSpec) and `apply_params`, the
  spec of one trial of a sweep (core.sweeps runs them);
- `reading`: spec files; `rules`: Keras-free rules of a stack; `tasks`: what a dataset
  asks of a model; `events`: what training reports.

Nothing here imports Keras: the dashboard uses all of it.
"""

from core.spec.base import DEFAULT_MAX_SPEC_BYTES, MAX_SPEC_BYTES_ENV, MAX_SPEC_DEPTH, Range, SpecError, max_spec_bytes
from core.spec.distribution import STRATEGIES, DistributionSpec, backend_problem, gpus_wanted
from core.spec.graph import MERGE_KINDS, NODE_KINDS, EdgeSpec, GraphProblem, GraphSpec, NodeSpec
from core.spec.presets import graph_of, stack_graph, to_graph_spec  # after the schema: presets read it
from core.spec.reading import load_spec, resolve_paths
from core.spec.rules import compile_layer_pattern, insert_on_edge, layer_pattern_matches
from core.spec.schema import (
    ADAPTER_KINDS,
    DATASET_SOURCES,
    GRAPH_MODE,
    LOSSES,
    LR_SCHEDULES,
    MEMBER_SOURCES,
    METRICS,
    MODE_OPTION_CHOICES,
    MODE_OPTIONS,
    MODES,
    OPTIMIZERS,
    READABLE_SCHEMA_VERSIONS,
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
from core.spec.search import (
    OBJECTIVE_METRICS,
    PARAM_TYPES,
    PRUNERS,
    SAMPLERS,
    VARIANT,
    ObjectiveSpec,
    ParamSpec,
    PrunerSpec,
    SearchSpec,
    apply_params,
)

__all__ = [
    "ADAPTER_KINDS", "DATASET_SOURCES", "DEFAULT_MAX_SPEC_BYTES", "GRAPH_MODE", "LOSSES", "LR_SCHEDULES",
    "MAX_SPEC_BYTES_ENV", "MAX_SPEC_DEPTH", "MEMBER_SOURCES", "MERGE_KINDS", "METRICS", "MODES", "MODE_OPTIONS",
    "MODE_OPTION_CHOICES", "NODE_KINDS", "OBJECTIVE_METRICS", "OPTIMIZERS", "PARAM_TYPES", "PRUNERS", "SAMPLERS",
    "VARIANT", "ObjectiveSpec", "ParamSpec", "PrunerSpec", "SearchSpec", "apply_params",
    "READABLE_SCHEMA_VERSIONS", "SCALINGS", "SCHEMA_VERSION",
    "STACKING_MODES", "STRATEGIES", "TASKS", "AdapterSpec", "DatasetSpec", "DistributionSpec", "EarlyStoppingSpec",
    "EdgeSpec", "FineTuneSpec", "GraphProblem", "GraphSpec", "LayerRule", "MemberSpec", "NodeSpec", "Range",
    "SpecError", "StackSpec", "TrainSpec", "backend_problem", "compile_layer_pattern", "gpus_wanted", "graph_of",
    "insert_on_edge", "layer_pattern_matches", "load_spec",
    "max_spec_bytes", "resolve_paths", "stack_graph", "to_graph_spec",
]
