"""The Assemble page's member editors: one card per member, the per-layer trainability editor, adding members.

Each card edits one MemberSpec of the draft: its name, its source (a template and its
parameters, an uploaded model file or an earlier run, either cut at a layer), whether it
trains, and per-layer trainability (which becomes LayerRule entries). Structural edits
(move, remove, add) are button callbacks, so they apply before the page is drawn again.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from typing import Any, Callable, Mapping

import pandas as pd
import streamlit as st

from core import runs
from core.model_files.limits import LoadLimits
from core.spec import MemberSpec, StackSpec
from core.storage.uploads import display_name
from dashboard import diagram, formatting, services, spec_edit, state
from dashboard.widgets import forms

WHOLE_MODEL = "(whole model)"
# The uploader's own limit, in Streamlit's megabytes (MiB): what core.model_files.loading refuses anyway.
MODEL_UPLOAD_LIMIT_MB = max(1, math.ceil(LoadLimits.from_env().max_file_bytes / 2**20))


def edit(change: Callable[..., StackSpec], *args: Any) -> None:
    """A button callback: apply `change(draft, *args)` to the draft."""
    try:
        state.set_draft(change(state.draft(), *args))
    except ValueError as error:
        st.toast(str(error), icon=":material/error:")


def _template_label(templates: Mapping[str, dict], name: str) -> str:
    template = templates.get(name)
    return f"{template['title']}  ·  {name}" if template else name


def _params_summary(params: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "defaults"


def _template_body(member: MemberSpec, templates: Mapping[str, dict], key: tuple) -> MemberSpec:
    if not templates:  # the inspector did not answer; the page says why
        st.markdown(f"Template **{member.template}**, parameters: {_params_summary(member.params)}")
        return member
    names = list(templates)
    if member.template not in names:
        st.error(f"Template '{member.template}' is not known. Choose one of the templates below.")
        names = [member.template or "", *names]
    chosen = st.selectbox("Template", names, index=names.index(member.template or ""),
                          format_func=lambda n: _template_label(templates, n), key=state.widget_key(*key, "template"))
    if chosen != member.template:
        return MemberSpec(name=member.name, template=chosen, trainable=member.trainable)
    template = templates.get(chosen)
    if template is None:
        return member
    st.caption(template["description"])
    # Keyed: the label changes with the parameters, and an open expander must stay open.
    with st.expander(f"Parameters: {_params_summary(member.params)}",
                     key=state.widget_key("exp", member.name, "params")):
        params = forms.template_params(template, member.params, key)
    return member if params == member.params else dataclasses.replace(member, params=params)


def _cut_at(member: MemberSpec, layers: list[dict], key: tuple) -> str | None:
    names = [WHOLE_MODEL] + [layer["name"] for layer in layers if layer.get("class") != "InputLayer"]
    current = member.cut_at if member.cut_at in names else WHOLE_MODEL
    chosen = st.selectbox("Cut at layer", names, index=names.index(current), key=state.widget_key(*key, "cut"),
                          help="Keep the model up to and including this layer, e.g. to reuse its features "
                               "without its output layer.")
    return None if chosen == WHOLE_MODEL else chosen


def model_summary(summary: Mapping[str, Any]) -> None:
    """An inspected model file: class, shapes, parameters and its top-level layers."""
    inputs = ", ".join(formatting.shape(s) for s in summary.get("input_shapes", []))
    outputs = ", ".join(formatting.shape(s) for s in summary.get("output_shapes", []))
    st.caption(f"{summary.get('model_class', 'Model')} '{summary.get('name', '')}': {inputs} → {outputs} · "
               f"{formatting.count(summary.get('total_params'))} params "
               f"({formatting.count(summary.get('trainable_params'))} trainable)")
    layers = summary.get("layers", [])
    st.dataframe(pd.DataFrame([{
        "layer": layer.get("name"), "class": layer.get("class") or layer.get("class_name"),
        "output shape": formatting.shape(layer.get("output_shape")), "params": layer.get("params", 0),
        "trainable": bool(layer.get("trainable")),
    } for layer in layers]), hide_index=True, height=min(35 * len(layers) + 38, 300),
        column_config={"params": st.column_config.NumberColumn(format="localized")})


def _file_body(member: MemberSpec, key: tuple) -> MemberSpec:
    if member.source == "file":
        st.markdown(f"Model file **{display_name(member.file or '')}**")
        outcome, summary = services.inspect_model(member.file or "")
    else:
        try:
            run = runs.get(member.run_id or "")
            st.markdown(f"Model of run **{run.id}** ({run.name}, {run.status})")
        except runs.RunNotFound as error:
            st.error(str(error))
            return member
        outcome, summary = services.inspect_run_model(run.id)
    if outcome == "refused":
        st.error(summary)
        return member
    cut = _cut_at(member, summary.get("layers", []), key)
    return member if cut == member.cut_at else dataclasses.replace(member, cut_at=cut)


def _fingerprint(spec: StackSpec, member: MemberSpec) -> str:
    """Changes whenever what the layer trainability editor shows may change, so it starts afresh."""
    text = repr((member, spec.mode, spec.options, [r for r in spec.trainability if r.member in (member.name, "*")]))
    return hashlib.sha1(text.encode()).hexdigest()[:8]


def layer_trainability_editor(spec: StackSpec, member: MemberSpec,
                              report_member: Mapping[str, Any] | None) -> StackSpec:
    """Per-layer trainability as a checkbox column; each change becomes a LayerRule."""
    layers = (report_member or {}).get("layers", [])
    if not layers:
        st.caption("Layers appear once the stack has been checked.")
        return spec
    frame = pd.DataFrame([{
        "layer": layer["path"], "class": layer["class"], "output shape": formatting.shape(layer.get("output_shape")),
        "params": layer["params"], "trainable": bool(layer["trainable"]),
    } for layer in layers])
    edited = st.data_editor(
        frame, hide_index=True, disabled=["layer", "class", "output shape", "params"],
        key=state.widget_key("draft", "layers", member.name, _fingerprint(spec, member)),
        height=min(35 * len(frame) + 38, 400),
        column_config={"params": st.column_config.NumberColumn(format="localized"),
                       "trainable": st.column_config.CheckboxColumn(help="Untick to freeze this layer.")})
    for path, before, after in zip(frame["layer"], frame["trainable"], edited["trainable"]):
        if bool(before) != bool(after):
            spec = spec_edit.set_layer_trainable(spec, member.name, path, bool(after))
    return spec


def trainable_switch(spec: StackSpec, member: MemberSpec, report_member: Mapping[str, Any] | None,
                     key: tuple, role: str = "member") -> tuple[StackSpec, bool]:
    """The member's "Trainable" switch; returns the draft (with the rules that froze it dropped,
    when the switch turned it back on) and the member's trainable flag to keep."""
    rules_freeze_all = diagram.trainability(report_member, member) == "frozen" and member.trainable
    if spec.mode == "transfer" and spec.option("freeze_base") and role != "head":
        # Shown off and read-only; the member's own flag is kept for when freeze_base is unset.
        st.toggle("Trainable", False, key=state.widget_key(*key, "trainable-frozen-by-mode"), disabled=True,
                  help="Frozen by the transfer mode's 'freeze the base members' option.")
        return spec, member.trainable
    if rules_freeze_all:
        # The member's flag is on, but its layer rules froze every weight: the switch says
        # what will happen, and turning it on drops the rules that froze it.
        if st.toggle("Trainable", False, key=state.widget_key(*key, "trainable-frozen-by-rules"),
                     help="Every layer is frozen by trainability rules; turn on to remove the rules "
                          "that freeze this member."):
            spec = spec_edit.drop_freezing_rules(spec, member.name)
        return spec, member.trainable
    return spec, st.toggle("Trainable", member.trainable, key=state.widget_key(*key, "trainable"),
                           help="Untick to freeze every layer of this member.")


