"""End-to-end set-up: the real dashboard server, and headless Chromium driving it.

- `server` (session): `python -m streamlit run dashboard/app.py` on a free port, in a fresh
  $STACKLAB_HOME, started once (its inspector imports Keras, ~5-10 s); stopped at the end
  with the inspector and any run workers (tests/e2e/server.py).
- `chromium` (session): Debian's Chromium through Playwright's sync API.
- `server_runs` (per test): core.runs reading the server's run store.
- `tab` (per test): a fresh browser context (a new Streamlit session) with one page, and
  no saved draft (the app autosaves one in $STACKLAB_HOME). A failed test leaves a
  screenshot of it in test-artifacts/e2e/; a test after which the server's console shows a
  traceback fails (the browser shows only a generic message: showErrorDetails = "none").

The fixture names avoid pytest-playwright's (`browser`, `page`), so these tests run the
same with or without that plugin installed.
"""

from __future__ import annotations

import re
import shutil

import pytest

from tests.e2e import ui
from tests.e2e.server import ROOT, ServerError, launch_chromium, start_dashboard

SERVER_ERROR = re.compile(r"Traceback \(most recent call last\)|Uncaught app exception")


@pytest.fixture(scope="session")
def artifacts():
    """test-artifacts/e2e/ at the repository root (git-ignored), emptied once per session."""
    folder = ROOT / "test-artifacts" / "e2e"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    return folder


@pytest.fixture(scope="session")
def server(tmp_path_factory, artifacts):
    """The dashboard served by a real Streamlit process in a fresh $STACKLAB_HOME."""
    try:
        running = start_dashboard(tmp_path_factory.mktemp("e2e-home"), artifacts / "server.log")
    except ServerError as error:
        pytest.fail(str(error))
    yield running
    running.stop()


@pytest.fixture(scope="session")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            browser = launch_chromium(playwright)
        except FileNotFoundError as error:
            pytest.fail(str(error))
        yield browser
        browser.close()


@pytest.fixture
def server_runs(server, stacklab_home, monkeypatch):
    """core.runs reading the server's run store (core.runs imports no Keras)."""
    monkeypatch.setenv("STACKLAB_HOME", str(server.home))
    from core import runs

    return runs


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    setattr(item, f"report_{report.when}", report)  # so `tab` knows whether the test failed
    return report


@pytest.fixture
def tab(request, server, chromium, artifacts):
    """One page of a fresh browser context (a new Streamlit session) on the dashboard, as a new
    user would see it: without the draft an earlier test saved in the server's home."""
    (server.home / "draft.json").unlink(missing_ok=True)
    context = chromium.new_context(viewport=ui.VIEWPORT, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(ui.TIMEOUT_MS)
    log_start = server.log_size()
    yield page
    report = getattr(request.node, "report_call", None)
    if report is not None and report.failed:
        try:
            page.screenshot(path=artifacts / f"{request.node.name}-failure.png")
        except Exception as error:  # noqa: BLE001 - a failed screenshot must not hide the failure
            print(f"no failure screenshot: {error}")
    context.close()
    log = server.log_text(log_start)
    assert not SERVER_ERROR.search(log), f"The dashboard logged an error during the test:\n{log[-4000:]}"
