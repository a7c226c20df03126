"""Edits of the draft StackSpec as pure functions: spec in, new spec out.

The pages call these from widgets and buttons; keeping them free of Streamlit means each
edit (renaming a member renames every reference to it, removing one drops its adapters and
rules, ...) is tested on its own. Specs are frozen dataclasses, so nothing is changed in
place.

Example:
    >>> spec = add_member(default_spec(), MemberSpec("extra", template="mlp"))
    >>> [m.name for m in move_member(spec, "extra", -1).members]
    ['model_a', 'extra', 'model_b']
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Iterable, Mapping

from core.spec import (
    MODE_OPTIONS,
    AdapterSpec,
    DatasetSpec,
    FineTuneSpec,
    LayerRule,
    MemberSpec,
    StackSpec,
    compile_layer_pattern,
    layer_pattern_matches,
    load_spec,
    rules,
)
from core.spec.rules import allows_head, needs_head
from core.storage.paths import shipped_file

DEFAULT_SPEC_FILE = "examples/seed_sequential.json"  # in the checkout, or shipped with an installed StackLab
# The seed trains 10 epochs; 5 already reach ~0.89 validation accuracy on digits28 and keep
# a first run short.
DEFAULT_EPOCHS = 5
DEFAULT_HEAD = MemberSpec("head", template="dense_head", params={"hidden_units": []})


def default_spec() -> StackSpec:
    """The seed's sequential stack (CNN features -> dense head) on digits28, 5 epochs, under a
    generated name ('sequential_digits28') that follows its mode and dataset until renamed."""
    spec = load_spec(shipped_file(DEFAULT_SPEC_FILE))
    return spec.replace(name=generated_name(spec.mode, spec.dataset.name),
                        train=dataclasses.replace(spec.train, epochs=DEFAULT_EPOCHS))


def names(spec: StackSpec) -> list[str]:
    return [member.name for member in spec.all_members()]


def unique_name(spec: StackSpec, base: str) -> str:
    """`base` made a valid member name that no member of `spec` has yet: base, base_2, ..."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", base).strip("_")[:60] or "member"
    if not cleaned[0].isalpha():
        cleaned = f"m_{cleaned}"
    taken = set(names(spec)) | set(rules.RESERVED_NAMES)
    candidate, counter = cleaned, 2
    while candidate in taken:
        candidate, counter = f"{cleaned}_{counter}", counter + 1
    return candidate


def check_name(spec: StackSpec, name: str, current: str | None = None) -> None:
    """Raise ValueError saying why `name` cannot name a member (for a rename of `current`):
    the rule `core.build` applies (`core.spec.rules.member_name_problem`)."""
    reason = rules.member_name_problem(name, [other for other in names(spec) if other != current])
    if reason:
        raise ValueError(reason)


def add_member(spec: StackSpec, member: MemberSpec) -> StackSpec:
    """Append `member`, renamed if its name is taken."""
    member = dataclasses.replace(member, name=unique_name(spec, member.name))
    return spec.replace(members=spec.members + (member,))


def replace_member(spec: StackSpec, name: str, member: MemberSpec) -> StackSpec:
    """Put `member` where the member (or head) called `name` is; references follow a rename."""
    if member.name != name:
        spec = rename_member(spec, name, member.name)
    if spec.head is not None and spec.head.name == member.name:
        return spec.replace(head=member)
    return spec.replace(members=tuple(member if m.name == member.name else m for m in spec.members))


def remove_member(spec: StackSpec, name: str) -> StackSpec:
    """Drop a member and the adapters, rules and fine-tune entries that name it."""
    tune = spec.train.fine_tune
    if tune is not None and name in tune.members:
        tune = dataclasses.replace(tune, members=tuple(m for m in tune.members if m != name))
    return spec.replace(
        members=tuple(m for m in spec.members if m.name != name),
        head=None if spec.head is not None and spec.head.name == name else spec.head,
        adapters=tuple(a for a in spec.adapters if name not in (a.after, a.before)),
        trainability=tuple(r for r in spec.trainability if r.member != name),
        train=dataclasses.replace(spec.train, fine_tune=tune),
    )


def move_member(spec: StackSpec, name: str, offset: int) -> StackSpec:
    """Move a member `offset` places (-1: up, towards the input); clamped at the ends."""
    members = list(spec.members)
    index = next(i for i, m in enumerate(members) if m.name == name)
    target = min(max(index + offset, 0), len(members) - 1)
    members.insert(target, members.pop(index))
    return spec.replace(members=tuple(members))


