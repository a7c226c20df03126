"""The content-addressed upload store under `$STACKLAB_HOME/uploads/`.

An uploaded file is stored once, named by the SHA-256 of its bytes, and specs refer to it
as "sha256:<hex>". A run (and its resume, days later) finds the file after the browser
session that uploaded it is gone. No Keras import.

Example:
    >>> ref = store_bytes(b"x,y\\n1,0\\n", "data.csv")
    >>> resolve(ref).read_bytes()
    b'x,y\\n1,0\\n'
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from core.storage.atomic import write_bytes_atomically, write_text_atomically
from core.storage.paths import stacklab_home, uploads_dir  # noqa: F401  (re-exported)

REF_PATTERN = re.compile(r"^sha256:([0-9a-f]{64})$")
# A .zip is a folder of class folders of images (core.data.image_folders inspects it when it is
# read; storing it only hashes and writes its bytes: nothing is extracted).
ALLOWED_SUFFIXES = (".keras", ".h5", ".hdf5", ".csv", ".npz", ".zip")


def _suffix(filename: str) -> str:
    suffix = Path(filename).suffix.lower()
    if suffix not in ALLOWED_SUFFIXES:
        raise ValueError(
            f"Cannot store '{filename}': files ending in {suffix or '(no suffix)'} are not "
            f"accepted. Upload one of: {', '.join(ALLOWED_SUFFIXES)}."
        )
    return suffix


def store_bytes(data: bytes, filename: str) -> str:
    """Store `data` once under its hash and return its reference "sha256:<hex>".

    The original file name is kept beside it (for display) and its suffix is kept on the
    stored file, because Keras picks the loader from the suffix.

    Raises:
        ValueError: the file name's suffix is not an accepted upload type.
    """
    suffix = _suffix(filename)
    digest = hashlib.sha256(data).hexdigest()
    target = uploads_dir() / f"{digest}{suffix}"
    if not target.exists():
        # Never half a file under the hash, even if the server dies while writing.
        write_bytes_atomically(target, data)
    meta = target.with_name(f"{digest}.json")
    if not meta.exists():
        write_text_atomically(meta, json.dumps({"filename": Path(filename).name, "size": len(data)}))
    return f"sha256:{digest}"


def is_ref(value: str | None) -> bool:
    return bool(value) and REF_PATTERN.match(value) is not None


def resolve(ref_or_path: str) -> Path:
    """The file a spec's reference points to: an upload "sha256:<hex>" or a plain path.

    Raises:
        FileNotFoundError: the upload or the file does not exist, naming what was looked for.
    """
    match = REF_PATTERN.match(ref_or_path)
    if match is None:
        path = Path(ref_or_path).expanduser()
        if not path.exists():
            raise FileNotFoundError(f"File '{ref_or_path}' does not exist.")
        return path
    digest = match.group(1)
    for candidate in uploads_dir().glob(f"{digest}.*"):
        if candidate.suffix not in (".json", ".tmp"):
            return candidate
    raise FileNotFoundError(
        f"Upload {ref_or_path} is not in the upload store ({uploads_dir()}). "
        f"Upload the file again, or set STACKLAB_HOME to the home it was uploaded to."
    )


def display_name(ref_or_path: str) -> str:
    """The original file name of an upload, or the file name of a path."""
    match = REF_PATTERN.match(ref_or_path or "")
    if match is None:
        return Path(ref_or_path or "").name
    meta = uploads_dir() / f"{match.group(1)}.json"
    try:
        return json.loads(meta.read_text())["filename"]
    except (OSError, ValueError, KeyError):
        return ref_or_path[:15] + "…"
