"""Staged entries: the validated input of a run.

Validation happens on the driver, on the rows read from one pinned staging snapshot,
before any table is touched. Every problem found is reported (up to a limit) with the
row that causes it, so a user fixes the whole batch in one go instead of one error per
run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, InvalidOperation

from backfill.core.identifiers import check_backfill_id
from backfill.core.months import is_month, parse_month
from backfill.errors import InputError

#: Every staged value and history element is DECIMAL(18,2): the table schemas and the
#: validation both read these.
VALUE_PRECISION = 18
VALUE_SCALE = 2

_MAX_REPORTED = 20
_LONG_MIN, _LONG_MAX = -(2**63), 2**63 - 1
_VALUE_LIMIT = Decimal(10) ** (VALUE_PRECISION - VALUE_SCALE)


#: How :meth:`Entry.from_packed` values are joined: the DECIMAL texts in column order,
#: an empty text for NULL (a decimal's text never holds the separator).
PACKED_SEPARATOR = "|"


class Entry:
    """One pending staged value set: account ``acct`` had ``values`` in ``month``.

    ``values`` follows the configured history columns; None means "leave untouched".

    Why the values may stay packed: a seed-sized run stages a million entries of twenty
    values each, and twenty ``Decimal`` objects per entry held the driver at gigabytes.
    Entries read from a staging table keep their values as the one text Arrow made of
    them (:meth:`from_packed`); ``values`` decodes them when asked, which only the few
    places that write or compare values do. Both kinds are equal and hash alike when
    their values are, and fingerprint alike (a DECIMAL's text is ``str`` of its Decimal).
    """

    __slots__ = ("month", "acct", "backfill_id", "_values", "_packed")
    month: str
    acct: int
    backfill_id: str
    _values: tuple[Decimal | None, ...] | None
    _packed: str | None

    def __init__(self, month: str, acct: int, backfill_id: str, values: Sequence[Decimal | None]) -> None:
        self._set(month, acct, backfill_id, tuple(values), None)

    @classmethod
    def from_packed(cls, month: str, acct: int, backfill_id: str, packed: str) -> Entry:
        """An entry whose values are ``packed`` (see :data:`PACKED_SEPARATOR`)."""
        entry = cls.__new__(cls)
        entry._set(month, acct, backfill_id, None, packed)
        return entry

    def _set(self, month: str, acct: int, backfill_id: str, values: tuple[Decimal | None, ...] | None,
             packed: str | None) -> None:
        for name, value in (("month", month), ("acct", acct), ("backfill_id", backfill_id), ("_values", values),
                            ("_packed", packed)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Entry is immutable (tried to set {name})")

    def __reduce__(self) -> tuple[object, ...]:
        """Pickled as it is held (actors receive entries in their MERGE batches)."""
        if self._packed is not None:
            return (Entry.from_packed, (self.month, self.acct, self.backfill_id, self._packed))
        return (Entry, (self.month, self.acct, self.backfill_id, self._values))

    @property
    def values(self) -> tuple[Decimal | None, ...]:
        if self._values is not None:
            return self._values
        assert self._packed is not None
        return tuple(Decimal(t) if t else None for t in self._packed.split(PACKED_SEPARATOR))

    def _texts(self) -> tuple[str | None, ...]:
        if self._packed is not None:
            return tuple(t or None for t in self._packed.split(PACKED_SEPARATOR))
        assert self._values is not None
        return tuple(None if v is None else str(v) for v in self._values)

    def _key(self) -> tuple[str, int, str, tuple[Decimal | None, ...]]:
        return (self.month, self.acct, self.backfill_id, self.values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Entry) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __lt__(self, other: Entry) -> bool:
        return self.sort_key() < other.sort_key()

    def __repr__(self) -> str:
        return (f"Entry(month={self.month!r}, acct={self.acct!r}, backfill_id={self.backfill_id!r}, "
                f"values={self.values!r})")

    @property
    def month_index(self) -> int:
        return parse_month(self.month)

    def sort_key(self) -> tuple[str, int, str]:
        """The order entries are kept and hashed in; unique within a run (one entry per
        id, account and month), so the values never need comparing."""
        return (self.month, self.acct, self.backfill_id)

    def fingerprint(self) -> bytes:
        """This entry's line in :func:`digest`."""
        return repr((self.backfill_id, self.acct, self.month, self._texts())).encode() + b"\n"


def _describe_row(row: Mapping[str, object]) -> str:
    return (f"row (backfill_id={row.get('backfill_id')!r}, acct={row.get('acct')!r}, "
            f"backfill_month={row.get('backfill_month')!r})")


def _parse_value(value: object) -> tuple[Decimal | None, str | None]:
    """``(decimal, None)`` for a NULL or a value that fits DECIMAL(18,2), else ``(None, why not)``.

    int and str convert exactly; a float or a bool is refused rather than rounded, as its
    binary value is not the decimal that was meant.
    """
    if value is None:
        return None, None
    if type(value) is Decimal and _fits(value):  # what a DECIMAL(18,2) column reads back as
        return value, None
    if isinstance(value, bool) or not isinstance(value, (Decimal, int, str)):
        return None, f"value {value!r} is not a decimal"
    try:
        d = Decimal(value)
    except (InvalidOperation, ValueError):
        return None, f"value {value!r} is not a decimal"
    if not d.is_finite():
        return None, f"value {value!r} is not finite"
    exp = d.as_tuple().exponent
    if isinstance(exp, int) and exp < -VALUE_SCALE:
        return None, f"value {value} has more than {VALUE_SCALE} decimal places"
    if abs(d) >= _VALUE_LIMIT:
        return None, f"value {value} does not fit DECIMAL({VALUE_PRECISION},{VALUE_SCALE})"
    return d, None


def _fits(d: Decimal) -> bool:
    """A finite decimal with at most two places that fits DECIMAL(18,2)."""
    exp = d.as_tuple().exponent
    return isinstance(exp, int) and exp >= -VALUE_SCALE and -_VALUE_LIMIT < d < _VALUE_LIMIT


def _row_key(row: Mapping[str, object]) -> tuple[str, int, str]:
    """``(backfill_id, acct, month)`` of a row; raises InputError at the first bad one.

    A row whose key is bad is reported once, for its key: its values cannot be placed.
    """
    bid = check_backfill_id(row.get("backfill_id"))
    acct = row.get("acct")
    if acct is None:
        raise InputError("account is NULL")
    if isinstance(acct, bool) or not isinstance(acct, int) or not _LONG_MIN <= acct <= _LONG_MAX:
        raise InputError(f"account {acct!r} is not a 64-bit integer")
    month = row.get("backfill_month")
    if not is_month(month):
        raise InputError(f"backfill_month {month!r} is not of the form 'YYYY-MM'")
    return bid, acct, month


def _row_values(row: Mapping[str, object],
                value_columns: Sequence[str]) -> tuple[tuple[Decimal | None, ...], list[str]]:
    """The row's values in column order, and one problem per column that does not fit.

    Every column is checked, so a row with several bad values is fixed in one go.
    """
    values: list[Decimal | None] = []
    problems: list[str] = []
    for col in value_columns:
        value, err = _parse_value(row.get(col))
        if err:
            problems.append(f"column {col!r}: {err}")
        else:
            values.append(value)
    return tuple(values), problems


def _row_entry(row: Mapping[str, object], value_columns: Sequence[str]) -> tuple[Entry | None, list[str]]:
    """The row's entry, or None and the problems (without the row's description) that stop it."""
    try:
        bid, acct, month = _row_key(row)
    except InputError as exc:
        return None, [str(exc)]
    values, problems = _row_values(row, value_columns)
    if problems:
        return None, problems
    return Entry(month=month, acct=acct, backfill_id=bid, values=values), []


def _invalid_rows(problems: Sequence[str]) -> InputError:
    """One error for the whole batch, capped so that a wholly bad staging table stays readable."""
    shown = problems[:_MAX_REPORTED]
    more = len(problems) - len(shown)
    tail = f"\n  ... and {more} more" if more else ""
    return InputError(
        f"{len(problems)} invalid staging row(s); nothing was written:\n  "
        + "\n  ".join(shown) + tail
    )


def validate_rows(rows: Iterable[Mapping[str, object]], value_columns: Sequence[str]) -> list[Entry]:
    """Turn staging rows into entries, or raise one InputError listing every bad row.

    Checks: backfill id shape, NULL or out-of-range account, malformed month, values
    that do not fit DECIMAL(18,2), and two pending entries for the same (acct, month)
    in one backfill id. The same (acct, month) under two ids is a correction of a
    correction, which the series rule settles (:mod:`backfill.core.series`).
    """
    problems: list[str] = []
    entries: list[Entry] = []
    seen: set[tuple[str, int, str]] = set()
    for row in rows:
        where = _describe_row(row)
        entry, row_problems = _row_entry(row, value_columns)
        problems += [f"{where}: {p}" for p in row_problems]
        if entry is None:
            continue
        key = (entry.backfill_id, entry.acct, entry.month)
        if key in seen:
            problems.append(
                f"{where}: duplicate entry for acct={entry.acct} month={entry.month!r} in "
                f"backfill_id={entry.backfill_id!r}; keep one pending row per account and month in one backfill"
            )
            continue
        seen.add(key)
        entries.append(entry)
    if problems:
        raise _invalid_rows(problems)
    entries.sort(key=Entry.sort_key)
    return entries


def digest(entries: Iterable[Entry]) -> str:
    """Content fingerprint of a set of entries (order-independent).

    Stored in each partition commit's snapshot summary: a resume that finds a commit
    with the same partition and digest knows that exact work is already in the table.
    """
    return digest_of_blocks([b"".join(e.fingerprint() for e in sorted(entries, key=Entry.sort_key))])


def digest_of_blocks(blocks: Iterable[bytes]) -> str:
    """:func:`digest` of entries whose fingerprints are joined in ``blocks``, in sort order.

    Why blocks: a planner hashes each month's entries once and every partition in their
    window reuses the block, instead of re-formatting each entry once per partition.
    """
    h = hashlib.sha256()
    for block in blocks:
        h.update(block)
    return h.hexdigest()[:32]


def lenient_values(row: Mapping[str, object], value_columns: Sequence[str]) -> tuple[Decimal | None, ...]:
    """The row's values, with a value that does not fit read as NULL.

    For rows of other backfills that compete for a run's cells: such a row is validated
    (and refused) when its own run reads it; here a bad value simply claims no cell.
    """
    return tuple(_parse_value(row.get(col))[0] for col in value_columns)
