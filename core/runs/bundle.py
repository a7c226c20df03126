"""A run's files as one zip: model, script, spec, history and member files. No Keras import.

`run_bundle(run_id)` gives the dashboard's "Download everything (.zip)" its file name and
bytes. The archive holds one folder, `<run name>-<run id>/`, with the files a run exports:

    model.keras    the end-to-end model: raw inputs, preprocessing layers, the trained stack
    stack.keras    the trained stack alone, on encoded inputs (runs from before it: absent)
    data.json      the data card: class names, inputs, vocabularies, statistics (idem)
    stack.py       the Keras script that rebuilds it; it finds members/ next to itself,
                   so `python stack.py` runs from any working directory once unpacked
    spec.json      the stack as data (`python -m core train spec.json --out DIR`)
    history.csv    one row per epoch
    members/*      the model files stack.py loads (uploaded or earlier-run members)

The archive is built in memory (a download button needs bytes), so it is bounded:
`max_bundle_bytes()` (1 GiB unless `STACKLAB_MAX_BUNDLE_BYTES` says otherwise) for the
files together, checked before anything is read.

Example:
    >>> file_name, data = run_bundle("20260101-120000-abc123")
    >>> file_name
    'iris_stack-20260101-120000-abc123.zip'
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path

from core import runs
from core.limits import positive_from_env
from core.runs.store import RunNotFound

__all__ = ["BUNDLE_FILES", "MAX_BUNDLE_BYTES", "OPTIONAL_BUNDLE_FILES", "bundle_name", "max_bundle_bytes",
           "run_bundle"]

BUNDLE_FILES = ("model.keras", "stack.py", "spec.json", "history.csv")
# Written by every run since the end-to-end export; a run from before has only the files above.
OPTIONAL_BUNDLE_FILES = ("stack.keras", "data.json")
MEMBER_FILE = re.compile(r"^members/[A-Za-z0-9_][\w.-]*$", re.ASCII)  # as core.export.artifacts names them
MAX_BUNDLE_BYTES = 2**30
ENV_MAX_BUNDLE_BYTES = "STACKLAB_MAX_BUNDLE_BYTES"
# Model files are zip archives or HDF5 weights already: deflating them again costs seconds
# for a few percent.
STORED_SUFFIXES = (".keras", ".h5", ".hdf5", ".zip")


def max_bundle_bytes() -> int:
    """The bound on a bundle's files together: `STACKLAB_MAX_BUNDLE_BYTES`, default 1 GiB.

    Raises:
        ValueError: the variable is not a positive whole number of bytes.
    """
    return positive_from_env(ENV_MAX_BUNDLE_BYTES, MAX_BUNDLE_BYTES, whole=True)


def bundle_name(run_name: str, run_id: str) -> str:
    """The bundle's folder name, `<run name>-<run id>`, safe as a file name anywhere.

    Example:
        >>> bundle_name("my stack/v2", "20260101-120000-abc123")
        'my_stack_v2-20260101-120000-abc123'
    """
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", run_name).strip("._-")[:64] or "run"
    return f"{stem}-{run_id}"


def run_bundle(run_id: str, max_bytes: int | None = None) -> tuple[str, bytes]:
    """A run's exported files as one zip archive, for download.

    Args:
        run_id: the run.
        max_bytes: the bound on the files together; `max_bundle_bytes()` if None.

    Returns:
        (file name, archive bytes): the name is `<run name>-<run id>.zip`, and the archive
        holds the folder `<run name>-<run id>/` with model.keras, stack.py, spec.json,
        history.csv, stack.keras and data.json (when the run wrote them) and members/*.

    Raises:
        ValueError: there is no such run, it is still active, its files were never
            written (it failed before training) or are missing, or they are larger than
            the bound together.
    """
    try:
        run = runs.get(run_id)
    except RunNotFound as error:
        raise ValueError(str(error)) from None
    if run.is_active:
        raise ValueError(f"Run '{run_id}' is {run.status}: its files are written when it ends. Wait for it "
                         f"to finish, or stop it, then download.")
    files = _bundle_files(run_id, run.folder)
    missing = [name for name in BUNDLE_FILES if name not in files]
    if missing:
        raise ValueError(
            f"Run '{run_id}' ({run.status}) has no {', '.join(missing)}: its files were not written "
            f"(a run that fails before training exports nothing{f': {run.error}' if run.error else ''}). "
            f"Resume it or start it again.")
    limit = max_bundle_bytes() if max_bytes is None else max_bytes
    sizes = {name: path.stat().st_size for name, path in files.items()}
    if sum(sizes.values()) > limit:
        largest = max(sizes, key=sizes.get)
        raise ValueError(
            f"The files of run '{run_id}' are {sum(sizes.values()):,} bytes together (the largest, {largest}, "
            f"{sizes[largest]:,}), over the bundle limit of {limit:,} bytes. Download them one by one, copy "
            f"them from {run.folder}, or raise {ENV_MAX_BUNDLE_BYTES}.")
    folder = bundle_name(run.name, run_id)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        extra = [name for name in OPTIONAL_BUNDLE_FILES if name in files]
        known = (*BUNDLE_FILES, *OPTIONAL_BUNDLE_FILES)
        for name in [*BUNDLE_FILES, *extra, *sorted(n for n in files if n not in known)]:
            stored = Path(name).suffix.lower() in STORED_SUFFIXES
            archive.write(files[name], f"{folder}/{name}",
                          compress_type=zipfile.ZIP_STORED if stored else zipfile.ZIP_DEFLATED)
    return f"{folder}.zip", buffer.getvalue()


def _bundle_files(run_id: str, folder: Path) -> dict[str, Path]:
    """The run's artifacts that go into the bundle, by their path in it; each inside the run folder."""
    inside = folder.resolve()
    files = {}
    for name, path in runs.artifacts(run_id).items():
        if name not in BUNDLE_FILES and name not in OPTIONAL_BUNDLE_FILES and not MEMBER_FILE.match(name):
            continue  # other artifacts (evaluations, exports in other formats) are not part of it
        resolved = Path(path).resolve()
        if not resolved.is_relative_to(inside) or not resolved.is_file():
            raise ValueError(f"Artifact {name} of run '{run_id}' is {path}, not a file in the run folder "
                             f"{folder}; the run store may be damaged. Start the run again.")
        files[name] = resolved
    return files
