"""Month arithmetic on 'YYYY-MM' strings.

Months are compared and subtracted as integers (year * 12 + month - 1) so that the
offset of the update rule is exact; calendar tricks such as ``months_between`` on dates
are what made the naive approach read the wrong partitions.
"""

from __future__ import annotations

import re
from typing import TypeGuard

from backfill.errors import InputError

#: ASCII digits only (``\d`` would accept e.g. fullwidth digits) and no trailing newline
#: (``$`` matches before one): used with ``fullmatch``.
_MONTH_RE = re.compile(r"([0-9]{4})-(0[1-9]|1[0-2])")


def is_month(value: object) -> TypeGuard[str]:
    """True when ``value`` is a string of the exact form 'YYYY-MM' with a month 01..12."""
    return isinstance(value, str) and _MONTH_RE.fullmatch(value) is not None


def parse_month(value: object, what: str = "month") -> int:
    """Return the month index of a 'YYYY-MM' string.

    Raises:
        InputError: naming ``what`` and the bad value when it is not 'YYYY-MM'.
    """
    if not isinstance(value, str):
        raise InputError(f"{what} must be a 'YYYY-MM' string, got {value!r}")
    match = _MONTH_RE.fullmatch(value)
    if match is None:
        raise InputError(f"{what} {value!r} is not a month of the form 'YYYY-MM' (e.g. '2023-12')")
    return int(match.group(1)) * 12 + int(match.group(2)) - 1


def format_month(index: int) -> str:
    """Inverse of :func:`parse_month`."""
    year, month0 = divmod(index, 12)
    return f"{year:04d}-{month0 + 1:02d}"


def month_offset(partition: str, month: str) -> int:
    """Offset k of ``month`` inside the history arrays of ``partition`` (may be negative)."""
    return parse_month(partition) - parse_month(month)


def add_months(month: str, n: int) -> str:
    """``month`` shifted by ``n`` months."""
    return format_month(parse_month(month) + n)


def month_range(first: str, last: str) -> list[str]:
    """All months from ``first`` to ``last`` inclusive, oldest first (empty if last < first)."""
    return [format_month(i) for i in range(parse_month(first), parse_month(last) + 1)]


def window_partitions(month: str, window: int) -> tuple[str, str]:
    """First and last partition whose arrays cover ``month``: [month, month + window - 1]."""
    return month, add_months(month, window - 1)
