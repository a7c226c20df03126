"""A stack described as data: plain frozen dataclasses that round-trip through JSON.

`StackSpec` is the unit of reproducibility: the dashboard edits it, the CLI trains from
it and every run stores it. Nothing here imports Keras, so the dashboard can use it freely.

`from_dict` checks types, allowed values, numeric ranges and unknown keys, and names the
offending key in its error; `from_json` and `load_spec` also refuse documents over a size
(STACKLAB_MAX_SPEC_BYTES) or nesting limit. Whether the pieces fit together (shapes, member
counts per mode) is checked when the stack is built (`core.build.stacking.check`), so a
half-finished draft stays valid data.

Example:
    >>> spec = StackSpec.from_dict({"name": "demo", "members": [
    ...     {"name": "features", "template": "cnn_features"},
    ...     {"name": "classifier", "template": "dense_head"}]})
    >>> StackSpec.from_dict(spec.to_dict()) == spec
    True
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.limits import format_bytes
from core.spec.base import (
    MAX_SPEC_BYTES_ENV,
    Range,
    SpecError,
    _choice,
    _SpecBase,
    max_spec_bytes,
    too_deep_message,
)
from core.spec.distribution import DistributionSpec
from core.spec.graph import GraphSpec
from core.spec.parts import ADAPTER_KINDS, MEMBER_SOURCES, AdapterSpec, MemberSpec  # noqa: F401  (re-exported)
from core.spec.search import SearchSpec, check_search

# Version 2 added graphs (mode "graph", `graph`) and canvas positions (`layout`); a version 1
# document reads as before and is written back as version 2.
SCHEMA_VERSION = 2
READABLE_SCHEMA_VERSIONS = (1, 2)

# The four modes users pick first; each is a preset that produces a graph (core.spec.presets).
STACKING_MODES = ("sequential", "fusion", "transfer", "ensemble")
# A stack drawn as a graph: its nodes and edges are the whole description.
GRAPH_MODE = "graph"
MODES = STACKING_MODES + (GRAPH_MODE,)
# Modes whose members meet at a merge (a concatenate, an average): member ablation removes one
# member there (core.training.ablation). Sequential and transfer stacks chain their members.
ABLATION_MODES = ("fusion", "ensemble", GRAPH_MODE)
# Options each mode understands, with their defaults. Kept as data so the dashboard can
# render them and `from_dict` can reject an option the chosen mode would ignore.
MODE_OPTIONS: dict[str, dict[str, Any]] = {
    "sequential": {},
    "fusion": {"include_raw_input": False},
    "transfer": {"freeze_base": True},
    "ensemble": {"combine": "average"},
    GRAPH_MODE: {},
}
MODE_OPTION_CHOICES: dict[str, tuple[Any, ...]] = {
    "include_raw_input": (True, False),
    "freeze_base": (True, False),
    "combine": ("average", "meta_head"),
}
DATASET_SOURCES = ("builtin", "csv", "npz", "images")
# source="images": how each image is decoded (Keras's image_dataset_from_directory names).
COLOR_MODES = ("rgb", "grayscale")
# Height and width an image folder is resized to: a few pixels to a large photo's thumbnail.
IMAGE_SIDE_RANGE = Range(4, 1024)
DEFAULT_IMAGE_SIZE = (64, 64)
TASKS = ("auto", "classification", "regression")
SCALINGS = ("standard", "minmax", "none")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
LR_SCHEDULES = ("constant", "cosine", "exponential", "reduce_on_plateau")
LOSSES = (
    "auto",
    "sparse_categorical_crossentropy",
    "categorical_crossentropy",
    "binary_crossentropy",
    "mse",
    "mae",
    "huber",
)
METRICS = ("auto", "accuracy", "auc", "precision", "recall", "mae", "mse", "rmse")


@dataclass(frozen=True)
class LayerRule(_SpecBase):
    """Set `trainable` for layers of `member` whose name fully matches the regex `layers`.

    Rules apply in order after the members' own `trainable` flags, so a later rule wins.
    `member="*"` applies to every member.
    """

    member: str
    layers: str = ".*"
    trainable: bool = False


@dataclass(frozen=True)
class EarlyStoppingSpec(_SpecBase):
    monitor: str = "val_loss"
    # Epochs without improvement before stopping; 0 stops at the first one (as in Keras).
    patience: int = 3
    min_delta: float = 0.0
    restore_best_weights: bool = True

    _ranges: typing.ClassVar = {"patience": Range(0), "min_delta": Range(0.0)}


@dataclass(frozen=True)
class FineTuneSpec(_SpecBase):
    """Second phase of transfer learning: unfreeze the top of the frozen members.

    At the start of epoch `start_epoch` (1-based), the top `unfreeze_top_layers` layers
    (0 = all) of each frozen member (or only those named in `members`) become trainable,
    and training continues with learning_rate * `learning_rate_factor`. BatchNormalization
    layers stay frozen (in inference mode) unless `unfreeze_batchnorm` is set, because
    updating their statistics on a small dataset tends to wreck the pretrained features.
    """

    start_epoch: int = 5
    unfreeze_top_layers: int = 0
    learning_rate_factor: float = 0.1
    members: tuple[str, ...] = ()
    unfreeze_batchnorm: bool = False

    # Epoch 1 would leave no epoch for the head to train on the frozen base; that the phase
    # starts by the last epoch is TrainSpec's rule (it knows the epochs).
    _ranges: typing.ClassVar = {
        "start_epoch": Range(2),
        "unfreeze_top_layers": Range(0),
        "learning_rate_factor": Range(0.0, exclusive_minimum=True),
    }


@dataclass(frozen=True)
class TrainSpec(_SpecBase):
    optimizer: str = "adam"
    learning_rate: float = 1e-3
    lr_schedule: str = "constant"
    # "auto" follows the dataset: sparse categorical cross-entropy for classes, binary
    # cross-entropy for two classes, mean squared error for regression.
    loss: str = "auto"
    metrics: tuple[str, ...] = ("auto",)
    epochs: int = 5
    batch_size: int = 64
    validation_split: float = 0.2
    early_stopping: EarlyStoppingSpec | None = None
    # Decoupled weight decay applied by the optimizer (0 = off).
    weight_decay: float = 0.0
    fine_tune: FineTuneSpec | None = None
    seed: int = 0
    mixed_precision: bool = False
    # XLA compilation: faster steps on GPU, but a long first step on small CPUs.
    jit_compile: bool = False
    # Which devices train, and how (core.spec.distribution); batch_size is the global batch.
    distribution: DistributionSpec = field(default_factory=DistributionSpec)

    _choices: typing.ClassVar = {
        "optimizer": OPTIMIZERS,
        "lr_schedule": LR_SCHEDULES,
        "loss": LOSSES,
    }
    _ranges: typing.ClassVar = {
        "learning_rate": Range(0.0, exclusive_minimum=True),
        "epochs": Range(1),
        "batch_size": Range(1),
        # core.data.split's bounds: at least one sample of ten stays for training.
        "validation_split": Range(0.0, 0.9),
        "weight_decay": Range(0.0),
        "seed": Range(0, 2**32 - 1),  # what NumPy's seeding accepts
    }

    @classmethod
    def _read(cls, data: Mapping[str, Any], where: str):
        spec = super()._read(data, where)
        prefix = f"{where}." if where else ""
        for i, metric in enumerate(spec.metrics):
            _choice(metric, METRICS, f"{prefix}metrics[{i}]")
        return spec

    def _check_rules(self, prefix: str) -> None:
        if self.fine_tune is not None and self.fine_tune.start_epoch > self.epochs:
            raise SpecError(
                f"'{prefix}fine_tune.start_epoch' must be at most '{prefix}epochs' ({self.epochs}), received "
                f"{self.fine_tune.start_epoch}: the fine-tune phase would never start. Start it earlier, "
                f"train more epochs, or remove the fine-tune phase."
            )


@dataclass(frozen=True)
class DatasetSpec(_SpecBase):
    """Where the training data comes from.

    Example:
        DatasetSpec(source="builtin", name="digits28")
        DatasetSpec(source="csv", path="sha256:ab12...", target="label")
        DatasetSpec(source="images", path="sha256:cd34...", image_size=(32, 32), color_mode="grayscale")
    """

    source: str = "builtin"
    # source="builtin": a name from core.data.BUILTIN_DATASETS.
    name: str = "digits28"
    # source="csv"/"npz"/"images": a file path, or "sha256:<hex>" for an upload in the store.
    path: str | None = None
    # source="csv": the target column, and the feature columns (empty: all the others).
    target: str | None = None
    features: tuple[str, ...] = ()
    task: str = "auto"
    scaling: str = "standard"
    # source="images" (a ZIP of class folders): every image is resized to (height, width)
    # and decoded as "rgb" (3 channels) or "grayscale" (1). The other sources keep the defaults.
    image_size: tuple[int, int] = DEFAULT_IMAGE_SIZE
    color_mode: str = "rgb"

    _choices: typing.ClassVar = {"source": DATASET_SOURCES, "task": TASKS, "scaling": SCALINGS,
                                 "color_mode": COLOR_MODES}
    _ranges: typing.ClassVar = {"image_size": IMAGE_SIDE_RANGE}

    def _check_rules(self, prefix: str) -> None:
        if len(self.image_size) != 2:
            raise SpecError(f"'{prefix}image_size' must be [height, width], two whole numbers, received "
                            f"{list(self.image_size)}.")
        if self.source != "images":
            for name, default in (("image_size", DEFAULT_IMAGE_SIZE), ("color_mode", "rgb")):
                if getattr(self, name) != default:
                    raise SpecError(f"'{prefix}{name}' is read only for source 'images', but the source is "
                                    f"'{self.source}'. Remove it, or set source 'images'.")


@dataclass(frozen=True)
class StackSpec(_SpecBase):
    """A whole stack: members, how they are stacked, what trains, and how.

    Example:
        StackSpec(name="seed-sequential", mode="sequential", members=(
            MemberSpec("features", template="cnn_features"),
            MemberSpec("classifier", template="dense_head")))
    """

    name: str = "stack"
    mode: str = "sequential"
    members: tuple[MemberSpec, ...] = ()
    # The trainable head on top: required by fusion, transfer and ensemble/meta_head,
    # appended after the last member in sequential mode when given.
    head: MemberSpec | None = None
    options: dict[str, Any] = field(default_factory=dict)
    adapters: tuple[AdapterSpec, ...] = ()
    # Insert the adapter each pre-flight problem suggests, without asking.
    auto_adapters: bool = False
    trainability: tuple[LayerRule, ...] = ()
    train: TrainSpec = field(default_factory=TrainSpec)
    dataset: DatasetSpec = field(default_factory=DatasetSpec)
    # mode "graph": the stack's nodes and edges (members, head, options and adapters stay
    # empty: the graph is the one description of its members). None in the other modes.
    graph: GraphSpec | None = None
    # Canvas positions, {node id: [x, y]}: layout hints only, in every mode. They never
    # change the model, and the pre-flight check ignores them.
    layout: dict[str, Any] = field(default_factory=dict)
    # A sweep over this spec (core.spec.search, run by core.sweeps); None for a single run.
    search: SearchSpec | None = None

    _choices: typing.ClassVar = {"mode": MODES}

    @classmethod
    def _read(cls, data: Mapping[str, Any], where: str):
        if isinstance(data, Mapping):
            # A version 1 document is a version 2 document without a graph or a layout, so
            # upgrading it is reading it; to_dict writes version 2.
            version = data.get("schema_version", SCHEMA_VERSION)
            if isinstance(version, bool) or version not in READABLE_SCHEMA_VERSIONS:
                raise SpecError(
                    f"'schema_version' {version!r} is not supported: this StackLab reads "
                    f"schema_version {' and '.join(str(v) for v in READABLE_SCHEMA_VERSIONS)}. "
                    f"Re-export the spec from this version."
                )
        spec = super()._read(data, where)
        for node_id, position in spec.layout.items():
            if (not isinstance(position, (list, tuple)) or len(position) != 2
                    or any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
                           for v in position)):
                raise SpecError(f"'layout.{node_id}' must be a position [x, y] of two numbers, "
                                f"received {position!r}.")
        allowed = MODE_OPTIONS[spec.mode]
        for key, value in spec.options.items():
            if key not in allowed:
                raise SpecError(
                    f"Unknown option 'options.{key}' for mode '{spec.mode}'. "
                    f"Allowed options: {sorted(allowed) or 'none'}."
                )
            _choice(value, MODE_OPTION_CHOICES[key], f"options.{key}")
        return spec

    def _check_rules(self, prefix: str) -> None:
        if self.mode == GRAPH_MODE:
            for name, what in (("members", "members"), ("adapters", "adapters")):
                if getattr(self, name):
                    raise SpecError(
                        f"'{prefix}{name}' must be empty in mode 'graph', received {len(getattr(self, name))} "
                        f"{what}: a graph describes its members and adapters as nodes of 'graph'. Move them "
                        f"into the graph (core.spec.presets.to_graph_spec does), or pick a preset mode.")
            if self.head is not None:
                raise SpecError(f"'{prefix}head' must be empty in mode 'graph', received '{self.head.name}': the "
                                f"head is a member node of 'graph', connected to the output.")
            if self.options:
                raise SpecError(f"'{prefix}options' must be empty in mode 'graph', received "
                                f"{sorted(self.options)}: a graph says how it combines members with merge nodes.")
        elif self.graph is not None:
            raise SpecError(f"'{prefix}graph' is read only in mode 'graph', but the mode is '{self.mode}'. Set "
                            f"mode 'graph' to build the graph, or remove 'graph' to use the preset.")
        if self.search is not None:
            check_search(self, prefix)

    def to_dict(self) -> dict[str, Any]:
        data = {"schema_version": SCHEMA_VERSION, **super().to_dict()}
        if data["search"] is None:  # a single run's spec reads as it did before sweeps
            del data["search"]
        return data

    def option(self, key: str) -> Any:
        """The value of a mode option, or its default."""
        return self.options.get(key, MODE_OPTIONS[self.mode].get(key))

    def all_members(self) -> tuple[MemberSpec, ...]:
        """Members followed by the head, if any; in mode "graph", the member nodes' members."""
        if self.mode == GRAPH_MODE:
            return self.graph.members() if self.graph is not None else ()
        return self.members + ((self.head,) if self.head is not None else ())

    def model_key(self) -> dict[str, Any]:
        """The spec as plain data without what never changes the model (the layout): what a
        cache of pre-flight reports keys on."""
        data = self.to_dict()
        data.pop("layout", None)
        data.pop("search", None)
        return data

    def to_json(self, indent: int = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent)

    @classmethod
    def from_json(cls, text: str, *, check_values: bool = True) -> "StackSpec":
        """Read a spec from JSON text (see `from_dict`).

        Raises:
            SpecError: the text is over STACKLAB_MAX_SPEC_BYTES, nested too deeply, not
                JSON, or not a valid spec; one line saying which.
        """
        limit = max_spec_bytes()
        # Characters first: no copy of a huge text just to learn that it is huge.
        if len(text) > limit or len(text.encode("utf-8")) > limit:
            raise SpecError(f"The spec is {format_bytes(len(text.encode('utf-8')))}, over the limit of "
                            f"{format_bytes(limit)} ({MAX_SPEC_BYTES_ENV}); a spec is a few kilobytes. Check "
                            f"that this is a StackLab spec, or raise {MAX_SPEC_BYTES_ENV}.")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"The spec is not valid JSON: {error}.") from None
        except RecursionError:  # the parser gives up far above MAX_SPEC_DEPTH
            raise SpecError(too_deep_message("")) from None
        return cls.from_dict(data, check_values=check_values)

    def replace(self, **changes: Any) -> "StackSpec":
        return dataclasses.replace(self, **changes)
