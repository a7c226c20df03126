"""The Runs page's MLflow export: a button on an ended run, and where its last export went.

The export runs in a child process (`python -m core.tracking.cli RUN_ID --json`): importing
mlflow takes ~1.5 s and ~170 MB, which the Streamlit server does not pay until asked, and
not even then. The button is shown only when mlflow is installed (a look at the path, no
import), and exports to $STACKLAB_MLFLOW_TRACKING_URI (and $STACKLAB_MLFLOW_EXPERIMENT),
the same target the workers use after each run.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

import streamlit as st

from core.tracking import DEFAULT_EXPERIMENT, EXPERIMENT_ENV, TRACKING_URI_ENV, export_note
from dashboard import formatting

ENDED_STATUSES = ("finished", "stopped", "failed", "interrupted")
EXPORT_TIMEOUT_S = 300.0  # a remote server that retries slowly; a local store takes ~3 s


def mlflow_installed() -> bool:
    """Whether `import mlflow` would work, without importing it."""
    return importlib.util.find_spec("mlflow") is not None


def export(run_id: str) -> tuple[str, Any]:
    """("ok", the CLI's answer: mlflow_run_id, experiment, tracking_uri, url, summary...) or
    ("error", reason): the run logged to MLflow by `python -m core.tracking.cli RUN_ID --json`."""
    import subprocess
    import sys

    from core.processes import child_env, exit_words, read_answer

    try:
        done = subprocess.run([sys.executable, "-m", "core.tracking.cli", run_id, "--json"], capture_output=True,
                              text=True, env=child_env(), timeout=EXPORT_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return "error", f"The MLflow export took longer than {EXPORT_TIMEOUT_S:.0f} s and was stopped."
    answer = read_answer(done.stdout)
    if not isinstance(answer, dict):
        reason = (done.stderr.strip().splitlines() or [""])[-1]
        return "error", (f"The MLflow export {exit_words(done.returncode)} without an answer"
                         f"{': ' + reason if reason else ''}.")
    if not answer.get("ok"):
        return "error", answer.get("error", "The MLflow export failed without a reason.")
    return "ok", answer


def note_words(note: dict[str, Any], status: str) -> str:
    """The run's last export in one line: "Logged to MLflow run 3f0c... (experiment 'stacklab',
    sqlite:///...) on 2026-12-01 20:15." and, if the run changed since, that it did."""
    words = (f"Logged to MLflow run {note.get('mlflow_run_id')} (experiment '{note.get('experiment')}', "
             f"{note.get('tracking_uri')}) on {formatting.timestamp(note.get('exported_at'))}.")
    if note.get("status") and note["status"] != status:
        words += f" The run was {note['status']} then; log it again for its {status} state."
    return words


def mlflow_button(run) -> None:
    """A "Log to MLflow" button for a finished, stopped, failed or interrupted run, where its last
    export went (or why the automatic one failed), and a link to the run's MLflow page on an
    http(s) server. Nothing when mlflow is not installed or the run is still active."""
    if run.status not in ENDED_STATUSES or not mlflow_installed():
        return
    uri = os.environ.get(TRACKING_URI_ENV, "").strip()
    note = export_note(run.id)
    exported = bool(note and note.get("ok"))
    experiment = os.environ.get(EXPERIMENT_ENV, "").strip() or DEFAULT_EXPERIMENT
    # Drawn inside one container that is always there, so the tabs below keep their place.
    with st.container(key="runs-mlflow"):
        with st.container(horizontal=True, vertical_alignment="center"):
            clicked = st.button(
                "Log to MLflow again" if exported else "Log to MLflow", key="runs-mlflow-export",
                icon=":material/cloud_upload:", disabled=not uri,
                help=(f"Logs the spec as params, every epoch's metrics, the model and the run's files to {uri} "
                      f"(experiment '{experiment}'); again: updates the same MLflow run." if uri else
                      f"Set {TRACKING_URI_ENV} (a tracking server's http(s) URL, or sqlite:////path/mlflow.db) "
                      f"and restart the dashboard."))
            if exported and note.get("url") and not clicked:
                st.link_button("Open in MLflow", note["url"], icon=":material/open_in_new:")
        if clicked:
            with st.spinner("Logging the run to MLflow…"):
                outcome, result = export(run.id)
            if outcome == "error":
                st.error(result, icon=":material/error:")
                return
            st.success(result["summary"], icon=":material/check:")
            if result.get("url"):
                st.link_button("Open in MLflow", result["url"], icon=":material/open_in_new:")
        elif exported:
            st.caption(note_words(note, run.status))
        elif note:
            st.warning(f"The automatic MLflow export failed: {note.get('error')}", icon=":material/warning:")
        elif not uri:
            st.caption(f"To log runs to MLflow, set {TRACKING_URI_ENV} and restart the dashboard.")
