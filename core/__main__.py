"""Command line: `stacklab ...` (installed), or `python -m core ...` from a checkout.

    python -m core dashboard [STREAMLIT ARGS]    serve the dashboard (streamlit run dashboard/server.py)
    python -m core check SPEC.json [--json]      pre-flight report; exit 1 if it doesn't build
    python -m core train SPEC.json --out DIR     train headless: model.keras (end to end), stack.keras, data.json, ...
    python -m core inspect FILE                  a model or data file, loaded as an upload is
    python -m core datasets                      the built-in datasets
    python -m core runs start SPEC.json          queue a run (a worker process trains it)
    python -m core runs list | show ID [--json] | stop ID | resume ID | delete ID
    python -m core devices [--json]              the GPUs, how many runs train at once, what Keras sees
    python -m core predict (RUN_ID | MODEL.keras) DATA.(csv|npz) [--out predictions.csv]
    python -m core export RUN_ID --format onnx|saved_model|litert [--out PATH]
    python -m core evaluate RUN_ID [--ablation] [--json]   validation scores; which member carries the stack
    python -m core mlflow RUN_ID [--tracking-uri URI] [--experiment NAME]   log a run to MLflow
    python -m core sweep SPEC.json [--trials N] | --study NAME [--storage URL]   Optuna search, trials as runs

`train` and `runs start` take the spec's device settings as flags: --distribution
none|data_parallel|multi_host, --devices N, --cpu, --coordinator HOST:PORT,
--num-processes N, --process-id K, --mixed-precision, --xla.

TensorFlow's start-up lines (oneDNN, CUDA drivers) are kept off the terminal: set
TF_CPP_MIN_LOG_LEVEL=0 to see them. Workers write theirs to the run's worker.log.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
from pathlib import Path
from typing import Iterator

from core import predict
from core.export import cli as export_cli
from core.processes import PROJECT_ROOT
from core.runs import cli as device_cli
from core.runs.store import RunNotFound, RunStoreError
from core.spec import GRAPH_MODE, SpecError, load_spec
from core.spec.shapes import format_shape
from core.storage.paths import shipped_file
from core.sweeps import cli as sweep_cli
from core.tracking import cli as tracking_cli
from core.training import cli as evaluate_cli


def _fail(message: str) -> int:
    print(message, file=sys.stderr)
    return 1


# -- TensorFlow's start-up lines --------------------------------------------------------------
# TensorFlow's libraries log through absl before absl's logging is initialized, and such
# lines ("oneDNN custom operations are on", "Could not find cuda drivers", "failed call to
# cuInit") go straight to file descriptor 2 whatever TF_CPP_MIN_LOG_LEVEL says. So the
# CLI imports Keras, and lets TensorFlow probe its devices, with descriptor 2 pointed at a
# temporary file, then passes on what is not such a line (a Python warning, a traceback).
# "I0000 00:00:1796118720.318562    5878 port.cc:153] oneDNN custom operations are on. ..."
NATIVE_LOG_LINE = re.compile(r"^([IWEF])\d{4} [\d:.]+\s+\d+ \S+:\d+\] ")
ABSL_PREAMBLE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"
SEVERITIES = "IWEF"  # TF_CPP_MIN_LOG_LEVEL 0-3 hides the severities before its own


def _start_up_threshold() -> int:
    """Index in SEVERITIES of the least severe start-up line to show.

    TF_CPP_MIN_LOG_LEVEL as set (core sets 2 unless the user did): 0 shows everything, 1
    hides INFO. From 2 on the start-up errors go too: they are about devices TensorFlow
    will not use (a CUDA build on a machine without a GPU), and errors that matter reach
    the user as exceptions. FATAL lines always show.
    """
    try:
        level = int(os.environ.get("TF_CPP_MIN_LOG_LEVEL", "0"))
    except ValueError:  # TensorFlow reads a value it cannot parse as 0
        level = 0
    return 3 if level >= 2 else max(level, 0)


def _shown(line: str, threshold: int) -> bool:
    if line.rstrip("\n") == ABSL_PREAMBLE:
        return threshold <= SEVERITIES.index("W")
    match = NATIVE_LOG_LINE.match(line)
    return match is None or SEVERITIES.index(match.group(1)) >= threshold


@contextlib.contextmanager
def _start_up_lines_filtered() -> Iterator[None]:
    """Inside, whatever writes to file descriptor 2 is held back; on exit, all but the
    native start-up lines below `_start_up_threshold()` is written to stderr."""
    threshold = _start_up_threshold()
    if threshold == 0:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            lines = held.read().decode("utf-8", errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if _shown(line, threshold)))
            sys.stderr.flush()


def _import_keras() -> None:
    """Import Keras (and TensorFlow) and let it find its devices, start-up lines filtered."""
    with _start_up_lines_filtered():
        import keras

        if keras.backend.backend() == "tensorflow":
            from core.training.backend import accelerators

            accelerators()  # TensorFlow probes for GPUs once, and logs the probe (cuInit)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _print_graph(spec, report) -> None:
    """A graph's check: one row per node (what it is, its output, its parameters), then one
    row per edge (the shape on it, what its target accepts, whether it fits)."""
    members = {member.name: member for member in report.members}
    rows = [["node", "kind", "output", "params", "trainable"]]
    for node in spec.graph.nodes if spec.graph is not None else ():
        what = node.kind
        if node.kind == "member" and node.member is not None:
            what = f"member ({node.member.template or node.member.source})"
        elif node.kind == "merge":
            what = f"merge ({node.merge})"
        elif node.kind == "adapter":
            what = f"adapter ({node.adapter_spec().label()})"
        shape = report.node_shapes.get(node.id)
        member = members.get(node.id)
        rows.append([node.id, what, format_shape(shape) if shape is not None else "-",
                     f"{member.total_params:,}" if member else "", f"{member.trainable_params:,}" if member else ""])
    print(_table(rows))
    rows = [["edge", "shape", "accepts", "fits"]]
    for edge in report.edges:
        fits = "yes" if edge.ok else "no"
        if edge.ok and edge.message:  # auto adapters inserted a fix there
            fits = f"yes ({edge.message.rstrip('.')})"
        rows.append([f"{edge.source} -> {edge.target}", format_shape(edge.shape), edge.accepts or "-", fits])
    print(_table(rows))


def cmd_check(args) -> int:
    spec = load_spec(args.spec)
    _import_keras()
    from core.build.stacking import check

    report = check(spec)
    if args.json:
        print(json.dumps({"name": spec.name, **report.to_dict()}, indent=2))
        return 0 if report.ok else 1
    data = spec.dataset.name if spec.dataset.source == "builtin" else spec.dataset.path
    print(f"Stack '{spec.name}' ({spec.mode}) on {data}: "
          f"input {format_shape(report.input_shape)} -> output {format_shape(report.output_shape)}")
    if spec.mode == GRAPH_MODE:
        _print_graph(spec, report)
    else:
        rows = [["member", "source", "input", "output", "params", "trainable"]]
        for member in report.members:
            rows.append([member.name + (" (head)" if member.role == "head" else ""), member.source,
                         format_shape(member.input_shape), format_shape(member.output_shape),
                         f"{member.total_params:,}", f"{member.trainable_params:,}"])
        print(_table(rows))
        for adapter in report.adapters:
            before = f" before '{adapter.before}'" if adapter.before else ""
            print(f"adapter: {adapter.kind} after '{adapter.after}'{before}")
    print(f"Total params: {report.total_params:,} (trainable {report.trainable_params:,}, "
          f"non-trainable {report.non_trainable_params:,})")
    for warning in report.warnings:
        print(f"warning: {warning}")
    for problem in report.problems:
        print(f"problem: {problem.message}", file=sys.stderr)
    print("OK" if report.ok else f"Does not build: {len(report.problems)} problem(s).")
    return 0 if report.ok else 1


def _epoch_line(event, epochs: int) -> str:
    metrics = "  ".join(f"{k} {v:.4f}" for k, v in event.metrics.items())
    return f"epoch {event.epoch}/{epochs} [{event.phase}]  {metrics}  ({event.duration_s:.1f} s)"


def cmd_train(args) -> int:
    spec = device_cli.with_train_flags(load_spec(args.spec), args)
    _import_keras()
    from core.build.stacking import member_files
    from core.export.artifacts import export_run
    from core.runs import device_label
    from core.spec.events import EpochEnd, PhaseChange, RunEnded, RunStarted
    from core.training.loop import train

    stop = {"requested": False}

    def on_interrupt(signum, frame):
        if stop["requested"]:
            raise KeyboardInterrupt
        stop["requested"] = True
        print("Stopping after the current batch (Ctrl-C again to abort)...", file=sys.stderr)

    signal.signal(signal.SIGINT, on_interrupt)

    def sink(event) -> None:
        if isinstance(event, RunStarted) and event.devices:
            share = (f" = {len(event.devices)} × {event.batch_size // len(event.devices)} per device"
                     if len(event.devices) > 1 and event.batch_size % len(event.devices) == 0 else "")
            print(f"training on {device_label(event.devices)} ({', '.join(event.devices)}), "
                  f"{spec.train.distribution.describe()}, batch {event.batch_size}{share}", flush=True)
        elif isinstance(event, EpochEnd):
            print(_epoch_line(event, spec.train.epochs), flush=True)
        elif isinstance(event, PhaseChange):
            print(f"fine-tune from epoch {event.epoch}: {len(event.unfrozen_layers)} layer(s) unfrozen, "
                  f"learning rate {event.learning_rate:g}, trainable params {event.trainable_params:,}", flush=True)
        elif isinstance(event, RunEnded) and event.reason:
            print(f"{event.status}: {event.reason}", file=sys.stderr, flush=True)

    result = train(spec, sink=sink, should_stop=lambda: stop["requested"])
    paths = export_run(result.model, spec, result.history, Path(args.out),
                       member_sources=member_files(spec), compile_args=result.compile_args,
                       prepared=result.prepared)
    for path in paths.values():
        print(f"wrote {path}")
    return {"finished": 0, "stopped": 130, "failed": 1}[result.status]


def cmd_inspect(args) -> int:
    path = Path(args.file)
    suffix = path.suffix.lower()
    if suffix in (".keras", ".h5", ".hdf5"):
        from core.model_files.loading import ModelFileRefused, summarize_model_file

        try:
            # Its config checks import Keras (they ask it which classes are its own), unless
            # the file is refused before; the file is loaded in a child, whose lines it keeps.
            with _start_up_lines_filtered():
                summary = summarize_model_file(str(path))
        except ModelFileRefused as error:
            return _fail(str(error))
        print(json.dumps(summary.to_dict(), indent=2) if args.json else summary.describe())
        return 0
    if suffix in (".csv", ".npz"):
        from core.data import DataError, load_dataset
        from core.spec import DatasetSpec

        try:
            dataset = load_dataset(DatasetSpec(source=suffix[1:], path=str(path), target=args.target))
        except (DataError, OSError) as error:
            return _fail(str(error))
        print(json.dumps(dataset.summary(), indent=2))
        return 0
    return _fail(f"Cannot inspect '{path.name}': expected a .keras, .h5, .csv or .npz file.")


def cmd_datasets(args) -> int:
    from core.data import list_builtins

    builtins = list_builtins()
    if args.json:
        print(json.dumps(builtins, indent=2))
        return 0
    rows = [["name", "task", "samples", "input shape", "classes", "description"]]
    for info in builtins:
        rows.append([info["name"], info["task"], str(info["num_samples"]), str(tuple(info["input_shape"])),
                     str(info["num_classes"] or "-"), info["title"]])
    print(_table(rows))
    return 0


def cmd_runs(args) -> int:
    from core import runs

    if args.action != "start" and device_cli.train_flags_given(args):
        return _fail(f"{', '.join(device_cli.train_flags_given(args))}: only for `runs start` (and `train`).")
    if args.action == "start":
        if args.target is None:
            return _fail("`runs start` needs a SPEC.json.")
        run_id = runs.start(device_cli.with_train_flags(load_spec(args.target), args))
        print(run_id)
        if args.wait:
            run = runs.wait(run_id, timeout_s=24 * 3600)
            print(f"{run.status}{': ' + run.error if run.error else ''}")
            return 0 if run.status == "finished" else 1
        return 0
    if args.action == "list":
        runs.reconcile()
        rows = [["id", "name", "mode", "status", "epochs", "best", "devices", "samples/s", "duration"]]
        for run in runs.list_runs():
            best = f"{run.best['name']} {run.best['value']:.4f}" if run.best else "-"
            duration = f"{run.duration_s:.0f} s" if run.duration_s is not None else "-"
            epochs = f"{run.epochs_done}/{run.epochs_total}"
            speed = f"{run.samples_per_s:,.0f}" if run.samples_per_s is not None else "-"
            rows.append([run.id, run.name, run.mode, run.status, epochs, best, device_cli.where(run), speed, duration])
        print(_table(rows) if len(rows) > 1 else "No runs yet. Start one with `python -m core runs start SPEC.json`.")
        return 0
    if args.target is None:
        return _fail(f"`runs {args.action}` needs a run id.")
    if args.action == "show":
        runs.reconcile()
        run = runs.get(args.target)
        rows = runs.metrics(run.id)
        info = {**run.to_dict(), "last_metrics": rows[-1]["metrics"] if rows else {},
                "artifacts": {name: str(path) for name, path in runs.artifacts(run.id).items()},
                "folder": str(run.folder)}
        if args.json:
            print(json.dumps(info, indent=2))
        else:
            shown = {**info, "devices": device_cli.where(run, names=True), "gpus": ",".join(map(str, run.gpus)),
                     "samples_per_s": f"{run.samples_per_s:,.0f}" if run.samples_per_s is not None else None}
            for key in ("id", "name", "mode", "status", "error", "epochs_done", "epochs_total", "worker_pid",
                        "strategy", "gpus", "devices", "batch_size", "train_samples", "samples_per_s", "best",
                        "last_metrics", "folder", "artifacts"):
                if shown.get(key) not in (None, "", "-", {}):
                    print(f"{key}: {shown[key]}")
        return 0
    action = {"stop": runs.stop, "resume": runs.resume, "delete": runs.delete}[args.action]
    result = action(args.target)
    print(f"{args.target}: {result.status if result is not None else 'deleted'}")
    return 0


def cmd_dashboard(args) -> int:
    """Serve the dashboard with Streamlit, with the project's Streamlit settings."""
    import subprocess

    app = PROJECT_ROOT / "dashboard" / "server.py"  # the pages (app.py) and the live route
    command = [sys.executable, "-m", "streamlit", "run", str(app), *args.streamlit_args]
    # Streamlit reads .streamlit/config.toml from its working directory.
    return subprocess.call(command, cwd=shipped_file(".streamlit/config.toml").parents[1])


