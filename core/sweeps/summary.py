"""What a sweep looks like from outside: its trials, their runs, the best one. Read-only.

The Sweeps page and the CLI read this; `load_study` gives Optuna's own study for its figures.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from core import runs
from core.spec import StackSpec, apply_params
from core.sweeps.process import driver_alive
from core.sweeps.space import decode
from core.sweeps.storage import (
    BASE_SPEC_ATTR,
    load_study,
    open_storage,
    quiet_optuna,
    storage_url,
    study_base_spec,
    study_budget,
)

# Trial user attrs the driver writes.
RUN_ID_ATTR = "run_id"
PRUNED_EPOCH_ATTR = "pruned_epoch"
REASON_ATTR = "reason"
DONE_STATES = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


@dataclass(frozen=True)
class TrialRow:
    """One trial: Optuna's state ("running", "complete", "pruned", "fail"), its params as the
    spec's values, its objective value, and its run (None for a run on another machine)."""

    number: int
    state: str
    params: dict[str, Any]
    value: float | None
    run_id: str | None
    run_status: str | None
    pruned_epoch: int | None
    duration_s: float | None
    # Why a trial failed (its run's error, a spec the variant could not make), or was pruned.
    reason: str = ""
    # The machine and StackLab home whose driver ran it.
    host: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class SweepSummary:
    study: str
    objective: str
    direction: str
    base_spec: StackSpec
    budget: int
    trials: list[TrialRow] = field(default_factory=list)
    best: TrialRow | None = None
    driver_alive: bool = False

    @property
    def done(self) -> int:
        """Trials that ended (complete, pruned or failed)."""
        return sum(row.state in ("complete", "pruned", "fail") for row in self.trials)

    @property
    def running(self) -> int:
        return sum(row.state == "running" for row in self.trials)

    def to_dict(self) -> dict[str, Any]:
        return {"study": self.study, "objective": self.objective, "direction": self.direction,
                "budget": self.budget, "done": self.done, "running": self.running,
                "driver_alive": self.driver_alive, "base_spec": self.base_spec.to_dict(),
                "trials": [row.to_dict() for row in self.trials],
                "best": self.best.to_dict() if self.best is not None else None}


def trial_row(trial: FrozenTrial, spec: StackSpec) -> TrialRow:
    """A trial as a row, its run looked up in this StackLab home's run store."""
    run_id = trial.user_attrs.get(RUN_ID_ATTR)
    run = None
    if run_id:
        try:
            run = runs.get(run_id)
        except (runs.RunNotFound, ValueError):
            run = None  # a run of another machine's home, or deleted
    duration = run.duration_s if run is not None else None
    if duration is None and trial.datetime_start is not None and trial.datetime_complete is not None:
        duration = (trial.datetime_complete - trial.datetime_start).total_seconds()
    value = trial.value if trial.state == TrialState.COMPLETE else None
    return TrialRow(
        number=trial.number, state=trial.state.name.lower(), params=decode(spec.search, trial.params),
        value=value if value is None or math.isfinite(value) else None, run_id=run_id,
        run_status=run.status if run is not None else None,
        pruned_epoch=trial.user_attrs.get(PRUNED_EPOCH_ATTR), duration_s=duration,
        reason=trial.user_attrs.get(REASON_ATTR, ""), host=trial.user_attrs.get("host", ""))


def summarize(study: optuna.Study) -> SweepSummary:
    """The summary of a loaded StackLab study."""
    spec = study_base_spec(study)
    rows = [trial_row(trial, spec) for trial in study.get_trials(deepcopy=False)]
    complete = [row for row in rows if row.state == "complete" and row.value is not None]
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    best = None
    if complete:
        best = (max if maximize else min)(complete, key=lambda row: row.value)
    return SweepSummary(study=study.study_name, objective=spec.search.objective.metric,
                        direction="maximize" if maximize else "minimize", base_spec=spec,
                        budget=study_budget(study), trials=rows, best=best,
                        driver_alive=driver_alive(study.study_name))


def sweep(study: str, storage: str | None = None) -> SweepSummary:
    """The sweep `study`: its trials (with their runs), the best trial, the budget, whether a
    driver of this StackLab home is alive.

    Raises:
        KeyError: no such sweep in the storage.
        ValueError: the study was not made by StackLab.
    """
    return summarize(load_study(study, storage))


def list_sweeps(storage: str | None = None) -> list[SweepSummary]:
    """Every StackLab sweep in the storage (default `storage_url()`), newest first."""
    quiet_optuna()
    backend = open_storage(storage or storage_url())
    summaries = optuna.get_all_study_summaries(backend, include_best_trial=False)
    found = []
    # Newest first: study ids grow with each study created.
    for summary in sorted(summaries, key=lambda s: s._study_id, reverse=True):
        if BASE_SPEC_ATTR in summary.user_attrs:
            found.append(summarize(optuna.load_study(study_name=summary.study_name, storage=backend)))
    return found


def best_spec(study: str, storage: str | None = None) -> StackSpec:
    """The spec of the sweep's best finished trial ("use this spec" loads it into Assemble).

    Raises:
        KeyError: no such sweep.
        ValueError: no trial has finished yet.
    """
    summary = sweep(study, storage)
    if summary.best is None:
        raise ValueError(f"Sweep '{study}' has no finished trial yet ({summary.done} of {summary.budget} done); "
                         f"its best spec comes with the first.")
    return trial_spec(summary.base_spec, summary.best.params, summary.best.number)


def trial_spec(base: StackSpec, params: dict[str, Any], number: int) -> StackSpec:
    """The spec trial `number` trains: `base` with `params` applied, named '<base>-t<number>'."""
    return apply_params(base, params).replace(name=f"{base.name}-t{number}")
