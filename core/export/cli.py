"""`python -m core export RUN_ID --format onnx|saved_model|litert [--out PATH] [--json]`.

Exports a finished run's end-to-end `model.keras` (`core.export.formats.export_model`),
verified on the run's first 100 validation samples (`core.data.validation_inputs`), into
the run's folder by default (model.onnx, saved_model.zip, model.tflite), and prints the
result: the file, its size, the largest difference from Keras and the sample count.

Recording the file as a run artifact (so the Runs page lists it) is the run store's job,
which sits above `core.export` in the layers (pyproject.toml's import contracts): the CLI
passes a `record_artifact(run_id, name, path)` function to `add_parser` (or `run`). With
`--json` the answer is one JSON line on stdout and whatever TensorFlow prints goes to
stderr, for the dashboard, which runs `python -m core export RUN_ID --format F --json` in a
child process because the Streamlit server never imports Keras.

Keras is imported only when a command runs (`core.export.formats` imports it lazily).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Callable

from core.export.formats import FILE_NAMES, FORMATS, LABELS, MAX_SAMPLES, export_model
from core.processes import answer, refused, reserve_stdout
from core.storage.paths import run_dir

RecordArtifact = Callable[[str, str, Path], None]


def add_parser(commands, record_artifact: RecordArtifact | None = None):
    """Add `export` to the CLI's subcommands (`commands` from `add_subparsers`); returns its parser.

    Args:
        commands: the CLI's subparsers.
        record_artifact: called as `record_artifact(run_id, file_name, path)` after an export
            into the run's folder (e.g. `lambda *a: current_store().add_artifact(*a)`).
    """
    parser = commands.add_parser(
        "export", help="export a run's model to ONNX, SavedModel or LiteRT, verified in that format's runtime",
        description=f"Converts the run's model.keras (left unchanged), runs the result in its runtime on the first "
                    f"{MAX_SAMPLES} validation samples and writes it only if it matches Keras within 1e-4. "
                    f"ONNX and LiteRT need `pip install -r requirements-export.txt`.")
    parser.add_argument("run_id", metavar="RUN_ID", help="a finished run (see `python -m core runs list`)")
    parser.add_argument("--format", required=True, choices=FORMATS, help="the format to write")
    parser.add_argument("--out", help="the file to write (default: the run's folder, "
                                      + ", ".join(f"{name} for {fmt}" for fmt, name in FILE_NAMES.items())
                                      + "; only a file there is listed on the Runs page)")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    parser.set_defaults(run=functools.partial(run, record_artifact=record_artifact))
    return parser


def run(args, record_artifact: RecordArtifact | None = None) -> int:
    """`python -m core export ...`: 0 with the file written, 1 with a one-line reason on stderr."""
    answers = None
    if args.json:
        answers = reserve_stdout()  # what TensorFlow prints goes to stderr, never into the answer
    try:
        result, in_run_folder = export_run_model(args.run_id, args.format, args.out)
    except (ValueError, OSError) as error:  # ExportError, SpecError, FileNotFoundError: the reason
        return refused(error, answers)
    if in_run_folder and record_artifact is not None:
        record_artifact(args.run_id, result.path.name, result.path)
    if answers is not None:
        answer(answers, ok=True, **result.to_dict(), summary=result.summary())
    else:
        print(f"wrote {result.summary()}: {result.path}")
    return 0


def export_run_model(run_id: str, format: str, out: str | Path | None = None):  # noqa: A002
    """Export run `run_id`'s model.keras to `format`, verified on its validation samples.

    Returns:
        (ExportResult, whether the file is in the run's folder).

    Raises:
        FileNotFoundError: no such run, or it has no model.keras yet.
        ExportError: see `export_model`.
    """
    folder = run_dir(run_id)
    model = folder / "model.keras"
    if not model.is_file():
        if folder.is_dir():
            raise FileNotFoundError(f"Run '{run_id}' has no model.keras yet: {LABELS[format]} export needs a "
                                    f"finished run.")
        raise FileNotFoundError(f"No run '{run_id}' (see `python -m core runs list`).")
    target = Path(out).expanduser() if out else folder / FILE_NAMES[format]
    from core.data import validation_inputs  # loads the run's dataset: only when a command runs
    from core.spec import load_spec

    samples, _ = validation_inputs(load_spec(folder / "spec.json"), limit=MAX_SAMPLES)
    result = export_model(model, format, target, samples)
    return result, target.resolve().parent == folder.resolve()

