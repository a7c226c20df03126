"""core/limits.py: one reading of every STACKLAB_* limit from the environment, one way to write a size."""

import pytest

from core.limits import format_bytes, positive_from_env


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


def test_sizes_read_as_a_person_reads_them():
    assert [format_bytes(n) for n in (512, 1536, 200 * 2**20, 6 * 2**30)] == \
        ["512 bytes", "1.5 KiB", "200.0 MiB", "6.0 GiB"]
