"""Planning: which partitions a run must rewrite, and with which entries.

Pure functions over validated entries and the list of existing partitions, so the
planner is tested without Spark. A partition P is in the plan only when it exists and
0 <= months(P) - months(m) <= W-1 for some pending entry month m: partitions before m
or at/after m+W can never change and are never read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from backfill.core.entries import Entry, digest_of_blocks
from backfill.core.months import format_month, is_month, parse_month
from backfill.errors import ConfigError


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
class MergeBatch:
    """Partitions applied by one MERGE and one commit.

    Why batch: a MERGE has a fixed cost (planning, a broadcast, a commit) of about two
    seconds on Spark 3.5 whatever its size, which dominates when a partition has a few
    hundred affected rows. One MERGE over several partitions pays it once; each
    partition keeps its own digest in the commit's tags, so resume still works per
    partition. A failed batch is retried as a whole, minus the partitions whose work is
    found in the table.
    """

    tasks: tuple[PartitionTask, ...]

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("a merge batch needs at least one partition")
        if len({t.partition for t in self.tasks}) != len(self.tasks):
            raise ValueError("a partition appears twice in one merge batch")

    @property
    def partitions(self) -> tuple[str, ...]:
        return tuple(t.partition for t in self.tasks)

    @property
    def entries(self) -> tuple[Entry, ...]:
        """Every entry any partition of the batch applies, once (the MERGE's source rows)."""
        return tuple(sorted({e for t in self.tasks for e in t.entries}))

    def job_group(self, run_id: str, attempt: int) -> str:
        """The Spark job group of this batch's attempt in run ``run_id``: how its MERGE's
        progress is found among the other MERGEs sharing one Spark session, including those
        of earlier runs a warm session served (Spark keeps a group's jobs for the session's life)."""
        first, last = self.partitions[0], self.partitions[-1]
        return f"merge-{run_id}-{first}" + (f"..{last}" if last != first else "") + f"-attempt-{attempt}"

    def without(self, partitions: Iterable[str]) -> MergeBatch | None:
        """The batch minus ``partitions`` (those already done), or None if nothing is left."""
        gone = set(partitions)
        left = tuple(t for t in self.tasks if t.partition not in gone)
        return MergeBatch(left) if left else None


#: A batch grows only while its source (one row per partition and entry) stays below
#: this: batching pays off for small partitions, where the fixed cost of a MERGE
#: dominates; a partition with a million updates gains nothing from sharing a MERGE.
BATCH_MAX_SOURCE_ROWS = 1_000_000


def merge_batches(tasks: Sequence[PartitionTask], per_merge: int, parallel: int = 1,
                  max_source_rows: int | None = BATCH_MAX_SOURCE_ROWS) -> list[MergeBatch]:
    """Group ``tasks`` (in plan order) into batches of at most ``per_merge`` partitions.

    Batches are balanced, and never fewer than ``parallel`` while there are that many
    tasks, so the concurrency cap is used: 24 tasks, per_merge 12, parallel 2 give two
    batches of 12; 13 tasks give 7 and 6 rather than 12 and 1. ``max_source_rows`` caps
    the entries summed over a batch's partitions (its MERGE source); a task larger than
    the cap is alone. Consecutive tasks stay together: a batch covers neighbouring months.
    """
    if per_merge < 1:
        raise ConfigError(f"partitions_per_merge must be at least 1, got {per_merge}")
    if not tasks:
        return []
    count = max(-(-len(tasks) // per_merge), min(max(1, parallel), len(tasks)))
    size, extra = divmod(len(tasks), count)
    groups: list[list[PartitionTask]] = []
    start = 0
    for i in range(count):
        n = size + (1 if i < extra else 0)
        groups.append(list(tasks[start:start + n]))
        start += n
    if max_source_rows is None:
        return [MergeBatch(tuple(g)) for g in groups]
    out: list[MergeBatch] = []
    for g in groups:
        current: list[PartitionTask] = []
        rows = 0
        for t in g:
            if current and rows + len(t.entries) > max_source_rows:
                out.append(MergeBatch(tuple(current)))
                current, rows = [], 0
            current.append(t)
            rows += len(t.entries)
        out.append(MergeBatch(tuple(current)))
    return out


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
    #: The tasks ``--resume-from`` skipped: a run may skip them only when each one's
    #: commit (same partition, same digest) is found in the table.
    skipped_tasks: tuple[PartitionTask, ...] = ()

    def partitions_of(self, entry: Entry) -> list[str]:
        """Planned partitions that cover ``entry`` (resume-skipped ones excluded)."""
        lo = entry.month_index
        return [t.partition for t in self.tasks if 0 <= parse_month(t.partition) - lo < self.window]

    def rejected_months(self) -> dict[str, str]:
        """{month: reason} of the months whose entries are rejected (no partition in the window)."""
        return {r.entry.month: r.reason for r in self.rejected}

    def months_done(self, ok_partitions: Iterable[str]) -> list[str]:
        """Months whose entries may be marked applied: every planned partition covering them is done.

        Rejected months are never done. A month is decided by one of its entries: every
        entry of a month covers the same partitions.
        """
        ok, rejected = set(ok_partitions), self.rejected_months()
        first: dict[str, Entry] = {}
        for e in self.entries:
            first.setdefault(e.month, e)
        return sorted(m for m, e in first.items()
                      if m not in rejected and all(p in ok for p in self.partitions_of(e)))

    def entries_in(self, months: Iterable[str]) -> int:
        """How many of the plan's entries fall in ``months``."""
        wanted = set(months)
        return sum(1 for e in self.entries if e.month in wanted)


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
    by_month = _by_month(entries)
    part_idx = {p: parse_month(p) for p in parts}
    by_part: dict[str, list[str]] = defaultdict(list)
    rejected: list[Rejection] = []
    for month, group in by_month.items():
        lo = parse_month(month)
        covered = [p for p, i in part_idx.items() if 0 <= i - lo <= window - 1]
        if not covered:
            reason = f"no partition of the target lies in the window {month}..{format_month(lo + window - 1)}"
            rejected += [Rejection(e, reason) for e in group]
        for p in covered:
            by_part[p].append(month)
    every = _tasks(by_part, by_month)
    every.sort(key=lambda t: t.partition, reverse=(order == "newest"))
    skipped = tuple(t for t in every if resume_from is not None and t.partition < resume_from)
    tasks = tuple(t for t in every if not (resume_from is not None and t.partition < resume_from))
    ordered = tuple(e for group in by_month.values() for e in group)
    return Plan(tasks, tuple(rejected), ordered, window,
                tuple(sorted(t.partition for t in skipped)), tuple(notes), skipped)



def _by_month(entries: Iterable[Entry]) -> dict[str, tuple[Entry, ...]]:
    """Entries grouped by month, months ascending, each group in sort order.

    Every entry of a month covers the same partitions, so planning works per month: a
    million entries over 24 partitions cost a million placements, not 24 million.
    """
    groups: dict[str, list[Entry]] = defaultdict(list)
    for e in entries:
        groups[e.month].append(e)
    return {m: tuple(sorted(groups[m], key=Entry.sort_key)) for m in sorted(groups)}


def _tasks(by_part: Mapping[str, Sequence[str]], by_month: Mapping[str, tuple[Entry, ...]]) -> list[PartitionTask]:
    """One task per partition, built from whole month groups.

    Months ascending and each group sorted give the partition's entries in sort order
    without sorting again, and each month's fingerprints are joined once for every
    partition that covers it (the digest is the same as :func:`digest` of the entries).
    """
    blocks = {m: b"".join(e.fingerprint() for e in group) for m, group in by_month.items()}
    out = []
    for partition, months in by_part.items():
        ordered = sorted(months)
        entries = tuple(e for m in ordered for e in by_month[m])
        out.append(PartitionTask(partition, entries, digest_of_blocks(blocks[m] for m in ordered)))
    return out
