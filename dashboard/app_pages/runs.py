"""Runs: every run in the store; overlay their curves; download, evaluate, predict, reuse, resume, stop, delete.

Core calls: core.runs (list, get, metrics, phases, artifacts, stop, resume, delete) and
the inspector's client.evaluate; "use as a member" edits the draft spec.
"""

from pathlib import Path

import pandas as pd
import streamlit as st

from core import runs
from core.inspector import InspectorError
from core.limits import format_bytes
from core.runs import RunStoreError
from core.runs import tensorboard as tensorboard_runs
from core.runs.bundle import bundle_name, max_bundle_bytes, run_bundle
from core.spec import MemberSpec
from dashboard import figures, formatting, graph_edit, live_chart, run_selection, services, spec_edit, state
from dashboard.components import live_chart as chart_component
from dashboard.widgets import ablation, live, predict_panel, tracking
from dashboard.widgets import draft as draft_widgets

ARTIFACTS = {  # artifact name -> (button label, MIME type), in the order shown
    "history.csv": ("history.csv", "text/csv"),
    "stack.py": ("stack.py", "text/x-python"),
    "spec.json": ("spec.json", "application/json"),
    "data.json": ("data.json", "application/json"),  # the columns, classes and statistics the model takes
    "stack.keras": ("stack.keras", "application/octet-stream"),  # the stack alone, on encoded inputs
}
TABLE_KEY = "runs-table"


def run_table(all_runs: list) -> list[str]:
    """The runs as a table; returns the ids of the ticked runs, in the order they were ticked.

    The table reports row positions; they are turned into run ids at once, and when the
    list of runs changed since the last run of this page (a delete, a new run in another
    tab), the selection is moved onto the rows where the ticked runs are now, so a tick
    never lands on a run the user did not pick.
    """
    ids = [run.id for run in all_runs]
    shown = state.runs_table_ids()
    if shown is not None and shown != ids:
        rows = run_selection.rows_of(state.runs_selection(), ids)
        state.set_widget_value(TABLE_KEY, {"selection": {"rows": rows, "columns": [], "cells": []}})
    state.set_runs_table_ids(ids)
    frame = pd.DataFrame([{
        "run": run.id, "name": run.name, "status": run.status, "dataset": run.dataset.name, "mode": run.mode,
        "best validation metric": formatting.best(run.best), "epochs": f"{run.epochs_done} / {run.epochs_total}",
        "duration": formatting.duration(run.duration_s),
        "devices": formatting.devices(run.device_label, run.gpus),
        "samples/s": round(run.samples_per_s) if run.samples_per_s is not None else None,
        "started": formatting.timestamp(run.started_at or run.created_at),
    } for run in all_runs])
    event = st.dataframe(frame, hide_index=True, key=TABLE_KEY, on_select="rerun", selection_mode="multi-row",
                         height=min(35 * len(frame) + 38, 420))
    ticked = run_selection.ticked_order(state.runs_selection(), run_selection.ids_at(event.selection.rows, ids))
    state.set_runs_selection(ticked)
    if ticked:
        state.set_deleted_run(None)
    return ticked


def overlay(selected: list[str]) -> None:
    """One metric of the ticked runs, one line per run, in the live-chart component (smoothing,
    log scale, x as epoch or wall time, PNG download in the browser)."""
    picked = [runs.get(run_id) for run_id in selected]
    histories = {run.id: (f"{run.id} ({run.name})", runs.metrics(run.id), run.started_at or run.created_at or 0.0)
                 for run in picked}
    names = list(dict.fromkeys(name for _, rows, _ in histories.values() for row in rows for name in row["metrics"]))
    if not names:
        st.caption("The selected runs have no finished epochs yet.")
        return
    preferred = next((n for n in ("val_accuracy", "val_loss", "loss") if n in names), names[0])
    metric = st.columns([1, 2])[0].selectbox("Metric", names, index=names.index(preferred), key="runs-overlay-metric")
    chart_component.draw("runs-overlay", live_chart.overlay_view(histories, metric))


