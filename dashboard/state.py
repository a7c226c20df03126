"""The one module that names st.session_state keys.

Session state holds what belongs to one browser tab: this tab's copy of the draft StackSpec,
the run this tab chose to watch, and small caches (stored uploads, inspections, evaluations,
epoch rows already read). It is not the data model for runs: runs live in the run store,
so a reload or a second tab shows the same runs. Nor is it the home of the draft: every edit
is saved to `$STACKLAB_HOME/draft.json` (core.storage.drafts), and a tab adopts the saved draft when
it is newer than its copy, so a reload, a new tab or a restarted server shows the same draft.

Only this module reads or writes st.session_state. Pages give their widgets stable,
readable keys (end-to-end tests find them; Streamlit adds each as the CSS class
`st-key-<key>`), built with `widget_key` where they have parts (a member's name). Prefixes
name the page: "data-", "asm-", "add-", "train-", "runs-"; widgets that show a value of
the draft spec start with "draft-".

When the draft is replaced as a whole (import, reset, a new transfer stack), the "draft-"
widgets must show the new draft, not what the browser still holds for them. Deleting their
state does not do that (a keyed widget keeps its identity, and the browser its value), so
`replace_draft` starts a new generation instead: from then on "draft-" keys end in "-r<n>",
and Streamlit sees new widgets that start from the new draft.
"""

from __future__ import annotations

import re
from typing import Any

import streamlit as st

from core.spec import SpecError, StackSpec
from core.storage import drafts
from dashboard.spec_edit import default_spec

DRAFT = "draft_spec"  # StackSpec: the stack being assembled
WATCHED_RUN = "watched_run"  # run id this tab chose on the Train page (None: the newest active)
STORED_UPLOADS = "stored_uploads"  # uploader file id -> "sha256:<hex>", so a file is hashed once
INSPECTIONS = "inspections"  # upload ref -> ("ok", summary) or ("refused", reason)
EVALUATIONS = "evaluations"  # run id -> client.evaluate result
ABLATIONS = "ablations"  # run id -> client.ablation result
EPOCH_CACHE = "epoch_cache"  # run id -> {"ended_at": float | None, "rows": [epoch rows]}
CHART_CACHE = "chart_cache"  # chart key -> (what the figure was drawn from, the Plotly figure)
PENDING_DELETE = "pending_delete"  # run id waiting for the delete confirmation
DELETED_RUN = "deleted_run"  # "id (name)" of the run this tab deleted last, until a run is selected again
RUNS_SELECTION = "runs_selection"  # run ids ticked in the Runs table, in the order they were ticked
RUNS_TABLE_IDS = "runs_table_ids"  # the run ids, in row order, that the table's selection positions refer to
EXPANDED_MEMBERS = "expanded_members"  # member names drawn with their layers in the diagram
PAGE_ERROR = "page_error"  # a message a callback left for the page to show once
DRAFT_GENERATION = "draft_generation"  # how many times the draft was replaced as a whole
SAVED_DRAFT = "saved_draft"  # core.storage.drafts.SavedDraft this tab's draft was last saved as or read from
DRAFT_STAMP = "draft_stamp"  # the draft file's stamp when this tab last looked at it
PENDING_REPLACEMENT = "pending_replacement"  # (StackSpec, what it is) waiting for the user's yes
PAGE_NOTICE = "page_notice"  # a sentence a callback left for the page to show once
CANVAS_SHOWN = "canvas_shown"  # what this tab's canvas was last given (dashboard.widgets.canvas.Shown)
CANVAS_SEEN = "canvas_seen"  # the timestamp of the canvas's last answer that was applied
CANVAS_SELECTION = "canvas_selection"  # ("node", id) or ("edge", source, target) selected on the canvas
SELECTED_SWEEP = "selected_sweep"  # the study this tab shows on the Sweeps page (set by Start, Compare modes)


def _get(key: str, default_factory):
    if key not in st.session_state:
        st.session_state[key] = default_factory()
    return st.session_state[key]


# -- the draft spec ------------------------------------------------------------------------


def draft() -> StackSpec:
    """The stack being assembled: the saved draft (newer than this tab's copy, it wins), else the
    seed's sequential stack."""
    _adopt_saved_draft()
    return _get(DRAFT, default_spec)


