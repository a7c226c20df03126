"""`python -m core evaluate RUN_ID [--ablation] [--json]`.

Prints a finished run's scores on its validation split (`core.training.evaluation.evaluate_run`:
accuracy and per-class precision, recall and F1, or MAE, RMSE and R²) and, with
`--ablation`, the member ablation table (`core.training.ablation.ablate_run`): each member,
the metric without it and the drop against the whole stack, then the one-line reading. With
`--json` the answer is one JSON line on stdout ({"ok": true, "evaluation": ..., "ablation":
...}) and whatever TensorFlow prints goes to stderr.

Keras is imported only when the command runs, so the CLI starts fast for other commands.
"""

from __future__ import annotations

import functools
from typing import Callable

from core.processes import answer, refused, reserve_stdout


def add_parser(commands, import_keras: Callable[[], None] | None = None):
    """Add `evaluate` to the CLI's subcommands (`commands` from `add_subparsers`); returns its parser.

    Args:
        commands: the CLI's subparsers.
        import_keras: called before the library loads Keras (the CLI's importer that keeps
            TensorFlow's start-up lines off the terminal); None: a plain import.
    """
    parser = commands.add_parser(
        "evaluate", help="score a finished run on its validation split; --ablation: which member carries the stack",
        description="Scores the run's stack on the validation split it trained with (the whole dataset when it "
                    "had none). --ablation scores it again with each member's contribution removed (zeroed at a "
                    "concatenate, dropped from an average or other elementwise merge): fusion, ensemble and "
                    "graph runs only.")
    parser.add_argument("run_id", metavar="RUN_ID", help="a finished run (see `python -m core runs list`)")
    parser.add_argument("--ablation", action="store_true",
                        help="add the member ablation table: the metric without each member and its drop")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.set_defaults(run=functools.partial(run, import_keras=import_keras))
    return parser


def run(args, import_keras: Callable[[], None] | None = None) -> int:
    """`python -m core evaluate ...`: 0 with the scores printed, 1 with a one-line reason on stderr."""
    answers = reserve_stdout() if args.json else None  # TensorFlow's prints go to stderr, never into the answer
    if import_keras is not None:
        import_keras()
    from core.training.ablation import ablate_run
    from core.training.evaluation import evaluate_run

    try:
        # The ablation first: a run it refuses (a sequential one) is refused before any scoring.
        ablation = ablate_run(args.run_id) if args.ablation else None
        evaluation = evaluate_run(args.run_id)
    except (ValueError, OSError) as error:  # DataError, FileNotFoundError, a sequential run: the reason
        return refused(error, answers)
    if answers is not None:
        answer(answers, ok=True, evaluation=evaluation, ablation=ablation)
        return 0
    print(scores_text(evaluation))
    if ablation is not None:
        print()
        print(ablation_text(ablation))
    return 0


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows)


def scores_text(evaluation: dict) -> str:
    """evaluate_run's result as lines for a terminal."""
    lines = [f"run {evaluation['run_id']}: {evaluation['num_samples']} {evaluation['subset']} samples"]
    if evaluation.get("note"):
        lines.append(evaluation["note"])
    if evaluation["kind"] == "regression":
        lines.append(f"mae {_number(evaluation['mae'])}  rmse {_number(evaluation['rmse'])}  "
                     f"r2 {_number(evaluation['r2'])}")
        return "\n".join(lines)
    lines.append(f"accuracy {_number(evaluation['accuracy'])}")
    rows = [["class", "precision", "recall", "f1", "support"]]
    rows += [[str(row["class"]), _number(row["precision"]), _number(row["recall"]), _number(row["f1"]),
              str(row["support"])] for row in evaluation["per_class"]]
    lines.append(_table(rows))
    return "\n".join(lines)


def ablation_text(ablation: dict) -> str:
    """ablate_run's result as a table (member, the metric without it, the drop) and its reading."""
    metric = ablation["metric"]
    rows = [["member", f"{metric} without it", "drop", "removed"], ["(whole stack)", _number(ablation["full"]), "", ""]]
    rows += [[row["member"], _number(row["value"]), _number(row["drop"]), row["removed"]]
             for row in ablation["members"]]
    lines = [f"member ablation ({ablation['mode']}; drop: how much worse {metric} is without the member)",
             _table(rows)]
    lines += [f"not ablated: {row['member']} ({row['reason']})" for row in ablation["skipped"]]
    lines.append(ablation["reading"])
    return "\n".join(lines)
