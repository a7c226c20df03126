"""A stack described as data: plain frozen dataclasses that round-trip through JSON.

`StackSpec` is the unit of reproducibility: the dashboard edits it, the CLI trains from
it and every run stores it. Nothing here imports Keras, so the dashboard can use it freely.

`from_dict` checks types, allowed values, numeric ranges and unknown keys, and names the
offending key in its error; `from_json` and `load_spec` also refuse documents over a size
(STACKLAB_MAX_SPEC_BYTES) or nesting limit. Whether the pieces fit together (shapes, member
counts per mode) is checked when the stack is built (`core.stacking.check`), so a
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
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from core.env_limits import positive_from_env

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

MAX_SPEC_BYTES_ENV = "STACKLAB_MAX_SPEC_BYTES"
# A spec is a few kilobytes (the seed's are under 1 KB); a megabyte is a thousand of them.
DEFAULT_MAX_SPEC_BYTES = 2**20
# Lists and objects inside each other. The deepest real spec is about 6 levels (members ->
# member -> params -> a list); past ~1,000 the JSON parser itself fails.
MAX_SPEC_DEPTH = 32


class SpecError(ValueError):
    """A spec value has the wrong type, an unknown key or a value outside its choices or range."""


def _choice(value: Any, allowed: tuple[Any, ...], key: str) -> Any:
    if value not in allowed:
        raise SpecError(f"'{key}' must be one of {list(allowed)}, received {value!r}.")
    return value


def _number_text(value: float) -> str:
    return str(value) if isinstance(value, int) else repr(float(value))  # 1.0 stays "1.0"


@dataclass(frozen=True)
class Range:
    """The values a number may take: from `minimum` to `maximum` (None: no bound), each end
    included unless marked exclusive.

    Example:
        >>> Range(0.0, 0.9).describe()
        'between 0.0 and 0.9'
        >>> Range(0.0, exclusive_minimum=True).describe()
        'greater than 0.0'
    """

    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False

    def contains(self, value: float) -> bool:
        if self.minimum is not None and (value <= self.minimum if self.exclusive_minimum else value < self.minimum):
            return False
        if self.maximum is not None and (value >= self.maximum if self.exclusive_maximum else value > self.maximum):
            return False
        return True

    def describe(self) -> str:
        """'at least 1', 'greater than 0', 'between 0 and 0.9', 'at least 0 and less than 1'."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None and not (self.exclusive_minimum or self.exclusive_maximum):
            return f"between {_number_text(low)} and {_number_text(high)}"
        parts = []
        if low is not None:
            parts.append(f"{'greater than' if self.exclusive_minimum else 'at least'} {_number_text(low)}")
        if high is not None:
            parts.append(f"{'less than' if self.exclusive_maximum else 'at most'} {_number_text(high)}")
        return " and ".join(parts) or "any number"

    def check(self, value: Any, key: str) -> None:
        """Raise SpecError naming `key` when `value` is not a number in this range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise SpecError(f"'{key}' must be a number, received {value!r}.")
        if not self.contains(value):
            raise SpecError(f"'{key}' must be {self.describe()}, received {_number_text(value)}.")


class _SpecBase:
    """Shared to_dict/from_dict for the spec dataclasses.

    Subclasses list string fields with a fixed set of values in `_choices`, numeric fields
    with their allowed `Range` in `_ranges` (for a tuple of numbers: the range of each item)
    and rules between fields in `_check_rules`; nested spec types are found from the type
    hints, so each dataclass stays a plain list of fields with comments.
    """

    _choices: typing.ClassVar[dict[str, tuple[Any, ...]]] = {}
    _ranges: typing.ClassVar[dict[str, Range]] = {}

    @classmethod
    def range_of(cls, name: str) -> Range | None:
        """The allowed range of numeric field `name` (for forms), or None when it has none."""
        return cls._ranges.get(name)

    def check_values(self, where: str = "") -> None:
        """Check every number against its range and every rule between fields, nested specs
        included (`from_dict` does this; call it on a spec built in code before using it).

        Args:
            where: the key path of this spec inside its parent, for messages ("train").

        Raises:
            SpecError: the first value out of range or rule broken, naming its key path,
                the allowed range and the value received.
        """
        prefix = f"{where}." if where else ""
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value, key = getattr(self, f.name), prefix + f.name
            allowed = self._ranges.get(f.name)
            items = list(enumerate(value)) if isinstance(value, tuple) else None
            if allowed is not None and value is not None:
                for index, item in items if items is not None else [(None, value)]:
                    allowed.check(item, key if index is None else f"{key}[{index}]")
            if isinstance(value, _SpecBase):
                value.check_values(key)
            for index, item in items or ():
                if isinstance(item, _SpecBase):
                    item.check_values(f"{key}[{index}]")
        self._check_rules(prefix)

    def _check_rules(self, prefix: str) -> None:
        """Rules between this spec's fields; raise SpecError naming the key (prefix + name)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            out[f.name] = _to_plain(getattr(self, f.name))
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, where: str = "", check_values: bool = True):
        """Read a spec from plain data (parsed JSON), checking types, choices, keys and ranges.

        Args:
            data: the mapping to read.
            where: its key path inside a parent spec, for messages.
            check_values: also check numeric ranges and rules between fields. Off only to
                read back what was stored before a rule existed (a run's spec, a draft).

        Raises:
            SpecError: the first thing wrong, naming its key path.
        """
        _check_depth(data, where)
        spec = cls._read(data, where)
        if check_values:
            spec.check_values(where)
        return spec

    @classmethod
    def _read(cls, data: Mapping[str, Any], where: str):
        """Types, choices and keys of `data` (not ranges): the recursive part of from_dict."""
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
        return hint._read(value, where=key)
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
            raise SpecError(f"The spec is {_size_text(len(text.encode('utf-8')))}, over the limit of "
                            f"{_size_text(limit)} ({MAX_SPEC_BYTES_ENV}); a spec is a few kilobytes. Check "
                            f"that this is a StackLab spec, or raise {MAX_SPEC_BYTES_ENV}.")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"The spec is not valid JSON: {error}.") from None
        except RecursionError:  # the parser gives up far above MAX_SPEC_DEPTH
            raise SpecError(_too_deep_message("")) from None
        return cls.from_dict(data, check_values=check_values)

    def replace(self, **changes: Any) -> "StackSpec":
        return dataclasses.replace(self, **changes)


