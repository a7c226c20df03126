"""The template registry: what a template declares (its parameters, the inputs it takes) and
how it builds, keyed by name.

Each template declares its parameters (name, type, default, range) so a UI can render a
form from them, and builds a `keras.Model` named after the member for a given input shape
and task. Templates that end in an output layer ("auto" units) read the number of classes
and the activation from the task. The templates themselves register from
`core.build.templates.image`, `.vector`, `.sequence` and `.applications`, all imported by the
package (`core.build.templates.TEMPLATES` is the full registry).

Example:
    >>> model = TEMPLATES["cnn_features"].build("features", (28, 28, 1), task, {})
    >>> model.output_shape
    (None, 5408)
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import keras
import numpy as np

from core.spec.shapes import RANK_WORDS, format_shape
from core.spec.tasks import TaskInfo

PARAM_KINDS = ("int", "float", "bool", "choice", "int_list", "units", "activation", "str")
ACTIVATIONS = ("relu", "gelu", "silu", "tanh", "sigmoid", "elu", "selu", "linear", "softmax")


@dataclass(frozen=True)
class ParamSpec:
    """One declared template parameter.

    kind: "int", "float", "bool", "choice" (one of `choices`), "int_list" (a list of at
    least `min_items` ints, each within [minimum, maximum]), "units" (an int or "auto":
    follow the task), "activation" (a Keras activation name; "auto" = follow the task,
    only where the default is "auto") or "str".
    """

    name: str
    kind: str
    default: Any
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[Any, ...] = ()
    min_items: int = 0

    def validate(self, value: Any, where: str) -> Any:
        """Return `value` normalized (lists become lists of ints), or raise ValueError."""
        key = f"{where}.{self.name}"
        auto_allowed = self.kind == "units" or (self.kind == "activation" and self.default == "auto")
        if auto_allowed and isinstance(value, str) and value == "auto":
            return value
        if self.kind == "int" or self.kind == "units":
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                also = ' or "auto"' if self.kind == "units" else ""
                raise ValueError(f"'{key}' must be an integer{also}, received {value!r}.")
            self._check_range(int(value), key)
            return int(value)
        if self.kind == "float":
            if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
                raise ValueError(f"'{key}' must be a number, received {value!r}.")
            if not math.isfinite(value):
                raise ValueError(f"'{key}' must be a finite number, received {value!r}.")
            self._check_range(float(value), key)
            return float(value)
        if self.kind == "bool":
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"'{key}' must be true or false, received {value!r}.")
            return bool(value)
        if self.kind == "int_list":
            if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
                value = [int(value)]
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in value
            ):
                raise ValueError(f"'{key}' must be a list of integers, received {value!r}.")
            if len(value) < self.min_items:
                raise ValueError(f"'{key}' needs at least {self.min_items} item(s), received {list(value)!r}.")
            for v in value:
                self._check_range(int(v), key)
            return [int(v) for v in value]
        allowed = self.allowed_values()
        # True == 1 in Python: without this, True would pass as the choice 1.0.
        wrong_bool = isinstance(value, bool) and not any(isinstance(c, bool) for c in allowed)
        if allowed and (wrong_bool or value not in allowed):
            also = ' or "auto"' if self.kind == "activation" and self.default == "auto" else ""
            raise ValueError(f"'{key}' must be one of {list(allowed)}{also}, received {value!r}.")
        if self.kind == "str" and not isinstance(value, str):
            raise ValueError(f"'{key}' must be a string, received {value!r}.")
        return value

    def _check_range(self, value: float, key: str) -> None:
        if self.minimum is not None and value < self.minimum:
            raise ValueError(f"'{key}' must be >= {self.minimum}, received {value}.")
        if self.maximum is not None and value > self.maximum:
            raise ValueError(f"'{key}' must be <= {self.maximum}, received {value}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain data for forms; an activation lists the names it accepts as its choices."""
        return {
            "name": self.name, "kind": self.kind, "default": self.default, "help": self.help,
            "minimum": self.minimum, "maximum": self.maximum, "choices": list(self.allowed_values()),
            "min_items": self.min_items,
        }

    def allowed_values(self) -> tuple[Any, ...]:
        if self.choices or self.kind != "activation":
            return self.choices
        return (("auto",) if self.default == "auto" else ()) + ACTIVATIONS