def downloads(run) -> None:
    artifacts = runs.artifacts(run.id)
    if "model.keras" not in artifacts:
        st.caption("The model is written when the run ends" + (" (its last finished epoch)." if run.is_active else
                   "; this run has no model file."))
    stem = bundle_name(run.name, run.id)  # in every file name, so files of two runs never collide
    with st.container(horizontal=True):
        if "model.keras" in artifacts:
            path = artifacts["model.keras"]
            st.download_button("Download model (.keras)", data=path.read_bytes, file_name=f"{stem}.keras",
                               mime="application/octet-stream", key="runs-download-model", type="primary",
                               icon=":material/download:", on_click="ignore")
        for name, (label, mime) in ARTIFACTS.items():
            if name in artifacts:
                st.download_button(label, data=artifacts[name].read_bytes, file_name=f"{stem}-{name}", mime=mime,
                                   key=f"runs-download-{name}", icon=":material/description:", on_click="ignore")
        too_big = sum(path.stat().st_size for path in artifacts.values()) > max_bundle_bytes()
        if not run.is_active and "stack.py" in artifacts and not too_big:
            st.download_button("Download everything (.zip)", data=lambda: bundle_bytes(run.id),
                               file_name=f"{stem}.zip", mime="application/zip", key="runs-download-bundle",
                               icon=":material/folder_zip:", on_click="ignore",
                               help="model.keras, stack.py, spec.json, history.csv and the member files stack.py "
                                    "loads, in one folder: unpacked, `python stack.py` runs from anywhere.")
    if "model.keras" in artifacts and not run.is_active:
        exports(run, artifacts)
    if too_big:
        st.caption(f"The run's files together are over STACKLAB_MAX_BUNDLE_BYTES ({format_bytes(max_bundle_bytes())}): "
                   f"download them one by one.")


EXPORT_ORDER = ("onnx", "saved_model", "litert")


def exports(run, artifacts: dict) -> None:
    """A button per deployment format: the export runs (in a child process) on click, its
    verification is shown, and the file is offered; a format whose packages are missing says
    which command adds them."""
    outcome, formats = services.export_formats()
    if outcome == "error":
        st.caption(formats)
        return
    stem = bundle_name(run.name, run.id)
    done = []
    with st.container(horizontal=True, key="runs-exports"):
        for name in sorted(formats, key=lambda f: EXPORT_ORDER.index(f) if f in EXPORT_ORDER else len(EXPORT_ORDER)):
            label, file_name, missing = formats[name]["label"], formats[name]["file_name"], formats[name]["missing"]
            if file_name in artifacts:
                path = artifacts[file_name]
                size = format_bytes(path.stat().st_size)
                st.download_button(f"{label} ({Path(file_name).suffix})", data=path.read_bytes,
                                   file_name=f"{stem}-{file_name}", mime="application/octet-stream",
                                   key=f"runs-download-{name}", icon=":material/download:", on_click="ignore",
                                   help=f"{size}, verified against Keras in {label}'s runtime when it was exported.")
            elif st.button(f"Export {label}", key=f"runs-export-{name}", icon=":material/output:",
                           disabled=missing is not None,
                           help=missing or f"Converts model.keras to {label} and checks it in {label}'s runtime on "
                                           f"validation samples (within 1e-4) before offering the file."):
                with st.spinner(f"Exporting to {label} and verifying it…"):
                    done.append((name, label, *services.export(run.id, name)))
    # Drawn inside one container that is always there, so the tabs below keep their place in
    # the page: moved, they would be new tabs, the open one would close and the charts remount.
    with st.container(key="runs-export-result"):
        for name, label, outcome, result in done:
            if outcome == "error":
                st.error(result, icon=":material/error:")
                continue
            st.success(result["summary"], icon=":material/check:")
            path = Path(result["path"])
            st.download_button(f"Download {label} ({path.suffix})", data=path.read_bytes,
                               file_name=f"{stem}-{path.name}", mime="application/octet-stream",
                               key=f"runs-download-{name}-new", icon=":material/download:", on_click="ignore")
        missing = [formats[name]["missing"] for name in formats if formats[name]["missing"]]
        if missing:
            st.caption(" ".join(dict.fromkeys(missing)))


def bundle_bytes(run_id: str) -> bytes:
    """The zip, built when the button is pressed (not on every rerun)."""
    return run_bundle(run_id)[1]


