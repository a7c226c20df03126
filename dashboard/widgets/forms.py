"""Widgets built from declared parameters: a template's form, and the stacking mode's options.

A template declares each parameter (name, kind, default, help, minimum, maximum, choices);
`template_params` draws one widget per parameter and returns the member's params. Only
values that differ from the default (or were already set) are kept, so an exported spec
stays as short as the user made it.
"""

from __future__ import annotations

from typing import Any, Mapping

import streamlit as st

from core.spec import MODE_OPTION_CHOICES, MODE_OPTIONS
from dashboard import state

OPTION_LABELS = {
    "include_raw_input": "Also feed the raw input (flattened) to the head",
    "freeze_base": "Freeze the base members (only the head trains)",
    "combine": "Combine the members' predictions by",
}


def label(name: str) -> str:
    """'hidden_units' -> 'Hidden units'."""
    return name.replace("_", " ").capitalize()


def parse_int_list(text: str) -> list[int]:
    """'32, 64' -> [32, 64]; '' or '[]' -> [].

    Raises:
        ValueError: an item is not a whole number.
    """
    cleaned = text.strip().strip("[]").strip()
    if not cleaned:
        return []
    items = [item.strip() for item in cleaned.replace(";", ",").split(",")]
    try:
        return [int(item) for item in items]
    except ValueError:
        raise ValueError(f"'{text}' is not a list of whole numbers: write them separated by commas, "
                         f"e.g. 32, 64.") from None


def parse_units(text: str) -> int | str:
    """'auto' or a whole number.

    Raises:
        ValueError: neither.
    """
    cleaned = text.strip().lower()
    if cleaned == "auto":
        return "auto"
    try:
        return int(cleaned)
    except ValueError:
        raise ValueError(f"'{text}' is neither 'auto' nor a whole number.") from None


def _param_widget(param: Mapping[str, Any], value: Any, key: str) -> Any:
    """One widget for one parameter; returns its value (the old value if the text cannot be read)."""
    kind, name, help_text = param["kind"], param["name"], param.get("help") or None
    minimum, maximum = param.get("minimum"), param.get("maximum")
    if kind in ("int", "float"):
        # A value outside the declared range (from an imported spec) is shown clamped; the
        # pre-flight check reports the stored value.
        value = min(max(value, minimum if minimum is not None else value), maximum if maximum is not None else value)
    if kind == "bool":
        return st.checkbox(label(name), value=bool(value), key=key, help=help_text)
    if kind == "int":
        return int(st.number_input(label(name), value=int(value), step=1, key=key, help=help_text,
                                   min_value=int(minimum) if minimum is not None else None,
                                   max_value=int(maximum) if maximum is not None else None))
    if kind == "float":
        return float(st.number_input(label(name), value=float(value), key=key, help=help_text, format="%g",
                                     step=0.05 if maximum is not None and maximum <= 1 else 0.1,
                                     min_value=float(minimum) if minimum is not None else None,
                                     max_value=float(maximum) if maximum is not None else None))
    if kind in ("choice", "activation"):
        choices = list(param.get("choices") or ())  # activations list theirs too
        if value not in choices:
            choices = [value, *choices]
        return st.selectbox(label(name), choices, index=choices.index(value), key=key, help=help_text,
                            format_func=str)
    if kind == "int_list":
        text = st.text_input(label(name), value=", ".join(str(v) for v in value), key=key,
                             help=f"{help_text or ''} (whole numbers separated by commas)".strip())
        parser = parse_int_list
    elif kind == "units":
        text = st.text_input(label(name), value=str(value), key=key, help=f"{help_text or ''} ('auto' or a number)")
        parser = parse_units
    else:
        return st.text_input(label(name), value=str(value), key=key, help=help_text)
    try:
        return parser(text)
    except ValueError as error:
        st.error(str(error))
        return value


def template_params(template: Mapping[str, Any], params: Mapping[str, Any], key_parts: tuple) -> dict[str, Any]:
    """Draw the form of a template's parameters; return the params to store in the member.

    Args:
        template: one entry of `client.templates()`.
        params: the member's current params (missing ones take the template's defaults).
        key_parts: what makes the widget keys unique (e.g. ("draft", "member", "model_a")).
    """
    declared = template.get("params", [])
    result = {name: value for name, value in params.items() if name in {p["name"] for p in declared}}
    columns = st.columns(3)
    for index, param in enumerate(declared):
        name = param["name"]
        current = params.get(name, param["default"])
        with columns[index % 3]:
            value = _param_widget(param, current, state.widget_key(*key_parts, template["name"], name))
        if name in params or value != param["default"]:
            result[name] = value
    return result


def mode_options(mode: str, options: Mapping[str, Any], key_parts: tuple) -> dict[str, Any]:
    """Widgets for the options of a stacking mode (core.spec.MODE_OPTIONS); returns the options."""
    result = dict(options)
    for name, default in MODE_OPTIONS[mode].items():
        current = options.get(name, default)
        key = state.widget_key(*key_parts, mode, name)
        choices = MODE_OPTION_CHOICES[name]
        if set(choices) == {True, False}:
            value = st.toggle(OPTION_LABELS.get(name, label(name)), value=bool(current), key=key)
        else:
            value = st.selectbox(OPTION_LABELS.get(name, label(name)), list(choices),
                                 index=list(choices).index(current), key=key,
                                 format_func=lambda v: str(v).replace("_", " "))
        if name in options or value != default:
            result[name] = value
    return result
