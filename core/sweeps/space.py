"""A spec's search section as Optuna sees it: distributions, a sampler and a pruner.

Optuna's categorical choices are None, bools, numbers and strings (what its storage keeps
faithfully); a choice such as a member's `filters: [16, 32]` is passed to Optuna as its
JSON text ("[16, 32]") and read back by `decode`, so the trial table and Optuna's figures
show it as written.
"""

from __future__ import annotations

import json
from typing import Any, Mapping

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution

from core.spec import ParamSpec, SearchSpec

_PRIMITIVE = (type(None), bool, int, float, str)


def _label(choice: Any) -> Any:
    return choice if isinstance(choice, _PRIMITIVE) else json.dumps(choice)


def distribution(param: ParamSpec) -> BaseDistribution:
    """One parameter as an Optuna distribution."""
    if param.type == "categorical":
        return CategoricalDistribution([_label(choice) for choice in param.choices])
    if param.type == "int":
        return IntDistribution(int(param.low), int(param.high), log=param.log, step=int(param.step or 1))
    return FloatDistribution(float(param.low), float(param.high), log=param.log,
                             step=float(param.step) if param.step is not None else None)


def distributions(search: SearchSpec) -> dict[str, BaseDistribution]:
    """Every parameter of the search (its variants as "variant") as Optuna distributions."""
    return {path: distribution(param) for path, param in search.parameters().items()}


def decode(search: SearchSpec, params: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's Optuna params as the spec's values (JSON-text choices back to lists)."""
    parameters = search.parameters()
    decoded = {}
    for path, value in params.items():
        param = parameters.get(path)
        if param is not None and param.type == "categorical":
            value = next((choice for choice in param.choices if _label(choice) == value), value)
        decoded[path] = value
    return decoded


def grid(search: SearchSpec) -> dict[str, list[Any]]:
    """The grid a grid sampler walks: every parameter's values, as Optuna labels."""
    return {path: [_label(value) for value in param.grid()] for path, param in search.parameters().items()}


class _GridSampler(optuna.samplers.GridSampler):
    """Optuna's grid sampler without its `study.stop()` once the grid is walked: that works only
    inside `study.optimize` (ask-and-tell raises), and the driver's budget is the grid's size."""

    def after_trial(self, study, trial, state, values) -> None:
        return None


def make_sampler(search: SearchSpec, budget: int, seed_offset: int = 0) -> optuna.samplers.BaseSampler:
    """The search's sampler. Each driver of a study gets its own seed (search.seed + its
    offset), so two drivers never propose the same sequence."""
    seed = None if search.seed is None else search.seed + seed_offset
    if search.sampler == "grid":
        return _GridSampler(grid(search), seed=seed)
    if search.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # Optuna samples the first 10 trials at random by default, which would be all of a small
    # sweep; half the budget keeps TPE in the game. constant_liar: parallel trials spread out.
    startup = max(1, min(10, budget // 2))
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup, constant_liar=True)


def make_pruner(search: SearchSpec) -> optuna.pruners.BasePruner:
    """The search's pruner; epochs are its steps."""
    pruner = search.pruner
    if pruner.kind == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=pruner.startup_trials, n_warmup_steps=pruner.warmup_epochs)
    if pruner.kind == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=max(1, pruner.warmup_epochs),
                                                      reduction_factor=pruner.reduction_factor)
    if pruner.kind == "threshold":
        return optuna.pruners.ThresholdPruner(lower=pruner.lower, upper=pruner.upper,
                                              n_warmup_steps=pruner.warmup_epochs)
    return optuna.pruners.NopPruner()