def rename_member(spec: StackSpec, old: str, new: str) -> StackSpec:
    """Rename a member and every reference to it (adapters, rules, fine-tune members).

    Raises:
        ValueError: `new` is not a valid member name or is taken.
    """
    if old == new:
        return spec
    check_name(spec, new, current=old)

    def swap(value: str) -> str:
        return new if value == old else value

    tune = spec.train.fine_tune
    if tune is not None:
        tune = dataclasses.replace(tune, members=tuple(swap(m) for m in tune.members))
    head = spec.head
    if head is not None and head.name == old:
        head = dataclasses.replace(head, name=new)
    return spec.replace(
        members=tuple(dataclasses.replace(m, name=new) if m.name == old else m for m in spec.members),
        head=head,
        adapters=tuple(dataclasses.replace(a, after=swap(a.after), before=swap(a.before)) for a in spec.adapters),
        trainability=tuple(dataclasses.replace(r, member=swap(r.member)) for r in spec.trainability),
        train=dataclasses.replace(spec.train, fine_tune=tune),
    )


def generated_name(mode: str, dataset_name: str) -> str:
    """The name of a stack the user has not named: '<mode>_<dataset>', e.g. 'fusion_digits28'."""
    cleaned = re.sub(r"[^A-Za-z0-9_]", "_", dataset_name).strip("_")[:40] or "data"
    return f"{mode}_{cleaned}"


def has_generated_name(spec: StackSpec) -> bool:
    """Whether the stack's name is one StackLab made up (so it may follow mode and dataset):
    the generated name, or the '<mode>_stack' of earlier versions."""
    return spec.name in (generated_name(spec.mode, spec.dataset.name), f"{spec.mode}_stack")


def _follow_name(before: StackSpec, after: StackSpec) -> StackSpec:
    """`after` renamed for its mode and dataset if `before`'s name was generated; a chosen name stays."""
    if has_generated_name(before):
        return after.replace(name=generated_name(after.mode, after.dataset.name))
    return after


def set_dataset(spec: StackSpec, dataset: DatasetSpec) -> StackSpec:
    """Train on `dataset`; a generated name follows it."""
    return _follow_name(spec, spec.replace(dataset=dataset))


def wiring(spec: StackSpec) -> str:
    """How the mode wires the members, in words: 'a → b → head', 'a, b read the input; ...'."""
    if spec.graph is not None:
        members = [node.id for node in spec.graph.nodes if node.kind == "member"]
        merges = [node.id for node in spec.graph.nodes if node.kind == "merge"]
        drawn = f"{len(spec.graph.nodes)} nodes, {len(spec.graph.edges)} edges"
        return (f"{', '.join(members) or 'no members'} as drawn ({drawn}"
                + (f"; merges {', '.join(merges)}" if merges else "") + ")")
    members = [m.name for m in spec.members] or ["(no members)"]
    head = spec.head.name if spec.head is not None else None
    if spec.mode in ("sequential", "transfer"):
        return " → ".join(members + ([head] if head else []))
    if spec.mode == "fusion":
        raw = " and the raw input" if spec.option("include_raw_input") else ""
        return f"{', '.join(members)} read the input; their features{raw} are concatenated into {head or '(no head)'}"
    if spec.option("combine") == "meta_head":
        return f"{', '.join(members)} each predict; the meta-head {head or '(none)'} combines their predictions"
    return f"{', '.join(members)} each predict; their predictions are averaged"


def switch_mode(spec: StackSpec, mode: str, options: Mapping[str, Any] | None = None
                ) -> tuple[StackSpec, list[str]]:
    """Switch the stacking mode, mapping the members onto the new mode's roles.

    - A mode that needs a head and has none takes the last member of a chain as its head
      (sequential -> fusion: the dense head on top stays the head), else gets a new one.
    - An ensemble reached from another mode keeps the head as its meta-head.
    - A mode that has no place for a head (an averaging ensemble) drops it, and says so.
    Options the new mode does not know are dropped; a generated name follows the mode.

    Returns:
        The switched spec, and one sentence per change the user should know of (the last
        one says how the members are now wired).
    """
    allowed = MODE_OPTIONS[mode]
    given = spec.options if options is None else options
    kept = {key: value for key, value in given.items() if key in allowed}
    members, head, notes = list(spec.members), spec.head, []
    if mode == "ensemble" and spec.mode != "ensemble" and head is not None and "combine" not in kept:
        kept["combine"] = "meta_head"
        notes.append(f"'{head.name}' is now the ensemble's meta-head; choose 'average' to average the members' "
                     f"predictions without it.")
    if needs_head(mode, kept) and head is None:
        if spec.mode in ("sequential", "transfer") and len(members) >= 2:
            head = members.pop()
            notes.append(f"'{head.name}', the top of the chain, is now the head.")
        else:
            head = dataclasses.replace(DEFAULT_HEAD, name=unique_name(spec, DEFAULT_HEAD.name))
            notes.append(f"Added the head '{head.name}' (dense_head): mode '{mode}' needs one.")
    elif not allows_head(mode, kept) and head is not None:
        notes.append(f"Removed the head '{head.name}': averaging the members' predictions has no place for "
                     f"a head. Undo brings it back.")
        head = None
    switched = spec.replace(mode=mode, options=kept, members=tuple(members), head=head)
    switched = _follow_name(spec, switched) if mode != spec.mode else switched
    if mode != spec.mode or notes:
        notes.append(f"Now {mode}: {wiring(switched)}.")
    return switched, notes


