"""Sweeps: start an Optuna search over a spec, watch its trials fill, see what won and use it.

Core calls: core.sweeps (create_sweep, spawn_driver, driver_alive, stop_sweep, list_sweeps,
sweep, load_study, best_spec). A sweep is driven by a detached `python -m core sweep --study
NAME` process, each trial an ordinary run (on the Runs page too); this page only reads the
study and its runs, so it can be closed, reloaded or opened in another tab while the sweep goes on.
"""

from __future__ import annotations

import streamlit as st

from core import runs, sweeps
from core.runs import RunStoreError
from core.spec import SpecError, StackSpec, load_spec
from core.storage.paths import shipped_file
from dashboard import formatting, state
from dashboard.widgets import live, messages
from dashboard.widgets import sweeps as sweep_widgets

EXAMPLE = "examples/sweep_digits8.json"
SOURCES = {"draft": "The draft (its search section)", "upload": "A sweep JSON file",
           "example": "The example (digits8: learning rate and filters)"}
PICKER_KEY = "sweeps-picker"
UPLOAD_KEY = "sweeps-upload"
POLL_S = 2.0  # seconds between the trial table's reads while a driver runs


def _message(error: Exception) -> str:
    return str(error.args[0]) if isinstance(error, KeyError) and error.args else str(error)


def search_words(spec: StackSpec) -> str:
    """What a sweep searches, in one line."""
    search = spec.search
    what = (f"variants {', '.join(search.variants)}" if search.variants
            else f"space {', '.join(search.space) or '–'}")
    return (f"{search.objective.resolved_direction()} {search.objective.metric} · {what} · sampler {search.sampler} · "
            f"pruner {search.pruner.kind} · {spec.train.epochs} epochs a trial on {spec.dataset.name}")


def chosen_spec(source: str) -> StackSpec | None:
    """The spec to sweep from the chosen source, or None (with what is missing shown)."""
    if source == "draft":
        return state.draft()
    if source == "example":
        try:
            return load_spec(shipped_file(EXAMPLE))
        except (FileNotFoundError, SpecError) as error:
            st.error(str(error))
            return None
    uploaded = st.file_uploader("A StackLab spec with a 'search' section", type=["json"], key=UPLOAD_KEY)
    if uploaded is None:
        return None
    try:
        return StackSpec.from_json(uploaded.getvalue().decode("utf-8", errors="replace"))
    except SpecError as error:
        st.error(f"'{uploaded.name}' is not a sweep StackLab can run: {error}", icon=":material/error:")
        return None


def start(spec: StackSpec, trials: int) -> None:
    """Create (or find again) the sweep and drive it; the page then shows it."""
    try:
        study = sweeps.create_sweep(spec, trials=trials)
        driven = sweeps.driver_alive(study)
        if not driven:
            sweeps.spawn_driver(study)
    except (ValueError, KeyError, OSError) as error:  # SpecError is a ValueError
        st.error(_message(error), icon=":material/error:")
        return
    state.select_sweep(study)
    state.set_page_notice(f"Sweep '{study}' is already being driven; its budget is now "
                          f"{formatting.plural(trials, 'trial')}." if driven else
                          f"Sweep '{study}' started: {formatting.plural(trials, 'trial')}, each a run on the Runs "
                          f"page too. The table below fills as they end.")
    st.rerun()


def start_panel() -> None:
    draft = state.draft()
    sources = [key for key in SOURCES if key != "draft" or draft.search is not None]
    source = st.radio("Sweep over", sources, format_func=SOURCES.get, key="sweeps-source", horizontal=True)
    if draft.search is None:
        st.caption(f"The draft '{draft.name}' has no search section: import a spec with one, or compare its "
                   f"stacking modes with Compare modes on the Assemble page.")
    spec = chosen_spec(source)
    if spec is None:
        return
    if spec.search is None:
        st.error(f"Spec '{spec.name}' has no 'search' section: a sweep needs one (the space, the objective and the "
                 f"trials). See {EXAMPLE}.", icon=":material/error:")
        return
    st.caption(f"Sweep '{spec.search.study or spec.name}': {search_words(spec)}.")
    with st.container(horizontal=True, vertical_alignment="bottom"):
        trials = st.number_input("Trials", min_value=1, max_value=10_000, value=spec.search.trials, step=1,
                                 key=f"sweeps-trials-{source}", width=200, help="The trial budget; a sweep found again "
                                                                     "takes this as its new budget.")
        if st.button("Start sweep", key="sweeps-start", type="primary", icon=":material/play_arrow:"):
            start(spec, int(trials))


def pick(all_sweeps: list[sweeps.SweepSummary]) -> sweeps.SweepSummary:
    """The sweep selector: the one this tab chose (Start, Compare modes), else the newest."""
    names = [summary.study for summary in all_sweeps]
    chosen = state.selected_sweep()
    if chosen not in names:
        chosen = names[0]
    if state.widget_value(PICKER_KEY) != chosen:
        state.set_widget_value(PICKER_KEY, chosen)
    by_name = {summary.study: summary for summary in all_sweeps}
    st.selectbox("Sweep", names, key=PICKER_KEY, on_change=lambda: state.select_sweep(state.widget_value(PICKER_KEY)),
                 # Labels that stay the same while the sweep runs: the counts are in the status line.
                 format_func=lambda name: f"{name} · comparing modes" if sweep_widgets.is_comparison(by_name[name])
                 else f"{name} · {by_name[name].objective}")
    return by_name[chosen]


