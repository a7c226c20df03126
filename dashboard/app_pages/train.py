"""Train: training settings, the Train button, and the live view of a run.

Settings edit the draft spec's `train`. Train calls core.runs.start(spec): the run trains
in its own worker process and writes to the run store, which the live view polls. The run
shown is the one this tab chose, else the newest active run, else the newest run, found
in the store, so a reload or a second tab shows the same live run.
"""

import dataclasses

import streamlit as st

from core import runs
from core.runs import RunStoreError
from core.spec import LOSSES, LR_SCHEDULES, METRICS, OPTIMIZERS, EarlyStoppingSpec, FineTuneSpec, TrainSpec
from core.spec.rules import default_fine_tune_start, earliest_fine_tune_start
from dashboard import formatting, services, spec_edit, state
from dashboard.widgets import devices, live, preflight

RUN_PICKER = "train-run-picker"
MAX_PROBLEMS_SHOWN = 3  # the rest are on the Assemble page
MONITORS = ("val_loss", "loss", "val_accuracy", "accuracy", "val_auc", "val_mae")


def settings(train: TrainSpec, member_names: list[str], machine: devices.Machine) -> TrainSpec:
    """The training settings form; returns the TrainSpec it describes. `machine`: the devices
    this machine offers (the device choice lists only those)."""
    key = ("draft", "train")
    columns = st.columns(3)
    optimizer = columns[0].selectbox("Optimizer", OPTIMIZERS, index=OPTIMIZERS.index(train.optimizer),
                                     key=state.widget_key(*key, "optimizer"))
    learning_rate = columns[1].number_input("Learning rate", min_value=1e-7, max_value=10.0, value=train.learning_rate,
                                            step=1e-4, format="%g", key=state.widget_key(*key, "learning-rate"))
    schedule = columns[2].selectbox("Learning-rate schedule", LR_SCHEDULES, index=LR_SCHEDULES.index(train.lr_schedule),
                                    key=state.widget_key(*key, "schedule"),
                                    format_func=lambda s: s.replace("_", " "),
                                    help="cosine: decays to 0 over the run; exponential: x0.9 per epoch; "
                                         "reduce on plateau: halves it when the validation loss stalls.")
    epochs = columns[0].number_input("Epochs", min_value=1, max_value=1000, value=train.epochs, step=1,
                                     key=state.widget_key(*key, "epochs"))
    batch_size = columns[1].number_input("Batch size", min_value=1, max_value=8192, value=train.batch_size, step=8,
                                         key=state.widget_key(*key, "batch-size"))
    validation_split = columns[2].slider("Validation split", min_value=0.0, max_value=0.9,
                                         value=float(train.validation_split), step=0.05,
                                         key=state.widget_key(*key, "validation-split"),
                                         help="Share of the samples held out to measure validation metrics.")
    seed = columns[0].number_input("Seed", min_value=0, max_value=2**31 - 1, value=train.seed, step=1,
                                   key=state.widget_key(*key, "seed"), help="The same seed gives the same split "
                                                                            "and initial weights.")
    with st.container(border=True, key="train-devices"):
        distribution = devices.device_choice(train.distribution, int(batch_size), machine, key)
        columns = st.columns(3)
        mixed = columns[0].checkbox("Mixed precision", train.mixed_precision, key=state.widget_key(*key, "mixed"),
                                    help="Faster on recent GPUs; no gain on CPUs.")
        jit = columns[1].checkbox("XLA compile", train.jit_compile, key=state.widget_key(*key, "jit"),
                                  help="Faster steps on GPUs, but a long first step on small CPUs.")
    with st.expander("Early stopping", expanded=train.early_stopping is not None):
        early_stopping = None
        if st.toggle("Stop when the monitored metric stops improving", train.early_stopping is not None,
                     key=state.widget_key(*key, "early-stopping")):
            stopping = train.early_stopping or EarlyStoppingSpec()
            columns = st.columns(3)
            monitors = list(dict.fromkeys((stopping.monitor, *MONITORS)))
            monitor = columns[0].selectbox("Monitor", monitors, index=monitors.index(stopping.monitor),
                                           key=state.widget_key(*key, "monitor"))
            patience = columns[1].number_input("Patience (epochs)", min_value=1, max_value=100,
                                               value=stopping.patience, key=state.widget_key(*key, "patience"))
            restore = columns[2].checkbox("Restore the best weights", stopping.restore_best_weights,
                                          key=state.widget_key(*key, "restore-best"))
            early_stopping = EarlyStoppingSpec(monitor=monitor, patience=int(patience), min_delta=stopping.min_delta,
                                               restore_best_weights=restore)
    with st.expander("Fine-tune phase", expanded=train.fine_tune is not None):
        fine_tune = None
        if st.toggle("Unfreeze the top layers of frozen members partway through", train.fine_tune is not None,
                     key=state.widget_key(*key, "fine-tune")):
            # By default the head trains on the frozen base for the first half of the run.
            tune = train.fine_tune or FineTuneSpec(start_epoch=default_fine_tune_start(epochs))
            columns = st.columns(3)
            start = columns[0].number_input("Start at epoch", min_value=earliest_fine_tune_start(), max_value=1000,
                                            value=tune.start_epoch,
                                            key=state.widget_key(*key, "fine-tune-start"),
                                            help="The epochs before it train the head on the frozen base.")
            top = columns[1].number_input("Unfreeze top layers (0 = all)", min_value=0, max_value=10000,
                                          value=tune.unfreeze_top_layers, key=state.widget_key(*key, "fine-tune-top"),
                                          help="Counts layers with weights, from the output side.")
            factor = columns[2].number_input("Learning-rate factor", min_value=1e-4, max_value=1.0,
                                             value=tune.learning_rate_factor, format="%g", step=0.05,
                                             key=state.widget_key(*key, "fine-tune-factor"),
                                             help="The fine-tune phase trains at learning rate × this factor.")
            chosen = st.multiselect("Members to unfreeze (none chosen: every frozen member)", member_names,
                                    default=[m for m in tune.members if m in member_names],
                                    key=state.widget_key(*key, "fine-tune-members"))
            batchnorm = st.checkbox("Also unfreeze BatchNormalization layers", tune.unfreeze_batchnorm,
                                    key=state.widget_key(*key, "fine-tune-batchnorm"),
                                    help="Usually left frozen: updating their statistics on little data tends to "
                                         "wreck pretrained features.")
            fine_tune = FineTuneSpec(start_epoch=int(start), unfreeze_top_layers=int(top), learning_rate_factor=factor,
                                     members=tuple(chosen), unfreeze_batchnorm=batchnorm)
            if start > epochs:
                st.error(f"The fine-tune phase starts at epoch {start}, after the last epoch ({epochs}): "
                         f"start it earlier or train more epochs.", icon=":material/error:")
    with st.expander("Loss, metrics and more"):
        columns = st.columns(3)
        loss = columns[0].selectbox("Loss", LOSSES, index=LOSSES.index(train.loss), key=state.widget_key(*key, "loss"),
                                    help="auto follows the dataset: cross-entropy for classes, mean squared "
                                         "error for regression.")
        metrics = columns[1].multiselect("Metrics", METRICS, default=list(train.metrics),
                                         key=state.widget_key(*key, "metrics"),
                                         help="auto: accuracy for classes, mean absolute error for regression.")
        weight_decay = columns[2].number_input("Weight decay", min_value=0.0, max_value=1.0, value=train.weight_decay,
                                               format="%g", step=1e-4, key=state.widget_key(*key, "weight-decay"))
    return dataclasses.replace(
        train, optimizer=optimizer, learning_rate=float(learning_rate), lr_schedule=schedule, epochs=int(epochs),
        batch_size=int(batch_size), validation_split=round(float(validation_split), 4), seed=int(seed),
        early_stopping=early_stopping, fine_tune=fine_tune, loss=loss, metrics=tuple(metrics) or ("auto",),
        weight_decay=float(weight_decay), mixed_precision=mixed, jit_compile=jit,
        distribution=distribution)


