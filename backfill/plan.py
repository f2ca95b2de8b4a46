"""Planning: which partitions a run must rewrite, and with which entries.

Pure functions over validated entries and the list of existing partitions, so the
planner is tested without Spark. A partition P is in the plan only when it exists and
0 <= months(P) - months(m) <= W-1 for some pending entry month m: partitions before m
or at/after m+W can never change and are never read.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Iterable, Sequence

from backfill.entries import Entry, digest
from backfill.errors import ConfigError
from backfill.months import format_month, is_month, parse_month


@dataclass(frozen=True)
class PartitionTask:
    """One unit of work: rewrite partition ``partition`` with ``entries`` (all in its window)."""

    partition: str
    entries: tuple[Entry, ...]
    digest: str

    @property
    def months(self) -> tuple[str, ...]:
        return tuple(sorted({e.month for e in self.entries}))

    @property
    def accounts(self) -> int:
        return len({e.acct for e in self.entries})

    @property
    def first_month(self) -> str:
        return self.months[0]


@dataclass(frozen=True)
class Rejection:
    """An entry that cannot be applied, with the reason recorded in staging."""

    entry: Entry
    reason: str


@dataclass(frozen=True)
class Plan:
    """The whole run: tasks in execution order, rejected entries, and notes for the user."""

    tasks: tuple[PartitionTask, ...]
    rejected: tuple[Rejection, ...]
    entries: tuple[Entry, ...]
    window: int
    skipped_by_resume: tuple[str, ...] = ()
    notes: tuple[str, ...] = field(default=())

    def partitions_of(self, entry: Entry) -> list[str]:
        """Planned partitions that cover ``entry`` (resume-skipped ones excluded)."""
        lo = entry.month_index
        return [t.partition for t in self.tasks if 0 <= parse_month(t.partition) - lo < self.window]


def plan_run(
    entries: Sequence[Entry],
    existing_partitions: Iterable[str],
    window: int,
    order: str = "newest",
    resume_from: str | None = None,
) -> Plan:
    """Plan the partitions to rewrite.

    Args:
        entries: validated pending entries of the run.
        existing_partitions: month values of the target's partitions.
        window: history length W.
        order: 'newest' or 'oldest' partition first.
        resume_from: skip partitions before this month (the seed's ``--resume-from``).
    """
    if order not in ("newest", "oldest"):
        raise ConfigError(f"order must be 'newest' or 'oldest', got {order!r}")
    if resume_from is not None and not is_month(resume_from):
        raise ConfigError(f"--resume-from {resume_from!r} is not a month of the form 'YYYY-MM'")
    notes: list[str] = []
    parts = sorted({p for p in existing_partitions if is_month(p)})
    odd = sorted({str(p) for p in existing_partitions if not is_month(p)})
    if odd:
        notes.append(f"ignored {len(odd)} partition value(s) that are not 'YYYY-MM': {odd[:5]}")
    part_idx = {p: parse_month(p) for p in parts}
    by_part: dict[str, list[Entry]] = defaultdict(list)
    rejected: list[Rejection] = []
    for e in entries:
        lo = e.month_index
        covered = [p for p, i in part_idx.items() if 0 <= i - lo <= window - 1]
        if not covered:
            rejected.append(Rejection(
                e, f"no partition of the target lies in the window {e.month}..{format_month(lo + window - 1)}"
            ))
        for p in covered:
            by_part[p].append(e)
    skipped: list[str] = []
    if resume_from is not None:
        skipped = sorted(p for p in by_part if p < resume_from)
        for p in skipped:
            del by_part[p]
    tasks = [PartitionTask(p, tuple(sorted(es)), digest(es)) for p, es in by_part.items()]
    tasks.sort(key=lambda t: t.partition, reverse=(order == "newest"))
    return Plan(tuple(tasks), tuple(rejected), tuple(sorted(entries)), window,
                tuple(skipped), tuple(notes))