def evaluation(run) -> None:
    if run.status != "finished":
        st.caption("Evaluation needs a finished run.")
        return
    if run.id not in state.evaluations():
        slot = st.empty()
        if not slot.button("Evaluate on the validation data", key="runs-evaluate", icon=":material/analytics:"):
            return
        slot.empty()
    try:
        with st.spinner("Evaluating…"):
            result = services.evaluate(run.id)
    except InspectorError as error:
        st.error(str(error))
        return
    note = f" {result['note']}" if result.get("note") else ""
    st.caption(f"Scored on {result['num_samples']:,} {result['subset']} samples.{note}")
    if result["kind"] == "regression":
        columns = st.columns(3)
        columns[0].metric("MAE", formatting.metric(result["mae"]), help="Mean absolute error")
        columns[1].metric("RMSE", formatting.metric(result["rmse"]), help="Root mean squared error")
        columns[2].metric("R²", formatting.metric(result["r2"]), help="Share of the target's variance explained")
        st.plotly_chart(figures.predicted_vs_true(result["y_true"], result["y_pred"]), key="runs-eval-scatter")
    else:
        st.metric("Accuracy", formatting.metric(result["accuracy"]))
        left, right = st.columns([3, 2])
        left.plotly_chart(figures.confusion_matrix(result["confusion_matrix"], result["class_names"]),
                          key="runs-eval-confusion")
        right.dataframe(pd.DataFrame(result["per_class"]), hide_index=True, key="runs-eval-table",
                        column_config={name: st.column_config.NumberColumn(format="%.3f")
                                       for name in ("precision", "recall", "f1")})


def use_as_member(run_id: str) -> None:
    draft = state.draft()
    if graph_edit.is_graph(draft):  # a node of the drawing, to connect on the canvas
        member = MemberSpec(name=spec_edit.unique_name(draft, "pretrained"), source="run", run_id=run_id)
        state.set_draft(graph_edit.add_member(draft, member))
    else:
        state.set_draft(spec_edit.with_run_member(draft, run_id))
    st.toast("Added to the stack on the Assemble page.", icon=":material/check:")


def use_as_transfer_base(run) -> None:
    outcome, summary = services.inspect_run_model(run.id)
    # Reuse the features below the output layer, not the old predictions.
    cut = spec_edit.feature_layer(summary.get("layers", [])) if outcome == "ok" else None
    cut_words = f" cut at {cut!r}" if cut else ""
    state.propose_replacement(spec_edit.transfer_from_run(run.spec, run.id, cut_at=cut),
                              f"a transfer stack on run {run.id}'s model{cut_words}")
    if state.pending_replacement() is None:
        st.toast(f"The draft is now a transfer stack on this run's model{cut_words} (see Assemble; Undo there "
                 f"brings back the draft it replaced).", icon=":material/check:")


def start_tensorboard(run_ids: list[str]) -> None:
    try:
        tensorboard_runs.start(run_ids)
    except tensorboard_runs.TensorBoardError as error:
        st.toast(str(error), icon=":material/error:")


def tensorboard(run_ids: list[str]) -> None:
    """Start TensorBoard on localhost for these runs, link to it, stop it (it also stops with the app)."""
    board = tensorboard_runs.current()
    words = f"{len(run_ids)} ticked runs" if len(run_ids) > 1 else f"run {run_ids[0]}"
    with st.container(horizontal=True, vertical_alignment="center", key="runs-tensorboard"):
        if board is not None and set(board.run_ids) == set(tensorboard_runs.log_folders(run_ids)):
            st.link_button(f"Open TensorBoard ({words})", board.url, icon=":material/open_in_new:")
        else:
            st.button(f"TensorBoard for {words}", key="runs-tensorboard-start", icon=":material/insights:",
                      on_click=start_tensorboard, args=(run_ids,),
                      help="Starts TensorBoard on localhost with these runs' logs (runs/<id>/tensorboard/).")
        if board is not None:
            st.button("Stop TensorBoard", key="runs-tensorboard-stop", icon=":material/stop:",
                      on_click=tensorboard_runs.stop)
            st.caption(f"Serving {formatting.plural(len(board.run_ids), 'run')} at {board.url}; it stops with the app.")


def act(action, run_id: str) -> None:
    """A button callback: stop, resume or delete, with core's refusal shown as a toast."""
    try:
        action(run_id)
    except (ValueError, runs.RunNotFound, RunStoreError) as error:
        st.toast(str(error), icon=":material/error:")


def confirm_delete(run_id: str, name: str) -> None:
    state.set_pending_delete(None)
    state.evaluations().pop(run_id, None)
    try:
        runs.delete(run_id)
    except (ValueError, runs.RunNotFound, RunStoreError) as error:
        st.toast(str(error), icon=":material/error:")
        return
    # The deleted run leaves the selection; no other run is put in its place.
    state.set_runs_selection([i for i in state.runs_selection() if i != run_id])
    state.set_deleted_run(f"{run_id} ({name})")


