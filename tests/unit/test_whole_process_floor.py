"""bench.whole_process: the floor figures come from the floor process's own lines, and a
MERGE that never finished gives no figure (the contender then counts as failed)."""

from __future__ import annotations

from bench.whole_process import floor_seconds


def test_cold_floor_is_launch_to_first_merge_and_warm_floor_is_the_second_merge_alone():
    lines = [(1.3, "26/12/06 WARN Utils: Your hostname ...\n"),
             (16.64, "floor_cold done: MERGE 13.44 s\n"),
             (21.9, "floor_warm done: MERGE 5.26 s\n")]
    assert floor_seconds(lines) == {"floor_cold": 16.6, "floor_warm": 5.3}


def test_a_merge_that_never_finished_has_no_figure():
    assert floor_seconds([(15.0, "floor_cold done: MERGE 12.0 s\n"), (30.0, "Traceback ...\n")]) == {
        "floor_cold": 15.0}


def test_lines_of_other_names_are_not_taken_for_a_floor():
    assert floor_seconds([(3.0, "script done: MERGE 1.0 s\n"), (4.0, "MERGE 1/12 done\n")]) == {}
