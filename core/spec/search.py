"""What a sweep searches: the `search` section of a spec. No Keras, no Optuna import.

A search space is a set of dotted paths into the spec's dict, each with the values it may
take: `"train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": true}`.
Members (and graph nodes) are addressed by name: `"members.model_a.params.filters"`.
`variants` are named patches of the whole spec (deep-merged; "options" replaced whole),
searched as one more categorical parameter, "variant" (Compare modes is a grid over them).
`core.sweeps` turns this into Optuna distributions, a sampler and a pruner, and each trial
into an ordinary run with `apply_params`.

Example:
    >>> search = SearchSpec.from_dict({"trials": 4, "space": {
    ...     "train.learning_rate": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}})
    >>> apply_params(spec.replace(search=search), {"train.learning_rate": 0.003}).train.learning_rate
    0.003
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping

from core.spec.base import Range, SpecError, _SpecBase

PARAM_TYPES = ("float", "int", "categorical")
SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("median", "successive_halving", "threshold", "none")
DIRECTIONS = ("auto", "maximize", "minimize")
# The parameter the variants are searched as.
VARIANT = "variant"
# What an epoch row can hold (core.training.compile names each metric by its spec name).
_GREATER_IS_BETTER = ("accuracy", "auc", "precision", "recall")
_LESS_IS_BETTER = ("loss", "mae", "mse", "rmse")
OBJECTIVE_METRICS = tuple(prefix + name for prefix in ("val_", "") for name in _LESS_IS_BETTER + _GREATER_IS_BETTER)
# Dicts whose keys are free: a template's parameters and a mode's options are checked when
# the stack is built (by the template) or read (by the mode), not against a list here.
_OPEN_DICTS = ("params", "options", "layout")


@dataclass(frozen=True)
class ObjectiveSpec(_SpecBase):
    """The number a sweep optimises: the best epoch's value of an epoch-row metric."""

    metric: str = "val_accuracy"
    # "auto": maximize accuracy, auc, precision and recall; minimize losses and errors.
    direction: str = "auto"

    _choices: typing.ClassVar = {"metric": OBJECTIVE_METRICS, "direction": DIRECTIONS}

    def resolved_direction(self) -> str:
        """'maximize' or 'minimize'."""
        if self.direction != "auto":
            return self.direction
        return "maximize" if self.metric.removeprefix("val_") in _GREATER_IS_BETTER else "minimize"


@dataclass(frozen=True)
class PrunerSpec(_SpecBase):
    """How hopeless trials are stopped early, from their epoch rows.

    median: stop a trial whose best value so far is worse than the median of earlier
    trials at the same epoch; successive_halving: keep the best 1/reduction_factor at each
    rung; threshold: stop a trial whose value is past `lower`/`upper`; none: never.
    """

    kind: str = "median"
    # Epochs every trial trains before it can be pruned.
    warmup_epochs: int = 1
    # median: finished trials needed before any pruning.
    startup_trials: int = 2
    # successive_halving.
    reduction_factor: int = 3
    # threshold: prune below `lower` or above `upper`.
    lower: float | None = None
    upper: float | None = None

    _choices: typing.ClassVar = {"kind": PRUNERS}
    _ranges: typing.ClassVar = {"warmup_epochs": Range(0), "startup_trials": Range(0), "reduction_factor": Range(2)}

    @classmethod
    def _read(cls, data: Any, where: str):
        if isinstance(data, str):  # "pruner": "none" is short for {"kind": "none"}
            data = {"kind": data}
        return super()._read(data, where)

    def _check_rules(self, prefix: str) -> None:
        if self.kind == "threshold" and self.lower is None and self.upper is None:
            raise SpecError(f"'{prefix}lower' or '{prefix}upper' is needed for a threshold pruner, received "
                            f"neither. Give the value past which a trial is hopeless.")


