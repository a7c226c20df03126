"""The messages a callback leaves for the page it reruns: a callback cannot draw on the page
(Streamlit draws the page after it), so it leaves an error or a notice in `dashboard.state`
and the page shows each once, at the top.
"""

from __future__ import annotations

import streamlit as st

from dashboard import state


def page_messages() -> None:
    """The error and the notice a callback left for this page (each shown once)."""
    error = state.pop_page_error()
    if error:
        st.error(error)
    notice = state.pop_page_notice()
    if notice:
        st.info(notice, icon=":material/info:")
