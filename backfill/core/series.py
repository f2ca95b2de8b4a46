"""The series rule: for each (account, month, history column) the value staged last wins.

Why per cell and not per entry: a later correction often fixes one column of an earlier
one (the balance, not the payment); the earlier entry's other columns still hold. Why
the staging time decides and not the order runs happen in: runs are resumed late, run
side by side and consolidated, and the table must end the same way whatever happened.

Order of two staged rows: ``created_at`` first; on equal ``created_at`` the greater
backfill id wins (a documented, deterministic tie-break); a row still pending beats a
row of the same id and time that is not (a re-staged correction under the same id).

A run only ever writes the cells its own entries win. A cell a later-staged row holds
(pending, applied or superseded) is left alone, so a run never writes over a value a
later-staged entry wrote or will write. Rejected and rolled-back rows compete for no
cell. Pure functions: tested without Spark.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from backfill.core.entries import Entry
from backfill.core.states import StagingStatus

#: Staging statuses whose rows compete for cells: everything staged and not withdrawn.
COMPETING: frozenset[StagingStatus] = frozenset(
    {StagingStatus.PENDING, StagingStatus.APPLIED, StagingStatus.SUPERSEDED})

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class Staged:
    """One staging row as the series rule sees it: its key, time, status and values."""

    backfill_id: str
    acct: int
    month: str
    created_at: datetime | None
    status: StagingStatus
    values: tuple[Decimal | None, ...]

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.backfill_id, self.acct, self.month)

    def order(self) -> tuple[datetime, str, bool]:
        """Sort key: later wins. A NULL ``created_at`` (a row written by hand) sorts first."""
        at = self.created_at or _EPOCH
        if at.tzinfo is None:
            at = at.replace(tzinfo=timezone.utc)
        return (at, self.backfill_id, self.status == StagingStatus.PENDING)


@dataclass(frozen=True)
class Superseded:
    """A staged row none of whose cells it still holds, and the ids of the rows that won them."""

    backfill_id: str
    acct: int
    month: str
    by: tuple[str, ...]

    @property
    def key(self) -> tuple[str, int, str]:
        return (self.backfill_id, self.acct, self.month)

    def reason(self) -> str:
        return "superseded by " + ", ".join(self.by)


@dataclass(frozen=True)
class Resolution:
    """What a run writes after the series rule.

    Attributes:
        entries: the run's entries, each with only the cells it wins (others NULL: the
            update rule leaves a NULL staged value untouched). Entries that win no cell
            are left out.
        superseded: the run's own entries that win no cell.
        displaced: rows of other runs, already applied, whose every cell this run's
            entries win: once the run is committed they are superseded too.
    """

    entries: tuple[Entry, ...]
    superseded: tuple[Superseded, ...]
    displaced: tuple[Superseded, ...]
    #: staged values of the run's entries that a later row holds, so not written
    masked: int = 0

    @property
    def rewrites_staged_rows(self) -> bool:
        """Whether the entries differ from the run's pending rows as staged (an entry left
        out, a cell masked). Then a MERGE must take its source from the entries themselves:
        a read of staging would bring back what the rule took out."""
        return bool(self.superseded) or self.masked > 0


def winners(rows: Iterable[Staged]) -> dict[tuple[int, str, int], Staged]:
    """{(acct, month, column index): the row whose value that cell must end holding}."""
    best: dict[tuple[int, str, int], Staged] = {}
    for row in rows:
        if row.status not in COMPETING:
            continue
        for col, value in enumerate(row.values):
            if value is None:
                continue
            cell = (row.acct, row.month, col)
            held = best.get(cell)
            if held is None or row.order() > held.order():
                best[cell] = row
    return best


def _lost_to(row: Staged, won: Mapping[tuple[int, str, int], Staged]) -> tuple[str, ...] | None:
    """Ids that won every non-NULL cell of ``row``; None when it wins one (or has none)."""
    cells = [(row.acct, row.month, c) for c, v in enumerate(row.values) if v is not None]
    if not cells or any(won[c] is row for c in cells):
        return None
    return tuple(sorted({won[c].backfill_id for c in cells}))


def resolve(run: Sequence[Staged], others: Sequence[Staged]) -> Resolution:
    """Apply the series rule to a run's rows (``run``) against every other competing row
    staged for the same accounts and months (``others``, any id and status)."""
    won = winners([*run, *others])
    entries: list[Entry] = []
    superseded: list[Superseded] = []
    masked = 0
    for row in run:
        lost = _lost_to(row, won)
        if lost is not None:
            superseded.append(Superseded(row.backfill_id, row.acct, row.month, lost))
            continue
        values = tuple(v if v is not None and won[(row.acct, row.month, c)] is row else None
                       for c, v in enumerate(row.values))
        masked += sum(1 for v, kept in zip(row.values, values, strict=True) if v is not None and kept is None)
        entries.append(Entry(month=row.month, acct=row.acct, backfill_id=row.backfill_id, values=values))
    run_ids = {r.backfill_id for r in run}
    displaced = []
    for row in others:
        if row.status != StagingStatus.APPLIED:
            continue
        lost = _lost_to(row, won)
        if lost is not None and set(lost) & run_ids:
            displaced.append(Superseded(row.backfill_id, row.acct, row.month, lost))
    return Resolution(tuple(sorted(entries, key=Entry.sort_key)), tuple(sorted(superseded, key=lambda s: s.key)),
                      tuple(sorted(displaced, key=lambda s: s.key)), masked)


def newer_rivals(row: Staged, others: Iterable[Staged]) -> dict[int, Staged]:
    """{column index: the competing row staged after ``row`` that holds that cell}, for the
    cells of ``row`` a later row replaced (``verify`` reports those as superseded)."""
    won = winners([row, *others])
    out: dict[int, Staged] = {}
    for col, value in enumerate(row.values):
        held = won.get((row.acct, row.month, col))
        if value is not None and held is not None and held is not row:
            out[col] = held
    return out


def as_staged(entry: Entry, created_at: datetime | None, status: StagingStatus = StagingStatus.PENDING) -> Staged:
    """The :class:`Staged` view of a validated entry."""
    return Staged(entry.backfill_id, entry.acct, entry.month, created_at, status, entry.values)
