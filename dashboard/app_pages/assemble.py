"""Assemble: the canvas where the stack is drawn, the panel of what is selected on it, the
palette, the pre-flight check, and the forms of a preset (mode, members, head, trainability).

Canvas, panels and forms edit one draft spec (dashboard.state); every model question goes to
the inspector (client.templates, client.check, client.inspect_file) through dashboard.services.
The canvas is drawn last: what it sends back reruns the page, and an answer that comes while
the page is still being drawn would cut the drawing short.
"""

import streamlit as st

from core import sweeps
from core.inspector import InspectorError
from core.runs import RunStoreError
from core.spec import GRAPH_MODE, STACKING_MODES, SpecError, StackSpec
from core.storage import drafts
from dashboard import formatting, graph_edit, services, spec_edit, state
from dashboard.widgets import canvas, forms, members, messages, node_panel, preflight
from dashboard.widgets import draft as draft_widgets

IMPORT_KEY = "asm-import"
MODE_HELP = {
    "sequential": "Members chained A → B → …: each member's output feeds the next.",
    "fusion": "Every member reads the input; their features are concatenated (optionally with the raw "
              "input) and fed to the head.",
    "transfer": "Pretrained members, frozen, under a new head; optionally fine-tune their top layers later "
                "(Train page).",
    "ensemble": "Several complete models on the same input; their predictions are averaged or fed to a "
                "meta-head.",
    GRAPH_MODE: "Drawn on the canvas: nodes and the edges between them. Members, merges and adapters come from "
                "the palette.",
}


def reset() -> None:
    state.propose_replacement(spec_edit.default_spec(), "the default stack")


def switch_mode(mode_key: str, name_key: str) -> None:
    """The mode selectbox's callback: switch the draft's mode before the page is drawn (members
    mapped onto the new mode's roles, a generated name following the mode), say what changed,
    and keep the draft before the switch for Undo. "graph" turns the preset into the graph it
    builds, to edit on the canvas."""
    mode = state.widget_value(mode_key)
    if mode == GRAPH_MODE:
        switched = graph_edit.named_for_graph(state.draft(), graph_edit.as_graph(state.draft()))
        state.replace_draft(switched, "the switch to mode 'graph'", fresh_widgets=False)
        state.set_widget_value(name_key, switched.name)
        state.set_page_notice("Now a graph: edit its nodes and edges on the canvas.")
        return
    switched, notes = spec_edit.switch_mode(state.draft(), mode)
    state.replace_draft(switched, f"the switch to mode '{mode}'", fresh_widgets=False)
    state.set_widget_value(name_key, switched.name)
    state.set_page_notice(" ".join(notes))


VARIANT_WORDS = {"sequential": "sequential", "fusion_raw": "fusion with the raw input", "fusion": "fusion without it",
                 "ensemble": "an averaging ensemble", "transfer": "transfer (frozen base)",
                 "transfer_fine_tune": "transfer with a fine-tune phase"}


def compare_modes(spec: StackSpec) -> None:
    """Compare modes: the draft's data and members in every stacking mode that makes sense, one
    run each with the same seed and epochs, as one sweep; the Sweeps page shows the result."""
    refusal = ""
    if spec.mode == GRAPH_MODE:
        refusal = "A graph's topology is not one of the modes: reset or import a preset stack to compare modes."
    elif not spec.members:
        refusal = "Add a member first."
    try:
        variants = {} if refusal else sweeps.mode_variants(spec.replace(search=None))
    except ValueError as error:  # a half-finished draft: the button says why when pressed
        variants, refusal = {}, str(error)
    words = ", ".join(VARIANT_WORDS.get(name, name) for name in variants)
    st.caption(f"Compare modes trains the same data and members, with the same seed ({spec.train.seed}) and "
               f"{formatting.plural(spec.train.epochs, 'epoch')}, as {words or 'each stacking mode'}: one run each, "
               f"as one sweep. The Sweeps page tables their parameters, trainable parameters, time and best "
               f"validation metric, and overlays their curves." if not refusal else
               f"Compare modes trains this stack in every stacking mode as one sweep. {refusal}")
    if not st.button("Compare modes", key="asm-compare-modes", icon=":material/compare_arrows:",
                     disabled=bool(refusal), help=refusal or None):
        return
    try:
        study = sweeps.create_sweep(sweeps.compare_modes_spec(spec))
        if not sweeps.driver_alive(study):
            sweeps.spawn_driver(study)
    except (ValueError, KeyError, OSError) as error:  # SpecError is a ValueError
        st.error(str(error.args[0]) if isinstance(error, KeyError) else str(error), icon=":material/error:")
        return
    state.select_sweep(study)
    state.set_page_notice(f"Comparing {formatting.plural(len(variants), 'mode')} of '{spec.name}' as sweep "
                          f"'{study}'; each is a run on the Runs page too.")
    st.switch_page("app_pages/sweeps.py")


def import_spec() -> None:
    """The import uploader's callback: it runs before the page is drawn, so every widget then
    shows the imported draft."""
    uploaded = state.widget_value(IMPORT_KEY)
    if uploaded is None:
        return
    try:
        imported = StackSpec.from_json(uploaded.getvalue().decode("utf-8", errors="replace"))
    except SpecError as error:
        state.set_page_error(f"'{uploaded.name}' is not a StackLab spec: {error}")
        return
    state.propose_replacement(imported, f"'{imported.name}' imported from {uploaded.name}")


