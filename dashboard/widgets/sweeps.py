"""The Sweeps page's pieces: the trial table, the Compare-modes table, Optuna's figures, the curves.

Everything is read from `core.sweeps` (the study in its Optuna storage) and `core.runs` (each
trial's run), so a reload, a second tab or a restarted server shows the same sweep.
`trial_frame` and `compare_frame` are pure (tested without Streamlit); the rest draws.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Mapping

import optuna
import pandas as pd
import streamlit as st

from core import runs, sweeps
from dashboard import formatting, live_chart
from dashboard.components import live_chart as chart_component

RunLookup = Callable[[str], "runs.Run | None"]


def find_run(run_id: str | None) -> runs.Run | None:
    """The trial's run in this home's store; None for a run of another machine, or deleted."""
    if not run_id:
        return None
    try:
        return runs.get(run_id)
    except (runs.RunNotFound, ValueError):
        return None


def _value(value: Any) -> Any:
    """A parameter as a table cell: lists and dicts as their JSON (one column type per parameter)."""
    return json.dumps(value) if isinstance(value, (list, dict)) else value


def trial_frame(summary: sweeps.SweepSummary, lookup: RunLookup = find_run) -> pd.DataFrame:
    """One row per trial: number, state, each searched parameter as a column, the objective,
    its run (id, status, epochs), where it was pruned, how long it took, why it failed."""
    parameters = list(dict.fromkeys(path for row in summary.trials for path in row.params))
    rows = []
    for row in summary.trials:
        run = lookup(row.run_id)
        rows.append({
            "trial": row.number, "state": row.state,
            **{path: _value(row.params.get(path)) for path in parameters},
            summary.objective: row.value,
            "run": row.run_id or "–", "run status": row.run_status or "–",
            "epochs": f"{run.epochs_done} / {run.epochs_total}" if run is not None else "–",
            "pruned at epoch": row.pruned_epoch,
            "duration": formatting.duration(row.duration_s), "reason": row.reason,
        })
    columns = ["trial", "state", *parameters, summary.objective, "run", "run status", "epochs", "pruned at epoch",
               "duration", "reason"]
    return pd.DataFrame(rows, columns=columns)


def is_comparison(summary: sweeps.SweepSummary) -> bool:
    """Whether the sweep compares named variants (Compare modes) rather than searching a space."""
    search = summary.base_spec.search
    return bool(search is not None and search.variants)


def compare_frame(summary: sweeps.SweepSummary, lookup: RunLookup = find_run) -> pd.DataFrame:
    """One row per variant tried: its mode, parameters, trainable parameters, training time and
    best validation metric (from its run), the objective, and the trial's state."""
    rows = []
    for row in summary.trials:
        run = lookup(row.run_id)
        variant = row.params.get("variant", "–")
        patch = summary.base_spec.search.variants.get(variant, {}) if summary.base_spec.search else {}
        rows.append({
            "variant": variant, "mode": patch.get("mode") or (run.mode if run is not None else "–"),
            "parameters": run.total_params if run is not None else None,
            "trainable parameters": run.trainable_params if run is not None else None,
            "time": formatting.duration(run.duration_s if run is not None else row.duration_s),
            "best validation metric": formatting.best(run.best) if run is not None else "–",
            summary.objective: row.value, "state": row.state, "run": row.run_id or "–",
            "reason": row.reason,
        })
    columns = ["variant", "mode", "parameters", "trainable parameters", "time", "best validation metric",
               summary.objective, "state", "run", "reason"]
    return pd.DataFrame(rows, columns=columns)


def trial_table(summary: sweeps.SweepSummary, key: str) -> None:
    frame = trial_frame(summary)
    best = summary.best.number if summary.best is not None else None
    config = {summary.objective: st.column_config.NumberColumn(format="%.4f"),
              "trial": st.column_config.NumberColumn(help=f"Trial {best} is the best so far." if best is not None
                                                     else "No trial has finished yet.")}
    st.dataframe(frame, hide_index=True, key=key, column_config=config, height=min(35 * len(frame) + 38, 420))