def continue_sweep(study: str, budget_key: str) -> None:
    """Continue: a new budget if one was set, then a driver (it re-attaches to running trials)."""
    try:
        summary = sweeps.sweep(study)
        budget = int(state.widget_value(budget_key, summary.budget))
        if budget != summary.budget:
            sweeps.create_sweep(summary.base_spec, trials=budget, study=study)
        sweeps.spawn_driver(study)
    except (ValueError, KeyError, OSError) as error:
        state.set_page_error(_message(error))


def stop(study: str) -> None:
    try:
        stopped = sweeps.stop_sweep(study)
    except (KeyError, RunStoreError) as error:
        state.set_page_error(_message(error))
        return
    state.set_page_notice(f"Sweep '{study}' stopped ({formatting.plural(len(stopped), 'run')} asked to stop). "
                          f"Continue resumes them from their last finished epoch.")


def controls(summary: sweeps.SweepSummary) -> None:
    budget_key = f"sweeps-budget-{summary.study}"
    with st.container(horizontal=True, vertical_alignment="bottom", key="sweeps-controls"):
        if summary.driver_alive:
            st.button("Stop sweep", key="sweeps-stop", icon=":material/stop:", on_click=stop, args=(summary.study,),
                      help="Stops the driver and the runs of its active trials; Continue resumes them.")
            return
        budget = st.number_input("Trial budget", min_value=1, value=summary.budget, step=1,
                                 key=budget_key, width=200)
        if summary.done < budget:
            st.button("Continue", key="sweeps-continue", icon=":material/play_arrow:", on_click=continue_sweep,
                      args=(summary.study, budget_key), help="Starts a driver again: it resumes the trials left "
                                                             "running and asks for the rest.")


def trials_view(study: str, drawn: tuple) -> None:
    """The status line and the trial table, read again every POLL_S while a driver runs; when a
    trial ends (or the driver does), the whole page is drawn again so figures and best catch up."""

    @st.fragment(run_every=POLL_S if drawn[1] else None)
    def view() -> None:
        try:
            summary = sweeps.sweep(study)
        except (KeyError, ValueError, RunStoreError) as error:
            st.error(_message(error))
            return
        if (summary.done, summary.driver_alive, summary.best.number if summary.best else None) != drawn:
            st.rerun(scope="app")
        st.markdown(sweep_widgets.status_words(summary))
        sweep_widgets.trial_table(summary, "sweeps-trials")
        if sweep_widgets.is_comparison(summary):
            st.subheader("Modes compared")
            sweep_widgets.compare_table(summary)

    view()


def open_run(run_id: str) -> None:
    state.show_on_runs_page(run_id)
    st.switch_page("app_pages/runs.py")


def use_spec(summary: sweeps.SweepSummary) -> None:
    try:
        spec = sweeps.best_spec(summary.study)
    except (KeyError, ValueError) as error:
        st.error(_message(error))
        return
    state.propose_replacement(spec, f"the best trial ({summary.best.number}) of sweep '{summary.study}'")
    st.switch_page("app_pages/assemble.py")


def best_trial(summary: sweeps.SweepSummary) -> None:
    best = summary.best
    if best is None:
        st.caption("The best trial is shown when the first trial finishes.")
        return
    params = ", ".join(f"{path} = {formatting.number(value) if isinstance(value, float) else value}"
                       for path, value in best.params.items())
    st.markdown(f"**Best: trial {best.number}**, {summary.objective} {formatting.metric(best.value)} · {params}")
    run = sweep_widgets.find_run(best.run_id)
    with st.container(horizontal=True, key="sweeps-best-actions"):
        if st.button("Open its run on the Runs page", key="sweeps-open-best", icon=":material/history:",
                     disabled=run is None, help=None if run is not None else
                     "Its run was trained from another machine's StackLab home (or deleted)."):
            open_run(run.id)
        if st.button("Use this spec", key="sweeps-use-best", icon=":material/stacks:",
                     help="Loads the best trial's spec into Assemble as the draft (asks first if your draft has "
                          "edits; Undo there brings your draft back)."):
            use_spec(summary)
    if run is not None:
        rows = runs.metrics(run.id)
        if rows:
            live.curves(rows, runs.phases(run.id), "sweeps-best", run)


st.title("Sweeps")
with st.container(key="sweeps-messages"):
    messages.page_messages()
try:
    all_sweeps = sweeps.list_sweeps()
except (ValueError, RunStoreError) as error:
    st.error(_message(error))
    all_sweeps = []
with st.expander("Start a sweep", expanded=not all_sweeps, icon=":material/add:"):
    start_panel()
if not all_sweeps:
    st.info("No sweeps yet. Start one above, press Compare modes on the Assemble page, or run "
            "`python -m core sweep SPEC.json`.", icon=":material/travel_explore:")
    st.stop()

summary = pick(all_sweeps)
st.caption(search_words(summary.base_spec))
controls(summary)
trials_view(summary.study, (summary.done, summary.driver_alive, summary.best.number if summary.best else None))
try:
    if sweep_widgets.is_comparison(summary):
        sweep_widgets.compare_curves(summary)
    st.subheader("Best trial")
    best_trial(summary)
    st.subheader("Optuna's figures")
    sweep_widgets.optuna_figures(summary.study, summary)
except RunStoreError as error:
    st.error(str(error))
log = sweep_widgets.driver_log(summary.study)
if log:
    with st.expander("Driver log"):
        st.code(log, language=None)