def _adopt_saved_draft() -> None:
    stamp = drafts.stamp()
    if DRAFT in st.session_state and stamp == st.session_state.get(DRAFT_STAMP):
        return  # unchanged since this tab last looked: no read
    st.session_state[DRAFT_STAMP] = stamp
    if stamp is None:
        return
    try:
        saved = drafts.load()
    except SpecError as error:  # moved aside by core.storage.drafts: nothing is lost, the page says where
        set_page_error(str(error))
        return
    known = st.session_state.get(SAVED_DRAFT)
    if saved is not None and (known is None or saved.revision != known.revision):
        had_draft = DRAFT in st.session_state
        st.session_state[DRAFT] = saved.spec
        st.session_state[SAVED_DRAFT] = saved
        if had_draft:  # edited in another tab: the widgets must show it, not what they hold
            _new_generation()


def _save(spec: StackSpec, replaces: bool = False, reason: str = "") -> None:
    try:
        saved = drafts.save(spec, replaces=replaces, reason=reason)
    except OSError as error:
        set_page_error(f"The draft could not be saved in {drafts.draft_path()} ({error}); it is kept in this "
                       f"tab only. Export it as JSON to keep it.")
        return
    st.session_state[SAVED_DRAFT] = saved
    st.session_state[DRAFT_STAMP] = drafts.stamp()


def _new_generation() -> None:
    st.session_state[DRAFT_GENERATION] = st.session_state.get(DRAFT_GENERATION, 0) + 1


def set_draft(spec: StackSpec) -> None:
    """Store (and save) an edit made through a widget (the widgets already show it)."""
    st.session_state[DRAFT] = spec
    _save(spec)


def replace_draft(spec: StackSpec, reason: str = "", fresh_widgets: bool = True) -> None:
    """Store a draft that replaces the old one as a whole, keeping the old one for one undo.

    Args:
        fresh_widgets: the widgets showing the draft start afresh from it (see the module
            docstring). A caller that changed only what the widgets already show (a mode
            switch, made by the mode's own widget) passes False.
    """
    st.session_state[DRAFT] = spec
    _save(spec, replaces=True, reason=reason)
    if fresh_widgets:
        _new_generation()


def replaced_draft() -> tuple[StackSpec, str] | None:
    """(the draft the last replacement replaced, what replaced it), while it can be brought back."""
    draft()
    saved = st.session_state.get(SAVED_DRAFT)
    if saved is None or saved.previous is None:
        return None
    return saved.previous, saved.replaced_by


def undo_replacement() -> None:
    """Bring back the draft the last replacement replaced (once)."""
    try:
        saved = drafts.undo()
    except (ValueError, OSError) as error:
        set_page_error(str(error))
        return
    st.session_state[DRAFT] = saved.spec
    st.session_state[SAVED_DRAFT] = saved
    st.session_state[DRAFT_STAMP] = drafts.stamp()
    _new_generation()


def propose_replacement(spec: StackSpec, reason: str) -> None:
    """Replace the draft with `spec` at once if that loses nothing (the draft is the untouched
    default, or `spec` itself); otherwise wait for the user's yes (`pending_replacement`)."""
    current = draft()
    if current == spec or current == default_spec():
        replace_draft(spec, reason)
        st.session_state.pop(PENDING_REPLACEMENT, None)
    else:
        st.session_state[PENDING_REPLACEMENT] = (spec, reason)


def pending_replacement() -> tuple[StackSpec, str] | None:
    return st.session_state.get(PENDING_REPLACEMENT)


def accept_replacement() -> None:
    pending = st.session_state.pop(PENDING_REPLACEMENT, None)
    if pending is not None:
        replace_draft(*pending)


def decline_replacement() -> None:
    st.session_state.pop(PENDING_REPLACEMENT, None)


def widget_key(*parts: Any) -> str:
    """A stable widget key from parts: widget_key("draft", "member", "model_a", "name") ->
    'draft-member-model_a-name' ('...-name-r1' once the draft was replaced). Characters other
    than letters, digits, '_' and '-' become '_'."""
    key = "-".join(re.sub(r"[^A-Za-z0-9_-]", "_", str(part)) for part in parts)
    generation = st.session_state.get(DRAFT_GENERATION, 0)
    return f"{key}-r{generation}" if parts and parts[0] == "draft" and generation else key


def widget_value(key: str, default: Any = None) -> Any:
    """The current value of a keyed widget (inside its own on_change callback, for example)."""
    return st.session_state.get(key, default)