@dataclass(frozen=True)
class ParamSpec(_SpecBase):
    """The values one path may take: a float or int range (log scale, step), or choices."""

    type: str
    # int | float: an int range reads back as whole numbers.
    low: int | float | None = None
    high: int | float | None = None
    log: bool = False
    step: int | float | None = None
    choices: tuple[Any, ...] = ()

    _choices: typing.ClassVar = {"type": PARAM_TYPES}

    def _check_rules(self, prefix: str) -> None:
        key = prefix.rstrip(".")
        if self.type == "categorical":
            if not self.choices:
                raise SpecError(f"'{prefix}choices' must list at least one value, received none.")
            for name in ("low", "high", "step"):
                if getattr(self, name) is not None:
                    raise SpecError(f"'{prefix}{name}' is read only for types 'float' and 'int', but "
                                    f"'{key}' is categorical. Remove it, or list the values in 'choices'.")
            return
        if self.choices:
            raise SpecError(f"'{prefix}choices' is read only for type 'categorical', but '{key}' is "
                            f"{self.type}. Remove it, or set type 'categorical'.")
        for name in ("low", "high"):
            if getattr(self, name) is None:
                raise SpecError(f"'{prefix}{name}' is needed for type '{self.type}', received none.")
        if self.type == "int":
            for name in ("low", "high", "step"):
                value = getattr(self, name)
                if value is not None and value != int(value):
                    raise SpecError(f"'{prefix}{name}' must be a whole number for type 'int', received {value}.")
        if self.low >= self.high:
            raise SpecError(f"'{prefix}low' must be less than '{prefix}high', received low {self.low} and high "
                            f"{self.high}. For one fixed value, set it in the spec instead.")
        if self.log and self.low <= 0:
            raise SpecError(f"'{prefix}low' must be > 0 for a log scale, received {self.low}. Start the range "
                            f"above 0 (e.g. 1e-5), or set log false.")
        if self.log and self.step is not None:
            raise SpecError(f"'{prefix}step' cannot be used with a log scale (Optuna samples either one). "
                            f"Remove 'step' or set log false.")
        if self.step is not None and self.step <= 0:
            raise SpecError(f"'{prefix}step' must be greater than 0, received {self.step}.")

    def grid(self) -> list[Any] | None:
        """Every value, for a grid sampler: the choices, or an int range; None for a float range."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        return None

    def samples(self) -> list[Any]:
        """The values checked against the spec: each choice, or both ends of the range."""
        if self.type == "categorical":
            return list(self.choices)
        if self.type == "int":
            return [int(self.low), int(self.high)]
        return [float(self.low), float(self.high)]


@dataclass(frozen=True)
class SearchSpec(_SpecBase):
    """A sweep over a spec: the space, the objective, the budget and how Optuna searches."""

    # The Optuna study's name; None: the spec's name.
    study: str | None = None
    objective: ObjectiveSpec = field(default_factory=ObjectiveSpec)
    trials: int = 8
    # Trials training at once; 0: the scheduler's max_workers().
    parallel: int = 0
    sampler: str = "tpe"
    pruner: PrunerSpec = field(default_factory=PrunerSpec)
    seed: int | None = 0
    # dotted path -> ParamSpec.
    space: dict[str, ParamSpec] = field(default_factory=dict)
    # variant name -> a patch of the spec dict.
    variants: dict[str, Any] = field(default_factory=dict)

    _choices: typing.ClassVar = {"sampler": SAMPLERS}
    _ranges: typing.ClassVar = {"trials": Range(1), "parallel": Range(0), "seed": Range(0, 2**32 - 1)}

    @classmethod
    def _read(cls, data: Mapping[str, Any], where: str):
        spec = super()._read(data, where)
        prefix = f"{where}." if where else ""
        space = {path: ParamSpec._read(value, f"{prefix}space.{path}") for path, value in spec.space.items()}
        for name, patch in spec.variants.items():
            if not isinstance(patch, Mapping):
                raise SpecError(f"'{prefix}variants.{name}' must be an object (a patch of the spec), received "
                                f"{type(patch).__name__}.")
        return dataclasses.replace(spec, space=space)

    def _check_rules(self, prefix: str) -> None:
        for path, param in self.space.items():
            param.check_values(f"{prefix}space.{path}")
        if VARIANT in self.space:
            raise SpecError(f"'{prefix}space.{VARIANT}' is the name the variants are searched under. Rename that "
                            f"path, or list its values under 'variants'.")
        if not self.space and not self.variants:
            raise SpecError(f"'{prefix}space' is empty and there are no 'variants': nothing to search. Add a "
                            f"path, e.g. \"train.learning_rate\": {{\"type\": \"float\", \"low\": 1e-4, "
                            f"\"high\": 1e-2, \"log\": true}}.")
        if self.sampler == "grid":
            for path, param in self.space.items():
                if param.grid() is None:
                    raise SpecError(f"'{prefix}space.{path}' is a float range, which a grid sampler cannot "
                                    f"enumerate. Use type 'categorical' with the values to try, or sampler 'tpe'.")

    def parameters(self) -> dict[str, ParamSpec]:
        """The space with the variants as one more categorical parameter, "variant"."""
        if not self.variants:
            return dict(self.space)
        return {**self.space, VARIANT: ParamSpec("categorical", choices=tuple(self.variants))}

    def grid_size(self) -> int | None:
        """How many points a grid over the parameters has (None unless the sampler is grid)."""
        if self.sampler != "grid":
            return None
        size = 1
        for param in self.parameters().values():
            size *= len(param.grid() or ())
        return size


def check_search(spec: Any, prefix: str = "") -> None:
    """Check `spec.search` against the spec it searches: every path exists, every value fits,
    the objective is one the run reports. Called by StackSpec's rules.

    Raises:
        SpecError: naming 'search.space.<path>', 'search.variants.<name>' or 'search.objective.metric'.
    """
    search = spec.search
    where = f"{prefix}search"
    metric = search.objective.metric
    if metric.startswith("val_") and spec.train.validation_split == 0:
        raise SpecError(f"'{where}.objective.metric' is '{metric}', but 'train.validation_split' is 0: the runs "
                        f"have no validation metrics. Set a validation split, or optimise '{metric[4:]}'.")
    for name in search.variants:
        try:
            _check_one(spec, {VARIANT: name})
        except SpecError as error:
            raise SpecError(f"'{where}.variants.{name}' does not make a valid spec: {error}") from None
    for path, param in search.space.items():
        for value in param.samples():
            try:
                _check_one(spec, {path: value})
            except SpecError as error:
                raise SpecError(f"'{where}.space.{path}' = {value!r} does not make a valid spec: {error}") from None


def _check_one(spec: Any, params: Mapping[str, Any]) -> None:
    apply_params(spec, params)


def apply_params(spec: Any, params: Mapping[str, Any]) -> Any:
    """The spec of one trial: `spec` (a StackSpec with a search section) with `params` set.

    A "variant" parameter applies that variant's patch first; then each dotted path is set.
    A mode change resets the options to the new mode's defaults unless the variant or the
    params set them. The result has no search section and is checked like a spec read from JSON.

    Args:
        spec: the sweep's base StackSpec.
        params: path -> value (and "variant" -> a variant's name), as a sampler chose them.

    Returns:
        The trial's StackSpec (search=None).

    Raises:
        SpecError: a path that is not in the spec (naming the nearest keys), an unknown
            variant, or a value the spec refuses.
    """
    search = spec.search
    data = spec.to_dict()
    data["search"] = None
    params = dict(params)
    # The mode the options were written for: a mode chosen later resets them to its defaults.
    options_mode = spec.mode
    if VARIANT in params:
        name = params.pop(VARIANT)
        variants = search.variants if search is not None else {}
        if name not in variants:
            raise SpecError(f"Unknown variant {name!r}: the search lists {sorted(variants) or 'none'}.")
        patch = copy.deepcopy(dict(variants[name]))
        _merge(data, patch)
        if "options" in patch:
            options_mode = data.get("mode")
    for path, value in params.items():
        _set_path(data, path, copy.deepcopy(value))
    if any(path == "options" or path.startswith("options.") for path in params):
        options_mode = data.get("mode")
    if data.get("mode") != options_mode:
        data["options"] = {}
    return type(spec).from_dict(data)


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """Deep-merge `patch` into `target`: dicts merge key by key, anything else replaces."""
    for key, value in patch.items():
        if key == "options" or not isinstance(value, Mapping) or not isinstance(target.get(key), dict):
            target[key] = value
        else:
            _merge(target[key], value)


def _set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set `value` at the dotted `path` of the spec dict; list items are found by name or id."""
    parts = path.split(".")
    node: Any = data
    created = False  # inside an optional part made here: from_dict checks its keys
    for depth, part in enumerate(parts):
        last = depth == len(parts) - 1
        here = ".".join(parts[:depth])
        if isinstance(node, list):
            named = {item.get("name", item.get("id")): item for item in node if isinstance(item, dict)}
            if part not in named:
                raise SpecError(_unknown(path, part, here, [str(name) for name in named], "no item named"))
            if last:
                raise SpecError(f"'{path}' names a whole item of '{here}'; set one of its keys, e.g. "
                                f"'{path}.trainable'.")
            node = named[part]
            continue
        container = parts[depth - 1] if depth else None
        if part not in node and container not in _OPEN_DICTS and not created:
            raise SpecError(_unknown(path, part, here, list(node), "no key"))
        if last:
            node[part] = value
            return
        if node.get(part) is None:
            node[part] = {}  # an optional part (fine_tune, early_stopping) with its defaults
            created = True
        node = node[part]
        if not isinstance(node, (dict, list)):
            raise SpecError(f"'{path}' goes through '{'.'.join(parts[:depth + 1])}', which is a value "
                            f"({node!r}), not an object.")


def _unknown(path: str, part: str, here: str, known: list[str], what: str) -> str:
    near = difflib.get_close_matches(part, known, n=3, cutoff=0.5)
    hint = f" Did you mean {' or '.join(repr(n) for n in near)}?" if near else ""
    return (f"'{path}': {what} '{part}' in '{here or 'the spec'}'; it has {sorted(known)}.{hint}")
