"""Widgets around the draft as a whole: asking before it is replaced, and bringing it back.

Replacing the draft (an import, a reset, a new transfer stack on a run) never happens behind
the user's back: a draft with edits is replaced only after a yes (`dashboard.state`
holds the proposal), and the replaced draft can be brought back once with Undo.
"""

from __future__ import annotations

import streamlit as st

from dashboard import state


def replacement_prompt(page: str, undo_where: str = "") -> None:
    """The pending replacement, if any, with "Replace the draft" / "Keep my draft".

    Args:
        page: the key prefix of the page drawing it ("asm", "runs").
        undo_where: where the Undo button is, if not on this page (" on the Assemble page").
    """
    pending = state.pending_replacement()
    if pending is None:
        return
    with st.container(border=True, key=f"{page}-replace-prompt"):
        st.warning(f"Replace your draft '{state.draft().name}' with {pending[1]}? Your draft can be brought "
                   f"back once with Undo{undo_where}.", icon=":material/swap_horiz:")
        with st.container(horizontal=True):
            st.button("Replace the draft", key=f"{page}-replace-yes", type="primary",
                      on_click=state.accept_replacement)
            st.button("Keep my draft", key=f"{page}-replace-no", on_click=state.decline_replacement)


def undo_button() -> None:
    """"Undo: bring back '<name>'" while the last replaced draft can be brought back."""
    replaced = state.replaced_draft()
    if replaced is None or state.pending_replacement() is not None:
        return
    previous, what = replaced
    st.button(f"Undo: bring back '{previous.name}'", key="asm-undo", icon=":material/undo:",
              on_click=state.undo_replacement, help=f"It was replaced by {what}." if what else None)