def max_spec_bytes() -> int:
    """The largest spec document read: STACKLAB_MAX_SPEC_BYTES, default 1 MiB.

    Raises:
        ValueError: the variable is set, but not to a positive whole number.
    """
    return positive_from_env(MAX_SPEC_BYTES_ENV, DEFAULT_MAX_SPEC_BYTES, whole=True)


def _size_text(size: int) -> str:
    return f"{size / 2**20:.1f} MiB" if size >= 2**20 else f"{size:,} bytes"


def _too_deep_message(path: str) -> str:
    where = f" at '{path if len(path) <= 60 else path[:60] + '…'}'" if path else ""
    return (f"The spec is nested more than {MAX_SPEC_DEPTH} levels deep{where} (lists and objects inside "
            f"each other); a StackLab spec needs fewer than 10. Check that this is a StackLab spec.")


def _check_depth(data: Any, where: str) -> None:
    """Refuse plain data nested deeper than MAX_SPEC_DEPTH, before anything recurses into it."""
    pending = [(data, 1, where)]
    while pending:
        value, depth, path = pending.pop()
        if isinstance(value, Mapping):
            children = [(item, f"{path}.{key}" if path else str(key)) for key, item in value.items()]
        elif isinstance(value, (list, tuple)):
            children = [(item, f"{path}[{index}]") for index, item in enumerate(value)]
        else:
            continue
        if depth > MAX_SPEC_DEPTH:
            raise SpecError(_too_deep_message(path))
        pending.extend((item, depth + 1, child) for item, child in children)


def load_spec(path: str | Path) -> StackSpec:
    """Read a StackSpec from a JSON file.

    Relative member file paths and dataset paths are resolved against the spec file's
    folder, so an example spec next to its model file works from any working directory.

    Raises:
        SpecError: the file is over STACKLAB_MAX_SPEC_BYTES, not valid JSON or not a
            valid spec.
        OSError: the file cannot be read.
    """
    path = Path(path)
    size, limit = path.stat().st_size, max_spec_bytes()
    if size > limit:  # before reading it: a wrong file may be gigabytes
        raise SpecError(f"'{path.name}' is {_size_text(size)}, over the {_size_text(limit)} limit for a spec file "
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
    return dataclasses.replace(
        spec,
        members=tuple(member(m) for m in spec.members),
        head=member(spec.head),
        dataset=dataset,
    )
