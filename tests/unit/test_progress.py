"""What a person sees of a run: event lines, the live status, and an ETA only from measured work."""

from __future__ import annotations

import io

import pytest

from backfill.cli.progress import TerminalReporter, reporter_for
from backfill.core.plan import MergeBatch, PartitionTask
from backfill.core.results import RunningMerge, SparkProgress
from backfill.ops import progress as progress_mod
from backfill.ops.progress import EtaClock, LineReporter, LiveStatus, as_reporter, end_live


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = _Clock()
    monkeypatch.setattr(progress_mod.time, "monotonic", c)
    return c


def test_no_eta_until_a_merge_finished_a_partition():
    eta = EtaClock(total=12, parallel=2)
    assert eta.eta_seconds() is None
    eta.skipped()                               # found already committed: says nothing of speed
    assert eta.eta_seconds() is None
    for _ in range(3):                          # one MERGE of 3 partitions took 30 s on its actor
        eta.merged(("a1", "t0"), 30.0)
    # 10 s per partition, 8 partitions left, two MERGEs at once
    assert eta.eta_seconds() == pytest.approx(10 * 8 / 2)
    eta.merged(("a2", "t1"), 6.0)              # a second MERGE, of one partition
    assert eta.eta_seconds() == pytest.approx(36 / 4 * 7 / 2)


def test_line_reporter_prints_events_and_throttles_live_lines(clock):
    out: list[str] = []
    rep = LineReporter(out.append, every=10)
    status = LiveStatus(1, 4, (), 12.0, None)
    rep.line("started")
    rep.live(status)                            # right after an event: nothing
    clock.now += 11
    rep.live(status)
    rep.live(status)                            # throttled
    assert out == ["started", "... [1/4] elapsed 12 s"]


def test_live_text_names_each_merge_and_what_it_read():
    running = (
        RunningMerge(("2024-12", "2024-01"), "a1", 25.4, SparkProgress(1, 3, 40, 64, 12_300_000, 120_000)),
        RunningMerge(("2023-12",), "a2", 3.0, SparkProgress()),
        RunningMerge(("2023-11",), "a3", 9.0, None),
    )
    text = LiveStatus(5, 24, running, 61.0, 90.0).text()
    assert text.startswith("[5/24] elapsed 61 s, ETA 90 s; ")
    assert "2024-12..2024-01 on a1: stages 1/3, tasks 40/64, read 12.3 MB / 120,000 rows, 25 s" in text
    assert "2023-12 on a2: planning, 3 s" in text
    assert "2023-11 on a3: waiting for its Spark session, 9 s" in text


def test_terminal_reporter_redraws_one_bar_line_under_the_events():
    stream = io.StringIO()
    rep = TerminalReporter(stream, indent="  ")
    rep.live(LiveStatus(6, 12, (), 10.0, 10.0))
    rep.line("[7/12] 2024-05 committed")
    text = stream.getvalue()
    assert text.startswith("\r\033[K  [##########----------] [6/12] elapsed 10 s, ETA 10 s")
    # the event replaces the bar, which is not redrawn stale: the next poll draws it anew
    assert text.endswith("\r\033[K  [7/12] 2024-05 committed\n")
    rep.live(LiveStatus(7, 12, (), 12.0, 8.0))
    assert stream.getvalue().endswith("[############--------] [7/12] elapsed 12 s, ETA 8 s")
    rep.end()
    assert stream.getvalue().endswith("\r\033[K")
    rep.end()  # nothing live: nothing more is written
    assert stream.getvalue().endswith("ETA 8 s\r\033[K")


def test_end_live_is_optional_for_a_callers_own_reporter():
    class Mine:
        def line(self, text: str) -> None: ...
        def live(self, status: LiveStatus) -> None: ...

    end_live(Mine())  # no end(): nothing happens, nothing raises


def test_plain_output_when_not_a_terminal_and_callables_become_line_reporters():
    assert isinstance(reporter_for(io.StringIO()), LineReporter)
    lines: list[str] = []
    rep = as_reporter(lines.append, print)
    rep.line("x")
    assert lines == ["x"] and as_reporter(rep, print) is rep


def test_job_groups_tell_attempts_of_a_batch_apart():
    def task(p: str) -> PartitionTask:
        return PartitionTask(partition=p, entries=(), digest="d")

    batch = MergeBatch((task("2024-03"), task("2024-02")))
    assert batch.job_group("run-a", 1) == "merge-run-a-2024-03..2024-02-attempt-1"
    assert batch.job_group("run-a", 2) != batch.job_group("run-a", 1)
    assert MergeBatch((task("2024-03"),)).job_group("run-a", 1) == "merge-run-a-2024-03-attempt-1"


def test_a_warm_sessions_next_run_does_not_count_the_last_runs_jobs():
    """A warm session serves run after run, often over the same partitions; Spark keeps a
    job group's jobs for the session's life, so the live status of the second run read the
    first run's stages and bytes as its own (seen: "stages 17/20, read 89.5 MB" for a MERGE
    that read 44.7 MB)."""
    batch = MergeBatch((PartitionTask(partition="2024-03", entries=(), digest="d"),))
    assert batch.job_group("run-20261206T031608-1", 1) != batch.job_group("run-20261206T031631-2", 1)
