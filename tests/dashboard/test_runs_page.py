"""The Runs page: the table, overlaid curves, downloads, evaluation, reuse, resume, stop, delete."""

import inspect
import io
import json
import zipfile

import pytest
from streamlit.runtime.media_file_manager import MediaFileManager

from core import runs
from core.spec import MemberSpec, StackSpec
from dashboard import state
from tests.dashboard.apptest import TINY, app, elements, fake_run, open_page, texts

pytestmark = pytest.mark.usefixtures("inspector_home")


def charts(at) -> list[dict]:
    """What each live-chart component on the page was sent in the last run."""
    return [json.loads(chart.proto.json) for chart in elements(at, "bidi_component")]


def runs_page():
    return open_page(app(), "runs")


def select(at, *rows: int):
    """Select table rows as a click in the browser would."""
    at.session_state["runs-table"] = {"selection": {"rows": list(rows), "columns": [], "cells": []}}
    return at.run()


@pytest.fixture
def deferred_downloads(monkeypatch) -> dict[str, tuple[str, object]]:
    """Download buttons whose data is made on click: file id -> (file name, the callable making
    the file), recorded as Streamlit's media file manager registers them."""
    made = {}
    register = MediaFileManager.add_deferred

    def recording(self, *args, **kwargs):
        file_id = register(self, *args, **kwargs)
        bound = inspect.signature(register).bind(self, *args, **kwargs).arguments
        made[file_id] = (bound["file_name"], bound["data_callable"])
        return file_id

    monkeypatch.setattr(MediaFileManager, "add_deferred", recording)
    return made


def buttons(at) -> dict[str, object]:
    return {button.key: button for button in at.button}


def test_without_runs_it_says_where_to_start():
    at = runs_page()
    assert "No runs yet. Start one on the Train page." in texts(at)


def test_the_table_lists_runs_newest_first_with_their_best_metric(no_workers):
    first = fake_run(epochs=3, status="finished")
    second = fake_run(epochs=1, status="stopped")
    at = runs_page()
    table = at.dataframe[0].value
    assert list(table["run"]) == [second, first]
    assert list(table["status"]) == ["stopped", "finished"]
    assert table["best validation metric"][1] == "val_accuracy 0.7500 (epoch 3)"
    assert list(table["epochs"]) == ["1 / 3", "3 / 3"]
    assert list(table["devices"]) == ["–", "–"] and table["samples/s"].isna().all()  # the workers said nothing
    assert f"tiny · {second}" in texts(at)  # the newest run in detail


def test_the_table_shows_the_devices_a_run_used_and_its_samples_per_second(no_workers):
    fake_run(epochs=2, status="finished", devices=("TFRT_CPU_0", "TFRT_CPU_1"), train_samples=300)
    table = runs_page().dataframe[0].value
    assert list(table["devices"]) == ["2 × CPU"] and list(table["samples/s"]) == [150]


def test_selected_runs_are_overlaid(no_workers):
    fake_run(epochs=3, status="finished")
    fake_run(epochs=2, status="finished")
    at = select(runs_page(), 0, 1)
    overlay = [payload for payload in charts(at) if payload["stream"].startswith("overlay:")]
    assert len(overlay) == 1 and overlay[0]["charts"][0]["title"] == "val_accuracy by run"
    assert sorted(len(points["x"]) for points in overlay[0]["points"].values()) == [2, 3]
    at.selectbox(key="runs-overlay-metric").set_value("loss").run()
    (overlay,) = [payload for payload in charts(at) if payload["stream"].startswith("overlay:")]
    assert overlay["reset"] and overlay["charts"][0]["title"] == "loss by run"


