"""Shape adapters: what fits one member's output to the next member's input.

A pre-flight problem carries the adapters that would fix it; `adapters="auto"` inserts
them. Adapters are data (`core.spec.AdapterSpec`) so the dashboard can offer each fix as a
button and the accepted fix is saved with the spec.

A fix is offered only after it was tried: `choose_fix` applies each of the `candidates`
(in order of preference) to a scratch input, checks the consumer's `Need` completely (ranks
and the template's own check) and builds the consumer on the result. The first candidate
that passes is the fix; a candidate that would make a recurrent consumer read a very long
sequence is kept only as a last resort, with a warning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import keras

from core.spec import AdapterSpec
from core.spec.shapes import RANK_WORDS, format_shape

# A feature map bigger than this is pooled rather than flattened: flattening it would put
# millions of weights in the next Dense layer.
MAX_FLATTEN_SIZE = 32768
# A recurrent layer reads a sequence one step at a time (nothing runs in parallel over the
# steps), so its cost grows with every step: issue 8 saw 5-30 s a batch for the 5,408-step
# GRU that Reshape(5408, 1) made. Past this many steps a fix looks for a shorter sequence
# first and warns when it cannot find one.
LONG_SEQUENCE_STEPS = 1000
# For a long sequence that no reshape shortens: what shortens it before the recurrent layer.
SHORTER_SEQUENCE_ADVICE = (
    "Cheaper: a conv1d_encoder in its place, which runs over the steps in parallel; global "
    "pooling instead of Flatten in the member before it; or a Dense projection first "
    "(Dense(256, linear) + Reshape(32, 8) gives 32 steps of 8 learned features)."
)


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
    # Builds the consumer for one sample shape (raising ValueError when it cannot), so a
    # suggested fix is tried end to end; None for steps that build nothing (fusion, output).
    build: Callable[[tuple], keras.Model] | None = None
    # Why the consumer asks for this, as a clause appended to the reason ("an add takes
    # inputs of one shape ..."); "" when the consumer says it all.
    because: str = ""

    def problem(self, received: tuple) -> str | None:
        """Why `received` does not fit, or None when it does."""
        reason = self._problem(received)
        return f"{reason} ({self.because})" if reason and self.because else reason

    def _problem(self, received: tuple) -> str | None:
        if self.shape is not None:
            if len(received) != len(self.shape) or any(
                want is not None and got is not None and want != got for got, want in zip(received, self.shape)
            ):
                return f"expects {format_shape(self.shape)}"
            return None
        if self.ranks and len(received) not in self.ranks:
            return f"expects {' or '.join(RANK_WORDS.get(rank, f'rank {rank}') for rank in self.ranks)}"
        return self.extra(received) if self.extra else None

    def accepts(self) -> str:
        """What the consumer accepts, in words: "(batch, 10)", "a feature vector", "rank 1 ..."."""
        if self.shape is not None:
            return format_shape(self.shape)
        if self.ranks:
            return " or ".join(RANK_WORDS.get(rank, f"rank {rank}") for rank in self.ranks)
        return self.description

    @classmethod
    def fixed(cls, shape: tuple, dense_activation: str = "linear",
              build: Callable[[tuple], keras.Model] | None = None) -> "Need":
        return cls(description=format_shape(shape), shape=tuple(shape), dense_activation=dense_activation,
                   build=build)


@dataclass(frozen=True)
class Candidate:
    """One way to fit a shape: the adapters, and what they do as a clause ("" when obvious)."""

    adapters: tuple[AdapterSpec, ...]
    note: str = ""


@dataclass(frozen=True)
class FixChoice:
    """What `choose_fix` found.

    fix: adapters that were checked to work, () when none does.
    note: what the fix does, as a clause ("it reads ... as 169 steps of 32 channels"), or "".
    instead: the longer fix it replaces and why, as a clause, or "".
    warning: a sentence of caution that goes with the fix (a long sequence for a recurrent
        layer), or "".
    reason: when `fix` is (): why the nearest candidate fails, as a clause ("" when there
        was no candidate at all).
    """

    fix: tuple[AdapterSpec, ...] = ()
    note: str = ""
    instead: str = ""
    warning: str = ""
    reason: str = ""


def labels(adapters) -> str:
    """'Flatten + Dense(10, softmax)'."""
    return " + ".join(adapter.label() for adapter in adapters)


def choose_fix(received: tuple, need: Need, producer: str, consumer: str, target: str,
               origin: tuple | None = None) -> FixChoice:
    """The first candidate fix that was checked to make `received` fit `need`.

    Args:
        received: the producer's output shape (one sample, without batch).
        need: what the consumer accepts; with `need.build`, the consumer is built on the
            fixed shape too, and a fix it does not build on is not offered.
        producer: the node the adapters go after (a member name or "input").
        consumer: the node they go before (a member name, "fusion", "ensemble", "output").
        target: the consumer as messages name it ("'seq'", "the output").
        origin: the shape the producer flattened into `received`, when it ends in Flatten.

    Returns:
        A FixChoice; its `fix` is () when no candidate works, with the reason.

    Example:
        >>> choose_fix((4,), cnn_need, "input", "features", "'features'").reason
        "Reshape(2, 2, 1) would give (batch, 2, 2, 1), but 'features' needs images of at least 4x4 ..."
    """
    first_failure = ""
    long_one: tuple[Candidate, tuple] | None = None
    for candidate in candidates(received, need, producer, consumer, origin):
        shape, model, failure = _try(received, candidate.adapters, need, target)
        if failure:
            first_failure = first_failure or failure
            continue
        if is_long_sequence(shape) and model is not None and is_recurrent(model):
            long_one = long_one or (candidate, shape)
            continue
        instead = ""
        if long_one is not None:
            instead = (f"{labels(long_one[0].adapters)} would make a sequence of {long_one[1][0]:,} steps, "
                       f"which a recurrent layer reads one step at a time")
        return FixChoice(candidate.adapters, note=candidate.note, instead=instead)
    if long_one is not None:
        candidate, shape = long_one
        return FixChoice(candidate.adapters, note=candidate.note,
                         warning=long_sequence_warning(target, shape, SHORTER_SEQUENCE_ADVICE))
    return FixChoice(reason=first_failure)


def suggest(received: tuple, need: Need, producer: str, consumer: str) -> tuple[AdapterSpec, ...]:
    """The adapters `choose_fix` offers for `received`; () when none was checked to work."""
    return choose_fix(received, need, producer, consumer, f"'{consumer}'").fix


def _try(received: tuple, adapters: tuple[AdapterSpec, ...], need: Need, target: str):
    """(shape after the adapters, the consumer built on it or None, why it fails or "")."""
    tensor = keras.Input(shape=received, name="trial_input")
    for number, adapter in enumerate(adapters):
        shape = tuple(tensor.shape[1:])
        reason = mismatch(adapter, shape)
        if reason:
            return shape, None, f"{adapter.label()} {reason}"
        try:
            tensor = make_layer(adapter, shape, name=f"trial_{number}_{adapter.kind}")(tensor)
        except ValueError as error:
            return shape, None, f"{adapter.label()} does not apply to {format_shape(shape)}: {error}"
    shape = tuple(tensor.shape[1:])
    gives = f"{labels(adapters)} would give {format_shape(shape)}"
    reason = need.problem(shape)
    if reason:
        return shape, None, f"{gives}, but {target} {reason}"
    if need.build is None:
        return shape, None, ""
    try:
        return shape, need.build(shape), ""
    except ValueError as error:
        return shape, None, f"{gives}, but {target} does not build on it: {error}"


def candidates(received: tuple, need: Need, producer: str, consumer: str,
               origin: tuple | None = None) -> list[Candidate]:
    """Adapters that might turn `received` into what `need` accepts, most natural first.

    Unchecked: `choose_fix` tries them. `origin` is the shape the producer flattened into
    `received` (a vector), so a reshape can restore it rather than guess.
    """
    received = tuple(received)

    def make(kind: str, **kwargs) -> AdapterSpec:
        return AdapterSpec(after=producer, before=consumer, kind=kind, **kwargs)

    if need.shape is not None:
        return [Candidate(fix) for fix in _fixed_shape_fixes(received, need, make)]
    ranks = need.ranks
    if not ranks or len(received) in ranks:
        return []
    if 1 in ranks and len(received) > 1:
        return _to_vector(received, make)
    if 2 in ranks:
        found = _to_sequence(received, make, origin)
        if found:
            return found
    if 3 in ranks:
        return _to_image(received, make, origin)
    return []


def _known(shape: tuple) -> bool:
    return all(dim is not None for dim in shape)


def _reshape(make, target: tuple, note: str = "") -> Candidate:
    return Candidate((make("reshape", target_shape=tuple(int(dim) for dim in target)),), note)


def _to_vector(received: tuple, make) -> list[Candidate]:
    pool = [Candidate((make("global_average_pooling"),))] if len(received) in (2, 3) else []
    if len(received) == 3 and (not _known(received) or math.prod(received) > MAX_FLATTEN_SIZE):
        if _known(received):
            pool = [Candidate(pool[0].adapters, f"it averages each channel over the {received[0]}x{received[1]} "
                                                f"positions: flattening {math.prod(received):,} values would put "
                                                f"millions of weights in the next Dense layer")]
        return pool
    return [Candidate((make("flatten"),))] + pool


def _to_sequence(received: tuple, make, origin: tuple | None) -> list[Candidate]:
    if len(received) == 3 and _known(received):
        return _map_as_sequence(received, make, "")
    if len(received) != 1 or received[0] is None:
        return []
    length = received[0]
    found = [_reshape(make, (length, 1))]
    if origin is not None and _known(origin) and math.prod(origin) == length:
        if len(origin) == 3:
            found += _map_as_sequence(origin, make, "flattened ")
        elif len(origin) == 2:
            found.append(_reshape(make, origin, f"it restores the flattened {format_shape(origin)} sequence"))
    if length > LONG_SEQUENCE_STEPS:
        # The fewest values per step that bring the sequence under the limit.
        width = next((values for values in range(math.ceil(length / LONG_SEQUENCE_STEPS), length + 1)
                      if length % values == 0), length)
        if width < length:
            found.append(_reshape(make, (length // width, width),
                                  f"it reads the {length:,} values as {length // width:,} steps of {width} "
                                  f"consecutive values"))
    return _distinct(found)


def _distinct(found: list[Candidate]) -> list[Candidate]:
    """`found` without a later candidate whose adapters repeat an earlier one's."""
    distinct: list[Candidate] = []
    for candidate in found:
        if all(candidate.adapters != kept.adapters for kept in distinct):
            distinct.append(candidate)
    return distinct