st.title("Assemble")
spec = canvas.absorb(state.draft())

with st.container(horizontal=True, vertical_alignment="bottom"):
    st.download_button("Export spec (.json)", spec.to_json(), file_name=f"{spec.name}.json", mime="application/json",
                       key="asm-export", icon=":material/download:", on_click="ignore")
    with st.popover("Import spec (.json)", icon=":material/upload:"):
        st.file_uploader("A StackLab spec exported earlier", type=["json"], key=IMPORT_KEY, on_change=import_spec)
    st.button("Reset to the default stack", key="asm-reset", icon=":material/restart_alt:", on_click=reset)
st.caption(f"Saved as you edit, in {drafts.draft_path()}: a reload, a new tab or a restart shows this draft. "
           f"StackLab keeps one draft, shared by every tab (the last edit wins).")
# Messages come and go; drawn inside one container that is always there, they do not move
# what follows to a new place in the page (which would, for one, reset the open tab below).
with st.container(key="asm-messages"):
    draft_widgets.replacement_prompt("asm")
    draft_widgets.undo_button()
    messages.page_messages()

try:
    templates = services.templates()
except InspectorError as error:
    st.error(f"The templates are not available: {error}")
    templates = {}
with st.spinner("Checking the stack…"):
    report, check_error = services.check_or_error(spec)
report_members = {m["name"]: m for m in report["members"]} if report else {}
is_graph = spec.mode == GRAPH_MODE


def keep(edited: StackSpec) -> None:
    """A section's edits: stored, and the page drawn again with them."""
    if edited != spec:
        state.set_draft(edited)
        st.rerun()


top = st.columns([1, 1], vertical_alignment="bottom")
name_key = state.widget_key("draft", "name")
if state.widget_value(name_key) is None:  # set in session state only, so a generated name can follow
    state.set_widget_value(name_key, spec.name)
name = top[0].text_input("Stack name", key=name_key,
                         help="Until you name it, the stack is named after its mode and dataset.")
mode_key = state.widget_key("draft", "mode")
if state.widget_value(mode_key, spec.mode) != spec.mode:  # the canvas made the preset a graph
    state.set_widget_value(mode_key, spec.mode)
modes = (*STACKING_MODES, GRAPH_MODE)
mode = top[1].selectbox("Stacking mode", modes, index=modes.index(spec.mode), key=mode_key, disabled=is_graph,
                        on_change=switch_mode, args=(mode_key, name_key),
                        help="A graph stays a graph: reset or import a spec to start from a preset again."
                        if is_graph else "The first edit of the drawing's nodes or edges makes it a graph.")
st.caption(MODE_HELP[mode])
if name.strip() and name != spec.name:
    keep(spec.replace(name=name.strip()))
# Drawn in a container that is always there (a graph has no options): the canvas below keeps
# its place in the page, so the browser does not load it again when a preset becomes a graph.
with st.container(key="asm-mode-options"):
    options = spec.options if is_graph else forms.mode_options(mode, spec.options, ("draft", "options"))
if options != spec.options:
    switched, notes = spec_edit.switch_mode(spec, mode, options)
    if spec.head is not None and switched.head is None:  # a head dropped: keep it for Undo
        state.replace_draft(switched, "the change of the mode's options", fresh_widgets=False)
    else:
        state.set_draft(switched)
    state.set_page_notice(" ".join(notes))
    st.rerun()

canvas_column, side = st.columns([3, 2], gap="medium")
with side:
    try:
        keep(node_panel.panel(spec, report, templates))
        canvas.palette(templates)
    except RunStoreError as error:
        st.error(str(error))

forms_column, check_column = st.columns([3, 2], gap="large")
with check_column:
    st.subheader("Pre-flight check")
    keep(preflight.report_panel(spec, report, check_error))
    compare_modes(spec)
with forms_column:
    edited = spec
    if not is_graph and state.canvas_selection() is None:
        st.subheader("Members")
        try:
            if not spec.members:
                st.info("No members yet: add one below, or place one on the canvas.")
            for position, member in enumerate(spec.members):
                edited = members.member_card(edited, member, "member", position, len(spec.members), templates,
                                             report_members.get(member.name))
            if spec_edit.allows_head(spec.mode, spec.options):
                st.subheader("Head")
                if spec.head is not None:
                    edited = members.member_card(edited, spec.head, "head", 0, 1, templates,
                                                 report_members.get(spec.head.name))
                else:
                    st.caption("Optional in a sequential stack: a head is appended after the last member.")
                    st.button("Add a head", key="asm-add-head", icon=":material/add:", on_click=members.edit,
                              args=(lambda s: s.replace(head=spec_edit.DEFAULT_HEAD),))
            st.subheader(f"Add a member to the {spec.mode} stack")
            with st.container(key="asm-add-member"):
                members.add_member_panel(templates)
        except RunStoreError as error:
            st.error(str(error))
    elif not is_graph:
        st.caption("The selected node's panel is open beside the canvas; close it to see the forms of every member.")
    with st.expander("Trainability rules (select layers by regex)"):
        edited = preflight.rules_panel(edited, report)
    if not is_graph:
        with st.expander("Diagram with the members' layers"):
            preflight.draw_diagram(spec, report)
    keep(edited)

with canvas_column:
    canvas.toolbar(spec)
    canvas.draw(spec, report)
