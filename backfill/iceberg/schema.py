"""Schemas of the three tables the tool works with, and checks that live tables match.

The schemas are pyiceberg objects so that ``setup`` can create tables without a JVM and
the driver can check a live table before anything is written. History arrays and staged
values are DECIMAL(18,2): the staged value is written into the array unchanged, so the
two types must be equal or the MERGE would silently round.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from backfill.config import Config
from backfill.core.entries import VALUE_PRECISION, VALUE_SCALE
from backfill.errors import TableError

if TYPE_CHECKING:
    from pyiceberg.schema import Schema
    from pyiceberg.types import DecimalType



#: Staging bookkeeping columns besides the configured value columns, in table order.
STAGING_HEAD = ("backfill_id", "acct", "backfill_month")
STAGING_TAIL = ("created_at", "status", "processed_at", "error")

AUDIT_COLUMNS = (
    "backfill_id", "run_id", "target_partition", "status", "attempt", "entries",
    "rows_updated", "missing_rows", "duration_seconds", "started_at", "completed_at",
    "error", "snapshot_id", "actor", "node", "data_files_read", "data_files_written",
    "bytes_read", "bytes_written", "records_written", "delete_files_written",
)


def _decimal() -> DecimalType:
    from pyiceberg.types import DecimalType

    return DecimalType(VALUE_PRECISION, VALUE_SCALE)


def target_schema(cfg: Config) -> Schema:
    """Schema of the history table: account, month, one DECIMAL array per history column."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import ListType, LongType, NestedField, StringType

    t = cfg.tables
    fields = [
        NestedField(1, t.account_column, LongType(), required=True),
        NestedField(2, t.month_column, StringType(), required=True),
    ]
    next_id = 3
    for hc in t.history_columns:
        element = ListType(next_id + 1, _decimal(), element_required=False)
        fields.append(NestedField(next_id, hc.array_column, element, required=False))
        next_id += 2
    return Schema(*fields)


def staging_schema(cfg: Config) -> Schema:
    """Schema of ``backfill_staging``; acct and month are optional so bad rows can be reported."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import LongType, NestedField, StringType, TimestamptzType

    fields = [
        NestedField(1, "backfill_id", StringType(), required=False),
        NestedField(2, "acct", LongType(), required=False),
        NestedField(3, "backfill_month", StringType(), required=False),
    ]
    fid = 4
    for hc in cfg.tables.history_columns:
        fields.append(NestedField(fid, hc.value_column, _decimal(), required=False))
        fid += 1
    for name, typ in (("created_at", TimestamptzType()), ("status", StringType()),
                      ("processed_at", TimestamptzType()), ("error", StringType())):
        fields.append(NestedField(fid, name, typ, required=False))
        fid += 1
    return Schema(*fields)


def audit_schema() -> Schema:
    """Schema of ``backfill_audit``: one row per partition attempt."""
    from pyiceberg.schema import Schema
    from pyiceberg.types import DoubleType, IntegerType, LongType, NestedField, StringType, TimestamptzType

    types = {
        "attempt": IntegerType(), "entries": LongType(), "rows_updated": LongType(),
        "missing_rows": LongType(), "duration_seconds": DoubleType(),
        "started_at": TimestamptzType(), "completed_at": TimestamptzType(),
        "snapshot_id": LongType(), "data_files_read": LongType(),
        "data_files_written": LongType(), "bytes_read": LongType(), "bytes_written": LongType(),
        "records_written": LongType(), "delete_files_written": LongType(),
    }
    return Schema(*[
        NestedField(i + 1, name, types.get(name, StringType()), required=False)
        for i, name in enumerate(AUDIT_COLUMNS)
    ])


# ------------------------------------------------------------------------ live checks


def _describe(field_type: object) -> str:
    return str(field_type)


def check_target_schema(cfg: Config, live: Schema, table_name: str) -> None:
    """Raise TableError naming every configured column the live target lacks or mistypes."""
    from pyiceberg.types import DecimalType, IntegerType, ListType, LongType, StringType

    t = cfg.tables
    problems: list[str] = []
    by_name = {f.name: f for f in live.fields}
    acct = by_name.get(t.account_column)
    if acct is None:
        problems.append(f"account column {t.account_column!r} is missing")
    elif not isinstance(acct.field_type, (LongType, IntegerType)):
        problems.append(f"account column {t.account_column!r} is {_describe(acct.field_type)}, expected long")
    month = by_name.get(t.month_column)
    if month is None:
        problems.append(f"month column {t.month_column!r} is missing")
    elif not isinstance(month.field_type, StringType):
        problems.append(f"month column {t.month_column!r} is {_describe(month.field_type)}, expected string 'YYYY-MM'")
    for hc in t.history_columns:
        f = by_name.get(hc.array_column)
        if f is None:
            problems.append(f"history column {hc.array_column!r} is missing")
            continue
        ok = (isinstance(f.field_type, ListType)
              and isinstance(f.field_type.element_type, DecimalType)
              and f.field_type.element_type.precision == VALUE_PRECISION
              and f.field_type.element_type.scale == VALUE_SCALE)
        if not ok:
            problems.append(
                f"history column {hc.array_column!r} is {_describe(f.field_type)}, "
                f"expected list<decimal({VALUE_PRECISION}, {VALUE_SCALE})>"
            )
    if problems:
        raise TableError(f"target table {table_name}: " + "; ".join(problems))


def check_staging_schema(cfg: Config, live: Schema, table_name: str) -> None:
    """Raise TableError when staging columns do not match the configured history columns."""
    from pyiceberg.types import DecimalType, LongType, StringType

    by_name = {f.name: f for f in live.fields}
    problems: list[str] = []
    expected = {"backfill_id": StringType, "acct": LongType, "backfill_month": StringType,
                "status": StringType}
    for name, typ in expected.items():
        f = by_name.get(name)
        if f is None:
            problems.append(f"column {name!r} is missing")
        elif not isinstance(f.field_type, typ):
            problems.append(f"column {name!r} is {_describe(f.field_type)}")
    configured = {hc.value_column for hc in cfg.tables.history_columns}
    for name in sorted(configured):
        f = by_name.get(name)
        if f is None:
            problems.append(f"value column {name!r} (configured) is missing")
        elif not (isinstance(f.field_type, DecimalType) and f.field_type.precision == VALUE_PRECISION
                  and f.field_type.scale == VALUE_SCALE):
            problems.append(f"value column {name!r} is {_describe(f.field_type)}, "
                            f"expected decimal({VALUE_PRECISION}, {VALUE_SCALE})")
    known = set(STAGING_HEAD) | set(STAGING_TAIL) | configured
    extra = sorted(n for n in by_name if n not in known)
    if extra:
        problems.append(
            f"column(s) {extra} are not configured history value columns "
            "(add them to [tables].history_columns or drop them)"
        )
    if problems:
        raise TableError(
            f"staging table {table_name} does not match the configured history columns: "
            + "; ".join(problems)
        )
