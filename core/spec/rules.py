"""Rules of a stack that need no Keras: which layers a trainability rule selects, ...

Both sides use these: `core.build` when it builds a stack, the dashboard when it shows what
a rule or an edit will do, so the two never disagree.
"""

from __future__ import annotations

import re


def compile_layer_pattern(pattern: str, where: str = "") -> re.Pattern:
    """A LayerRule's `layers` regex, compiled.

    Raises:
        ValueError: not a valid regular expression; the message starts with `where` if given.
    """
    try:
        return re.compile(pattern)
    except re.error as error:
        prefix = f"{where}: " if where else ""
        raise ValueError(f"{prefix}'{pattern}' is not a valid regular expression ({error}).") from None


def layer_pattern_matches(pattern: re.Pattern, path: str) -> bool:
    """Whether a LayerRule's regex selects the layer at `path` ("member/.../layer", relative to
    its member): it fully matches the path or the layer's own name."""
    return bool(pattern.fullmatch(path) or pattern.fullmatch(path.rsplit("/", 1)[-1]))
