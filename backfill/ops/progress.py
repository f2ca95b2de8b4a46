"""What a person watching a run sees: event lines, a live status while MERGEs run, an honest ETA.

Two kinds of output, because they answer different questions:

- *lines*: things that happened (a phase began, a partition committed, an attempt failed),
  each printed once, in order; they are what ``ray job logs`` keeps;
- *live status*: what is running right now (each MERGE's Spark stages and tasks done,
  bytes and rows read so far), refreshed every few seconds. On a terminal it is one
  redrawn line with a bar (``backfill.cli.progress``); elsewhere a plain line at most
  every ``every`` seconds, so a log shows the run is alive without flooding.

The ETA is shown only once it rests on measured work: the time this run's MERGEs took
for the partitions they finished. Spark start-up and partitions found already committed
say nothing about how long the rest takes, so they never feed it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from backfill.core.results import RunningMerge


@dataclass(frozen=True)
class LiveStatus:
    """The run right now: partitions done of total, the MERGEs running, elapsed time, ETA."""

    done: int
    total: int
    running: tuple[RunningMerge, ...]
    elapsed: float
    eta_seconds: float | None

    def text(self) -> str:
        eta = f", ETA {self.eta_seconds:.0f} s" if self.eta_seconds is not None else ""
        head = f"[{self.done}/{self.total}] elapsed {self.elapsed:.0f} s{eta}"
        return "; ".join([head, *(m.text() for m in self.running)])


@runtime_checkable
class Reporter(Protocol):
    """Where a run's progress goes (the CLI's terminal, a log, a caller's callback)."""

    def line(self, text: str) -> None:
        """Something happened: shown once, in order."""

    def live(self, status: LiveStatus) -> None:
        """What is running now: may be shown, redrawn or dropped as the medium allows."""

    # Optional: ``end()``, called once the run is over, clears whatever the reporter left
    # live (a redrawn line); a Reporter without it is fine (see :func:`end_live`).


#: Seconds between two plain live lines. The status arrives every few seconds (a poll of
#: the running MERGEs), so 5 s here keeps every silence under 10 s.
PLAIN_LIVE_SECONDS = 5.0


class LineReporter:
    """Plain text lines: events as they come, the live status at most every ``every`` seconds.

    For logs, ``ray job logs`` and API callers that pass a ``Callable[[str], None]``.
    """

    def __init__(self, say: Callable[[str], None], every: float = PLAIN_LIVE_SECONDS) -> None:
        self._say = say
        self._every = every
        self._last_live = time.monotonic()

    def line(self, text: str) -> None:
        self._say(text)
        self._last_live = time.monotonic()  # an event line also says the run is alive

    def end(self) -> None:
        """Nothing is redrawn, so nothing is left to clear."""

    def live(self, status: LiveStatus) -> None:
        now = time.monotonic()
        if now - self._last_live >= self._every:
            self._last_live = now
            self._say("... " + status.text())


def end_live(report: Reporter) -> None:
    """Tell ``report`` the run is over, if it wants to know (``end`` is optional, so a
    caller's own Reporter written before it existed keeps working)."""
    end = getattr(report, "end", None)
    if callable(end):
        end()


def as_reporter(progress: Reporter | Callable[[str], None] | None, default: Callable[[str], None]) -> Reporter:
    """A Reporter from what a caller passed: a Reporter as is, a callable as plain lines."""
    if progress is None:
        return LineReporter(default)
    if isinstance(progress, Reporter):
        return progress
    return LineReporter(progress)


class EtaClock:
    """An ETA from measured work only: the seconds this run's MERGEs took per partition.

    Each MERGE's time is taken on its actor, from the moment it began (after its Spark
    session started) to its commit, once per MERGE however many partitions it applied;
    the rest is that rate times the partitions left, shared by the MERGEs that run at once.
    Spark start-up and partitions found already committed never feed it.
    """

    def __init__(self, total: int, parallel: int) -> None:
        self._total = total
        self._parallel = max(1, parallel)
        self._merges: dict[Hashable, float] = {}   # MERGE attempt -> its seconds
        self._merged = 0
        self._skipped = 0

    def skipped(self) -> None:
        """A partition needed no MERGE (its work was found committed)."""
        self._skipped += 1

    def merged(self, attempt: Hashable, seconds: float) -> None:
        """A partition finished by the MERGE ``attempt`` (a key shared by its partitions)."""
        self._merged += 1
        self._merges[attempt] = seconds

    def eta_seconds(self) -> float | None:
        """Seconds left, or None until a MERGE of this run has finished a partition."""
        if not self._merged:
            return None
        left = self._total - self._merged - self._skipped
        per_partition = sum(self._merges.values()) / self._merged
        return max(0.0, per_partition * left / min(self._parallel, max(1, left)))