def test_a_finished_run_offers_its_downloads_evaluation_and_reuse(shared_home, finished_run, deferred_downloads):
    at = runs_page()
    at = select(at, list(at.dataframe[0].value["run"]).index(finished_run))
    labels = [button.label for button in at.download_button]
    assert labels == ["Download model (.keras)", "history.csv", "stack.py", "spec.json", "data.json", "stack.keras",
                      "Download everything (.zip)"]
    # Every file name carries the run's name and id, so files of two runs never collide.
    downloads = [deferred_downloads[button.proto.deferred_file_id] for button in at.download_button]
    assert [name for name, _ in downloads] == [
        f"tiny-{finished_run}.keras", f"tiny-{finished_run}-history.csv", f"tiny-{finished_run}-stack.py",
        f"tiny-{finished_run}-spec.json", f"tiny-{finished_run}-data.json", f"tiny-{finished_run}-stack.keras",
        f"tiny-{finished_run}.zip"]
    assert json.loads(downloads[4][1]())["class_names"] == ["setosa", "versicolor", "virginica"]
    with zipfile.ZipFile(io.BytesIO(downloads[-1][1]())) as bundle:
        assert {f"tiny-{finished_run}/{name}" for name in ("model.keras", "stack.py", "spec.json", "history.csv")} \
            <= set(bundle.namelist())
    at.button(key="runs-evaluate").click().run()
    assert any(metric.label == "Accuracy" for metric in at.metric)
    assert any("Confusion matrix" in chart.proto.spec for chart in elements(at, "plotly_chart"))
    assert "validation samples" in texts(at)
    assert "runs-evaluate" not in buttons(at)  # evaluated: the result stays
    at.button(key="runs-use-member").click().run()
    assert at.session_state[state.DRAFT].members[-1] == MemberSpec("pretrained", source="run", run_id=finished_run)
    edited = at.session_state[state.DRAFT]
    at.button(key="runs-use-transfer").click().run()
    # The draft has an edit (the member just added): it is replaced only after a yes.
    assert at.session_state[state.DRAFT] == edited
    assert f"with a transfer stack on run {finished_run}'s model cut at 'encoder'?" in texts(at)
    at.button(key="runs-replace-yes").click().run()
    transfer = at.session_state[state.DRAFT]
    assert transfer.mode == "transfer" and transfer.members[0].run_id == finished_run
    assert transfer.members[0].cut_at == "encoder"  # its features, not its predictions
    assert transfer.dataset.name == "iris"


def test_stopped_runs_resume_and_active_ones_stop(no_workers):
    stopped = fake_run(epochs=1, status="stopped")
    at = runs_page()
    assert "runs-stop" not in buttons(at)
    at.button(key="runs-resume").click().run()
    assert runs.get(stopped).status == "running" and no_workers[-1] == stopped
    at.button(key="runs-stop").click().run()
    assert runs.get(stopped).status == "stopping"
    assert "runs-delete" not in buttons(at)  # an active run cannot be deleted


def test_delete_asks_for_confirmation(no_workers):
    keep = fake_run(epochs=1, status="finished")
    doomed = fake_run(epochs=1, status="failed")
    at = runs_page()
    assert "failed for the test" in at.error[0].value
    at.button(key="runs-delete").click().run()
    assert f"Delete run {doomed}" in at.warning[0].value
    at.button(key="runs-delete-cancel").click().run()
    assert not at.warning and runs.get(doomed)
    at.button(key="runs-delete").click().run()
    at.button(key="runs-delete-confirm").click().run()
    assert [run.id for run in runs.list_runs()] == [keep]
    assert list(at.dataframe[0].value["run"]) == [keep]


def test_a_run_with_a_model_in_progress_says_when_it_comes(no_workers):
    fake_run(spec=TINY, epochs=1)
    at = runs_page()
    assert "The model is written when the run ends (its last finished epoch)." in texts(at)
    assert not at.download_button


def detail_heading(at) -> str:
    """The detail panel's heading, 'name · run id', or '' when no run is shown in detail."""
    return next((str(h.value) for h in at.subheader if " · " in str(h.value)), "")


