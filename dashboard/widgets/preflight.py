"""The Assemble page's right-hand side: the stack's diagram and its pre-flight report.

The report comes from the inspector (`client.check(spec)`): parameter counts, warnings, and
each problem with the adapters that would fix it, which one click appends to the draft.
"""

from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

from core.spec import GRAPH_MODE, AdapterSpec, StackSpec
from core.storage.uploads import display_name
from dashboard import diagram, formatting, graph_edit, spec_edit, state
from dashboard.widgets import members


def _describe(adapter) -> str:
    target = f" → {adapter.before}" if adapter.before else ""
    return f"{adapter.label()} after '{adapter.after}'{target}"


def draw_diagram(spec: StackSpec, report: Mapping[str, Any] | None) -> None:
    """The stack as blocks, with a choice of members to show layer by layer."""
    names = [m.name for m in spec.all_members()]
    expanded = st.multiselect("Show the layers of", names, default=[n for n in state.expanded_members() if n in names],
                              key="asm-diagram-expand", placeholder="members to expand")
    state.expanded_members().clear()
    state.expanded_members().update(expanded)
    st.graphviz_chart(diagram.stack_dot(spec, report, expanded, display_name=display_name,
                                        theme=st.context.theme.type or "light"))
    st.caption("Blue: trainable · amber: partly frozen · grey, dashed: frozen · green: adapters · "
               "red border: a problem.")


def problem_card(spec: StackSpec, problem: Mapping[str, Any], index: int, page: str) -> None:
    """One problem of the pre-flight report with what solves it: "Apply fix" for a checked fix,
    "Remove" for an accepted adapter that no longer fits (the fix is the problem itself)."""
    with st.container(border=True, key=f"{page}-problem-{index}"):
        st.markdown(f"**{problem['kind'].capitalize()} problem at `{problem['member']}`**")
        st.write(problem["message"])
        adapter_index = problem.get("adapter_index")
        if problem.get("fix"):
            if problem.get("fix_warning"):
                st.warning(problem["fix_warning"], icon=":material/warning:")
            st.button(f"Apply fix: {problem['fix_label']}", key=f"{page}-fix-{index}", icon=":material/build:",
                      type="primary", on_click=members.edit,
                      args=(graph_edit.apply_fix, problem["fix"], problem.get("edge")))
        elif adapter_index is not None and 0 <= adapter_index < len(spec.adapters):
            st.button(f"Remove {spec.adapters[adapter_index].label()}", key=f"{page}-fix-{index}",
                      icon=":material/delete:", type="primary", on_click=members.edit,
                      args=(spec_edit.remove_adapter, adapter_index))


def report_panel(spec: StackSpec, report: Mapping[str, Any] | None, error: Exception | None) -> StackSpec:
    """Parameter counts, warnings, problems with their fixes, and the adapters in use."""
    if report is None:
        invalid = getattr(error, "kind", "") == "invalid"
        (st.error if invalid else st.warning)(f"The stack could not be checked: {error}")
        return spec
    if report["ok"]:
        st.success(f"The stack builds: {formatting.shape(report['input_shape'])} → "
                   f"{formatting.shape(report['output_shape'])}.", icon=":material/check_circle:")
    else:
        st.error(f"The stack does not build yet: {formatting.plural(len(report['problems']), 'problem')} below.",
                 icon=":material/error:")
    columns = st.columns(3)
    columns[0].metric("Total parameters", formatting.count(report["total_params"]))
    columns[1].metric("Trainable", formatting.count(report["trainable_params"]))
    columns[2].metric("Non-trainable", formatting.count(report["non_trainable_params"]))
    fix_warnings = {problem.get("fix_warning") for problem in report.get("problems", [])}
    for warning in report.get("warnings", []):
        if warning not in fix_warnings:  # shown with its fix below
            st.warning(warning, icon=":material/warning:")
    for index, problem in enumerate(report.get("problems", [])):
        problem_card(spec, problem, index, "asm")
    auto = st.toggle("Auto adapters", spec.auto_adapters, key=state.widget_key("draft", "auto-adapters"),
                     help="Insert the adapter each shape problem suggests, without asking.")
    if auto != spec.auto_adapters:
        spec = spec.replace(auto_adapters=auto)
    if spec.adapters:
        st.markdown("**Adapters you accepted**")
        for index, adapter in enumerate(spec.adapters):
            left, right = st.columns([5, 1], vertical_alignment="center")
            left.write(_describe(adapter))
            right.button("", icon=":material/close:", key=f"asm-adapter-remove-{index}", help="Remove this adapter",
                         on_click=members.edit, args=(spec_edit.remove_adapter, index))
    automatic = [a for a in report.get("adapters", []) if a not in [x.to_dict() for x in spec.adapters]]
    if spec.mode == GRAPH_MODE:
        # The report lists every adapter of the model; a graph's own adapter nodes are drawn.
        drawn = graph_edit.graph(spec)
        nodes = {(source, node.adapter) for node in drawn.nodes if node.kind == "adapter"
                 for source in drawn.inputs_of(node.id)}
        automatic = [a for a in automatic if spec.auto_adapters and (a["after"], a["kind"]) not in nodes]
    if automatic:
        st.caption("Inserted automatically: " + "; ".join(_describe(AdapterSpec.from_dict(a)) for a in automatic))
    return spec


def rules_panel(spec: StackSpec, report: Mapping[str, Any] | None) -> StackSpec:
    """Trainability rules: freeze or unfreeze the layers whose names match a regex."""
    for index, rule in enumerate(spec.trainability):
        left, right = st.columns([5, 1], vertical_alignment="center")
        left.write(f"{'Unfreeze' if rule.trainable else 'Freeze'} `{rule.layers}` in "
                   f"{'every member' if rule.member == '*' else repr(rule.member)}")
        right.button("", icon=":material/close:", key=f"asm-rule-remove-{index}", help="Remove this rule",
                     on_click=members.edit, args=(spec_edit.remove_rule, index))
    names = ["*", *(m.name for m in spec.all_members())]
    columns = st.columns([2, 3, 2])
    member = columns[0].selectbox("Member", names, key="asm-rule-member",
                                  format_func=lambda n: "every member" if n == "*" else n)
    pattern = columns[1].text_input("Layer regex", key="asm-rule-regex", placeholder="e.g. .*conv.* or block_1_.*",
                                    help="Fully matches a layer's name or its path inside the member.")
    action = columns[2].selectbox("Action", ["Freeze", "Unfreeze"], key="asm-rule-action")
    if pattern:
        try:
            spec_edit.check_regex(pattern)
        except ValueError as error:
            st.error(str(error))
            return spec
        layers = [(m["name"], layer["path"]) for m in (report or {}).get("members", [])
                  if member in ("*", m["name"]) for layer in m["layers"]]
        matched = [f"{owner}/{path}" for owner, path in layers if spec_edit.layer_matches(pattern, path)]
        st.caption(f"Matches {formatting.plural(len(matched), 'layer')}"
                   + (f": {', '.join(matched[:8])}" if matched else "") + ("…" if len(matched) > 8 else ""))
        st.button("Add rule", key="asm-rule-add", icon=":material/add:", on_click=members.edit,
                  args=(spec_edit.add_rule, member, pattern, action == "Unfreeze"))
    return spec
