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

SCHEMA_VERSION = 1

STACKING_MODES = ("sequential", "fusion", "transfer", "ensemble")
# Options each mode understands, with their defaults. Kept as data so the dashboard can
# render them and `from_dict` can reject an option the chosen mode would ignore.
MODE_OPTIONS: dict[str, dict[str, Any]] = {
    "sequential": {},
    "fusion": {"include_raw_input": False},
    "transfer": {"freeze_base": True},
    "ensemble": {"combine": "average"},
}
MODE_OPTION_CHOICES: dict[str, tuple[Any, ...]] = {
    "include_raw_input": (True, False),
    "freeze_base": (True, False),
    "combine": ("average", "meta_head"),
}
MEMBER_SOURCES = ("template", "file", "run")
ADAPTER_KINDS = ("flatten", "global_average_pooling", "reshape", "dense", "resizing")
DATASET_SOURCES = ("builtin", "csv", "npz")
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
    """

    source: str = "builtin"
    # source="builtin": a name from core.data.BUILTIN_DATASETS.
    name: str = "digits28"
    # source="csv"/"npz": a file path, or "sha256:<hex>" for an upload in the store.
    path: str | None = None
    # source="csv": the target column, and the feature columns (empty: all the others).
    target: str | None = None
    features: tuple[str, ...] = ()
    task: str = "auto"
    scaling: str = "standard"

    _choices: typing.ClassVar = {"source": DATASET_SOURCES, "task": TASKS, "scaling": SCALINGS}


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

    _choices: typing.ClassVar = {"mode": STACKING_MODES}

    @classmethod
    def _read(cls, data: Mapping[str, Any], where: str):
        if isinstance(data, Mapping):
            version = data.get("schema_version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise SpecError(
                    f"'schema_version' {version!r} is not supported: this StackLab reads "
                    f"schema_version {SCHEMA_VERSION}. Re-export the spec from this version."
                )
        spec = super()._read(data, where)
        allowed = MODE_OPTIONS[spec.mode]
        for key, value in spec.options.items():
            if key not in allowed:
                raise SpecError(
                    f"Unknown option 'options.{key}' for mode '{spec.mode}'. "
                    f"Allowed options: {sorted(allowed) or 'none'}."
                )
            _choice(value, MODE_OPTION_CHOICES[key], f"options.{key}")
        return spec

    def to_dict(self) -> dict[str, Any]:
        return {"schema_version": SCHEMA_VERSION, **super().to_dict()}

    def option(self, key: str) -> Any:
        """The value of a mode option, or its default."""
        return self.options.get(key, MODE_OPTIONS[self.mode].get(key))

    def all_members(self) -> tuple[MemberSpec, ...]:
        """Members followed by the head, if any."""
        return self.members + ((self.head,) if self.head is not None else ())

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