def delete_shown_run(at):
    at.button(key="runs-delete").click().run()
    return at.button(key="runs-delete-confirm").click().run()


def test_deleting_the_bottom_run_of_the_table_keeps_the_page_working(no_workers):
    oldest = fake_run(epochs=1, status="finished")
    fake_run(epochs=1, status="finished")
    at = runs_page()
    at = select(at, 1)  # the bottom row: the oldest run
    assert detail_heading(at).endswith(oldest)
    at = delete_shown_run(at)
    assert not at.exception, [e.value for e in at.exception]
    assert oldest not in list(at.dataframe[0].value["run"])


def test_after_a_delete_no_other_run_takes_over_the_selection(no_workers):
    fake_run(epochs=1, status="finished")
    doomed = fake_run(epochs=1, status="finished")
    fake_run(epochs=1, status="finished")
    at = select(runs_page(), 1)  # the middle row
    assert detail_heading(at).endswith(doomed)
    at.button(key="runs-delete").click().run()
    assert f"Delete run {doomed} (tiny)" in at.warning[0].value  # the confirmation names the run
    at = at.button(key="runs-delete-confirm").click().run()
    assert not at.exception
    assert detail_heading(at) == ""  # no run is in detail, so no Delete button of another run
    assert "runs-delete" not in buttons(at)
    assert f"Deleted run {doomed}" in texts(at)


def test_selections_follow_their_runs_when_the_table_changes(no_workers):
    first = fake_run(epochs=1, status="finished")
    second = fake_run(epochs=1, status="finished")
    at = select(runs_page(), 1)  # `first`, the bottom row
    assert detail_heading(at).endswith(first)
    newer = fake_run(epochs=1, status="finished")  # started in another tab: rows shift down
    at.run()
    assert detail_heading(at).endswith(first)
    assert list(at.dataframe[0].value["run"]) == [newer, second, first]


def test_the_run_in_detail_is_the_one_selected_last(no_workers):
    older = fake_run(epochs=1, status="finished")
    newer = fake_run(epochs=1, status="finished")
    at = select(runs_page(), 1)  # older first
    at = select(at, 0, 1)  # then newer ticked too: it sits above, but it was selected last
    assert detail_heading(at).endswith(newer)
    at = select(runs_page(), 0)
    at = select(at, 0, 1)
    assert detail_heading(at).endswith(older)


def test_tensorboard_starts_for_the_ticked_runs_and_stops(no_workers):
    from core.runs import tensorboard
    from tests.core.runs.test_tensorboard import run_with_logs

    first, second = fake_run(epochs=1, status="finished"), fake_run(epochs=1, status="finished")
    run_with_logs(first)
    run_with_logs(second)
    at = select(runs_page(), 0, 1)
    try:
        at.button(key="runs-tensorboard-start").click().run()
        board = tensorboard.current()
        assert board is not None and set(board.run_ids) == {first, second}
        (link,) = [element for element in elements(at, "link_button")]
        assert link.proto.url == board.url and "2 ticked runs" in link.proto.label
        at.button(key="runs-tensorboard-stop").click().run()
        assert tensorboard.current() is None and "runs-tensorboard-start" in buttons(at)
    finally:
        tensorboard.stop()


def test_use_as_a_member_places_a_node_in_a_graph_draft(shared_home, finished_run):
    from core.spec.presets import to_graph_spec

    graph = to_graph_spec(TINY)
    at = app(graph)
    at = open_page(at, "runs")
    at = select(at, list(at.dataframe[0].value["run"]).index(finished_run))
    at.button(key="runs-use-member").click().run()
    draft = at.session_state[state.DRAFT]
    assert draft.mode == "graph" and draft.members == ()  # still a valid graph spec
    node = next(node for node in draft.graph.nodes if node.kind == "member" and node.member.source == "run")
    assert node.member.run_id == finished_run
    StackSpec.from_dict(draft.to_dict())  # it reads back: no members beside the graph
