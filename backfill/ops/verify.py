"""``verify``: check each commit of a backfill against its parent, cell by cell.

For every commit a backfill made (in the lineage of main, or of the run's branch before
it is published), the rows of each partition it names are compared as they were just
before it (the commit's parent) and just after it: every staged value must sit at its
offset, every other element, row and column must be unchanged, and no array may have
grown past the window. Comparing a commit with its own parent means that later writes
by anyone (another backfill, the monthly load, a compaction) never count as mismatches.

The series rule decides what a commit had to write: among the rows of its ids, the one
staged last for each cell; a cell that a row staged even later holds may have been left
alone (the run saw the later row) and is reported as superseded, not as an error.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from backfill.config import Config
from backfill.core.commit_tags import TAG_KEYS, tagged_ids, tagged_partitions
from backfill.core.entries import lenient_values
from backfill.core.identifiers import check_backfill_id
from backfill.core.months import parse_month
from backfill.core.names import MAIN_BRANCH
from backfill.core.series import Staged, winners
from backfill.core.states import StagingStatus
from backfill.errors import BackfillError, InputError, TableError
from backfill.iceberg import tables
from backfill.iceberg.array_lengths import Overlong, overlong_in_rows, overlong_note
from backfill.iceberg.filters import equal, one_of

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

_MAX_LISTED = 50
#: Seconds between two progress lines of a long verification.
PROGRESS_SECONDS = 5.0


@dataclass(frozen=True)
class Mismatch:
    """One cell (or row) that is not what the update rule says it must be."""

    partition: str
    acct: int
    column: str | None
    index: int | None
    expected: Any
    found: Any
    why: str

    def line(self) -> str:
        where = f"{self.partition} acct={self.acct}"
        if self.column:
            where += f" {self.column}"
        if self.index is not None:
            where += f"[{self.index}]"
        return f"{where}: {self.why}: expected {self.expected!r}, found {self.found!r}"


@dataclass(frozen=True)
class VerifyReport:
    backfill_ids: tuple[str, ...]
    partitions_checked: int
    rows_checked: int
    cells_checked: int
    mismatches: tuple[Mismatch, ...]
    notes: tuple[str, ...] = field(default=())
    commits_checked: int = 0
    #: cells a later-staged row holds, which the backfill's commits left alone
    superseded_cells: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def lines(self) -> list[str]:
        head = (f"verify {', '.join(self.backfill_ids)}: {self.commits_checked} commit(s) against their parents, "
                f"{self.partitions_checked} partition(s), "
                f"{self.rows_checked} row(s), {self.cells_checked} array element(s) checked: "
                + ("OK" if self.ok else f"{len(self.mismatches)} MISMATCH(ES)"))
        out = [head]
        out += ["  " + m.line() for m in self.mismatches[:_MAX_LISTED]]
        if len(self.mismatches) > _MAX_LISTED:
            out.append(f"  ... and {len(self.mismatches) - _MAX_LISTED} more")
        out += [f"  note: {n}" for n in self.notes]
        return out


@dataclass(frozen=True)
class Commit:
    """One backfill commit: a snapshot, or consecutive snapshots with the same tags (a
    pyiceberg overwrite commits a delete and an append), with the parent of the first."""

    snapshot_id: int
    parent_snapshot_id: int | None
    timestamp_ms: int
    summary: Any


def backfill_commits(table: Table, backfill_ids: Sequence[str], ref: str = MAIN_BRANCH,
                     as_of: int | None = None) -> list[Commit]:
    """Commits tagged with any of ``backfill_ids`` in the lineage of ``ref`` (or of the
    snapshot ``as_of``), oldest first."""
    from pyiceberg.table.snapshots import ancestors_of

    wanted = set(backfill_ids)
    if as_of is not None:
        start = table.metadata.snapshot_by_id(as_of)
        if start is None:
            raise InputError(f"snapshot {as_of} is not in the history of the target")
        snaps = list(ancestors_of(start, table.metadata))
    else:
        snaps = tables.lineage(table, ref)
    out: list[Commit] = []
    for s in reversed(snaps):
        if not tagged_ids(_props(s)) & wanted:
            continue
        last = out[-1] if out else None
        if last is not None and s.parent_snapshot_id == last.snapshot_id and _tags(s) == _tags(last):
            out[-1] = Commit(s.snapshot_id, last.parent_snapshot_id, s.timestamp_ms, s.summary)
        else:
            out.append(Commit(s.snapshot_id, s.parent_snapshot_id, s.timestamp_ms, s.summary))
    return out


def _tags(snap: Snapshot | Commit) -> dict[str, str]:
    """The backfill tags of a snapshot (not its file and record counts)."""
    return {k: v for k, v in _props(snap).items() if k in TAG_KEYS}


def _props(snap: Snapshot | Commit) -> dict[str, str]:
    return dict(snap.summary.additional_properties) if snap.summary else {}


def _ms(at: datetime | None) -> int:
    """Milliseconds since the epoch of a staging ``created_at`` (NULL: the epoch itself)."""
    if at is None:
        return 0
    if at.tzinfo is None:
        at = at.replace(tzinfo=timezone.utc)
    return int(at.timestamp() * 1000)


@dataclass(frozen=True)
class Expected:
    """What one commit had to write in one partition: {acct: {array column: {offset: value}}}.

    ``must`` cells hold the value the commit's ids staged last before the commit; ``may``
    cells are ones a row staged later (still before the commit) holds: the run may have
    seen that row and left the cell alone.
    """

    must: dict[int, dict[str, dict[int, Decimal]]]
    may: dict[int, dict[str, dict[int, Decimal]]]


def expected_for(commit_ids: set[str], committed_ms: int, partition: str, rows: Sequence[Staged],
                 window: int, columns: Sequence[str],
                 planned: Collection[tuple[str, int, str]] = ()) -> Expected:
    """The series rule, as of one commit, over every competing row of the checked months.

    The commit's own rows are those of its ids already written (applied or superseded),
    plus ``planned``: the pending rows of a run verified on its branch before it is
    published. Other pending rows of its ids (outside the run's month filter) were not
    the commit's to write; rows of other ids compete whatever their status.
    """
    p = parse_month(partition)
    staged = [r for r in rows if _ms(r.created_at) <= committed_ms and 0 <= p - parse_month(r.month) < window]
    must: dict[int, dict[str, dict[int, Decimal]]] = defaultdict(lambda: defaultdict(dict))
    may: dict[int, dict[str, dict[int, Decimal]]] = defaultdict(lambda: defaultdict(dict))
    own = winners(r for r in staged if r.backfill_id in commit_ids
                  and (r.status != StagingStatus.PENDING or r.key in planned))
    overall = winners(staged)
    for (acct, month, c), row in own.items():
        value = row.values[c]
        assert value is not None  # winners() only holds non-NULL cells
        k = p - parse_month(month)
        (must if overall[(acct, month, c)] is row else may)[acct][columns[c]][k] = value
    return Expected(must, may)


def check_row(partition: str, acct: int, before: dict[str, Any] | None, after: dict[str, Any] | None,
              updates: dict[str, dict[int, Decimal]], history: Sequence[str], window: int,
              maybe: dict[str, dict[int, Decimal]] | None = None) -> tuple[list[Mismatch], int]:
    """Mismatches of one row and the number of array elements checked.

    ``updates`` are the values the commit must have written; ``maybe`` those it may have
    left alone because a later-staged row holds the cell (written or unchanged both pass).
    """
    if before is None and after is None:
        return [], 0
    if before is None:
        return [Mismatch(partition, acct, None, None, "no row", "a row", "row was created")], 0
    if after is None:
        return [Mismatch(partition, acct, None, None, "the row", "no row", "row was removed")], 0
    problems: list[Mismatch] = []
    cells = 0
    for col in before:
        if col in history:
            continue
        if before[col] != after.get(col):
            problems.append(Mismatch(partition, acct, col, None, before[col], after.get(col),
                                     "non-history column changed"))
    for col in history:
        col_problems, col_cells = _check_array(partition, acct, col, before.get(col), after.get(col),
                                               updates.get(col, {}), (maybe or {}).get(col, {}), window)
        problems += col_problems
        cells += col_cells
    return problems, cells


def _lengths(base: Sequence[Any], must: dict[int, Decimal], may: dict[int, Decimal]) -> tuple[int, int]:
    """Shortest and longest length the array may have after the commit."""
    shortest = max(len(base), max(must, default=-1) + 1)
    return shortest, max(shortest, max(may, default=-1) + 1)


def _check_array(partition: str, acct: int, col: str, old: list[Any] | None, new: list[Any] | None,
                 must: dict[int, Decimal], may: dict[int, Decimal], window: int) -> tuple[list[Mismatch], int]:
    if not must and (not may or old == new):  # nothing to write, or every cell left to a later row
        if old != new:
            return [Mismatch(partition, acct, col, None, old, new, "array changed without a staged value")], 0
        return [], len(new or [])
    base = list(old or [])
    shortest, longest = _lengths(base, must, may)
    if new is None or not shortest <= len(new) <= longest or (len(new) > shortest and len(new) - 1 not in may):
        expected = f"length {shortest}" + (f" to {longest}" if longest > shortest else "")
        return [Mismatch(partition, acct, col, None, expected, None if new is None else f"length {len(new)}",
                         "wrong array length")], 0
    problems = []
    if len(new) > window and len(base) <= window:
        problems.append(Mismatch(partition, acct, col, None, f"at most {window} elements",
                                 f"{len(new)}", "array grew past the window"))
    for i in range(len(new)):
        want = base[i] if i < len(base) else None
        if i in must and new[i] != must[i]:
            problems.append(Mismatch(partition, acct, col, i, must[i], new[i], "staged value not at its offset"))
        elif i in may and new[i] not in (may[i], want):
            problems.append(Mismatch(partition, acct, col, i, may[i], new[i], "staged value not at its offset"))
        elif i not in must and i not in may and new[i] != want:
            problems.append(Mismatch(partition, acct, col, i, want, new[i],
                                     "element outside the staged offsets changed"))
    return problems, len(new)


def superseded_cells(before: dict[str, Any] | None, after: dict[str, Any] | None,
                     maybe: dict[str, dict[int, Decimal]]) -> int:
    """Cells the commit left alone because a later-staged row holds them."""
    if before is None or after is None:
        return 0
    n = 0
    for col, offsets in maybe.items():
        old, new = list(before.get(col) or []), list(after.get(col) or [])
        for i, v in offsets.items():
            was = old[i] if i < len(old) else None
            now = new[i] if i < len(new) else None
            n += int(now == was and v != was)
    return n


def rows_at(table: Table, snapshot_id: int | None, cfg: Config, partition: str,
            accounts: Sequence[int] | None) -> dict[int, dict[str, Any]]:
    """{acct: row without the key columns} of one partition at a snapshot (none: {})."""
    from pyiceberg.expressions import And

    if snapshot_id is None:
        return {}
    flt: BooleanExpression = equal(cfg.tables.month_column, partition)
    if accounts:
        flt = And(flt, one_of(cfg.tables.account_column, set(accounts)))
    rows = table.scan(row_filter=flt, snapshot_id=snapshot_id).to_arrow().to_pylist()
    acct = cfg.tables.account_column
    return {r[acct]: {k: v for k, v in r.items() if k not in (acct, cfg.tables.month_column)} for r in rows}


def _no_commits(target: Table, cfg: Config, ids: Sequence[str], ref: str) -> BackfillError:
    """The error for a backfill with no commit to check: never applied, or its commits are
    in the history but not in the lineage checked (main reset, table replaced)."""
    anywhere = any(tagged_ids(_props(s)) & set(ids) for s in target.metadata.snapshots)
    name = tables.display_name(cfg, "target")
    if anywhere:
        return TableError(f"the history of {name} holds commits of {', '.join(ids)}, but none in the lineage of "
                          f"{ref} (its main branch was reset or the table replaced); pass --as-of SNAPSHOT_ID "
                          "to verify the lineage of a snapshot")
    return InputError(f"no commit of backfill id(s) {', '.join(ids)} is in the history of {name}; nothing to verify")


def read_competing_rows(staging: Table, cfg: Config, ids: Sequence[str],
                        sample_accounts: Sequence[int] | None) -> list[Staged]:
    """Every competing staging row of the months the ids staged, of any id (current snapshot)."""
    snap = staging.current_snapshot()
    if snap is None:
        return []
    value_cols = [hc.value_column for hc in cfg.tables.history_columns]
    mine = staging.scan(row_filter=one_of("backfill_id", set(ids)), snapshot_id=snap.snapshot_id,
                        selected_fields=("acct", "backfill_month")).to_arrow().to_pylist()
    accounts = set(sample_accounts) if sample_accounts else {r["acct"] for r in mine}
    return [Staged(r["backfill_id"], r["acct"], r["backfill_month"], r.get("created_at"),
                   StagingStatus(r["status"]), lenient_values(r, value_cols))
            for r in tables.read_competing(staging, {r["backfill_month"] for r in mine}, snap.snapshot_id, accounts)]


def verify_backfill(cfg: Config, catalog: Catalog, backfill_ids: Sequence[str],
                    sample_accounts: Sequence[int] | None = None, as_of: int | None = None,
                    ref: str = MAIN_BRANCH, planned: Collection[tuple[str, int, str]] = (),
                    progress: Callable[[str], None] | None = None) -> VerifyReport:
    """Check every commit of ``backfill_ids`` in the lineage of ``ref`` (or of snapshot
    ``as_of``) against its parent, under the update and series rules.

    ``progress`` gets a line at most every few seconds (partitions checked of all), so a
    verification of many partitions is never silent for long.
    """
    ids = tuple(sorted({check_backfill_id(b) for b in backfill_ids}))
    target = tables.load(catalog, cfg, "target")
    commits = backfill_commits(target, ids, ref, as_of)
    if not commits:
        raise _no_commits(target, cfg, ids, ref)
    staging = tables.load(catalog, cfg, "staging")
    commit_ids = set().union(*(tagged_ids(_props(c)) for c in commits))
    rows = read_competing_rows(staging, cfg, sorted(commit_ids), sample_accounts)
    history = [hc.array_column for hc in cfg.tables.history_columns]
    tally = _Tally()
    todo = [(c, p) for c in commits for p in tagged_partitions(_props(c))]
    t0 = last = time.monotonic()
    for n, (commit, partition) in enumerate(todo, start=1):
        expected = expected_for(tagged_ids(_props(commit)), commit.timestamp_ms, partition, rows,
                                cfg.tables.window, history, planned)
        tally.check(cfg, target, commit, partition, expected, sample_accounts)
        if progress is not None and time.monotonic() - last >= PROGRESS_SECONDS and n < len(todo):
            last = time.monotonic()
            progress(f"verify: {n}/{len(todo)} partition check(s) of {len(commits)} commit(s), "
                     f"{tally.rows} row(s), {len(tally.mismatches)} mismatch(es) so far, {last - t0:.0f} s")
    note = overlong_note(tally.overlong, cfg.tables.window, "in the checked rows")
    notes = [note] if note else []
    if tally.superseded:
        notes.append(f"{tally.superseded} cell(s) were left alone because a later-staged row holds them "
                     "(superseded, not an error)")
    return VerifyReport(ids, len(tally.partitions), tally.rows, tally.cells, tuple(tally.mismatches),
                        tuple(notes), len(commits), tally.superseded)


@dataclass
class _Tally:
    """What a verification has found so far."""

    partitions: set[str] = field(default_factory=set)
    rows: int = 0
    cells: int = 0
    superseded: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    overlong: list[Overlong] = field(default_factory=list)

    def check(self, cfg: Config, target: Table, commit: Commit, partition: str, expected: Expected,
              sample_accounts: Sequence[int] | None) -> None:
        """One partition of one commit against the commit's parent."""
        history = [hc.array_column for hc in cfg.tables.history_columns]
        before = rows_at(target, commit.parent_snapshot_id, cfg, partition, sample_accounts)
        after = rows_at(target, commit.snapshot_id, cfg, partition, sample_accounts)
        for acct in sorted(set(before) | set(after)):
            maybe = expected.may.get(acct, {})
            problems, cells = check_row(partition, acct, before.get(acct), after.get(acct),
                                        expected.must.get(acct, {}), history, cfg.tables.window, maybe)
            self.mismatches += problems
            self.rows += 1
            self.cells += cells
            self.superseded += superseded_cells(before.get(acct), after.get(acct), maybe)
        self.partitions.add(partition)
        self.overlong += overlong_in_rows(partition, after, history, cfg.tables.window)