def source_form(member: MemberSpec, templates: Mapping[str, dict], key: tuple) -> MemberSpec:
    """Where the member comes from: a template and its parameters, or a model file or run and
    the layer it is cut at."""
    return _template_body(member, templates, key) if member.source == "template" else _file_body(member, key)


def counts_text(report_member: Mapping[str, Any] | None) -> str:
    """' · (28, 28, 1) → (5408,) · 320 of 320 params trainable', or '' before the report."""
    if report_member is None or report_member.get("output_shape") is None:
        return ""
    return (f" · {formatting.shape(report_member['input_shape'])} → "
            f"{formatting.shape(report_member['output_shape'])} · "
            f"{formatting.count(report_member['trainable_params'])} of "
            f"{formatting.count(report_member['total_params'])} params trainable")


def member_card(spec: StackSpec, member: MemberSpec, role: str, position: int, count: int,
                templates: Mapping[str, dict], report_member: Mapping[str, Any] | None) -> StackSpec:
    """Draw one member's editor; return the draft with this member's edits."""
    key = ("draft", "member", member.name)
    with st.container(border=True, key=state.widget_key("card", member.name)):
        top = st.columns([4, 3, 1, 1, 1], vertical_alignment="bottom")
        name = top[0].text_input("Head name" if role == "head" else f"Member {position + 1}", member.name,
                                 key=state.widget_key(*key, "name"))
        with top[1]:
            spec, trainable = trainable_switch(spec, member, report_member, key, role)
        if role == "member":
            top[2].button("", icon=":material/arrow_upward:", key=state.widget_key("up", member.name),
                          help="Move up (towards the input)", disabled=position == 0,
                          on_click=edit, args=(spec_edit.move_member, member.name, -1))
            top[3].button("", icon=":material/arrow_downward:", key=state.widget_key("down", member.name),
                          help="Move down (towards the output)", disabled=position == count - 1,
                          on_click=edit, args=(spec_edit.move_member, member.name, 1))
        if role == "member" or not spec_edit.needs_head(spec.mode, spec.options):
            top[4].button("", icon=":material/delete:", key=state.widget_key("remove", member.name),
                          help="Remove this member", on_click=edit, args=(spec_edit.remove_member, member.name))
        updated = source_form(member, templates, key)
        if trainable != member.trainable:
            updated = dataclasses.replace(updated, trainable=trainable)
        if updated != member:
            spec = spec_edit.replace_member(spec, member.name, updated)
        with st.expander(f"Layers and trainability{counts_text(report_member)}",
                         key=state.widget_key("exp", member.name, "layers")):
            spec = layer_trainability_editor(spec, member, report_member)
        if name != member.name:
            try:
                spec = spec_edit.rename_member(spec, member.name, name)
            except ValueError as error:
                st.error(str(error))
    return spec