def _with_keras(command):
    """`command`, with Keras imported first and TensorFlow's start-up lines kept off the terminal
    (`--json` answers reserve stdout themselves; the filtered lines went to stderr anyway)."""

    def run(args) -> int:
        _import_keras()
        return command(args)

    return run


def _record_artifact(run_id: str, name: str, path: Path) -> None:
    """An exported file in the run's folder is listed with the run's other downloads."""
    from core import runs

    runs.current_store().add_artifact(run_id, name, path)


def make_parser() -> argparse.ArgumentParser:
    program = "stacklab" if Path(sys.argv[0]).name == "stacklab" else "python -m core"
    parser = argparse.ArgumentParser(prog=program, description="StackLab: stacked Keras models.")
    commands = parser.add_subparsers(dest="command", required=True)
    dashboard = commands.add_parser("dashboard", help="serve the dashboard on http://localhost:8501; other "
                                                      "options go to `streamlit run`, e.g. --server.port 8600")
    dashboard.set_defaults(run=cmd_dashboard)
    check = commands.add_parser("check", help="pre-flight report of a spec (no training)")
    check.add_argument("spec")
    check.add_argument("--json", action="store_true", help="print the report as JSON")
    check.set_defaults(run=cmd_check)
    train = commands.add_parser("train", help="train a spec headless and write its artifacts")
    train.add_argument("spec")
    train.add_argument("--out", required=True, help="folder for model.keras, history.csv, spec.json, stack.py")
    train.add_argument("--epochs", type=int, help="override the spec's epoch count")
    device_cli.add_train_flags(train)
    train.set_defaults(run=cmd_train)
    inspect = commands.add_parser("inspect", help="load a model or data file as an upload would be")
    inspect.add_argument("file")
    inspect.add_argument("--target", help="target column, for a CSV file")
    inspect.add_argument("--json", action="store_true")
    inspect.set_defaults(run=cmd_inspect)
    datasets = commands.add_parser("datasets", help="list the built-in datasets")
    datasets.add_argument("--json", action="store_true")
    datasets.set_defaults(run=cmd_datasets)
    run_commands = commands.add_parser("runs", help="start, list, show, stop, resume or delete training runs")
    run_commands.add_argument("action", choices=["start", "list", "show", "stop", "resume", "delete"])
    run_commands.add_argument("target", nargs="?", help="SPEC.json for start, a run id otherwise")
    run_commands.add_argument("--json", action="store_true", help="show: print JSON")
    run_commands.add_argument("--wait", action="store_true", help="start: wait until the run ends")
    device_cli.add_train_flags(run_commands)
    run_commands.set_defaults(run=cmd_runs)
    device_cli.add_devices_parser(commands, import_keras=_import_keras)
    for command in (predict.add_parser(commands), export_cli.add_parser(commands, record_artifact=_record_artifact)):
        command.set_defaults(run=_with_keras(command.get_default("run")))
    evaluate_cli.add_parser(commands, import_keras=_import_keras)
    tracking_cli.add_parser(commands)
    sweep_cli.add_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = make_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "dashboard":  # only the dashboard passes options on (to Streamlit)
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    args.streamlit_args = extra
    try:
        return args.run(args)
    except (SpecError, ValueError, OSError, RunNotFound, RunStoreError) as error:
        # Bad input (a spec, a file, a stack that does not fit): one clear message, no traceback.
        return _fail(f"error: {error}")


if __name__ == "__main__":
    sys.exit(main())
