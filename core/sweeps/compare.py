"""Compare modes: one spec's data and members stacked every way that makes sense, as one sweep.

`compare_modes_spec(spec)` returns the spec with a search section whose `variants` are the
modes (sequential; fusion with, and with two or more feature members without, the raw
input; an averaging ensemble of the members made complete classifiers; and, when a frozen
base is present, transfer with and without a fine-tune phase), walked by a grid sampler
with no pruner: one trial, one run per variant, all with the spec's seed and epochs.
No Keras import: which template is a feature extractor and which its classifier is data here.
"""

from __future__ import annotations

import hashlib
from typing import Any

from core.spec import MemberSpec, ObjectiveSpec, PrunerSpec, SearchSpec, StackSpec

# A feature extractor -> the complete classifier of the same family, and the parameters
# the classifier does not take. An ensemble averages predictions, so its members must be those.
CLASSIFIER_OF: dict[str, tuple[str, tuple[str, ...]]] = {
    "cnn_features": ("cnn_classifier", ("dense_units",)),
    "mlp": ("mlp_classifier", ()),
    "tabular_encoder": ("mlp_classifier", ()),
}
CLASSIFIERS = ("cnn_classifier", "mlp_classifier", "dense_head")
REGRESSION_DATASETS = ("diabetes",)


def _parts(spec: StackSpec) -> tuple[list[MemberSpec], MemberSpec]:
    """The stack's feature members and its head, whatever the mode."""
    if spec.head is not None:
        return list(spec.members), spec.head
    if spec.mode == "sequential" and len(spec.members) >= 2:
        return list(spec.members[:-1]), spec.members[-1]
    return list(spec.members), MemberSpec("head", template="dense_head", params={"hidden_units": [64]})


def _classifier(member: MemberSpec) -> MemberSpec | None:
    if member.source != "template":
        return None
    if member.template in CLASSIFIERS:
        return member
    if member.template not in CLASSIFIER_OF:
        return None
    template, dropped = CLASSIFIER_OF[member.template]
    params = {key: value for key, value in member.params.items() if key not in dropped}
    return MemberSpec(member.name, template=template, params=params, trainable=member.trainable)


def _plain(members: list[MemberSpec]) -> list[dict[str, Any]]:
    return [member.to_dict() for member in members]


def mode_variants(spec: StackSpec) -> dict[str, dict[str, Any]]:
    """The variants Compare modes trains for `spec`: name -> a patch of the spec dict."""
    features, head = _parts(spec)
    variants: dict[str, dict[str, Any]] = {}
    if spec.mode == "sequential":
        variants["sequential"] = {"mode": "sequential", "members": _plain(list(spec.members)),
                                  "head": spec.head.to_dict() if spec.head else None, "options": {}}
    else:
        # The feature members chained in their order, then the head. Whether one member's
        # features fit the next one's input is the builder's question (auto_adapters may fix
        # it): a chain that does not build fails as its trial, with the builder's reason.
        variants["sequential"] = {"mode": "sequential", "members": _plain(features + [head]), "head": None,
                                  "options": {}}
    fusion = {"mode": "fusion", "members": _plain(features), "head": head.to_dict()}
    variants["fusion_raw"] = {**fusion, "options": {"include_raw_input": True}}
    if len(features) >= 2:  # one member's features alone are not a fusion
        variants["fusion"] = {**fusion, "options": {"include_raw_input": False}}
    classifiers = [c for c in (_classifier(m) for m in features) if c is not None]
    if len(classifiers) == 1:
        only = classifiers[0]
        classifiers.append(MemberSpec(f"{only.name}_2", template=only.template, params=dict(only.params),
                                      trainable=only.trainable))
    if len(classifiers) >= 2:
        variants["ensemble"] = {"mode": "ensemble", "members": _plain(classifiers), "head": None,
                                "options": {"combine": "average"}}
    frozen = [m for m in features if not m.trainable]
    if frozen:
        transfer = {"mode": "transfer", "members": _plain(frozen), "head": head.to_dict(),
                    "options": {"freeze_base": True}}
        variants["transfer"] = {**transfer, "train": {"fine_tune": None}}
        if spec.train.epochs >= 2:
            start = spec.train.epochs // 2 + 1
            variants["transfer_fine_tune"] = {**transfer, "train": {"fine_tune": {"start_epoch": max(2, start)}}}
    return variants


def _objective(spec: StackSpec) -> ObjectiveSpec:
    if spec.search is not None:
        return spec.search.objective
    regression = spec.dataset.task == "regression" or (spec.dataset.source == "builtin"
                                                       and spec.dataset.name in REGRESSION_DATASETS)
    metric = "loss" if regression else "accuracy"
    return ObjectiveSpec(metric=f"val_{metric}" if spec.train.validation_split > 0 else metric)


def compare_modes_spec(spec: StackSpec) -> StackSpec:
    """`spec` with a search section that trains it in every mode that makes sense, as one sweep.

    Returns:
        The spec with `search`: the variants (see `mode_variants`), sampler "grid", no pruner,
        trials = the number of variants, the study '<name>-modes-<hash of the spec>' (the same
        spec continues its comparison; an edited one starts another).

    Raises:
        ValueError: a graph spec (its topology is not one of the modes), or no members.
    """
    if spec.mode == "graph":
        raise ValueError(f"Compare modes restacks the members of a preset mode; '{spec.name}' is a graph. Compare "
                         f"the graph with a preset by hand, or start from a preset mode.")
    if not spec.members:
        raise ValueError(f"Spec '{spec.name}' has no members to stack: add at least one before comparing modes.")
    plain = spec.replace(search=None)
    variants = mode_variants(plain)
    digest = hashlib.sha256(plain.to_json(indent=None).encode()).hexdigest()[:8]
    search = SearchSpec(study=f"{spec.name}-modes-{digest}", objective=_objective(spec), trials=len(variants),
                        sampler="grid", pruner=PrunerSpec(kind="none"), seed=spec.train.seed, variants=variants)
    result = plain.replace(search=search)
    result.check_values()
    return result