def set_mode(spec: StackSpec, mode: str, options: Mapping[str, Any] | None = None) -> StackSpec:
    """`switch_mode` without the notes."""
    return switch_mode(spec, mode, options)[0]


def apply_fix(spec: StackSpec, fix: Iterable[Mapping[str, Any]]) -> StackSpec:
    """Accept a problem's suggested adapters (the report's AdapterSpec dicts), skipping any
    already there (`core.spec.rules.accept_fix`)."""
    return rules.accept_fix(spec, [AdapterSpec.from_dict(item) for item in fix])


def remove_adapter(spec: StackSpec, index: int) -> StackSpec:
    return spec.replace(adapters=spec.adapters[:index] + spec.adapters[index + 1:])


def layer_matches(pattern: str, path: str) -> bool:
    """Whether a trainability regex selects a layer: the rule core.build.trainability applies."""
    return layer_pattern_matches(re.compile(pattern), path)


def check_regex(pattern: str) -> None:
    """Raise ValueError naming the problem if `pattern` is not a valid regular expression."""
    compile_layer_pattern(pattern)


def set_layer_trainable(spec: StackSpec, member: str, path: str, trainable: bool) -> StackSpec:
    """Add a rule for one layer, replacing an earlier rule for exactly that layer."""
    exact = re.escape(path)
    rules = tuple(r for r in spec.trainability if not (r.member == member and r.layers == exact))
    return spec.replace(trainability=rules + (LayerRule(member=member, layers=exact, trainable=trainable),))


def add_rule(spec: StackSpec, member: str, pattern: str, trainable: bool) -> StackSpec:
    """Append a regex rule (a later rule wins).

    Raises:
        ValueError: the pattern is not a valid regular expression.
    """
    check_regex(pattern)
    return spec.replace(trainability=spec.trainability + (LayerRule(member=member, layers=pattern,
                                                                     trainable=trainable),))


def drop_freezing_rules(spec: StackSpec, member: str) -> StackSpec:
    """Drop the rules that freeze layers of `member` (its own, not the '*' rules of every member)."""
    return spec.replace(trainability=tuple(r for r in spec.trainability if r.member != member or r.trainable))


def remove_rule(spec: StackSpec, index: int) -> StackSpec:
    return spec.replace(trainability=spec.trainability[:index] + spec.trainability[index + 1:])


def with_run_member(spec: StackSpec, run_id: str, name: str = "pretrained") -> StackSpec:
    """The draft with a finished run's model appended as a member."""
    return add_member(spec, MemberSpec(name=name, source="run", run_id=run_id))


def feature_layer(layers: Iterable[Mapping[str, Any]]) -> str | None:
    """The layer to cut a trained model at to reuse its features: the one below its output layer.

    Args:
        layers: the model's top-level layers in order (an inspected model file's "layers").
    """
    named = [layer["name"] for layer in layers if layer.get("class") != "InputLayer"]
    return named[-2] if len(named) >= 2 else None


def transfer_from_run(run_spec: StackSpec, run_id: str, cut_at: str | None = None) -> StackSpec:
    """A transfer stack: the run's model (frozen, cut at `cut_at`) under a new head, on the run's
    dataset, with a fine-tune phase in the second half of the run (`rules.default_fine_tune_start`;
    enough epochs for one on the frozen base and one fine-tuning)."""
    base = MemberSpec(name="base", source="run", run_id=run_id, cut_at=cut_at)
    epochs = max(run_spec.train.epochs, rules.earliest_fine_tune_start())
    return StackSpec(
        name=f"transfer_{run_spec.name}"[:64], mode="transfer", members=(base,), head=DEFAULT_HEAD,
        options={"freeze_base": True}, dataset=run_spec.dataset,
        train=dataclasses.replace(run_spec.train, epochs=epochs,
                                  fine_tune=FineTuneSpec(start_epoch=rules.default_fine_tune_start(epochs))),
    )
