"""Staged entries: the validated input of a run.

Validation happens on the driver, on the rows read from one pinned staging snapshot,
before any table is touched. Every problem found is reported (up to a limit) with the
row that causes it, so a user fixes the whole batch in one go instead of one error per
run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from backfill.core.identifiers import check_backfill_id
from backfill.core.months import is_month, parse_month
from backfill.errors import InputError

#: Every staged value and history element is DECIMAL(18,2): the table schemas and the
#: validation both read these.
VALUE_PRECISION = 18
VALUE_SCALE = 2

_MAX_REPORTED = 20
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True, order=True)
class Entry:
    """One pending staged value set: account ``acct`` had ``values`` in ``month``.

    ``values`` follows the configured history columns; None means "leave untouched".
    """

    month: str
    acct: int
    backfill_id: str
    values: tuple[Decimal | None, ...]

    @property
    def month_index(self) -> int:
        return parse_month(self.month)


def _describe_row(row: Mapping[str, Any]) -> str:
    return (f"row (backfill_id={row.get('backfill_id')!r}, acct={row.get('acct')!r}, "
            f"backfill_month={row.get('backfill_month')!r})")


def _check_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        return f"value {value!r} is not a decimal"
    try:
        d = Decimal(value)
    except (InvalidOperation, ValueError):
        return f"value {value!r} is not a decimal"
    if not d.is_finite():
        return f"value {value!r} is not finite"
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and exp < -VALUE_SCALE:
        return f"value {value} has more than {VALUE_SCALE} decimal places"
    if abs(d) >= Decimal(10) ** (VALUE_PRECISION - VALUE_SCALE):
        return f"value {value} does not fit DECIMAL({VALUE_PRECISION},{VALUE_SCALE})"
    return None


def validate_rows(rows: Iterable[Mapping[str, Any]], value_columns: Sequence[str]) -> list[Entry]:
    """Turn staging rows into entries, or raise one InputError listing every bad row.

    Checks: backfill id shape, NULL or out-of-range account, malformed month, values
    that do not fit DECIMAL(18,2), and two entries for the same (acct, month) in one run
    (also across backfill ids consolidated into the run).
    """
    problems: list[str] = []
    entries: list[Entry] = []
    seen: dict[tuple[int, str], str] = {}
    for row in rows:
        where = _describe_row(row)
        bid = row.get("backfill_id")
        try:
            check_backfill_id(bid)
        except InputError as exc:
            problems.append(f"{where}: {exc}")
            continue
        acct = row.get("acct")
        if acct is None:
            problems.append(f"{where}: account is NULL")
            continue
        if isinstance(acct, bool) or not isinstance(acct, int) or not _LONG_MIN <= acct <= _LONG_MAX:
            problems.append(f"{where}: account {acct!r} is not a 64-bit integer")
            continue
        month = row.get("backfill_month")
        if not is_month(month):
            problems.append(f"{where}: backfill_month {month!r} is not of the form 'YYYY-MM'")
            continue
        values: list[Decimal | None] = []
        bad = False
        for col in value_columns:
            v = row.get(col)
            err = _check_value(v)
            if err:
                problems.append(f"{where}: column {col!r}: {err}")
                bad = True
                continue
            values.append(None if v is None else Decimal(v))
        if bad:
            continue
        key = (acct, month)
        if key in seen:
            problems.append(
                f"{where}: duplicate entry for acct={acct} month={month!r} "
                f"(also staged under backfill_id={seen[key]!r}); keep one pending row per account and month"
            )
            continue
        seen[key] = bid
        entries.append(Entry(month=month, acct=acct, backfill_id=bid, values=tuple(values)))
    if problems:
        shown = problems[:_MAX_REPORTED]
        more = len(problems) - len(shown)
        tail = f"\n  ... and {more} more" if more else ""
        raise InputError(
            f"{len(problems)} invalid staging row(s); nothing was written:\n  "
            + "\n  ".join(shown) + tail
        )
    entries.sort()
    return entries


def digest(entries: Iterable[Entry]) -> str:
    """Content fingerprint of a set of entries (order-independent).

    Stored in each partition commit's snapshot summary: a resume that finds a commit
    with the same partition and digest knows that exact work is already in the table.
    """
    h = hashlib.sha256()
    for e in sorted(entries):
        h.update(repr((e.backfill_id, e.acct, e.month,
                       tuple(None if v is None else str(v) for v in e.values))).encode())
        h.update(b"\n")
    return h.hexdigest()[:32]