def what_will_train(spec, report, error) -> bool:
    """The dataset, the stack and its size; returns whether the stack can be trained."""
    dataset = spec.dataset
    st.markdown(f"**Dataset** {dataset.name}" + (f" ({dataset.source.upper()})" if dataset.source != "builtin" else ""))
    st.markdown(f"**Stack** {spec.name} · {spec.mode}: {spec_edit.wiring(spec)}")
    if report is None:
        if error.kind == "invalid":  # the spec or its data cannot be used
            st.error(str(error), icon=":material/error:")
            return False
        st.warning(f"The stack could not be checked ({error}); the run will report any problem.")
        return bool(spec.members)
    if not report["ok"]:
        problems = report["problems"]
        st.error(f"The stack does not build: {formatting.plural(len(problems), 'problem')}.", icon=":material/error:")
        for index, problem in enumerate(problems[:MAX_PROBLEMS_SHOWN]):
            preflight.problem_card(spec, problem, index, "train")
        st.page_link("app_pages/assemble.py", label="See the whole stack on the Assemble page",
                     icon=":material/stacks:")
        return False
    frozen = report.get("frozen_params", 0)
    st.markdown(f"**Parameters** {formatting.count(report['total_params'])}"
                + (f" ({formatting.count(frozen)} frozen)" if frozen else " (all trainable)"))
    return True


