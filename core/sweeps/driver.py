"""The sweep driver: Optuna's ask-and-tell over ordinary runs.

Each trial is `core.runs.start(trial_spec)`: queued, trained by a worker, stoppable,
resumable, on the Runs page. The driver polls the trial's epoch rows (what the worker
already writes), reports the objective at each epoch, stops the run when the pruner says
so, and tells Optuna the best epoch's value when the run finishes. It keeps at most
`search.parallel` trials active (0: the scheduler's max_workers()).

A driver started again (after a crash, a kill, a restart of the machine) re-attaches to
the running trials of its own home whose driver is gone, resumes their interrupted runs,
and continues until the budget is done. Drivers of other machines (or homes) on the same
storage share the study the Optuna way: each asks for its own trials, the sampler learns
from all of them.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from optuna.trial import Trial, TrialState

from core import runs
from core.runs.scheduler import alive
from core.spec import SpecError
from core.sweeps.process import PAUSED_ATTR, DriverId, write_pid_file
from core.sweeps.space import decode, distributions, make_pruner, make_sampler
from core.sweeps.storage import BUDGET_ATTR, DRIVERS_ATTR, load_study, study_base_spec, study_budget
from core.sweeps.summary import (
    DONE_STATES,
    PRUNED_EPOCH_ATTR,
    REASON_ATTR,
    RUN_ID_ATTR,
    SweepSummary,
    TrialRow,
    summarize,
    trial_row,
    trial_spec,
)

log = logging.getLogger(__name__)
# A failed or interrupted run is resumed this many times before its trial fails: a run that
# fails the same way again (a spec that does not build) would otherwise loop forever.
MAX_RESUMES = 2


@dataclass
class _Active:
    """A trial this driver watches: its Optuna handle, its run, the epochs reported."""

    trial: Trial
    run_id: str
    values: dict[int, float] = field(default_factory=dict)
    resumes: int = 0

    @property
    def last_epoch(self) -> int:
        return max(self.values, default=0)


class Driver:
    """One driver process's view of a study (`drive` is the function to call)."""

    def __init__(self, study: str, storage: str | None, trials: int | None, poll_s: float,
                 on_trial: Callable[[TrialRow], None] | None):
        probe = load_study(study, storage)
        self.base = study_base_spec(probe)
        self.search = self.base.search
        if trials is not None:
            probe.set_user_attr(BUDGET_ATTR, trials)
        self.budget = study_budget(probe)
        grid_size = self.search.grid_size()
        if grid_size is not None:
            self.budget = min(self.budget, grid_size)  # a grid has no more points than that
        joined = int(probe.user_attrs.get(DRIVERS_ATTR, 0))
        probe.set_user_attr(DRIVERS_ATTR, joined + 1)
        self.study = load_study(study, storage, sampler=make_sampler(self.search, self.budget, seed_offset=joined),
                                pruner=make_pruner(self.search))
        self.metric = self.search.objective.metric
        self.maximize = self.search.objective.resolved_direction() == "maximize"
        self.parallel = self.search.parallel or runs.max_workers()
        self.poll_s = poll_s
        self.on_trial = on_trial
        self.me = DriverId.me()
        self.active: dict[int, _Active] = {}
        self.pruned_runs: dict[str, str] = {}  # run id -> the reason, written once it has stopped
        self.stopping = False

    # ---- the loop -----------------------------------------------------------------------

    def run(self) -> SweepSummary:
        pid_path = write_pid_file(self.study.study_name, self.me.pid, self.me.started)
        try:
            self.reattach()
            while not self.stopping:
                # Marks runs whose worker died interrupted (then resumed below) and starts queued
                # ones: nobody else may be watching (no dashboard open).
                runs.reconcile()
                for active in list(self.active.values()):
                    self.poll(active)
                self.annotate_pruned()
                counts = self.counts()
                done, running = counts["done"], counts["running"]
                if not self.active and done + running >= self.budget:
                    break
                while len(self.active) < self.parallel and done + running < self.budget and not self.stopping:
                    self.ask()
                    running += 1
                time.sleep(self.poll_s)
            self.annotate_pruned(wait_s=5.0)
        finally:
            pid_path.unlink(missing_ok=True)
        return summarize(self.study)

    def counts(self) -> dict[str, int]:
        trials = self.study.get_trials(deepcopy=False)
        return {"done": sum(t.state in DONE_STATES for t in trials),
                "running": sum(t.state == TrialState.RUNNING for t in trials)}

    # ---- trials ---------------------------------------------------------------------------

    def reattach(self) -> None:
        """Take over this home's running trials whose driver is gone."""
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            attrs = frozen.user_attrs
            if not self.me.same_home(attrs) or alive(attrs.get("driver_pid"), attrs.get("driver_started")):
                continue
            trial = Trial(self.study, frozen._trial_id)
            for key, value in self.me.attrs().items():
                trial.set_user_attr(key, value)
            run_id = attrs.get(RUN_ID_ATTR)
            if not run_id:  # its driver died between asking and starting the run
                self.start(trial)
                continue
            active = _Active(trial, run_id, values=dict(frozen.intermediate_values),
                             resumes=int(attrs.get("resumes", 0)))
            self.active[trial.number] = active
            if attrs.get(PAUSED_ATTR):
                self.resume(active, paused=True)
            log.info("re-attached to trial %d (run %s)", trial.number, run_id)

    def ask(self) -> None:
        trial = self.study.ask(fixed_distributions=distributions(self.search))
        for key, value in self.me.attrs().items():
            trial.set_user_attr(key, value)
        self.start(trial)

    def start(self, trial: Trial) -> None:
        try:
            spec = trial_spec(self.base, decode(self.search, trial.params), trial.number)
            run_id = runs.start(spec)
        except (SpecError, ValueError, FileNotFoundError) as error:
            # A variant that does not make a valid stack fails as its trial, with the reason.
            self.finish(trial, TrialState.FAIL, reason=f"The trial's spec was refused: {error}")
            return
        trial.set_user_attr(RUN_ID_ATTR, run_id)
        self.active[trial.number] = _Active(trial, run_id)

    def poll(self, active: _Active) -> None:
        try:
            run = runs.get(active.run_id)
        except runs.RunNotFound:
            self.finish(active.trial, TrialState.FAIL, reason=f"Run {active.run_id} was deleted.")
            return
        for row in runs.metrics(active.run_id, since_epoch=active.last_epoch):
            value = row["metrics"].get(self.metric)
            if value is None or not math.isfinite(value) or row["epoch"] in active.values:
                continue
            active.trial.report(value, row["epoch"])
            active.values[row["epoch"]] = value
        if run.is_active:
            if active.values and run.status == "running" and active.trial.should_prune():
                self.prune(active)
            return
        if run.status == "finished":
            if not active.values:
                self.finish(active.trial, TrialState.FAIL, reason=(
                    f"The run finished, but its epoch rows have no '{self.metric}'; they have "
                    f"{sorted(runs.metrics(active.run_id)[-1]['metrics']) if runs.metrics(active.run_id) else 'none'}"
                    f". Pick one of those as search.objective.metric."))
                return
            best = (max if self.maximize else min)(active.values.values())
            self.finish(active.trial, TrialState.COMPLETE, value=best)
        elif run.status == "stopped":
            reason = f"Run {run.id} was stopped: {run.error or 'by the user'}."
            self.finish(active.trial, TrialState.FAIL, reason=reason)
        elif active.resumes < MAX_RESUMES:
            self.resume(active)
        else:
            self.finish(active.trial, TrialState.FAIL, reason=f"Run {run.id} {run.status}: {run.error}")

    def resume(self, active: _Active, paused: bool = False) -> None:
        """Resume an interrupted or failed run (or one stopped with the sweep) from its checkpoint."""
        try:
            runs.resume(active.run_id)
        except ValueError:
            pass  # still active (the worker was only slow) or already finished: the next poll sees it
        if paused:
            active.trial.set_user_attr(PAUSED_ATTR, False)
        else:
            active.resumes += 1
            active.trial.set_user_attr("resumes", active.resumes)

    def prune(self, active: _Active) -> None:
        epoch = active.last_epoch
        runs.stop(active.run_id)
        reason = (f"Pruned by sweep '{self.study.study_name}' at epoch {epoch}: {self.metric} "
                  f"{active.values[epoch]:.4g}, hopeless by the {self.search.pruner.kind} pruner.")
        active.trial.set_user_attr(PRUNED_EPOCH_ATTR, epoch)
        self.pruned_runs[active.run_id] = reason
        self.finish(active.trial, TrialState.PRUNED, reason=reason)

    def finish(self, trial: Trial, state: TrialState, value: float | None = None, reason: str = "") -> None:
        if reason:
            trial.set_user_attr(REASON_ATTR, reason)
        self.study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
        self.active.pop(trial.number, None)
        if self.on_trial is not None:
            frozen = self.study._storage.get_trial(trial._trial_id)
            self.on_trial(trial_row(frozen, self.base))

    def annotate_pruned(self, wait_s: float = 0.0) -> None:
        """Write why a pruned run stopped into its error, once its worker has stopped it (the
        worker writes the run's end itself; written earlier, it would be overwritten)."""
        deadline = time.monotonic() + wait_s
        while self.pruned_runs:
            for run_id, reason in list(self.pruned_runs.items()):
                run = runs.get(run_id)
                if not run.is_active:
                    # A short epoch can end the run before the stop arrives: a finished run keeps no note.
                    if run.status == "stopped":
                        runs.current_store().update(run_id, error=reason)
                    del self.pruned_runs[run_id]
            if time.monotonic() >= deadline:
                return
            runs.reconcile()
            time.sleep(0.2)


def drive(study: str, storage: str | None = None, trials: int | None = None, poll_s: float = 0.5,
          on_trial: Callable[[TrialRow], None] | None = None) -> SweepSummary:
    """Drive sweep `study` until `trials` trials are done: ask, train each as a run, tell.

    Args:
        study: the study's name (made by `create_sweep`).
        storage: an Optuna RDB URL (default `storage_url()`).
        trials: the budget (default: the study's); given, it replaces the study's budget.
        poll_s: how often the trials' epoch rows are read.
        on_trial: called with each trial's TrialRow when it ends.

    Returns:
        The sweep's summary at the end.

    Raises:
        KeyError: no such sweep.

    Example:
        >>> name = create_sweep(load_spec("examples/sweep_digits8.json"))
        >>> drive(name).best.value
        0.93
    """
    from core.sweeps.storage import quiet_optuna

    quiet_optuna()
    driver = Driver(study, storage, trials, poll_s, on_trial)
    # SIGTERM (stop_sweep, the dashboard) ends the loop between polls: the trials stay running.
    previous = None
    if threading.current_thread() is threading.main_thread():
        def stop(signum, frame):
            driver.stopping = True
        previous = signal.signal(signal.SIGTERM, stop)
    try:
        return driver.run()
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)

