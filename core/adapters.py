"""Shape adapters: what fits one member's output to the next member's input.

A pre-flight problem carries the adapters that would fix it; `adapters="auto"` inserts
them. Adapters are data (`core.spec.AdapterSpec`) so the dashboard can offer each fix as a
button and the accepted fix is saved with the spec.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import keras

from core.spec import AdapterSpec
from core.templates import RANK_WORDS, format_shape

# A feature map bigger than this is pooled rather than flattened: flattening it would put
# millions of weights in the next Dense layer.
MAX_FLATTEN_SIZE = 32768


@dataclass(frozen=True)
class Need:
    """What a consumer accepts: some ranks, or one fixed shape (both without batch)."""

    description: str
    ranks: tuple[int, ...] = ()
    shape: tuple | None = None
    extra: Callable[[tuple], str | None] | None = None
    # Activation of a Dense adapter that produces this consumer's input (predictions need
    # the task's activation; features stay linear).
    dense_activation: str = "linear"

    def problem(self, received: tuple) -> str | None:
        """Why `received` does not fit, or None when it does."""
        if self.shape is not None:
            if len(received) != len(self.shape) or any(
                e is not None and r is not None and e != r for r, e in zip(received, self.shape)
            ):
                return f"expects {format_shape(self.shape)}"
            return None
        if self.ranks and len(received) not in self.ranks:
            return f"expects {' or '.join(RANK_WORDS.get(r, f'rank {r}') for r in self.ranks)}"
        return self.extra(received) if self.extra else None

    @classmethod
    def fixed(cls, shape: tuple, dense_activation: str = "linear") -> "Need":
        return cls(description=format_shape(shape), shape=tuple(shape), dense_activation=dense_activation)


def _known(shape: tuple) -> bool:
    return all(d is not None for d in shape)


def suggest(received: tuple, need: Need, producer: str, consumer: str) -> tuple[AdapterSpec, ...]:
    """Adapters that turn `received` into something `need` accepts; () when none is known."""
    r = tuple(received)

    def make(kind: str, **kwargs) -> AdapterSpec:
        return AdapterSpec(after=producer, before=consumer, kind=kind, **kwargs)

    if need.shape is not None:
        e = need.shape
        dense = lambda units: make("dense", units=int(units), activation=need.dense_activation)  # noqa: E731
        if _known(r) and _known(e) and len(r) != len(e) and math.prod(r) == math.prod(e):
            return (make("reshape", target_shape=tuple(e)),)
        if len(e) == 1 and e[0] is not None:
            if len(r) == 1:
                return (dense(e[0]),)
            if len(r) == 3 and r[-1] == e[0]:
                return (make("global_average_pooling"),)
            return (_to_vector(r, make), dense(e[0]))
        if len(e) == 3 and len(r) == 3:
            fixes = []
            if r[:2] != e[:2] and e[0] is not None and e[1] is not None:
                fixes.append(make("resizing", target_shape=(int(e[0]), int(e[1]))))
            if r[2] != e[2] and e[2] is not None:
                fixes.append(dense(e[2]))
            return tuple(fixes)
        if len(e) == len(r) and r[:-1] == e[:-1] and e[-1] is not None:
            return (dense(e[-1]),)
        return ()
    ranks = need.ranks
    if not ranks or len(r) in ranks:
        return ()
    if 1 in ranks and len(r) > 1:
        return (_to_vector(r, make),)
    if 2 in ranks and len(r) == 1 and r[0] is not None:
        return (make("reshape", target_shape=(r[0], 1)),)
    if 2 in ranks and len(r) == 3 and _known(r):
        return (make("reshape", target_shape=(r[0], r[1] * r[2])),)
    if 3 in ranks and len(r) == 2 and _known(r):
        return (make("reshape", target_shape=(r[0], r[1], 1)),)
    if 3 in ranks and len(r) == 1 and r[0] is not None:
        side = math.isqrt(r[0])
        if side * side == r[0]:
            return (make("reshape", target_shape=(side, side, 1)),)
    return ()


def _to_vector(r: tuple, make) -> AdapterSpec:
    if len(r) == 3 and (not _known(r) or math.prod(r) > MAX_FLATTEN_SIZE):
        return make("global_average_pooling")
    return make("flatten")


def make_layer(adapter: AdapterSpec, input_shape: tuple, name: str) -> keras.layers.Layer:
    """The Keras layer for `adapter` applied to samples of `input_shape`.

    Raises:
        ValueError: the adapter cannot apply to this input (wrong rank or element count).
    """
    kind = adapter.kind
    where = f"Adapter {adapter.label()} after '{adapter.after}'"
    if kind == "flatten":
        return keras.layers.Flatten(name=name)
    if kind == "global_average_pooling":
        layers = {2: keras.layers.GlobalAveragePooling1D, 3: keras.layers.GlobalAveragePooling2D}
        if len(input_shape) not in layers:
            raise ValueError(
                f"{where} needs a sequence or a feature map, but receives {format_shape(input_shape)}. "
                f"Use a Flatten adapter instead."
            )
        return layers[len(input_shape)](name=name)
    if kind == "reshape":
        target = tuple(adapter.target_shape)
        if not target or (_known(input_shape) and math.prod(input_shape) != math.prod(target)):
            raise ValueError(
                f"{where} cannot reshape {format_shape(input_shape)} ({math.prod(input_shape)} values) "
                f"to {format_shape(target)}: the number of values must stay the same."
            )
        return keras.layers.Reshape(target, name=name)
    if kind == "resizing":
        if len(input_shape) != 3 or len(adapter.target_shape) != 2:
            raise ValueError(
                f"{where} resizes images (height, width, channels) to (height, width); "
                f"it received {format_shape(input_shape)} and target {tuple(adapter.target_shape)}."
            )
        return keras.layers.Resizing(*adapter.target_shape, name=name)
    if adapter.units < 1:
        raise ValueError(f"{where} needs units >= 1, received {adapter.units}.")
    return keras.layers.Dense(adapter.units, activation=adapter.activation, name=name)
