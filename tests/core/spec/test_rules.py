"""core/spec/rules.py: the Keras-free rules of a stack, written once for core.build and the dashboard."""

import subprocess
import sys
from pathlib import Path

import pytest

from core.spec import AdapterSpec, FineTuneSpec, MemberSpec, SpecError, StackSpec, rules

ROOT = Path(__file__).resolve().parents[3]


def members(*names):
    return tuple(MemberSpec(name, template="mlp") for name in names)


HEAD = MemberSpec("head", template="dense_head")


def test_the_rules_import_no_keras():
    code = ("import sys, core.spec.rules\n"
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('keras', 'tensorflow', 'jax')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name, others, message", [
    ("has space", (), "Member name 'has space' is not allowed: use a letter first"),
    ("9lives", (), "use a letter first"),
    ("x" * 65, (), "at most 64 characters"),
    ("same", ("other", "same"), "A member named 'same' already exists; member names must be unique"),
])
def test_a_bad_member_name_says_why(name, others, message):
    assert message in rules.member_name_problem(name, others)


@pytest.mark.parametrize("name", rules.RESERVED_NAMES)
def test_the_steps_and_the_builders_layers_are_reserved(name):
    assert rules.member_name_problem(name) == (f"Member name '{name}' is reserved for a step of the stack; "
                                               f"choose another name.")


def test_a_good_member_name_has_no_problem():
    assert rules.member_name_problem("features_2", ("features",)) is None
    assert rules.member_name_problem("x" * 64) is None


@pytest.mark.parametrize("mode, options, needs, allows", [
    ("sequential", {}, False, True),
    ("fusion", {}, True, True),
    ("transfer", {}, True, True),
    ("ensemble", {}, False, False),  # averaging is the default
    ("ensemble", {"combine": "average"}, False, False),
    ("ensemble", {"combine": "meta_head"}, True, True),
])
def test_which_modes_need_and_allow_a_head(mode, options, needs, allows):
    assert rules.needs_head(mode, options) is needs
    assert rules.allows_head(mode, options) is allows


@pytest.mark.parametrize("spec, edges", [
    (StackSpec(members=members("a", "b")), [("input", "a"), ("a", "b"), ("b", "output")]),
    (StackSpec(members=members("a"), head=HEAD), [("input", "a"), ("a", "head"), ("head", "output")]),
    (StackSpec(mode="transfer", members=members("base"), head=HEAD),
     [("input", "base"), ("base", "head"), ("head", "output")]),
    (StackSpec(mode="fusion", members=members("a", "b"), head=HEAD, options={"include_raw_input": True}),
     [("input", "a"), ("input", "b"), ("a", "fusion"), ("b", "fusion"), ("input", "fusion"),
      ("fusion", "head"), ("head", "output")]),
    (StackSpec(mode="ensemble", members=members("a", "b"), head=HEAD),  # averaging: the head is not used
     [("input", "a"), ("input", "b"), ("a", "ensemble"), ("b", "ensemble"), ("ensemble", "output")]),
    (StackSpec(mode="ensemble", members=members("a", "b"), head=HEAD, options={"combine": "meta_head"}),
     [("input", "a"), ("input", "b"), ("a", "ensemble"), ("b", "ensemble"), ("ensemble", "head"),
      ("head", "output")]),
], ids=["sequential", "sequential-head", "transfer", "fusion-raw", "ensemble-average", "ensemble-meta"])
def test_the_edges_of_each_mode(spec, edges):
    assert rules.stack_edges(spec) == edges


def test_an_adapter_sits_on_its_edge_and_an_empty_before_means_any_consumer():
    named = AdapterSpec(after="input", before="a", kind="flatten")
    anywhere = AdapterSpec(after="input", kind="flatten")
    assert rules.on_edge(named, ("input", "a")) and not rules.on_edge(named, ("input", "b"))
    assert rules.on_edge(anywhere, ("input", "a")) and rules.on_edge(anywhere, ("input", "b"))
    # The raw input is fused as it is: not even an adapter for every consumer of the input sits there.
    assert not rules.on_edge(anywhere, rules.RAW_INPUT_EDGE)


def test_an_adapter_on_no_edge_says_where_it_could_go():
    spec = StackSpec(mode="fusion", members=members("a", "b"), head=HEAD)
    assert rules.adapter_placement_problem(spec, AdapterSpec(after="fusion", before="head", kind="flatten")) is None
    ghost = rules.adapter_placement_problem(spec, AdapterSpec(after="ghost", kind="flatten"))
    assert ghost == ("The accepted adapter Flatten is placed after 'ghost', which is not a member or a step that "
                     "feeds another in mode 'fusion' (adapters can follow ['input', 'a', 'b', 'fusion', 'head']). "
                     "Remove it.")
    unused = rules.adapter_placement_problem(spec, AdapterSpec(after="a", before="b", kind="flatten"))
    assert unused == "The adapter Flatten after 'a' is never used: 'a' does not feed b in mode 'fusion'. Remove it."
    raw = rules.adapter_placement_problem(spec.replace(options={"include_raw_input": True}),
                                          AdapterSpec(after="input", before="fusion", kind="flatten"))
    assert "is never used: 'input' does not feed fusion" in raw


def test_accepting_a_fix_skips_the_adapters_already_there():
    reshape = AdapterSpec(after="a", before="b", kind="reshape", target_shape=(4, 1))
    dense = AdapterSpec(after="b", before="output", kind="dense", units=3)
    spec = StackSpec(members=members("a", "b"), adapters=(reshape,))
    fixed = rules.accept_fix(spec, (reshape, dense))
    assert fixed.adapters == (reshape, dense)
    assert rules.accept_fix(fixed, (reshape, dense)) == fixed  # a second click changes nothing
    assert rules.accept_fix(spec, (dense, dense)).adapters == (reshape, dense)


@pytest.mark.parametrize("epochs, start", [(1, 2), (2, 2), (3, 2), (4, 3), (5, 3), (10, 6), (11, 6)])
def test_the_default_fine_tune_start_is_the_second_half_of_the_run(epochs, start):
    assert rules.default_fine_tune_start(epochs) == start


def test_the_earliest_fine_tune_start_is_the_one_the_spec_accepts():
    earliest = rules.earliest_fine_tune_start()
    assert FineTuneSpec.from_dict({"start_epoch": earliest}).start_epoch == earliest
    with pytest.raises(SpecError, match="start_epoch"):
        FineTuneSpec.from_dict({"start_epoch": earliest - 1})