def actions(run) -> None:
    with st.container(horizontal=True):
        if run.status == "finished":
            st.button("Use as a member", key="runs-use-member", icon=":material/add_box:", on_click=use_as_member,
                      args=(run.id,), help="Append this run's model to the stack being assembled.")
            st.button("New transfer stack on it", key="runs-use-transfer", icon=":material/move_down:",
                      on_click=use_as_transfer_base, args=(run,),
                      help="Replace the draft with a transfer stack: this model, frozen, under a new head "
                           "(asks first if the draft has edits).")
        if run.status in runs.RESUMABLE_STATUSES:
            st.button("Resume", key="runs-resume", icon=":material/play_arrow:", on_click=act,
                      args=(runs.resume, run.id), help="Continue from the last finished epoch.")
        if run.is_active:
            st.button("Stop", key="runs-stop", icon=":material/stop:", on_click=act, args=(runs.stop, run.id))
        else:
            st.button("Delete", key="runs-delete", icon=":material/delete:", on_click=state.set_pending_delete,
                      args=(run.id,))
    # Questions come and go inside one container that is always there, so the tabs below
    # keep their place in the page (and the one open stays open).
    with st.container(key="runs-questions"):
        if state.pending_delete() == run.id:
            st.warning(f"Delete run {run.id} ({run.name}) and its files (model, history, logs)? "
                       f"This cannot be undone.")
            with st.container(horizontal=True):
                st.button(f"Yes, delete {run.id}", key="runs-delete-confirm", type="primary",
                          on_click=confirm_delete, args=(run.id, run.name))
                st.button("Cancel", key="runs-delete-cancel", on_click=state.set_pending_delete, args=(None,))
        draft_widgets.replacement_prompt("runs", " on the Assemble page")


def details(run_id: str) -> None:
    run = runs.get(run_id)
    header = st.columns([3, 1], vertical_alignment="center")
    header[0].subheader(f"{run.name} · {run.id}")
    with header[1]:
        live.status_badge(run.status)
    columns = st.columns(4)
    columns[0].metric(f"Best {run.best['name']}" if run.best else "Best", formatting.metric(run.best.get("value")),
                      help=f"At epoch {run.best['epoch']}" if run.best else None)
    columns[1].metric("Epochs", f"{run.epochs_done} / {run.epochs_total}")
    columns[2].metric("Duration", formatting.duration(run.duration_s))
    columns[3].metric("Parameters", formatting.count(run.total_params))
    if run.error and run.status == "stopped":
        st.info(f"Stopped: {run.error}. Resume continues from the last finished epoch.", icon=":material/stop_circle:")
    elif run.error:
        st.error(run.error, icon=":material/error:")
    actions(run)
    st.markdown("**Downloads**")
    downloads(run)
    tracking.mlflow_button(run)
    tabs = st.tabs(["Curves", "Evaluation", "Members", "Predict", "Spec"])
    with tabs[0]:
        rows = runs.metrics(run.id)
        if rows:
            live.curves(rows, runs.phases(run.id), "runs", run)
        else:
            st.caption("No finished epochs.")
    with tabs[1]:
        evaluation(run)
    with tabs[2]:
        st.markdown("**Which member carries the stack**")
        ablation.ablation_panel(run)
    with tabs[3]:
        predict_panel.predict_tab(run, runs.artifacts(run.id))
    with tabs[4]:
        st.json(run.spec.to_dict(), expanded=1)


st.title("Runs")
try:
    all_runs = runs.list_runs()
    if not all_runs:
        st.info("No runs yet. Start one on the Train page.")
        st.page_link("app_pages/train.py", label="Go to Train", icon=":material/model_training:")
        st.stop()
    selected = run_table(all_runs)
    st.caption("Tick rows to compare their curves; the run ticked last is shown in detail below.")
    if len(selected) > 1:
        overlay(selected)
    if selected:
        tensorboard(selected)
        details(selected[-1])
    elif state.deleted_run():
        st.success(f"Deleted run {state.deleted_run()}. Tick a run in the table to see its details.",
                   icon=":material/delete:")
    else:  # nothing ticked yet: the newest run
        tensorboard([all_runs[0].id])
        details(all_runs[0].id)
except RunStoreError as error:
    st.error(str(error))
except runs.RunNotFound as error:  # deleted from another tab meanwhile
    st.warning(str(error))
