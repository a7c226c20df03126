"""The draft stack, autosaved: one StackSpec in `$STACKLAB_HOME/draft.json`, with one level of undo.

StackLab is a single-user tool, so there is one draft: every browser tab edits the same one,
and a reload or a new tab finds it where the last edit left it. Each save bumps a revision
number; a tab that holds an older revision than the file adopts the file's draft (it was
edited in another tab). Replacing the draft as a whole (import, reset, a new transfer stack)
keeps the draft it replaced as `previous`, which `undo` brings back once.

Nothing is lost: the file is written atomically, and a draft file that this StackLab cannot
read (damaged, or from a future schema) is moved aside to `draft-unreadable-<time>.json`
instead of being overwritten. No Keras import.

Example:
    >>> save(spec)                                  # an edit
    >>> save(other, replaces=True, reason="imported 'b.json'")
    >>> load().previous == spec
    True
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

from core.spec import SpecError, StackSpec
from core.storage.atomic import write_text_atomically
from core.storage.paths import stacklab_home

DRAFT_FILE = "draft.json"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class SavedDraft:
    spec: StackSpec
    revision: int  # how many times the draft was saved; newer files win over a tab's copy
    previous: StackSpec | None = None  # the draft the last replacement replaced (one level of undo)
    replaced_by: str = ""  # what replaced it, e.g. "imported 'fusion.json'", for the undo button


def draft_path() -> Path:
    return stacklab_home() / DRAFT_FILE


def stamp() -> tuple[int, int] | None:
    """(modification time in ns, size) of the draft file, or None if there is none: a cheap way
    to tell whether it changed since it was last read."""
    try:
        status = os.stat(draft_path())
    except FileNotFoundError:
        return None
    return status.st_mtime_ns, status.st_size


def load() -> SavedDraft | None:
    """The saved draft, or None when there is none yet.

    Raises:
        SpecError: the file could not be read as a draft; it was moved aside (the message
            says where), so the next save does not overwrite it.
    """
    path = draft_path()
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(record, dict) or record.get("format") != FORMAT_VERSION:
            raise SpecError(f"its format is {record.get('format') if isinstance(record, dict) else None!r}, "
                            f"this StackLab reads {FORMAT_VERSION}")
        previous = record.get("previous")
        # A draft may be half-finished (a value out of range is the pre-flight check's to report).
        return SavedDraft(spec=StackSpec.from_dict(record["spec"], check_values=False),
                          revision=int(record["revision"]),
                          previous=StackSpec.from_dict(previous, check_values=False) if previous is not None else None,
                          replaced_by=str(record.get("replaced_by", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError, RecursionError) as error:  # SpecError is a ValueError
        aside = path.with_name(f"draft-unreadable-{time.strftime('%Y%m%d-%H%M%S')}.json")
        os.replace(path, aside)
        raise SpecError(f"The saved draft could not be read ({error}); it was kept as {aside} and the "
                        f"default stack is shown instead.") from None


def save(spec: StackSpec, *, replaces: bool = False, reason: str = "", current: SavedDraft | None = None
         ) -> SavedDraft:
    """Save `spec` as the draft.

    Args:
        spec: the new draft.
        replaces: `spec` replaces the draft as a whole: the draft saved so far becomes
            `previous`, for one level of undo. An ordinary edit keeps the earlier `previous`.
        reason: what replaced it ("imported 'b.json'"), shown with the undo button.
        current: the saved draft if the caller has just read it (saves reading it again).

    Returns:
        What was saved.
    """
    if current is None:
        try:
            current = load()
        except SpecError:
            current = None  # moved aside by load(): nothing to keep as previous
    revision = (current.revision if current else 0) + 1
    if replaces:
        previous, replaced_by = (current.spec if current else None), reason
    else:
        previous, replaced_by = (current.previous, current.replaced_by) if current else (None, "")
    saved = SavedDraft(spec=spec, revision=revision, previous=previous, replaced_by=replaced_by)
    _write(saved)
    return saved


def undo() -> SavedDraft:
    """Bring back the draft that the last replacement replaced; there is no second undo.

    Raises:
        ValueError: there is nothing to undo.
    """
    current = load()
    if current is None or current.previous is None:
        raise ValueError("There is no replaced draft to bring back: only the last replacement can be undone.")
    saved = SavedDraft(spec=current.previous, revision=current.revision + 1)
    _write(saved)
    return saved


def _write(saved: SavedDraft) -> None:
    record = {"format": FORMAT_VERSION, "revision": saved.revision, "saved_at": time.time(),
              "spec": saved.spec.to_dict(), "replaced_by": saved.replaced_by,
              "previous": saved.previous.to_dict() if saved.previous is not None else None}
    write_text_atomically(draft_path(), json.dumps(record, indent=1) + "\n")