# builder(input_shape, task, params, name, sample) -> keras.Model
Builder = Callable[[tuple, TaskInfo, dict, str, "np.ndarray | None"], keras.Model]
# check_input(input_shape, params=None) -> a sentence saying what is wrong, or None
InputCheck = Callable[..., "str | None"]


@dataclass(frozen=True)
class Template:
    """A named sub-model builder with declared parameters.

    Args:
        input_ranks: accepted ranks of one sample (without batch): 1 for feature vectors,
            2 for sequences (steps, channels), 3 for images (height, width, channels).
        output: "features" for encoders, "predictions" when the model ends in an output
            layer sized by the task (heads and complete classifiers).
        check_input: optional extra constraint on the input shape, called as
            `check_input(shape, params)` with resolved parameters; returns a sentence
            saying what is wrong, or None. Callers that know only the shape call
            `check_input(shape)`: it then reports only what no parameter choice would fix.
    """

    name: str
    title: str
    description: str
    params: tuple[ParamSpec, ...]
    input_ranks: tuple[int, ...]
    builder: Builder
    output: str = "features"
    check_input: InputCheck | None = None
    tags: tuple[str, ...] = field(default=())

    def resolve_params(self, params: Mapping[str, Any], where: str = "") -> dict[str, Any]:
        """Fill in defaults and validate values; unknown parameter names are errors."""
        where = where or self.name
        declared = {p.name: p for p in self.params}
        unknown = sorted(set(params) - set(declared))
        if unknown:
            raise ValueError(
                f"Template '{self.name}' has no parameter '{unknown[0]}'. "
                f"Its parameters: {sorted(declared)}."
            )
        return {
            p.name: p.validate(params.get(p.name, p.default), where) for p in self.params
        }

    def input_problem(self, input_shape: tuple, params: Mapping[str, Any] | None = None) -> str | None:
        """Why this template cannot take `input_shape` (without batch), or None.

        Args:
            input_shape: shape of one sample, without the batch axis.
            params: the member's parameters (missing ones take their defaults); some
                constraints depend on them (pooling steps, `adapt_input`).

        Raises:
            ValueError: a parameter is unknown or invalid.
        """
        if len(input_shape) not in self.input_ranks:
            return (
                f"expects input of rank {' or '.join(str(r) for r in self.input_ranks)} "
                f"({' or '.join(RANK_WORDS[r] for r in self.input_ranks)})"
            )
        if self.check_input is not None:
            return self.check_input(tuple(input_shape), self.resolve_params(params or {}))
        return None

    def build(
        self,
        name: str,
        input_shape: tuple,
        task: TaskInfo,
        params: Mapping[str, Any] | None = None,
        sample: np.ndarray | None = None,
    ) -> keras.Model:
        """Build the sub-model for one sample shape `input_shape`.

        Args:
            name: the member name; becomes the Keras model name.
            input_shape: shape of one input sample, without the batch axis.
            task: the dataset's task, for "auto" output units and activation.
            params: template parameters; missing ones take their defaults.
            sample: a few training inputs, for layers that adapt to data (Normalization).

        Raises:
            ValueError: a parameter is unknown or out of range, or the input shape does
                not fit this template.
        """
        resolved = self.resolve_params(params or {}, where=name)
        problem = self.input_problem(tuple(input_shape), resolved)
        if problem:
            raise ValueError(
                f"Member '{name}' (template '{self.name}') {problem}, "
                f"but receives shape {format_shape(input_shape)}."
            )
        return self.builder(tuple(input_shape), task, resolved, name, sample)

    def to_dict(self) -> dict[str, Any]:
        """The template's description as plain data, for forms and the CLI."""
        return {
            "name": self.name, "title": self.title, "description": self.description,
            "params": [p.to_dict() for p in self.params], "input_ranks": list(self.input_ranks),
            "output": self.output, "tags": list(self.tags),
        }


def output_units(value: Any, task: TaskInfo) -> int:
    return task.output_units if value == "auto" else int(value)


def output_activation(value: Any, task: TaskInfo) -> str:
    return task.output_activation if value == "auto" else value


def safe_layer_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", text)


TEMPLATES: dict[str, Template] = {}


def register(template: Template) -> Template:
    if template.name in TEMPLATES:
        raise ValueError(f"Template '{template.name}' is already registered.")
    TEMPLATES[template.name] = template
    return template