def choose_run(run_id: str) -> None:
    state.set_watched_run(run_id)


def shown_run() -> str | None:
    """The run this tab chose (if it still exists), else the newest active run, else the newest run."""
    chosen = state.watched_run()
    if chosen is not None:
        try:
            runs.get(chosen)
            return chosen
        except runs.RunNotFound:
            state.set_watched_run(None)
    active = runs.list_runs(runs.ACTIVE_STATUSES, limit=1)
    if active:
        return active[0].id
    newest = runs.list_runs(limit=1)
    return newest[0].id if newest else None


st.title("Train")
spec = state.draft()
machine = devices.this_machine()
left, right = st.columns([2, 1], gap="large")
with left:
    st.subheader("Settings")
    train = settings(spec.train, [m.name for m in spec.all_members()], machine)
    if train != spec.train:
        spec = spec.replace(train=train)
        state.set_draft(spec)
with right:
    st.subheader("What will train")
    with st.spinner("Checking the stack…"):
        report, error = services.check_or_error(spec)
    ready = what_will_train(spec, report, error)
    st.markdown(f"**Devices** {devices.summary(spec.train.distribution, machine)}")
    # Each would fail the run at its start: said here, before Train.
    for problem in devices.problems(spec.train.distribution, machine, spec.train.batch_size):
        st.error(problem, icon=":material/error:")
        ready = False
    busy = runs.list_runs(("running", "stopping"))
    if len(busy) >= runs.max_workers():
        queued = len(runs.list_runs(("queued",)))
        waiting = f", {formatting.plural(queued, 'run')} waiting" if queued else ""
        st.caption(f"Run {busy[0].id} ({busy[0].name}) is training{waiting}: a new run queues and starts when "
                   f"a worker is free (STACKLAB_MAX_WORKERS={runs.max_workers()}).")
    if st.button("Train", key="train-start", type="primary", icon=":material/play_arrow:", disabled=not ready,
                 width="stretch"):
        try:
            run_id = runs.start(spec)
        except (FileNotFoundError, RunStoreError, ValueError) as error:
            st.error(str(error))
        else:
            state.set_watched_run(run_id)
            st.toast(f"Started run {run_id}.", icon=":material/play_arrow:")

st.divider()
try:
    run_id = shown_run()
    if run_id is None:
        st.info("No runs yet: press **Train** to start one. The curves appear here as it trains.")
    else:
        recent = {run.id: run for run in runs.list_runs(limit=30)}
        if run_id not in recent:
            recent[run_id] = runs.get(run_id)
        state.set_widget_value(RUN_PICKER, run_id)
        st.selectbox("Run shown", list(recent), key=RUN_PICKER,
                     on_change=lambda: choose_run(state.widget_value(RUN_PICKER)),
                     format_func=lambda i: f"{i} · {recent[i].name} · {recent[i].status}")
        live.run_view(run_id)
except (RunStoreError, runs.RunNotFound) as error:
    st.error(str(error))