def _map_as_sequence(feature_map: tuple, make, flattened: str) -> list[Candidate]:
    """A feature map as a sequence: positions x channels, or rows (one channel) first."""
    height, width, channels = feature_map
    what = f"the {flattened}{format_shape(feature_map)} {'feature map' if channels > 1 else 'image'}"
    positions = _reshape(make, (height * width, channels),
                         f"it reads {what} as {height * width:,} positions of {channels} channels")
    rows = _reshape(make, (height, width * channels),
                    f"it reads {what} as {height:,} rows of {width * channels} values")
    return [positions, rows] if channels > 1 else [rows, positions]


def _to_image(received: tuple, make, origin: tuple | None) -> list[Candidate]:
    if len(received) == 2 and _known(received):
        return [_reshape(make, (received[0], received[1], 1))]
    if len(received) != 1 or received[0] is None:
        return []
    size = received[0]
    found = []
    if origin is not None and len(origin) == 3 and _known(origin) and math.prod(origin) == size:
        found.append(_reshape(make, origin, f"it restores the {format_shape(origin)} map flattened before it"))
    for channels in (1, 3):
        side = math.isqrt(size // channels)
        if size % channels == 0 and side * side * channels == size:
            found.append(_reshape(make, (side, side, channels)))
    return _distinct(found)


def _fixed_shape_fixes(received: tuple, need: Need, make) -> list[tuple[AdapterSpec, ...]]:
    expected = need.shape
    found: list[tuple[AdapterSpec, ...]] = []

    def dense(units) -> AdapterSpec:
        return make("dense", units=int(units), activation=need.dense_activation)

    if (_known(received) and _known(expected) and len(received) != len(expected)
            and math.prod(received) == math.prod(expected)):
        found.append((make("reshape", target_shape=tuple(expected)),))
    if len(expected) == 1 and expected[0] is not None:
        if len(received) == 1:
            found.append((dense(expected[0]),))
        else:
            if len(received) == 3 and received[-1] == expected[0]:
                found.append((make("global_average_pooling"),))
            found += [candidate.adapters + (dense(expected[0]),) for candidate in _to_vector(received, make)]
    elif len(expected) == 3 and len(received) == 3:
        fixes = []
        if received[:2] != expected[:2] and expected[0] is not None and expected[1] is not None:
            fixes.append(make("resizing", target_shape=(int(expected[0]), int(expected[1]))))
        if received[2] != expected[2] and expected[2] is not None:
            fixes.append(dense(expected[2]))
        if fixes:
            found.append(tuple(fixes))
    elif len(expected) == len(received) and received[:-1] == expected[:-1] and expected[-1] is not None:
        found.append((dense(expected[-1]),))
    return found


# ---- long sequences ----------------------------------------------------------------------


def is_long_sequence(shape: tuple | None) -> bool:
    """A sequence (steps, channels) with more than LONG_SEQUENCE_STEPS known steps."""
    return shape is not None and len(shape) == 2 and shape[0] is not None and shape[0] > LONG_SEQUENCE_STEPS


def is_recurrent(model: keras.Model) -> bool:
    """Whether `model` (or a model nested in it) has a recurrent layer (GRU, LSTM, RNN)."""
    for layer in model.layers:
        if isinstance(layer, (keras.layers.RNN, keras.layers.Bidirectional)):
            return True
        if isinstance(layer, keras.Model) and is_recurrent(layer):
            return True
    return False


def long_sequence_warning(target: str, shape: tuple, cheaper: str) -> str:
    """The warning for a recurrent consumer that reads sequences of `shape` (steps, channels)."""
    return (f"{target[0].upper()}{target[1:]} reads sequences of {shape[0]:,} steps {format_shape(shape)}: "
            f"a recurrent layer runs one step at a time, so expect seconds per batch. {cheaper}")


def flattened_from(model: keras.Model) -> tuple | None:
    """The shape `model` flattens into its output, when it ends in Flatten (and Dropout); else None."""
    for layer in reversed(model.layers):
        if isinstance(layer, keras.layers.Dropout):
            continue
        if isinstance(layer, keras.layers.Flatten):
            return tuple(layer.input.shape[1:])
        return None
    return None


# ---- layers ------------------------------------------------------------------------------


def mismatch(adapter: AdapterSpec, input_shape: tuple) -> str | None:
    """Why `adapter` cannot apply to samples of `input_shape`, as a clause; None when it can."""
    kind = adapter.kind
    if kind == "global_average_pooling" and len(input_shape) not in (2, 3):
        return (f"needs a sequence or a feature map, but receives {format_shape(input_shape)} "
                f"(a Flatten adapter takes any shape)")
    if kind == "reshape":
        target = tuple(adapter.target_shape)
        if not target or (_known(input_shape) and math.prod(input_shape) != math.prod(target)):
            return (f"cannot reshape {format_shape(input_shape)} ({math.prod(input_shape)} values) to "
                    f"{format_shape(target)}: the number of values must stay the same")
    if kind == "resizing" and (len(input_shape) != 3 or len(adapter.target_shape) != 2):
        return (f"resizes images (height, width, channels) to (height, width), but receives "
                f"{format_shape(input_shape)} with target {tuple(adapter.target_shape)}")
    if kind == "dense" and adapter.units < 1:
        return f"needs units >= 1, received {adapter.units}"
    return None


def make_layer(adapter: AdapterSpec, input_shape: tuple, name: str) -> keras.layers.Layer:
    """The Keras layer for `adapter` applied to samples of `input_shape`.

    Raises:
        ValueError: the adapter cannot apply to this input (wrong rank or element count).
    """
    reason = mismatch(adapter, input_shape)
    if reason:
        raise ValueError(f"Adapter {adapter.label()} after '{adapter.after}' {reason}.")
    kind = adapter.kind
    if kind == "flatten":
        return keras.layers.Flatten(name=name)
    if kind == "global_average_pooling":
        layers = {2: keras.layers.GlobalAveragePooling1D, 3: keras.layers.GlobalAveragePooling2D}
        return layers[len(input_shape)](name=name)
    if kind == "reshape":
        return keras.layers.Reshape(tuple(adapter.target_shape), name=name)
    if kind == "resizing":
        return keras.layers.Resizing(*adapter.target_shape, name=name)
    return keras.layers.Dense(adapter.units, activation=adapter.activation, name=name)
