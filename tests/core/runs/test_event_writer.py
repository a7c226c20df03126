"""The trainer's event writer: events stored in order on their own thread, errors raised at close."""

import threading

import pytest

from core.runs.store import RunStoreError
from core.runs.worker import _EventWriter


def test_events_are_written_in_order_on_another_thread():
    written, threads = [], set()

    def write(event):
        written.append(event)
        threads.add(threading.current_thread().name)

    writer = _EventWriter(write)
    writer.start()
    for number in range(200):
        writer(number)
    writer.close()
    assert written == list(range(200))
    assert threads == {"stacklab-event-writer"}
    assert not writer.is_alive()


def test_a_failed_write_is_raised_at_close_and_later_events_are_still_written():
    written = []

    def write(event):
        if event == 1:
            raise RunStoreError("The run store is locked by another process")
        written.append(event)

    writer = _EventWriter(write)
    writer.start()
    for number in range(4):
        writer(number)
    with pytest.raises(RunStoreError, match="locked by another process"):
        writer.close()
    assert written == [0, 2, 3]
    writer.close()  # the error was raised once; closing again is quiet