def set_widget_value(key: str, value: Any) -> None:
    """Set a keyed widget's value before it is drawn in this script run (or in a callback)."""
    st.session_state[key] = value


def forget_widget(key: str) -> None:
    st.session_state.pop(key, None)


def expanded_members() -> set[str]:
    return _get(EXPANDED_MEMBERS, set)


def set_page_error(message: str) -> None:
    """Leave an error for the page to show (callbacks run before the page is drawn)."""
    st.session_state[PAGE_ERROR] = message


def pop_page_error() -> str | None:
    return st.session_state.pop(PAGE_ERROR, None)


def set_page_notice(message: str) -> None:
    """Leave a notice (what an edit changed) for the page to show once."""
    st.session_state[PAGE_NOTICE] = message


def pop_page_notice() -> str | None:
    return st.session_state.pop(PAGE_NOTICE, None)


# -- the canvas -------------------------------------------------------------------------------


def canvas_shown() -> Any:
    """What the canvas was last given, or None (it is drawn afresh)."""
    return st.session_state.get(CANVAS_SHOWN)


def set_canvas_shown(shown: Any) -> None:
    st.session_state[CANVAS_SHOWN] = shown


def canvas_seen() -> int | None:
    return st.session_state.get(CANVAS_SEEN)


def set_canvas_seen(timestamp: int | None) -> None:
    st.session_state[CANVAS_SEEN] = timestamp


def canvas_selection() -> tuple[str, ...] | None:
    return st.session_state.get(CANVAS_SELECTION)


def set_canvas_selection(selection: tuple[str, ...] | None) -> None:
    """Select a node (("node", id)), an edge (("edge", source, target)) or nothing (None)."""
    st.session_state[CANVAS_SELECTION] = tuple(selection) if selection else None


# -- runs -------------------------------------------------------------------------------------


def watched_run() -> str | None:
    return st.session_state.get(WATCHED_RUN)


def set_watched_run(run_id: str | None) -> None:
    st.session_state[WATCHED_RUN] = run_id


def epoch_cache() -> dict[str, dict[str, Any]]:
    return _get(EPOCH_CACHE, dict)


def chart_cache() -> dict[str, tuple[Any, Any]]:
    return _get(CHART_CACHE, dict)


def pending_delete() -> str | None:
    return st.session_state.get(PENDING_DELETE)


def set_pending_delete(run_id: str | None) -> None:
    st.session_state[PENDING_DELETE] = run_id


def deleted_run() -> str | None:
    return st.session_state.get(DELETED_RUN)


def set_deleted_run(label: str | None) -> None:
    st.session_state[DELETED_RUN] = label


def runs_selection() -> list[str]:
    return st.session_state.get(RUNS_SELECTION, [])


def set_runs_selection(run_ids: list[str]) -> None:
    st.session_state[RUNS_SELECTION] = list(run_ids)


def runs_table_ids() -> list[str] | None:
    return st.session_state.get(RUNS_TABLE_IDS)


def set_runs_table_ids(run_ids: list[str]) -> None:
    st.session_state[RUNS_TABLE_IDS] = list(run_ids)


def evaluations() -> dict[str, dict]:
    return _get(EVALUATIONS, dict)


def ablations() -> dict[str, dict]:
    """Run id -> its member ablation (`InspectorClient.ablation`), for this tab."""
    return _get(ABLATIONS, dict)


def show_on_runs_page(run_id: str) -> None:
    """Tick `run_id` alone in the Runs table (the Runs page shows it in detail).

    The Runs page moves its table's selection onto the ticked runs when the runs it last
    listed differ from the ones it lists now; forgetting that list makes it do so once.
    """
    st.session_state[RUNS_SELECTION] = [run_id]
    st.session_state[RUNS_TABLE_IDS] = []
    st.session_state.pop(DELETED_RUN, None)


# -- sweeps -----------------------------------------------------------------------------------


def selected_sweep() -> str | None:
    """The study this tab chose on the Sweeps page (None: the newest)."""
    return st.session_state.get(SELECTED_SWEEP)


def select_sweep(study: str | None) -> None:
    st.session_state[SELECTED_SWEEP] = study


# -- uploads ----------------------------------------------------------------------------------


def stored_uploads() -> dict[str, str]:
    return _get(STORED_UPLOADS, dict)


def inspections() -> dict[str, tuple[str, Any]]:
    return _get(INSPECTIONS, dict)
