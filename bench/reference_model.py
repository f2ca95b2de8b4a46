"""Independent pure-Python model of the update rule (DESIGN.md section 1): the oracle of the tests and the benchmark.

Deliberately written without any code from the engine: plain loops over dicts and lists.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from copy import deepcopy
from decimal import Decimal


def _month_index(month: str) -> int:
    year, mon = month.split("-")
    return int(year) * 12 + int(mon) - 1


def apply_rule(
    table: Mapping[tuple[int, str], Mapping[str, list | None]],
    entries: Sequence[tuple[int, str, Mapping[str, Decimal | None]]],
    window: int,
) -> dict[tuple[int, str], dict[str, list | None]]:
    """Return the table after applying ``entries``.

    Args:
        table: {(acct, partition): {array_column: list or None}}.
        entries: (acct, month, {array_column: staged value or None}).
        window: W.
    """
    result = {key: {c: (None if v is None else list(v)) for c, v in row.items()}
              for key, row in deepcopy(dict(table)).items()}
    for (acct, partition), row in result.items():
        for e_acct, month, values in entries:
            if e_acct != acct:
                continue
            k = _month_index(partition) - _month_index(month)
            if k < 0 or k > window - 1:
                continue
            for column, value in values.items():
                if value is None:
                    continue
                arr = row[column]
                arr = [] if arr is None else arr
                while len(arr) < k + 1:
                    arr.append(None)
                arr[k] = value
                row[column] = arr
    return result
