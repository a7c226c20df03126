"""core/env_limits.py: one reading of every STACKLAB_* limit from the environment."""

import pytest

from core.env_limits import positive_from_env


def test_unset_or_empty_gives_the_default():
    assert positive_from_env("LIMIT", 5, environ={}) == 5
    assert positive_from_env("LIMIT", 5, environ={"LIMIT": "  "}) == 5


def test_numbers_and_whole_numbers():
    assert positive_from_env("LIMIT", 5, environ={"LIMIT": "0.5"}) == 0.5
    assert positive_from_env("LIMIT", 5, whole=True, environ={"LIMIT": "2e8"}) == 200_000_000
    assert positive_from_env("LIMIT", 5, whole=True, environ={"LIMIT": "1_000"}) == 1000


@pytest.mark.parametrize("text, whole", [("lots", False), ("0", False), ("-1", False), ("inf", False),
                                         ("0.5", True), ("2.5", True)])
def test_anything_else_names_the_variable_and_the_value(text, whole):
    with pytest.raises(ValueError, match=f"LIMIT must be a positive .*number, received '{text}'. Fix or unset it."):
        positive_from_env("LIMIT", 5, whole=whole, environ={"LIMIT": text})
