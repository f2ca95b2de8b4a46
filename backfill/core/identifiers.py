"""Validation and quoting of everything that is spliced into SQL text.

Nothing user-supplied reaches SQL except through these functions: identifiers must
match a conservative pattern and are then back-quoted; string literals must match the
pattern of their kind (month, backfill id) and are then single-quoted. Rejecting rather
than escaping keeps the generated SQL readable and reviewable by hand.
"""

from __future__ import annotations

import re
from decimal import Decimal

from backfill.core.months import is_month
from backfill.errors import ConfigError, InputError

#: Always used with ``fullmatch``: ``re.match`` with ``$`` would accept a trailing newline.
_IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
_BACKFILL_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:\-]{0,127}")


def check_identifier(name: object, what: str = "identifier") -> str:
    """Return ``name`` if it is a plain SQL identifier (letters, digits, underscore).

    Raises:
        ConfigError: naming ``what`` and the value otherwise.
    """
    if not isinstance(name, str) or _IDENT_RE.fullmatch(name) is None:
        raise ConfigError(
            f"{what} {name!r} is not a plain identifier: use letters, digits and '_' "
            "and start with a letter or '_'"
        )
    return name


def quote_identifier(name: str, what: str = "identifier") -> str:
    """Back-quoted identifier after validation."""
    return f"`{check_identifier(name, what)}`"


def split_table_name(name: object, what: str = "table name") -> tuple[str, ...]:
    """Split 'a.b.c' into validated parts (2 or 3 parts: [catalog.]namespace.table)."""
    if not isinstance(name, str):
        raise ConfigError(f"{what} must be a string like 'db.table', got {name!r}")
    parts = tuple(name.split("."))
    if len(parts) not in (2, 3):
        raise ConfigError(f"{what} {name!r} must have the form [catalog.]namespace.table")
    for part in parts:
        check_identifier(part, f"part {part!r} of {what} {name!r}")
    return parts


def quote_table(parts: tuple[str, ...]) -> str:
    """Back-quoted dotted table name from validated parts."""
    return ".".join(quote_identifier(p) for p in parts)


def check_backfill_id(value: object) -> str:
    """Return ``value`` if it is a safe backfill id (letters, digits, '_', '.', ':', '-')."""
    if not isinstance(value, str) or _BACKFILL_ID_RE.fullmatch(value) is None:
        raise InputError(
            f"backfill id {value!r} is not valid: use 1-128 letters, digits, '_', '.', ':' or '-', "
            "starting with a letter or digit"
        )
    return value


def string_literal(value: str) -> str:
    """Single-quoted literal for a value that already passed a strict pattern check."""
    if not (is_month(value) or _BACKFILL_ID_RE.fullmatch(value) or _IDENT_RE.fullmatch(value)):
        raise InputError(f"value {value!r} cannot be used as a SQL literal")
    return f"'{value}'"


def month_literal(value: str) -> str:
    """Quoted 'YYYY-MM' literal; rejects anything else."""
    if not is_month(value):
        raise InputError(f"month {value!r} is not of the form 'YYYY-MM'")
    return f"'{value}'"


def int_literal(value: object, what: str = "integer") -> str:
    """Decimal text of a Python int (bool rejected)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{what} must be an integer, got {value!r}")
    return str(value)


def decimal_literal(value: Decimal, precision: int = 18, scale: int = 2) -> str:
    """Typed DECIMAL literal; rejects values that do not fit DECIMAL(precision, scale)."""
    if not isinstance(value, Decimal) or not value.is_finite():
        raise InputError(f"value {value!r} is not a finite decimal")
    quantized = value.quantize(Decimal(1).scaleb(-scale))
    if quantized != value or len(quantized.as_tuple().digits) > precision:
        raise InputError(f"value {value} does not fit DECIMAL({precision},{scale})")
    return f"CAST('{quantized}' AS DECIMAL({precision},{scale}))"
