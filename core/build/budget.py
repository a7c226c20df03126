"""How big a stack would be, estimated from its shapes before any weight exists, and the limits.

`core.build.stacking` wires a stack once inside `deferred_variables()`, where Keras layers create
their variables without memory, asks `estimate` for its size and refuses it with a
"budget" problem when `refusals` finds it over a limit; only a stack within the limits is
built for real. A parameter bomb (three 1,024-filter conv layers, no pooling, 4,096 dense
units: two billion parameters, 8 GB of weights) is then refused in milliseconds instead of
running the process out of memory.

Limits, from the environment:
- STACKLAB_MAX_PARAMS (default 100,000,000): parameters of the stack. 100 million float32
  weights are 400 MB, and training keeps about four times that (weights, gradients and
  Adam's two moments): 1.6 GB, what a laptop can spare. The largest built-in backbone
  (ResNet50, 24 million) and the seed's stacks (under a million) are far below it.
- STACKLAB_MAX_ACTIVATION_BYTES (default 4 GiB): the layer outputs of one training batch.
  Training keeps them for the backward pass, and their gradients take about as much again,
  so 4 GiB of outputs is ~8 GB at the peak of a step: the most a 16 GB machine should give
  one run. MobileNetV2 on 224x224 images, batch 64, is ~1.7 GB.

Raise them on a machine that has the memory (a GPU with 80 GB, for example).

Example:
    >>> with deferred_variables() as created:
    ...     model = build_the_stack()          # no weight is allocated here
    >>> size = estimate(created, model, {}, batch_size=64)
    >>> [p.message for p in refusals(size)]
    ["The stack would have about 2,049,459,594 parameters ..."]
"""

from __future__ import annotations

import contextlib
import math
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator, Mapping, Sequence

from core.build.report import Problem
from core.build.trainability import count_params, iter_leaves
from core.limits import format_bytes, positive_from_env
from core.spec.shapes import format_shape

if TYPE_CHECKING:
    import keras

GIB = 2**30
PARAMS_ENV = "STACKLAB_MAX_PARAMS"
ACTIVATION_ENV = "STACKLAB_MAX_ACTIVATION_BYTES"
DEFAULT_MAX_PARAMS = 100_000_000
DEFAULT_MAX_ACTIVATION_BYTES = 4 * GIB



@dataclass(frozen=True)
class Limits:
    """The budget of one stack; `from_env()` reads STACKLAB_MAX_PARAMS and STACKLAB_MAX_ACTIVATION_BYTES."""

    max_params: int = DEFAULT_MAX_PARAMS
    max_activation_bytes: int = DEFAULT_MAX_ACTIVATION_BYTES

    @classmethod
    def from_env(cls) -> "Limits":
        """Raises ValueError naming the variable that is not a positive whole number."""
        return cls(max_params=positive_from_env(PARAMS_ENV, DEFAULT_MAX_PARAMS, whole=True),
                   max_activation_bytes=positive_from_env(ACTIVATION_ENV, DEFAULT_MAX_ACTIVATION_BYTES,
                                                          whole=True))


@dataclass(frozen=True)
class Estimate:
    """A stack's size, from shapes only.

    params: parameters of the wired stack (all its variables: weights and statistics); when
        it could not be wired, of every variable the attempt created.
    weight_bytes: those parameters in bytes, at their dtypes.
    activation_bytes: every layer's output elements x batch_size x bytes per element: the
        forward activations one training batch keeps for the backward pass. A lower bound
        of a step's memory: the gradients of those outputs, the framework's workspace and
        the input batch come on top (roughly as much again).
    batch_size: the batch the activations are counted for.
    member_params: parameters per member that was built, largest first.
    largest_output: the layer with the largest output and its shape, e.g.
        "'features/features_conv1' (batch, 26, 26, 1024)"; "" when nothing was built.
    """

    params: int
    weight_bytes: int
    activation_bytes: int
    batch_size: int
    member_params: dict[str, int] = field(default_factory=dict)
    largest_output: str = ""

    @property
    def activation_bytes_per_sample(self) -> float:
        return self.activation_bytes / max(self.batch_size, 1)


@contextlib.contextmanager
def deferred_variables() -> Iterator[list]:
    """Inside, Keras layers create their variables without allocating them; yields that list.

    `keras.StatelessScope(initialize_variables=False)` makes a variable created inside it
    keep only its shape, dtype and initializer, and registers it in Keras's global list of
    uninitialized variables (global_state "uninitialized_variables", see
    keras/src/backend/common/variables.py). The exit of any later outermost StatelessScope
    with initialize_variables=True initializes everything on that list: 8 GB for the stack
    this module exists to refuse. So the list is swapped for a private one while the block
    runs and the previous one is put back after it: the variables deferred here leave
    Keras's state (and are freed with the models that hold them), and any deferred before
    stay pending as they were. `keras.backend.clear_session()` would drop them too, but it
    also resets the caller's state (the dtype policy of a mixed-precision run, name
    counters), and initializing then deleting is the very allocation to avoid.

    Models built inside must not be run or have their weights read outside: reading a
    deferred variable's value calls its initializer (allocates it). Their shapes, layer
    tables and `count_params()` are safe.
    """
    import keras
    from keras.src.backend.common import global_state

    key = "uninitialized_variables"
    previous = global_state.get_global_attribute(key)
    created: list = []
    global_state.set_global_attribute(key, created)
    try:
        with keras.StatelessScope(initialize_variables=False):
            yield created
    finally:
        global_state.set_global_attribute(key, previous)


