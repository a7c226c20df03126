"""Which runs the Runs table has ticked, kept as run ids rather than row positions. Pure functions.

`st.dataframe` reports a selection as row positions, and positions belong to one list of
runs: after a delete (here or in another tab) or a new run, position 2 is another run. So
the page keeps the ticked run ids, in the order they were ticked, and moves the table's
selection onto the rows where those runs are now.

Example:
    >>> ticked_order(["b"], ["a", "b"])       # "a" ticked after "b"
    ['b', 'a']
    >>> rows_of(["b", "a"], ["c", "a", "b"])  # the same runs after "c" was started
    [1, 2]
"""

from __future__ import annotations

from typing import Sequence


def ticked_order(previous: Sequence[str], current: Sequence[str]) -> list[str]:
    """The runs ticked now, in the order they were ticked: those already ticked keep their
    place, newly ticked ones come after them (in table order when several arrive at once)."""
    kept = [run_id for run_id in previous if run_id in current]
    return kept + [run_id for run_id in current if run_id not in kept]


def rows_of(run_ids: Sequence[str], table: Sequence[str]) -> list[int]:
    """Row positions of `run_ids` in `table` (the run ids in row order); runs no longer there are dropped."""
    return sorted(table.index(run_id) for run_id in run_ids if run_id in table)


def ids_at(rows: Sequence[int], table: Sequence[str]) -> list[str]:
    """The run ids at row positions `rows` of `table`, ignoring positions past its end."""
    return [table[row] for row in rows if 0 <= row < len(table)]
