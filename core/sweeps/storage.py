"""Where sweeps live: an Optuna RDB storage, and the studies StackLab writes there.

`$STACKLAB_HOME/sweeps.db` (SQLite) by default; `STACKLAB_SWEEPS_STORAGE` takes any Optuna RDB
URL (e.g. `postgresql://user@db/stacklab`), which is how several machines share one sweep:
each runs `python -m core sweep --study NAME --storage URL`. A StackLab study keeps its base
spec (with its search section) and its trial budget in the study's user attrs, so any driver
on any machine can continue it from the name alone. Imports Optuna, never Keras.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import optuna

from core.spec import StackSpec
from core.storage.paths import stacklab_home

STORAGE_ENV = "STACKLAB_SWEEPS_STORAGE"
# Study user attrs.
BASE_SPEC_ATTR = "stacklab_base_spec"
BUDGET_ATTR = "stacklab_budget"
DRIVERS_ATTR = "stacklab_drivers"
# SQLite answers "database is locked" to a second writer at once unless it may wait: several
# drivers (and the dashboard) write one file.
SQLITE_TIMEOUT_S = 60


def storage_url() -> str:
    """The sweeps' storage: STACKLAB_SWEEPS_STORAGE, or sqlite:///$STACKLAB_HOME/sweeps.db."""
    url = os.environ.get(STORAGE_ENV, "").strip()
    return url or f"sqlite:///{stacklab_home() / 'sweeps.db'}"


def sweeps_dir() -> Path:
    """$STACKLAB_HOME/sweeps: the drivers' logs and pid files."""
    folder = stacklab_home() / "sweeps"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def safe_name(study: str) -> str:
    """A study name as a file name (names are free text in Optuna)."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in study)[:120] or "study"


def log_path(study: str) -> Path:
    """$STACKLAB_HOME/sweeps/<study>.log: what a spawned driver prints."""
    return sweeps_dir() / f"{safe_name(study)}.log"


def open_storage(storage: str | None = None) -> optuna.storages.RDBStorage:
    """The RDB storage at `storage` (default `storage_url()`)."""
    url = storage or storage_url()
    engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}} if url.startswith("sqlite") else None
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def quiet_optuna() -> None:
    """Optuna logs every trial at INFO: the CLI prints its own lines."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def load_study(study: str, storage: str | None = None, **kwargs) -> optuna.Study:
    """The Optuna study of sweep `study` (the Sweeps page draws Optuna's own figures with it).

    Raises:
        KeyError: there is no such study in the storage (the message lists the sweeps).
    """
    quiet_optuna()
    backend = open_storage(storage)
    names = [summary.study_name for summary in optuna.get_all_study_summaries(backend, include_best_trial=False)]
    if study not in names:
        raise KeyError(f"No sweep '{study}' in {storage or storage_url()}; the sweeps there: "
                       f"{sorted(names) or 'none'}. Start one with `python -m core sweep SPEC.json`.")
    return optuna.load_study(study_name=study, storage=backend, **kwargs)


def study_base_spec(study: optuna.Study) -> StackSpec:
    """The spec a StackLab study searches over (with its search section).

    Raises:
        ValueError: the study was not made by StackLab.
    """
    text = study.user_attrs.get(BASE_SPEC_ATTR)
    if text is None:
        raise ValueError(f"Study '{study.study_name}' was not made by StackLab (it has no base spec); "
                         f"`python -m core sweep SPEC.json` makes one.")
    return StackSpec.from_json(text, check_values=False)


def study_budget(study: optuna.Study) -> int:
    return int(study.user_attrs.get(BUDGET_ATTR) or study_base_spec(study).search.trials)


def study_name_of(spec: StackSpec, study: str | None = None) -> str:
    """The study a spec's sweep uses: `study`, its search's study, or the spec's name."""
    return study or (spec.search.study if spec.search is not None else None) or spec.name


def create_sweep(spec: StackSpec, trials: int | None = None, study: str | None = None,
                 storage: str | None = None) -> str:
    """Create the study of `spec`'s sweep, or find it again (the same spec only).

    Args:
        spec: a StackSpec with a search section.
        trials: the trial budget (default: search.trials); given for an existing study, it
            replaces that study's budget (to extend a sweep).
        study: the study's name (default: search.study, else the spec's name).
        storage: an Optuna RDB URL (default `storage_url()`).

    Returns:
        The study's name.

    Raises:
        ValueError: the spec has no search section, or the study exists with another spec.
        SpecError: the spec or its search section is not valid.
    """
    if spec.search is None:
        raise ValueError(f"Spec '{spec.name}' has no 'search' section: a sweep needs one (the space, the objective "
                         f"and the trials). See examples/sweep_digits8.json.")
    spec.check_values()
    if trials is not None and trials < 1:
        raise ValueError(f"'trials' must be at least 1, received {trials}.")
    name = study_name_of(spec, study)
    quiet_optuna()
    created = optuna.create_study(study_name=name, storage=open_storage(storage), load_if_exists=True,
                                  direction=spec.search.objective.resolved_direction())
    text = spec.to_json(indent=None)
    stored = created.user_attrs.get(BASE_SPEC_ATTR)
    if stored is None:
        created.set_user_attr(BASE_SPEC_ATTR, text)
        created.set_user_attr(BUDGET_ATTR, trials or spec.search.trials)
    elif json.loads(stored) != json.loads(text):
        raise ValueError(f"Sweep '{name}' already exists with another spec. Continue it with `python -m core sweep "
                         f"--study {name}`, or give this one another name (--study, or search.study).")
    elif trials is not None:
        created.set_user_attr(BUDGET_ATTR, trials)
    return name