def _add(member: MemberSpec, as_head: bool = False) -> None:
    spec = state.draft()
    if as_head:
        member = dataclasses.replace(member, name=spec_edit.unique_name(spec, member.name))
        state.set_draft(spec.replace(head=member))
    else:
        state.set_draft(spec_edit.add_member(spec, member))
    st.toast(f"Added '{member.name}'.", icon=":material/check:")


def add_member_panel(templates: Mapping[str, dict], key_prefix: str = "add",
                     on_add: Callable[[MemberSpec], None] = _add, action: str = "Add member") -> None:
    """Tabs to add a template member, an uploaded model file, or the model of an earlier run.

    Args:
        key_prefix: starts every widget key ("add" on the members form, "canvas-add" in the
            canvas's palette), so the two panels can be on one page.
        on_add: the button callback, given the new member (its name may be taken: the
            callback makes it unique).
        action: the buttons' label.
    """
    template_tab, file_tab, run_tab = st.tabs(["Template", "Model file (.keras, .h5)", "Earlier run"])
    with template_tab:
        names = list(templates)
        chosen = st.selectbox("Template", names, format_func=lambda n: _template_label(templates, n),
                              key=f"{key_prefix}-template")
        if chosen:
            st.caption(templates[chosen]["description"])
            st.button(action, key=f"{key_prefix}-template-button", icon=":material/add:", on_click=on_add,
                      args=(MemberSpec(name=chosen.split("_")[0], template=chosen),))
    with file_tab:
        uploaded = st.file_uploader("Upload a Keras model", type=["keras", "h5"], key=f"{key_prefix}-file-upload",
                                    max_upload_size=MODEL_UPLOAD_LIMIT_MB,
                                    help="Checked before it is loaded: no custom code, no Lambda layers, bounded "
                                         "sizes. It is opened in the inspector process, never in this one.")
        if uploaded is not None:
            ref = services.store_upload(uploaded)
            if ref is not None:
                with st.spinner(f"Inspecting {uploaded.name}…"):
                    outcome, summary = services.inspect_model(ref)
                if outcome == "refused":
                    st.error(summary)
                else:
                    model_summary(summary)
                    member = MemberSpec(name=spec_edit.unique_name(state.draft(), uploaded.name.rsplit(".", 1)[0]),
                                        source="file", file=ref)
                    cut = _cut_at(member, summary.get("layers", []), (key_prefix, "file", ref[7:19]))
                    st.button(action, key=f"{key_prefix}-file-button", icon=":material/add:", on_click=on_add,
                              args=(MemberSpec(name=member.name, source="file", file=ref, cut_at=cut),))
    with run_tab:
        finished = runs.list_runs(("finished",))
        if not finished:
            st.caption("Finished runs appear here; their trained models can become members.")
        else:
            labels = {run.id: f"{run.id} · {run.name} · {run.dataset.name} · {formatting.best(run.best)}"
                      for run in finished}
            run_id = st.selectbox("Run", list(labels), format_func=labels.get, key=f"{key_prefix}-run")
            outcome, summary = services.inspect_run_model(run_id)
            if outcome == "refused":
                st.error(summary)
            else:
                cut = _cut_at(MemberSpec(name="pretrained", source="run", run_id=run_id),
                              summary.get("layers", []), (key_prefix, "run", run_id))
                st.button(action, key=f"{key_prefix}-run-button", icon=":material/add:", on_click=on_add,
                          args=(MemberSpec(name="pretrained", source="run", run_id=run_id, cut_at=cut),))
