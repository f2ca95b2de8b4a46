"""Rollback as pure logic: which cells a backfill changed, and what each goes back to.

A backfill's own commits say exactly what it did: each one against its parent gives the
cells it changed, with the value before and the value written. Rolling back puts the
value before back, but only where the table still holds what the backfill wrote: a cell
someone wrote since (a later backfill, any other writer) keeps that newer value and is
listed instead. Arrays the backfill lengthened to reach an offset are shortened again
when the restored elements past their old end are all NULL.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

Cell = tuple[str, int, str, int]
"""(partition, acct, array column, offset)."""


@dataclass(frozen=True)
class Change:
    """What the backfill did to one cell: the value before its first write, the value
    after its last one, and the array's length before its first write (None: NULL)."""

    before: Decimal | None
    written: Decimal | None
    original_length: int | None


def changes_of(before: Mapping[int, Mapping[str, Any]], after: Mapping[int, Mapping[str, Any]],
               partition: str, columns: Sequence[str]) -> dict[Cell, Change]:
    """The cells one commit changed in one partition (rows by account, as read at the
    commit's parent and at the commit)."""
    out: dict[Cell, Change] = {}
    for acct in sorted(set(before) & set(after)):
        for col in columns:
            old, new = list(before[acct].get(col) or []), list(after[acct].get(col) or [])
            length = None if before[acct].get(col) is None else len(old)
            for k in range(max(len(old), len(new))):
                was = old[k] if k < len(old) else None
                now = new[k] if k < len(new) else None
                if was != now:
                    out[(partition, acct, col, k)] = Change(was, now, length)
    return out


def merge_changes(first: Mapping[Cell, Change], later: Mapping[Cell, Change]) -> dict[Cell, Change]:
    """Two commits' changes as one: the earlier 'before' and length, the later 'written'."""
    out = dict(first)
    for cell, ch in later.items():
        prev = out.get(cell)
        out[cell] = ch if prev is None else Change(prev.before, ch.written, prev.original_length)
    return out


@dataclass(frozen=True)
class Verdict:
    """The rollback of one backfill: cells to put back, cells kept and why."""

    restore: dict[Cell, Change]
    kept: dict[Cell, str]
    already: int


def judge(changes: Mapping[Cell, Change], current: Mapping[tuple[str, int], Mapping[str, Any]],
          later_rows: Iterable[Cell]) -> Verdict:
    """Decide every changed cell from the current rows ({(partition, acct): row}) and the
    cells a later-staged row of another backfill holds (``later_rows``)."""
    later = set(later_rows)
    restore: dict[Cell, Change] = {}
    kept: dict[Cell, str] = {}
    already = 0
    for cell, ch in sorted(changes.items()):
        partition, acct, col, k = cell
        row = current.get((partition, acct))
        arr = list((row or {}).get(col) or [])
        now = arr[k] if k < len(arr) else None
        if row is None:
            kept[cell] = "the row no longer exists"
        elif now == ch.before and now != ch.written:
            already += 1
        elif cell in later:
            kept[cell] = "a later backfill holds it"
        elif now != ch.written:
            kept[cell] = f"changed since by another writer (now {now})"
        else:
            restore[cell] = ch
    return Verdict(restore, kept, already)


def restored_arrays(verdict: Verdict, current: Mapping[tuple[str, int], Mapping[str, Any]]
                    ) -> dict[tuple[str, int], dict[str, list[Decimal | None] | None]]:
    """{(partition, acct): {column: new array}} for every row with a cell to restore."""
    by_array: dict[tuple[str, int, str], list[tuple[int, Change]]] = {}
    for (partition, acct, col, k), ch in verdict.restore.items():
        by_array.setdefault((partition, acct, col), []).append((k, ch))
    out: dict[tuple[str, int], dict[str, list[Decimal | None] | None]] = {}
    for (partition, acct, col), cells in by_array.items():
        arr: list[Decimal | None] = list(current[(partition, acct)].get(col) or [])
        for k, ch in cells:
            if k < len(arr):
                arr[k] = ch.before
        lengths = [ch.original_length for _, ch in cells]
        floor = None if any(n is None for n in lengths) else min(n for n in lengths if n is not None)
        out.setdefault((partition, acct), {})[col] = _trimmed(arr, floor)
    return out


def _trimmed(arr: list[Decimal | None], original_length: int | None) -> list[Decimal | None] | None:
    """Drop the NULL tail the backfill added past the array's old end (None: it was NULL)."""
    floor = original_length or 0
    end = len(arr)
    while end > floor and arr[end - 1] is None:
        end -= 1
    if original_length is None and end == 0:
        return None
    return arr[:end]
