"""Which parts of a stack train: freeze and unfreeze members and layers, count parameters.

Keras semantics worth knowing (see the keras-io transfer learning guide):
- `layer.trainable = False` on a model freezes everything below it, and a frozen parent
  hides its children's weights from the optimizer even if a child says `trainable=True`.
  So to train one layer of a frozen member, the member itself must be trainable and its
  other layers frozen one by one; `apply_trainability` does exactly that.
- A frozen BatchNormalization layer runs in inference mode (it neither updates its moving
  statistics nor normalizes with batch statistics), which is what transfer learning needs.
- Changing `trainable` only takes effect for training after the model is compiled again.

Example:
    >>> apply_trainability(model, spec)       # member flags, transfer freezing, rules
    >>> count_params(model.get_layer("base")).trainable
    0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import keras
import numpy as np

from core.spec import FineTuneSpec, StackSpec, compile_layer_pattern, layer_pattern_matches


@dataclass(frozen=True)
class ParamCounts:
    """Parameter counts of a layer or model.

    The non-trainable weights are of two kinds: `frozen` ones, which would train but are
    frozen by the stack's choices (a member's trainable flag, transfer's freeze_base, the
    layer rules, a fine-tune phase not begun), and ones that never train whatever the
    choices (Normalization mean, variance and count, BatchNormalization moving mean and
    variance): `never_trainable`. "Partly frozen" means frozen > 0.
    """

    total: int
    trainable: int
    frozen: int = 0

    @property
    def non_trainable(self) -> int:
        return self.total - self.trainable

    @property
    def never_trainable(self) -> int:
        return self.non_trainable - self.frozen

    def to_dict(self) -> dict[str, int]:
        return {"total": self.total, "trainable": self.trainable, "non_trainable": self.non_trainable,
                "frozen": self.frozen, "never_trainable": self.never_trainable}


def _size(variables) -> int:
    return int(sum(np.prod(variable.shape) for variable in variables))


def _frozen_size(layer: keras.layers.Layer, trainable_variables) -> int:
    """Weights of `layer` that training would update were it not frozen, but does not now."""
    training = {id(variable) for variable in trainable_variables}
    learnable = {id(variable): variable for variable in learnable_variables(layer)}  # by id: a shared layer counts once
    return _size(v for key, v in learnable.items() if key not in training)


def count_params(layer: keras.layers.Layer) -> ParamCounts:
    """Total, trainable and frozen parameter counts of a built layer or model.

    Trainable counts respect the hierarchy: weights under a frozen parent count as
    non-trainable, because the optimizer will not see them. Frozen counts only weights
    that are trainable by design (kernels, biases, BatchNormalization gamma and beta), so
    statistics such as a Normalization layer's mean never make a member "frozen".
    """
    trainable = layer.trainable_weights
    return ParamCounts(total=_size(layer.weights), trainable=_size(trainable),
                       frozen=_frozen_size(layer, trainable))


def child_layers(layer: keras.layers.Layer) -> list[keras.layers.Layer]:
    """The layers directly inside `layer` (a model), without its InputLayers; none for a plain layer."""
    if isinstance(layer, keras.Model):
        return [child for child in layer.layers if not isinstance(child, keras.layers.InputLayer)]
    return []


def iter_leaves(layer: keras.layers.Layer, prefix: str = "") -> Iterator[tuple[str, keras.layers.Layer, bool]]:
    """Yield (path, leaf layer, effectively trainable) for every non-model layer below `layer`.

    Paths are relative to `layer` and joined with "/", e.g. "backbone/block_1_conv".
    """
    for child in child_layers(layer):
        path = f"{prefix}{child.name}"
        if isinstance(child, keras.Model):
            for sub_path, leaf, trainable in iter_leaves(child, prefix=f"{path}/"):
                yield sub_path, leaf, trainable and child.trainable and layer.trainable
        else:
            yield path, child, child.trainable and layer.trainable


def trainability_rows(model: keras.Model) -> list[dict]:
    """One row per leaf layer: path, name, class, output shape, params, trainable, frozen.

    `frozen_params` counts the leaf's weights that are frozen by the stack's choices (see
    `ParamCounts`); statistics that never train are in neither it nor `trainable_params`.
    """
    rows = []
    for path, leaf, trainable in iter_leaves(model):
        try:
            output_shape = list(leaf.output.shape[1:]) if leaf._inbound_nodes else None
        except (AttributeError, ValueError):  # a layer used at several places has no single output
            output_shape = None
        rows.append({
            "path": path,
            "name": leaf.name,
            "class": leaf.__class__.__name__,
            "output_shape": output_shape,
            "params": int(leaf.count_params()) if leaf.built else 0,
            "trainable_params": _size(leaf.trainable_weights) if trainable else 0,
            "frozen_params": _frozen_size(leaf, leaf.trainable_weights if trainable else []),
            "trainable": bool(trainable),
            "has_weights": bool(leaf.weights),
        })
    return rows


def _set_tree(layer: keras.layers.Layer, desired: dict[str, bool], prefix: str = "") -> bool:
    """Set `trainable` below `layer` to `desired[path]`; return whether any leaf trains."""
    any_trainable = False
    for child in child_layers(layer):
        path = f"{prefix}{child.name}"
        if isinstance(child, keras.Model):
            # A container must be trainable for any of its leaves to train; setting it
            # resets its children, so it is set before them.
            leaves = [leaf for leaf in desired if leaf.startswith(f"{path}/")]
            child.trainable = any(desired[leaf] for leaf in leaves)
            any_trainable |= _set_tree(child, desired, prefix=f"{path}/")
        else:
            child.trainable = desired.get(path, child.trainable)
            any_trainable |= child.trainable
    return any_trainable


def apply_trainability(model: keras.Model, spec: StackSpec) -> None:
    """Set trainable flags on a built stack from the spec.

    Order: each member's `trainable` flag; in transfer mode with `freeze_base`, every
    member except the head is frozen; then the `trainability` rules in order (a later rule
    wins). Adapters and combining layers stay trainable.

    Raises:
        ValueError: a rule names a member that is not in the stack, or its regex is invalid.
    """
    members = {member.name: member for member in spec.all_members()}
    head_name = spec.head.name if spec.head is not None else None
    freeze_base = spec.mode == "transfer" and spec.option("freeze_base")
    desired: dict[str, bool] = {}
    for name, member in members.items():
        frozen = not member.trainable or (freeze_base and name != head_name)
        for path, _, _ in iter_leaves(model.get_layer(name), prefix=f"{name}/"):
            desired[path] = not frozen
    for index, rule in enumerate(spec.trainability):
        where = f"trainability[{index}]"
        if rule.member != "*" and rule.member not in members:
            raise ValueError(
                f"{where} names member '{rule.member}', which is not in the stack. "
                f"Members: {sorted(members)} (or '*' for all)."
            )
        pattern = compile_layer_pattern(rule.layers, where)
        for path in desired:
            member_name, _, relative = path.partition("/")
            if rule.member in ("*", member_name) and layer_pattern_matches(pattern, relative):
                desired[path] = rule.trainable
    for name in members:
        layer = model.get_layer(name)
        own = {path: trainable for path, trainable in desired.items() if path.startswith(f"{name}/")}
        layer.trainable = any(own.values())
        _set_tree(layer, own, prefix=f"{name}/")


def frozen_members(model: keras.Model, spec: StackSpec) -> list[str]:
    """Members (not the head) of which no weight trains; in a graph, any member node."""
    head_name = spec.head.name if spec.head is not None else None
    names = [member.name for member in spec.all_members() if member.name != head_name]
    return [name for name in names if count_params(model.get_layer(name)).trainable == 0]


def unfreeze_top(model: keras.Model, spec: StackSpec, fine_tune: FineTuneSpec) -> list[str]:
    """Make the top layers of frozen members trainable, for the fine-tune phase.

    "Top N layers" counts layers that have weights, from the output side, so Flatten or
    pooling layers do not use up the count; N = 0 unfreezes every layer. BatchNormalization
    stays frozen unless `fine_tune.unfreeze_batchnorm`.

    Returns:
        Paths ("member/layer") of the layers that became trainable.

    Raises:
        ValueError: `fine_tune.members` names a member that is not in the stack.
    """
    known = [member.name for member in spec.all_members()]
    for name in fine_tune.members:
        if name not in known:
            raise ValueError(f"fine_tune.members names '{name}', which is not in the stack. Members: {known}.")
    targets = list(fine_tune.members) or frozen_members(model, spec)
    unfrozen: list[str] = []
    for name in targets:
        member = model.get_layer(name)
        leaves = list(iter_leaves(member, prefix=f"{name}/"))
        desired = {path: trainable for path, _, trainable in leaves}
        weighted = [(path, leaf) for path, leaf, _ in leaves if leaf.weights]
        chosen = weighted if fine_tune.unfreeze_top_layers == 0 else weighted[-fine_tune.unfreeze_top_layers:]
        for path, leaf in chosen:
            if isinstance(leaf, keras.layers.BatchNormalization) and not fine_tune.unfreeze_batchnorm:
                continue
            if not desired[path]:
                desired[path] = True
                unfrozen.append(path)
        member.trainable = any(desired.values())
        _set_tree(member, desired, prefix=f"{name}/")
    return unfrozen


def learnable_variables(layer: keras.layers.Layer) -> list:
    """Variables that training updates when `layer` is trainable, whether frozen now or not.

    Frozen layers report their kernels as non-trainable, so `trainable_weights` cannot tell
    a frozen kernel from a BatchNormalization moving mean; each layer's own list of
    trainable-by-design variables can.
    """
    found = []
    for sub in layer._flatten_layers(include_self=True):
        found.extend(sub._trainable_variables)
    return found
