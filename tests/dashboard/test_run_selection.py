"""Ticked runs kept as ids: the order they were ticked, and their rows after the table changed."""

from dashboard.run_selection import ids_at, rows_of, ticked_order


def test_a_newly_ticked_run_comes_last_whatever_its_row():
    assert ticked_order([], ["a", "b"]) == ["a", "b"]
    assert ticked_order(["b"], ["a", "b"]) == ["b", "a"]
    assert ticked_order(["b", "a"], ["a"]) == ["a"]  # unticked runs leave


def test_rows_follow_the_runs_after_a_delete_or_a_new_run():
    assert rows_of(["b"], ["a", "b", "c"]) == [1]
    assert rows_of(["b"], ["new", "a", "b", "c"]) == [2]
    assert rows_of(["b", "gone"], ["a", "b"]) == [1]


def test_positions_past_the_end_of_the_table_are_ignored():
    assert ids_at([0, 2, 5], ["a", "b", "c"]) == ["a", "c"]