_BITS = re.compile(r"(\d+)$")


def _itemsize(dtype) -> int:
    """Bytes per element of a Keras dtype name ("float32" -> 4, "bfloat16" -> 2, "bool" -> 1)."""
    name = str(getattr(dtype, "name", dtype))
    match = _BITS.search(name)
    return int(match.group(1)) // 8 if match else 1 if name == "bool" else 4


def _elements(shape: Sequence) -> int:
    # An unknown dimension (a sequence of any length) counts as 1: the estimate stays a lower bound.
    return math.prod(dim if isinstance(dim, int) and dim > 0 else 1 for dim in shape)


def _outputs(layer) -> list:
    """The output tensors of every call of `layer` (a shared layer is called several times)."""
    tensors = [tensor for node in getattr(layer, "_inbound_nodes", ()) for tensor in node.outputs]
    return tensors or ([layer.output] if getattr(layer, "_inbound_nodes", None) else [])


def estimate(created: Sequence, wired: "keras.Model | None", members: Mapping[str, "keras.Model"],
             batch_size: int) -> Estimate:
    """The size of a stack wired inside `deferred_variables()`.

    Args:
        created: the variables `deferred_variables()` collected.
        wired: the whole stack as one model, or None when it could not be wired (a problem);
            then the members that were built are counted instead.
        members: member name -> its built model.
        batch_size: the training batch size.

    Returns:
        An `Estimate`.
    """
    if wired is not None:
        variables, roots = wired.weights, [wired]
    else:
        variables, roots = created, list(members.values())
    params = sum(_elements(variable.shape) for variable in variables)
    weight_bytes = sum(_elements(variable.shape) * _itemsize(variable.dtype) for variable in variables)
    per_sample, largest, largest_bytes = 0, "", -1
    for root in roots:
        for path, leaf, _ in iter_leaves(root, prefix=f"{root.name}/" if wired is None else ""):
            for tensor in _outputs(leaf):
                size = _elements(tuple(tensor.shape)[1:]) * _itemsize(tensor.dtype)
                per_sample += size
                if size > largest_bytes:
                    largest, largest_bytes = f"'{path}' {format_shape(tuple(tensor.shape)[1:])}", size
    by_member = {name: count_params(model).total for name, model in members.items()}
    return Estimate(params=params, weight_bytes=weight_bytes, activation_bytes=per_sample * batch_size,
                    batch_size=batch_size, largest_output=largest,
                    member_params=dict(sorted(by_member.items(), key=lambda item: -item[1])))


def refusals(size: Estimate, limits: Limits | None = None) -> list[Problem]:
    """A "budget" problem for each limit `size` is over (none when it fits).

    Args:
        size: the stack's `Estimate`.
        limits: default `Limits.from_env()`.

    Raises:
        ValueError: a limit in the environment is not a positive whole number.
    """
    limits = limits or Limits.from_env()
    biggest = next(iter(size.member_params), "stack")
    problems = []
    if size.params > limits.max_params:
        alone = (f", '{biggest}' alone {size.member_params[biggest]:,}"
                 if len(size.member_params) > 1 and size.member_params[biggest] else "")
        problems.append(Problem(
            kind="budget", member=biggest, expected=f"at most {limits.max_params:,} parameters",
            message=(f"The stack would have about {size.params:,} parameters ({format_bytes(size.weight_bytes)} of "
                     f"weights{alone}), over the limit of {limits.max_params:,} ({PARAMS_ENV}); nothing was "
                     f"allocated. Make it smaller (fewer filters or units; pooling, or global pooling instead "
                     f"of Flatten, before a Dense layer), or raise {PARAMS_ENV} on a machine with the memory: "
                     f"training needs about 4x the weights.")))
    if size.activation_bytes > limits.max_activation_bytes:
        fits = int(limits.max_activation_bytes // max(size.activation_bytes_per_sample, 1))
        remedy = (f"Lower train.batch_size to {fits} or less" if fits >= 1
                  else "Even one sample is over it: shrink the layers (fewer filters, more pooling)")
        problems.append(Problem(
            kind="budget", member=biggest,
            expected=f"at most {format_bytes(limits.max_activation_bytes)} of activations",
            message=(f"One batch of {size.batch_size} would hold about {format_bytes(size.activation_bytes)} of layer "
                     f"outputs (the largest: {size.largest_output}), over the limit of "
                     f"{format_bytes(limits.max_activation_bytes)} ({ACTIVATION_ENV}). {remedy}, or raise "
                     f"{ACTIVATION_ENV} on a machine with the memory.")))
    return problems
