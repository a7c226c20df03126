"""Python source text for the generated `stack.py`: literals, names and a black-like layout.

An expression is built as a tree of `Bracket`s (`opener item, item, ... closer`) and
`Call`s, and laid out only at the end: on one line when it fits in `LINE_WIDTH`, else one
item per line with black's trailing commas. Everything that comes from user files (model,
layer and member names) goes through `literal` or `prose`, so it cannot end a string, a
docstring or a comment early.

Example:
    >>> layout(Bracket("keras.layers.Dense(", ["4", 'name="dense"']), 4, "x = ")
    ['    x = keras.layers.Dense(4, name="dense")']
"""

from __future__ import annotations

import json
import keyword
import math
import re
import textwrap
from typing import Any, Callable, Mapping

LINE_WIDTH = 88
# Names the generated functions use for their own purposes; variables named after layers
# get a suffix instead.
RESERVED_NAMES = {"keras", "np", "sys", "Path", "HERE", "x", "inputs", "outputs", "model",
                  "source", "layer", "data", "y"}


class Unrenderable(Exception):
    """A layer or value has no readable constructor form; the caller falls back."""


# ---- expressions ----------------------------------------------------------------------------


class Bracket:
    """`opener item, item, ... closer` that lays out on one line or one item per line."""

    def __init__(self, opener: str, items: list, closer: str = ")") -> None:
        self.opener, self.items, self.closer = opener, items, closer


class Call:
    """`callee(arguments)`, where callee may itself be a bracketed expression."""

    def __init__(self, callee, arguments: list) -> None:
        self.callee, self.arguments = callee, arguments


Expr = Any  # str | Bracket | Call


def prefixed(prefix: str, expression: Expr) -> Expr:
    if isinstance(expression, str):
        return prefix + expression
    if isinstance(expression, Bracket):
        return Bracket(prefix + expression.opener, expression.items, expression.closer)
    return Call(prefixed(prefix, expression.callee), expression.arguments)


def flat(expression: Expr) -> str:
    if isinstance(expression, str):
        return expression
    if isinstance(expression, Call):
        return f"{flat(expression.callee)}({', '.join(flat(a) for a in expression.arguments)})"
    inner = ", ".join(flat(item) for item in expression.items)
    return f"{expression.opener}{inner}{expression.closer}"


def tuple_expr(items: list) -> Bracket:
    return Bracket("(", items, ",)" if len(items) == 1 else ")")


def sequence_expr(values: list | tuple, render: Callable[[Any], Expr]) -> Bracket:
    """`[a, b]` for a list, `(a, b)` for a tuple, each value rendered by `render`."""
    items = [render(value) for value in values]
    return tuple_expr(items) if isinstance(values, tuple) else Bracket("[", items, "]")


def dict_expr(mapping: Mapping, render: Callable[[Any], Expr]) -> Bracket:
    """`{"key": value, ...}`, each value rendered by `render`."""
    return Bracket("{", [prefixed(f"{inline_literal(key)}: ", render(value))
                         for key, value in mapping.items()], "}")


# ---- literals and names -----------------------------------------------------------------------


def quoted(text: str) -> str:
    """A double-quoted Python string literal; every control character escaped."""
    result = json.dumps(text, ensure_ascii=False)
    try:
        result.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them as escapes
        result = json.dumps(text)
    return result


def prose(text: Any) -> str:
    """`text` for a docstring or comment: names come from user files, so quotes, backslashes
    and line breaks are escaped and cannot end the docstring or the comment."""
    return quoted(str(text))[1:-1]


def literal(value: Any) -> Expr:
    """Python source for a JSON-like value, black style (double quotes)."""
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    if isinstance(value, Mapping):
        return dict_expr(value, literal)
    if isinstance(value, (list, tuple)):
        return sequence_expr(value, literal)
    raise Unrenderable(f"no literal for {type(value).__name__}")


def inline_literal(value: Any) -> str:
    """`literal(value)` on one line, for a short value inside a longer line."""
    return flat(literal(value))


def keyword_items(arguments: Mapping[str, Any]) -> list[str]:
    """`key=value` items, one per argument."""
    return [f"{key}={inline_literal(value)}" for key, value in arguments.items()]


def get_layer_call(variable: str, layer_name: str) -> str:
    return f"{variable}.get_layer({inline_literal(layer_name)})"


def is_keyword_name(key: Any) -> bool:
    return isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key)


def identifier(text: str) -> str:
    name = re.sub(r"\W", "_", text).strip("_") or "layer"
    if name[0].isdigit():
        name = f"layer_{name}"
    return f"{name}_" if keyword.iskeyword(name) else name


def claim_name(name: str, taken: set[str]) -> str:
    """`name`, or `name_2`, `name_3`... if taken or reserved; the result is added to `taken`."""
    if name in taken or name in RESERVED_NAMES:
        counter = 2
        while f"{name}_{counter}" in taken or f"{name}_{counter}" in RESERVED_NAMES:
            counter += 1
        name = f"{name}_{counter}"
    taken.add(name)
    return name


# ---- layout ---------------------------------------------------------------------------------


def layout(expression: Expr, indent: int, lead: str = "", width: int = LINE_WIDTH) -> list[str]:
    """Lines for `lead + expression` at `indent`, split like black when too long."""
    pad = " " * indent
    one_line = f"{pad}{lead}{flat(expression)}"
    if len(one_line) <= width or isinstance(expression, str):
        return [one_line]
    if isinstance(expression, Call):
        arguments = ", ".join(flat(a) for a in expression.arguments)
        candidates = []
        # Prefer splitting the callee and keeping a short argument list on its closing line.
        if isinstance(expression.callee, Bracket):
            callee = expression.callee
            split = Bracket(callee.opener, callee.items, f"{callee.closer}({arguments})")
            candidates.append(layout(split, indent, lead, width))
        candidates.append(layout(Bracket(f"{flat(expression.callee)}(", expression.arguments),
                                 indent, lead, width))
        fitting = [lines for lines in candidates if max(map(len, lines)) <= width]
        return (fitting or sorted(candidates, key=lambda lines: max(map(len, lines))))[0]
    lines = [f"{pad}{lead}{expression.opener}"]
    closer = expression.closer
    hugged = f"{pad}    {', '.join(flat(item) for item in expression.items)}"
    if closer.startswith(",)"):  # a one-element tuple keeps its comma on the item
        closer = closer[1:]
        hugged += ","
    if len(hugged) <= width:
        lines.append(hugged)
    else:
        comma = len(expression.items) > 1 or closer != expression.closer
        for item in expression.items:
            # black's trailing comma after every item; a sole argument gets none
            item_lines = layout(item, indent + 4, "", width - comma)
            if comma:
                item_lines[-1] += ","
            lines += item_lines
    lines.append(f"{pad}{closer}")
    return lines


def docstring_lines(text: str) -> list[str]:
    """A function's docstring, indented and wrapped to the line width."""
    # Break at spaces only, so an escape sequence from prose() is never split.
    lines = textwrap.wrap(text, LINE_WIDTH - 10, break_long_words=False, break_on_hyphens=False)
    if len(lines) == 1:
        return [f'    """{lines[0]}"""']
    return [f'    """{lines[0]}'] + [f"    {line}" for line in lines[1:]] + ['    """']
