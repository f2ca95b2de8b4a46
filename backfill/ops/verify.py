"""``verify``: check a finished backfill against the table before it, cell by cell.

For every partition a backfill committed to, the rows as they were just before its first
commit (Iceberg time travel to that commit's parent) are compared with the rows now (or
at ``as_of``): every staged value must sit at its offset, every other element, row and
column must be unchanged, and no array may have grown past the window. This is a check
of the contract, independent of how the MERGE was written; run it right after the
backfill, since later writes to the same partitions also show up as differences.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from backfill.config import Config
from backfill.core.commit_tags import tagged_ids, tagged_partitions
from backfill.core.entries import Entry, validate_rows
from backfill.core.identifiers import check_backfill_id
from backfill.core.months import parse_month
from backfill.core.states import StagingStatus
from backfill.errors import InputError, TableError
from backfill.iceberg import tables
from backfill.iceberg.array_lengths import Overlong, overlong_in_rows, overlong_note
from backfill.iceberg.filters import equal, one_of

if TYPE_CHECKING:
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot

_MAX_LISTED = 50


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

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def lines(self) -> list[str]:
        head = (f"verify {', '.join(self.backfill_ids)}: {self.partitions_checked} partition(s), "
                f"{self.rows_checked} row(s), {self.cells_checked} array element(s) checked: "
                + ("OK" if self.ok else f"{len(self.mismatches)} MISMATCH(ES)"))
        out = [head]
        out += ["  " + m.line() for m in self.mismatches[:_MAX_LISTED]]
        if len(self.mismatches) > _MAX_LISTED:
            out.append(f"  ... and {len(self.mismatches) - _MAX_LISTED} more")
        out += [f"  note: {n}" for n in self.notes]
        return out


def first_commits(table: Table, backfill_ids: Sequence[str]) -> dict[str, Snapshot]:
    """{partition: earliest snapshot} among commits tagged with any of ``backfill_ids``."""
    wanted = set(backfill_ids)
    found: dict[str, Snapshot] = {}
    for snap in sorted(table.metadata.snapshots, key=lambda s: s.sequence_number or 0):
        props = snap.summary.additional_properties if snap.summary else {}
        if tagged_ids(props) & wanted:
            for part in tagged_partitions(props):
                found.setdefault(part, snap)
    return found


def expected_updates(entries: Iterable[Entry], partition: str, window: int,
                     columns: Sequence[str]) -> dict[int, dict[str, dict[int, Decimal]]]:
    """{acct: {array column: {offset: value}}} that ``partition`` must show."""
    p = parse_month(partition)
    out: dict[int, dict[str, dict[int, Decimal]]] = defaultdict(lambda: defaultdict(dict))
    for e in entries:
        k = p - e.month_index
        if not 0 <= k <= window - 1:
            continue
        for col, v in zip(columns, e.values, strict=True):
            if v is not None:
                out[e.acct][col][k] = v
    return out


def check_row(partition: str, acct: int, before: dict[str, Any] | None, after: dict[str, Any] | None,
              updates: dict[str, dict[int, Decimal]], history: Sequence[str], window: int,
              ) -> tuple[list[Mismatch], int]:
    """Mismatches of one row and the number of array elements checked."""
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
        old, new, upd = before.get(col), after.get(col), updates.get(col, {})
        if not upd:
            if old != new:
                problems.append(Mismatch(partition, acct, col, None, old, new,
                                         "array changed without a staged value"))
            cells += len(new or [])
            continue
        base = list(old or [])
        length = max(len(base), max(upd) + 1)
        if new is None or len(new) != length:
            problems.append(Mismatch(partition, acct, col, None, f"length {length}",
                                     None if new is None else f"length {len(new)}", "wrong array length"))
            continue
        if len(new) > window and len(base) <= window:
            problems.append(Mismatch(partition, acct, col, None, f"at most {window} elements",
                                     f"{len(new)}", "array grew past the window"))
        for i in range(length):
            cells += 1
            if i in upd:
                if new[i] != upd[i]:
                    problems.append(Mismatch(partition, acct, col, i, upd[i], new[i],
                                             "staged value not at its offset"))
            else:
                want = base[i] if i < len(base) else None
                if new[i] != want:
                    problems.append(Mismatch(partition, acct, col, i, want, new[i],
                                             "element outside the staged offsets changed"))
    return problems, cells


def _rows(table: Table, snapshot_id: int | None, cfg: Config, partition: str,
          accounts: Sequence[int] | None) -> dict[int, dict[str, Any]]:
    from pyiceberg.expressions import And

    if snapshot_id is None:
        return {}
    flt: BooleanExpression = equal(cfg.tables.month_column, partition)
    if accounts:
        flt = And(flt, one_of(cfg.tables.account_column, set(accounts)))
    rows = table.scan(row_filter=flt, snapshot_id=snapshot_id).to_arrow().to_pylist()
    acct = cfg.tables.account_column
    return {r[acct]: {k: v for k, v in r.items() if k not in (acct, cfg.tables.month_column)} for r in rows}


def _current_snapshot_id(target: Table, cfg: Config, ids: Sequence[str]) -> int:
    """The snapshot to compare with when no ``as_of`` is given.

    A target whose history holds the backfill's commits can still have no current
    snapshot (it was replaced, or its main branch was reset); comparing with no rows
    would report every row as removed, so that is an error that names the way out.
    """
    snap = target.current_snapshot()
    if snap is None:
        raise TableError(f"target table {tables.display_name(cfg, 'target')} has no current snapshot, although its "
                         f"history holds commits of {', '.join(ids)}; pass --as-of SNAPSHOT_ID to verify a snapshot")
    return snap.snapshot_id


def verify_backfill(cfg: Config, catalog: Catalog, backfill_ids: Sequence[str],
                    sample_accounts: Sequence[int] | None = None, as_of: int | None = None) -> VerifyReport:
    """Check the target against the rule for the applied entries of ``backfill_ids``."""
    from pyiceberg.expressions import And

    ids = tuple(sorted({check_backfill_id(b) for b in backfill_ids}))
    target = tables.load(catalog, cfg, "target")
    staging = tables.load(catalog, cfg, "staging")
    commits = first_commits(target, ids)
    if not commits:
        raise InputError(f"no commit of backfill id(s) {', '.join(ids)} is in the history of "
                         f"{tables.display_name(cfg, 'target')}; nothing to verify")
    after_snap = as_of if as_of is not None else _current_snapshot_id(target, cfg, ids)
    rows = staging.scan(row_filter=And(one_of("backfill_id", set(ids)), equal("status", StagingStatus.APPLIED.value))
                        ).to_arrow().to_pylist()
    value_cols = [hc.value_column for hc in cfg.tables.history_columns]
    history = [hc.array_column for hc in cfg.tables.history_columns]
    entries = validate_rows(rows, value_cols)
    if sample_accounts:
        keep = set(sample_accounts)
        entries = [e for e in entries if e.acct in keep]
    mismatches: list[Mismatch] = []
    n_rows = n_cells = 0
    overlong: list[Overlong] = []
    for partition in sorted(commits):
        snap = commits[partition]
        before = _rows(target, snap.parent_snapshot_id, cfg, partition, sample_accounts)
        after = _rows(target, after_snap, cfg, partition, sample_accounts)
        updates = expected_updates(entries, partition, cfg.tables.window, history)
        for acct in sorted(set(before) | set(after)):
            problems, cells = check_row(partition, acct, before.get(acct), after.get(acct),
                                        updates.get(acct, {}), history, cfg.tables.window)
            mismatches += problems
            n_rows += 1
            n_cells += cells
        overlong += overlong_in_rows(partition, after, history, cfg.tables.window)
    note = overlong_note(overlong, cfg.tables.window, "in the checked rows")
    notes = [note] if note else []
    return VerifyReport(ids, len(commits), n_rows, n_cells, tuple(mismatches), tuple(notes))
