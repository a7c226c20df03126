"""`python -m core sweep SPEC.json [--trials N] [--study NAME] [--storage URL] [--json]`, and
`python -m core sweep --study NAME` (continue a sweep, or join it from another machine).

Prints the search (space, objective, budget), each trial as it ends and, at the end, the
best trial and its value. With `--json`: one JSON line per trial ({"trial": ...}) and a last
one ({"ok": true, "sweep": ...}). `python -m core.sweeps.cli` is the same command (what
`spawn_driver` runs). No Keras import: the trials train in workers.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from core.processes import answer, refused, reserve_stdout
from core.spec import SearchSpec, SpecError, load_spec
from core.sweeps.driver import drive
from core.sweeps.storage import create_sweep, load_study, storage_url, study_base_spec, study_budget
from core.sweeps.summary import SweepSummary, TrialRow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("spec", nargs="?", metavar="SPEC.json",
                        help="a spec with a 'search' section (see examples/sweep_digits8.json); leave it out with "
                             "--study to continue or join a sweep")
    parser.add_argument("--trials", type=int, metavar="N", help="the trial budget (default: search.trials); "
                                                                "given for an existing sweep, it extends it")
    parser.add_argument("--study", metavar="NAME", help="the study's name (default: search.study, else the spec's "
                                                        "name)")
    parser.add_argument("--storage", metavar="URL", help="an Optuna RDB URL shared by several machines, e.g. "
                                                         "postgresql://user@host/db (default: STACKLAB_SWEEPS_STORAGE "
                                                         "or sqlite:///$STACKLAB_HOME/sweeps.db)")
    parser.add_argument("--poll", type=float, default=0.5, metavar="S", help=argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", help="print each trial and the result as JSON lines")


def add_parser(commands):
    """Add `sweep` to the CLI's subcommands (`commands` from `add_subparsers`); returns its parser."""
    parser = commands.add_parser(
        "sweep", help="search a spec's 'search' space with Optuna, each trial an ordinary run",
        description="Each trial is a run (queued, trained by a worker, on the Runs page); hopeless trials are "
                    "pruned from their epoch rows. Several machines share one sweep through one --storage and "
                    "the same --study.")
    add_arguments(parser)
    parser.set_defaults(run=run)
    return parser


def describe_search(search: SearchSpec, budget: int) -> list[str]:
    """The search as lines a person reads: objective, budget, sampler, pruner, each parameter."""
    objective = search.objective
    pruner = search.pruner.kind if search.pruner.kind == "none" else (
        f"{search.pruner.kind} (after {search.pruner.warmup_epochs} epoch(s))")
    lines = [f"objective: {objective.metric} ({objective.resolved_direction()}), {budget} trials, "
             f"{search.parallel or 'max_workers'} at once, sampler {search.sampler}, pruner {pruner}"]
    for path, param in search.parameters().items():
        if param.type == "categorical":
            values = ", ".join(json.dumps(choice) for choice in param.choices)
            lines.append(f"  {path}: one of {values}")
        else:
            scale = ", log scale" if param.log else (f", step {param.step}" if param.step else "")
            lines.append(f"  {path}: {param.type} from {param.low} to {param.high}{scale}")
    return lines


def _value(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _params(params: dict[str, Any]) -> str:
    def text(value: Any) -> str:
        return f"{value:.4g}" if isinstance(value, float) else json.dumps(value)
    return " ".join(f"{path}={text(value)}" for path, value in params.items())


def trial_line(row: TrialRow, metric: str) -> str:
    """'trial 3  complete  val_accuracy 0.9120  train.learning_rate=0.003  run 20260101-...  12 s'."""
    extra = ""
    if row.state == "pruned":
        extra = f" at epoch {row.pruned_epoch}"
    elif row.state == "fail" and row.reason:
        extra = f": {row.reason}"
    took = f"  {row.duration_s:.0f} s" if row.duration_s is not None else ""
    run = f"  run {row.run_id}" if row.run_id else ""
    return f"trial {row.number}  {row.state}{extra}  {metric} {_value(row.value)}  {_params(row.params)}{run}{took}"


def summary_lines(summary: SweepSummary) -> list[str]:
    states: dict[str, int] = {}
    for row in summary.trials:
        states[row.state] = states.get(row.state, 0) + 1
    counts = ", ".join(f"{count} {state}" for state, count in sorted(states.items()))
    lines = [f"sweep '{summary.study}': {len(summary.trials)} trials ({counts}) of a budget of {summary.budget}"]
    if summary.best is None:
        lines.append("best: none (no trial finished)")
    else:
        best = summary.best
        lines.append(f"best: trial {best.number}, {summary.objective} {best.value:.4f} ({summary.direction}), "
                     f"run {best.run_id}: {_params(best.params)}")
    return lines


def run(args) -> int:
    """`python -m core sweep ...`: 0 when the sweep ran to its budget, 1 with a one-line reason."""
    answers = reserve_stdout() if args.json else None
    out = sys.stdout
    try:
        if args.spec:
            study = create_sweep(load_spec(args.spec), trials=args.trials, study=args.study, storage=args.storage)
        elif args.study:
            study = args.study
        else:
            raise ValueError("Give a SPEC.json with a 'search' section to start a sweep, or --study NAME to "
                             "continue or join one.")
        loaded = load_study(study, args.storage)
        base = study_base_spec(loaded)
        budget = args.trials or study_budget(loaded)
        if answers is None:
            print(f"sweep '{study}' of spec '{base.name}' in {args.storage or storage_url()}", file=out)
            for line in describe_search(base.search, budget):
                print(line, file=out)
        metric = base.search.objective.metric

        def on_trial(row: TrialRow) -> None:
            if answers is not None:
                answer(answers, trial=row.to_dict())
            else:
                print(trial_line(row, metric), file=out, flush=True)

        summary = drive(study, storage=args.storage, trials=args.trials if not args.spec else None,
                        poll_s=args.poll, on_trial=on_trial)
    except (SpecError, ValueError, OSError, KeyError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        return refused(ValueError(str(message)), answers)
    if answers is not None:
        answer(answers, ok=True, sweep=summary.to_dict())
    else:
        for line in summary_lines(summary):
            print(line, file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m core sweep", description=__doc__.splitlines()[0])
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