def compare_table(summary: sweeps.SweepSummary) -> None:
    """Compare modes' result: the variants side by side."""
    st.dataframe(compare_frame(summary), hide_index=True, key="sweeps-compare-table",
                 column_config={"parameters": st.column_config.NumberColumn(format="localized"),
                                "trainable parameters": st.column_config.NumberColumn(format="localized"),
                                summary.objective: st.column_config.NumberColumn(format="%.4f")})


def compare_curves(summary: sweeps.SweepSummary) -> None:
    """Every variant's run, one metric overlaid (the objective's by default)."""
    overlay({f"{row.params.get('variant', row.number)}": row.run_id for row in summary.trials if row.run_id},
            "sweeps-compare", summary.objective)


def overlay(labelled: Mapping[str, str], key: str, preferred: str) -> None:
    """One metric of several runs (label -> run id), one line each, in the live-chart component."""
    histories = {}
    for label, run_id in labelled.items():
        run = find_run(run_id)
        if run is not None:
            histories[run.id] = (f"{label} ({run.id})", runs.metrics(run.id), run.started_at or run.created_at or 0.0)
    names = list(dict.fromkeys(name for _, rows, _ in histories.values() for row in rows for name in row["metrics"]))
    if not names:
        st.caption("The curves appear as the trials' runs finish their first epochs.")
        return
    default = next((name for name in (preferred, "val_accuracy", "val_loss", "loss") if name in names), names[0])
    metric = st.columns([1, 2])[0].selectbox("Metric", names, index=names.index(default), key=f"{key}-metric")
    chart_component.draw(f"{key}-overlay", live_chart.overlay_view(histories, metric))


def _importances(study: optuna.Study, complete: int):
    if complete < 2:
        return None, "Parameter importances need two finished trials."
    try:
        return optuna.visualization.plot_param_importances(study), ""
    except (ValueError, RuntimeError, ZeroDivisionError) as error:  # one value everywhere, one choice only
        return None, f"Optuna cannot rank the parameters yet: {error}"


def optuna_figures(study_name: str, summary: sweeps.SweepSummary) -> None:
    """Optuna's own Plotly figures: optimisation history, parameter importances, parallel coordinate."""
    complete = sum(row.state == "complete" for row in summary.trials)
    if complete == 0:
        st.caption("Optuna's figures appear with the first finished trial.")
        return
    study = sweeps.load_study(study_name)
    tabs = st.tabs(["Optimisation history", "Parameter importances", "Parallel coordinate"])
    with tabs[0]:
        st.plotly_chart(optuna.visualization.plot_optimization_history(study, target_name=summary.objective),
                        key="sweeps-history")
    with tabs[1]:
        figure, why = _importances(study, complete)
        if figure is None:
            st.caption(why)
        else:
            st.plotly_chart(figure, key="sweeps-importances")
    with tabs[2]:
        st.plotly_chart(optuna.visualization.plot_parallel_coordinate(study, target_name=summary.objective),
                        key="sweeps-parallel")


def status_words(summary: sweeps.SweepSummary) -> str:
    """'3 of 6 trials done (1 running) · driver running · best val_accuracy 0.91 (trial 2)'."""
    running = f" ({summary.running} running)" if summary.running else ""
    if summary.driver_alive:
        driver = "driver running"
    elif summary.done >= summary.budget:
        driver = "finished"
    else:
        driver = "no driver running: Continue picks up the remaining trials"
    best = (f" · best {summary.objective} {formatting.metric(summary.best.value)} (trial {summary.best.number})"
            if summary.best is not None else "")
    return f"{summary.done} of {summary.budget} trials done{running} · {driver}{best}"


def driver_log(study: str, lines: int = 30) -> str:
    """The end of the sweep's driver log ('' when there is none)."""
    path = sweeps.log_path(study)
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
