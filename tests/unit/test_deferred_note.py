"""The plan note a run works out in the background (the array-length check)."""

from __future__ import annotations

import threading

from backfill.prepared import DeferredNote


def test_the_note_is_the_work_result_once_it_is_done():
    gate = threading.Event()
    later = DeferredNote(lambda: (gate.wait(5), "2 array(s) longer than the window")[1], "array length check")
    gate.set()
    assert later.result() == "2 array(s) longer than the window"
    assert DeferredNote(lambda: None, "array length check").result() is None


def test_a_failing_check_becomes_a_note_naming_it_not_an_error():
    def broken() -> str | None:
        raise OSError("data file gone")

    note = DeferredNote(broken, "array length check").result()
    assert note is not None and note.startswith("array length check could not run (OSError: data file gone)")
