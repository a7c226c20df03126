"""StackLab's dashboard: `streamlit run dashboard/app.py`. Navigation only.

The pages live in dashboard/app_pages/, not pages/: Streamlit treats a pages/ directory beside
this file as a legacy multipage app until some session has run st.navigation, so a first visit
to, say, /runs after the server started ran that page alone, without this file (no navigation,
no page config, no start-up). This process never imports TensorFlow or Keras: model questions
go to the inspector process, training to worker processes (see DESIGN.md).
"""

import sys
from pathlib import Path

# `streamlit run dashboard/app.py` puts dashboard/ on sys.path, not the repository root.
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from core.inspector import InspectorError  # noqa: E402
from core.runs import RunStoreError  # noqa: E402
from dashboard import services  # noqa: E402

PAGES = Path(__file__).parent / "app_pages"

# A local icon: a Material or emoji icon would make the browser fetch the favicon from a CDN.
st.set_page_config(page_title="StackLab", page_icon=str(Path(__file__).parent / "favicon.png"), layout="wide")
try:
    services.startup()
except (RunStoreError, InspectorError) as error:
    st.error(str(error))

page = st.navigation([
    st.Page(PAGES / "data.py", title="Data", icon=":material/dataset:"),
    st.Page(PAGES / "assemble.py", title="Assemble", icon=":material/stacks:"),
    st.Page(PAGES / "train.py", title="Train", icon=":material/model_training:", default=True),
    st.Page(PAGES / "runs.py", title="Runs", icon=":material/history:"),
    st.Page(PAGES / "sweeps.py", title="Sweeps", icon=":material/travel_explore:"),
], position="top")
page.run()
