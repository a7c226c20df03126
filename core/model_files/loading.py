"""Safe loading of user model files (.keras, .h5): inspect first, then load.

Every uploaded model file is hostile until checked. Loading goes in three steps, each on a
private copy of the file's bytes (so what was checked is exactly what is loaded):

1. Static inspection, no Keras deserialization: archive members, paths and declared sizes
   of a `.keras` zip; links, storage and declared sizes of HDF5 objects; then the model
   config walked recursively: only Keras's own classes and functions, no Lambda, no custom
   or unknown classes, no layers that read other files.
2. Verification: `keras.saving.load_model(safe_mode=True, compile=False)` in a child
   process (`python -m core.model_files.loading --verify PATH`) under a time and a memory limit,
   which answers with a plain-data summary. Passing files are remembered by SHA-256.
3. Only then, for `load_model_file`, the same load in this process.

Each step has its module: `core.model_files.container_checks` (the archive or HDF5 container),
`core.model_files.config_checks` (the model config), `core.model_files.child` (the child process),
with `LoadLimits` and `ModelFileRefused` in `core.model_files.limits` and the plain-data
reports in `core.model_files.summary`. This module holds the public API and imports them all.

Keras is imported inside functions, not at the top: the verifying child must set its
memory limit before TensorFlow maps its memory.

Example:
    >>> summary = summarize_model_file("sha256:1f0c...")   # or a path; raises ModelFileRefused
    >>> print(summary.describe())
    >>> encoder = cut_model(load_model_file("encoder.keras"), "flatten")
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

from core.model_files import child
from core.model_files.container_checks import MODEL_FORMATS, check_model_file, copy_regular_file
from core.model_files.limits import LoadLimits, ModelFileRefused, first_line, refusals_for, refuse
from core.model_files.summary import ModelFileReport, ModelSummary, top_level_layers
from core.storage import uploads

if TYPE_CHECKING:
    import keras

__all__ = [
    "LoadLimits", "ModelFileRefused", "ModelFileReport", "ModelSummary",
    "inspect_model_file", "summarize_model_file", "load_model_file", "cut_model", "top_level_layers",
    "how_to_make",
]
# A folder whose files are made by scripts rather than kept in git (examples/) says which
# script makes which file in this file: [files] "pretrained_model.keras" = "make_pretrained.py".
MADE_BY_FILE = "made_by.toml"


def _output_in_graph(model: "keras.Model", layer) -> object:
    """The output tensor of `layer` as `model`'s graph uses it.

    For a nested model (a member of a saved stack), `layer.output` is the output of its own
    inner graph, which is not connected to `model`'s inputs; the tensor `model` uses comes
    from the node that calls the nested model inside `model`.
    """
    graph = getattr(model, "_functional", None) or model  # a Sequential keeps its graph there
    by_depth = getattr(graph, "_nodes_by_depth", None) or {}
    in_graph = {id(node) for nodes in by_depth.values() for node in nodes}
    for node in layer._inbound_nodes:
        if id(node) in in_graph and len(node.outputs) == 1:
            return node.outputs[0]
    return layer.output


# ---------------------------------------------------------------------------------------
# Public API


def inspect_model_file(path_or_ref: str | os.PathLike,
                       limits: LoadLimits | None = None) -> ModelFileReport:
    """Check a model file statically, without deserializing anything with Keras.

    Args:
        path_or_ref: an upload reference "sha256:<hex>" or a path to a .keras/.h5 file.
        limits: bounds to apply; default `LoadLimits.from_env()`.

    Returns:
        A `ModelFileReport` (format, size, SHA-256, layer classes, declared weight bytes).

    Raises:
        ModelFileRefused: the file breaks a rule; the message says which and what to do.
        FileNotFoundError: the file or upload does not exist.

    Example:
        >>> inspect_model_file("model.keras").layer_classes
        ('InputLayer', 'Dense')
    """
    limits = limits or LoadLimits.from_env()
    with _snapshot(path_or_ref, limits) as snapshot:
        return snapshot.report


def summarize_model_file(path_or_ref: str | os.PathLike,
                         limits: LoadLimits | None = None) -> ModelSummary:
    """Inspect a model file, then load it in a child process under limits and summarize it.

    Nothing from the file is deserialized in this process. A file that passed before (same
    bytes, same limits) is not loaded again.

    Args:
        path_or_ref: an upload reference "sha256:<hex>" or a path to a .keras/.h5 file.
        limits: bounds to apply; default `LoadLimits.from_env()`.

    Returns:
        A `ModelSummary`: the static report, shapes, parameter counts, the layer table.

    Raises:
        ModelFileRefused: a static check failed, or Keras refused the file, or the loader
            process crashed, ran out of time or of memory (named in the message).
        FileNotFoundError: the file or upload does not exist.

    Example:
        >>> print(summarize_model_file("model.keras").describe())
    """
    limits = limits or LoadLimits.from_env()
    with _snapshot(path_or_ref, limits) as snapshot:
        return _verified_summary(snapshot, limits)


def load_model_file(path_or_ref: str | os.PathLike,
                    limits: LoadLimits | None = None) -> "keras.Model":
    """Inspect, verify in a child process, then load a user model file here, uncompiled.

    Args:
        path_or_ref: an upload reference "sha256:<hex>" or a path to a .keras/.h5 file.
        limits: bounds to apply; default `LoadLimits.from_env()`.

    Returns:
        The `keras.Model`, loaded with `safe_mode=True, compile=False`.

    Raises:
        ModelFileRefused: see `summarize_model_file`.
        FileNotFoundError: the file or upload does not exist.

    Example:
        >>> model = load_model_file("sha256:1f0c...")
    """
    import keras

    limits = limits or LoadLimits.from_env()
    with _snapshot(path_or_ref, limits) as snapshot:
        _verified_summary(snapshot, limits)
        try:
            return keras.saving.load_model(snapshot.path, safe_mode=True, compile=False)
        except (ValueError, TypeError, OSError) as error:
            raise ModelFileRefused(snapshot.report.file_name, first_line(error)) from None


def cut_model(model: "keras.Model", layer_name: str, name: str | None = None) -> "keras.Model":
    """A model from `model`'s inputs up to and including its layer `layer_name`.

    The new model shares the layers (and weights) of `model`. A layer used more than once
    is cut at its first use (Keras's `layer.output`).

    Args:
        model: a Sequential or Functional model, e.g. from `load_model_file`.
        layer_name: the last layer to keep (a top-level layer, see `top_level_layers`).
        name: the new model's name; default "<model>_to_<layer>".

    Raises:
        ValueError: no such layer (the message lists the available ones), or `model` is not
            a Sequential or Functional model with symbolic inputs.

    Example:
        >>> features = cut_model(classifier, "flatten")
    """
    import keras

    names = [layer.name for layer in model.layers]
    if layer_name not in names:
        raise ValueError(
            f"Model '{model.name}' has no layer '{layer_name}'. "
            f"Available layers: {', '.join(names) or '(none)'}."
        )
    inputs = getattr(model, "inputs", None)
    if not inputs:
        raise ValueError(
            f"Cannot cut model '{model.name}': it has no symbolic inputs (a subclassed or "
            f"unbuilt model). Cut Sequential or Functional models."
        )
    try:
        output = _output_in_graph(model, model.get_layer(layer_name))
    except (AttributeError, ValueError) as error:
        raise ValueError(
            f"Cannot cut model '{model.name}' at layer '{layer_name}' ({first_line(error)}). "
            f"Cutting works for Sequential and Functional models."
        ) from None
    return keras.Model(inputs=inputs, outputs=output, name=name or f"{model.name}_to_{layer_name}")


def how_to_make(path: str | os.PathLike) -> str:
    """How to create the missing file at `path`, when its folder's made_by.toml names the
    script that makes it (the examples' pretrained model); "" otherwise.

    Example:
        >>> how_to_make("examples/pretrained_model.keras")
        'It is made by a script: run `python examples/make_pretrained.py` first.'
    """
    path = Path(path).expanduser()
    try:
        made_by = tomllib.loads((path.parent / MADE_BY_FILE).read_text(encoding="utf-8"))
        script = path.parent / made_by["files"][path.name]
    except (OSError, ValueError, KeyError, TypeError):  # no manifest, or it does not name this file
        return ""
    shown = os.path.relpath(script.absolute())
    return f"It is made by a script: run `python {script.absolute() if shown.startswith('..') else shown}` first."


def _resolve(text: str) -> Path:
    """The file behind a path or upload reference; a missing file says how to make it."""
    try:
        return uploads.resolve(text)
    except FileNotFoundError as missing:
        hint = "" if uploads.is_ref(text) else how_to_make(text)
        if not hint:
            raise
        raise FileNotFoundError(f"{missing} {hint}") from None


# ---------------------------------------------------------------------------------------
# The private copy that every step works on


@dataclass(frozen=True)
class _Snapshot:
    path: Path
    report: ModelFileReport


@contextlib.contextmanager
def _snapshot(path_or_ref: str | os.PathLike, limits: LoadLimits) -> Iterator[_Snapshot]:
    """Copy the file into a private folder, hash it, inspect it; refusals name the file."""
    text = os.fspath(path_or_ref)
    file_name = uploads.display_name(text)
    source = _resolve(text)
    with refusals_for(file_name):
        suffix = source.suffix.lower()
        if suffix not in MODEL_FORMATS:
            refuse(
                f"files ending in '{suffix or '(no suffix)'}' are not Keras model files; "
                f"save the model with model.save('model.keras') (or .h5) and upload that."
            )
        with tempfile.TemporaryDirectory(prefix="stacklab-model-") as folder:
            private = Path(folder) / f"model{suffix}"
            size, digest = copy_regular_file(source, private, limits)
            fmt = MODEL_FORMATS[suffix]
            facts = check_model_file(private, fmt, limits)
            report = ModelFileReport(file_name=file_name, format=fmt, size_bytes=size,
                                     sha256=digest, **facts)
            yield _Snapshot(path=private, report=report)


# ---------------------------------------------------------------------------------------
# Verification, remembered

# Summary fields of the files a child passed, by (sha256, format, limits): the same bytes
# under the same limits are not loaded in a child again.
_VERIFIED: dict[tuple[str, str, LoadLimits], dict] = {}


def _verified_summary(snapshot: _Snapshot, limits: LoadLimits) -> ModelSummary:
    report = snapshot.report
    key = (report.sha256, report.format, limits)
    if key not in _VERIFIED:
        _VERIFIED[key] = child.verify_in_child(snapshot.path, report.file_name, limits)
    return ModelSummary(file=report, **copy.deepcopy(_VERIFIED[key]))


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "--verify":
        print("usage: python -m core.model_files.loading --verify MODEL_FILE", file=sys.stderr)
        sys.exit(2)
    sys.exit(child.child_main(sys.argv[2]))
