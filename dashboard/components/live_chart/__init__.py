"""The live-chart component: Plotly charts that stay in the page and grow by deltas.

`draw(key, view)` mounts the component (live_chart.js, live_chart.css here) and sends it
only what it has not drawn (dashboard.live_chart.update), keeping what was sent in the
session. plotly.js is the installed plotly package's own `package_data/plotly.min.js`,
served by Streamlit's component file route (`/_stcore/bidi-components/stacklab.plotly/
plotly.min.js`), so the browser fetches it once per page load (never from a CDN) and the
messages of the updates carry data only.

Streamlit finds a component's files through an `asset_dir` declared in an installed
package's pyproject.toml; StackLab also runs from a checkout, so both folders are declared
to the running server's component manager here, the same way its manifest scan does.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any, Callable

import plotly
import streamlit as st
from streamlit.components.v2.get_bidi_component_manager import get_bidi_component_manager
from streamlit.components.v2.manifest_scanner import ComponentConfig, ComponentManifest

from dashboard import live_api, live_chart, state

PROJECT = "stacklab"
NAME = f"{PROJECT}.live_chart"
PLOTLY_NAME = f"{PROJECT}.plotly"  # the module loads ../stacklab.plotly/plotly.min.js
ASSETS = Path(__file__).parent
PLOTLY_ASSETS = Path(plotly.__file__).parent / "package_data"
# What the component's renderer was made for: the server's component manager (AppTest makes one per app).
_renderers: dict[int, Callable[..., Any]] = {}


def _declare(manager: Any, name: str, folder: Path) -> None:
    manifest = ComponentManifest(name=PROJECT, version="1", components=[ComponentConfig(name=name, asset_dir=".")])
    manager.register_from_manifest(manifest, folder)


def _renderer() -> Callable[..., Any]:
    manager = get_bidi_component_manager()
    renderer = _renderers.get(id(manager))
    if renderer is None or manager.get_component_asset_root(NAME) is None:
        _declare(manager, "live_chart", ASSETS)
        _declare(manager, "plotly", PLOTLY_ASSETS)
        renderer = st.components.v2.component(NAME, js="live_chart.js", css="live_chart.css",
                                              isolate_styles=False)
        _renderers.clear()  # one server per process; keep no stale manager alive
        _renderers[id(manager)] = renderer
    return renderer


def _forget(key: str) -> None:
    """The browser's "resync" trigger (a reload, a remounted component, a missed update): it
    has not drawn what was sent, so the next update sends the whole history."""
    state.chart_cache().pop(key, None)


def draw(key: str, view: live_chart.View, read_steps: live_chart.StepReader | None = None) -> dict[str, Any]:
    """Mount (or update) the component `key` so that it shows `view`; returns the payload sent.

    The first call in a session, a new stream (another run, another metric) and a request
    from the browser send the whole history; every other call sends only what is new, and
    nothing new is an empty update the browser ignores.
    """
    cache = state.chart_cache()
    drawn = cache.get(key)
    payload, cache[key] = live_chart.update(drawn if isinstance(drawn, live_chart.Drawn) else None, view, read_steps)
    _renderer()(key=key, data=payload, on_resync_change=partial(_forget, key))
    return payload


def follow(key: str, run_id: str) -> None:
    """Mount the component `key` to follow the active run `run_id` by itself: it fetches what
    is new from the live route (dashboard.live_api, served by dashboard/server.py) every
    POLL_MS and shows the progress line; no script reruns while nothing happens.

    When the run changes status (queued -> running -> stopping) or ends, the component asks
    for one rerun of the page (its "status" trigger), so the widgets around it catch up.
    """
    _forget(key)  # what the fragment path sent is not what the component will have drawn
    data = {"follow": {"url": live_api.url(run_id), "interval_ms": live_api.POLL_MS, "run": run_id}}
    _renderer()(key=key, data=data, on_resync_change=partial(_forget, key),
                on_status_change=partial(_forget, key))
