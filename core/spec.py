"""A stack described as data: plain frozen dataclasses that round-trip through JSON.

`StackSpec` is the unit of reproducibility: the dashboard edits it, the CLI trains from
it and every run stores it. Nothing here imports Keras, so the dashboard can use it freely.

`from_dict` checks types, allowed values and unknown keys, and names the offending key in
its error. Whether the pieces fit together (shapes, member counts per mode) is checked
when the stack is built (`core.stacking.check`), so a half-finished draft stays valid data.

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
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

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


class SpecError(ValueError):
    """A spec value has the wrong type, an unknown key or a value outside its choices."""


def _choice(value: Any, allowed: tuple[Any, ...], key: str) -> Any:
    if value not in allowed:
        raise SpecError(f"'{key}' must be one of {list(allowed)}, received {value!r}.")
    return value


class _SpecBase:
    """Shared to_dict/from_dict for the spec dataclasses.

    Subclasses list string fields with a fixed set of values in `_choices` and nested
    spec types are found from the type hints, so each dataclass stays a plain list of
    fields with comments.
    """

    _choices: typing.ClassVar[dict[str, tuple[Any, ...]]] = {}

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _to_plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = ""):
        prefix = f"{where}." if where else ""
        if not isinstance(data, Mapping):
            raise SpecError(
                f"'{where or cls.__name__}' must be an object (a JSON dict), "
                f"received {type(data).__name__}."
            )
        hints = typing.get_type_hints(cls)
        fields_by_name = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(fields_by_name) - {"schema_version"})
        if unknown:
            raise SpecError(
                f"Unknown key '{prefix}{unknown[0]}' in {cls.__name__}. "
                f"Allowed keys: {sorted(fields_by_name)}."
            )
        kwargs = {}
        for name, value in data.items():
            if name == "schema_version":
                continue
            key = prefix + name
            kwargs[name] = _from_plain(value, hints[name], key)
            if name in cls._choices:
                _choice(kwargs[name], cls._choices[name], key)
        missing = [
            n for n, f in fields_by_name.items()
            if n not in kwargs and f.default is dataclasses.MISSING
            and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
        ]
        if missing:
            raise SpecError(f"Missing required key '{prefix}{missing[0]}' in {cls.__name__}.")
        return cls(**kwargs)


def _to_plain(value: Any) -> Any:
    if isinstance(value, _SpecBase):
        return value.to_dict()
    if isinstance(value, (tuple, list)):
        return [_to_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_plain(v) for k, v in value.items()}
    return value


def _from_plain(value: Any, hint: Any, key: str) -> Any:
    """Convert a JSON value to the declared field type, or raise naming the key."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        errors = []
        for option in non_none:
            try:
                return _from_plain(value, option, key)
            except SpecError as error:
                errors.append(str(error))
        raise SpecError(errors[0])
    if isinstance(hint, type) and issubclass(hint, _SpecBase):
        return hint.from_dict(value, where=key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise SpecError(f"'{key}' must be a list, received {type(value).__name__}.")
        item_hint = args[0] if args else Any
        return tuple(_from_plain(v, item_hint, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, Mapping):
            raise SpecError(f"'{key}' must be an object, received {type(value).__name__}.")
        return dict(value)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise SpecError(f"'{key}' must be true or false, received {value!r}.")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise SpecError(f"'{key}' must be an integer, received {value!r}.")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"'{key}' must be a number, received {value!r}.")
        if not math.isfinite(value):
            raise SpecError(f"'{key}' must be a finite number, received {value!r}.")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise SpecError(f"'{key}' must be a string, received {value!r}.")
        return value
    raise TypeError(f"Unsupported spec field type {hint!r} for '{key}'.")  # a bug, not input


@dataclass(frozen=True)
class MemberSpec(_SpecBase):
    """One sub-model of a stack: a built-in template, a user model file or an earlier run.

    Example:
        MemberSpec(name="features", template="cnn_features", params={"filters": [32]})
        MemberSpec(name="base", source="file", file="sha256:ab12...", cut_at="flatten")
    """

    name: str
    source: str = "template"
    # source="template": a name from core.templates.TEMPLATES and its parameters; missing
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
    def from_dict(cls, data: Mapping[str, Any], *, where: str = ""):
        # A member given only a template name is obviously a template member.
        if isinstance(data, Mapping) and "source" not in data:
            if data.get("file") is not None:
                data = {**data, "source": "file"}
            elif data.get("run_id") is not None:
                data = {**data, "source": "run"}
        return super().from_dict(data, where=where)


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


@dataclass(frozen=True)
class EarlyStoppingSpec(_SpecBase):
    monitor: str = "val_loss"
    patience: int = 3
    min_delta: float = 0.0
    restore_best_weights: bool = True


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = ""):
        spec = super().from_dict(data, where=where)
        prefix = f"{where}." if where else ""
        for i, metric in enumerate(spec.metrics):
            _choice(metric, METRICS, f"{prefix}metrics[{i}]")
        return spec


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
    def from_dict(cls, data: Mapping[str, Any], *, where: str = ""):
        if isinstance(data, Mapping):
            version = data.get("schema_version", SCHEMA_VERSION)
            if version != SCHEMA_VERSION:
                raise SpecError(
                    f"'schema_version' {version!r} is not supported: this StackLab reads "
                    f"schema_version {SCHEMA_VERSION}. Re-export the spec from this version."
                )
        spec = super().from_dict(data, where=where)
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
    def from_json(cls, text: str) -> "StackSpec":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"The spec is not valid JSON: {error}.") from None
        return cls.from_dict(data)

    def replace(self, **changes: Any) -> "StackSpec":
        return dataclasses.replace(self, **changes)


def load_spec(path: str | Path) -> StackSpec:
    """Read a StackSpec from a JSON file.

    Relative member file paths and dataset paths are resolved against the spec file's
    folder, so an example spec next to its model file works from any working directory.

    Raises:
        SpecError: the file is not valid JSON or not a valid spec.
        OSError: the file cannot be read.
    """
    path = Path(path)
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
    return dataclasses.replace(
        spec,
        members=tuple(member(m) for m in spec.members),
        head=member(spec.head),
        dataset=dataset,
    )
