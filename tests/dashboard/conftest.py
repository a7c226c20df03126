"""Dashboard test set-up: one real inspector, a run trained for real, runs without workers.

Every test gets its own $STACKLAB_HOME (tests/conftest.py). The inspector is one real
process for the whole session (each start imports Keras, ~5 s); it was started in a home
of its own, so a test whose uploads or runs the inspector must read (inspecting a model
file, evaluating a run) points $STACKLAB_HOME there with the `shared_home` fixture.
Helpers for the AppTests are in tests/dashboard/apptest.py.
"""

from __future__ import annotations

import pytest

from core import runs
from core.inspector import get_client
from core.runs import scheduler
from tests.dashboard.apptest import TINY


@pytest.fixture(scope="session")
def inspector_home(tmp_path_factory):
    """Start the process-wide inspector once, in a home of its own (page tests use it via
    `pytestmark = pytest.mark.usefixtures("inspector_home")`)."""
    home = tmp_path_factory.mktemp("inspector-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STACKLAB_HOME", str(home))
        get_client().start()  # Keras loads while the first tests set up
    yield home
    get_client().close()


@pytest.fixture
def shared_home(inspector_home, monkeypatch):
    """This test's uploads and runs go where the inspector looks; it starts without a saved draft
    (an earlier test's draft, saved in the same home, would otherwise come back)."""
    monkeypatch.setenv("STACKLAB_HOME", str(inspector_home))
    (inspector_home / "draft.json").unlink(missing_ok=True)
    return inspector_home


@pytest.fixture(scope="session")
def finished_run(inspector_home) -> str:
    """A tiny run on iris trained for real by a worker, in the inspector's home (~7 s)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STACKLAB_HOME", str(inspector_home))
        run_id = runs.start(TINY)
        run = runs.wait(run_id, timeout_s=180)
    assert run.status == "finished", run.error
    return run_id


@pytest.fixture
def no_workers(monkeypatch):
    """Runs are queued and claimed but no worker process starts; tests write their events."""
    spawned = []
    monkeypatch.setattr(scheduler, "_spawn", spawned.append)
    return spawned


