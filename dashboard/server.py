"""StackLab's dashboard served with its live route: `streamlit run dashboard/server.py`.

The pages are dashboard/app.py's, run by Streamlit's ASGI app (`st.App`), which also serves
`dashboard.live_api`'s route: a run's live view fetches what is new from it instead of
rerunning a fragment every second. `streamlit run dashboard/app.py` still works (no route:
the live view then polls with a fragment).
"""

import sys
from pathlib import Path

# Streamlit imports this file as a module from dashboard/; the pages import `dashboard.*`.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from dashboard import live_api  # noqa: E402

app = st.App(Path(__file__).with_name("app.py"), routes=live_api.routes())
