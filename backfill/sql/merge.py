"""SQL for one partition's MERGE INTO, generated from validated configuration.

Why a map per column: the entries of every staged month that falls in the partition's
window are folded into one ``map<offset, value>`` per account and history column, so
one MERGE applies all months at once, each at its own offset. The new array is built
element by element (``transform`` over ``sequence``), which pads a NULL or short array
with NULLs up to the offset and never moves another element. The naive
``concat(slice, array(v), slice)`` splice puts the value at the wrong index when the
array is shorter than the offset; that is not done here.

Every identifier goes through :mod:`backfill.core.identifiers` and every literal is either
a validated month, a validated backfill id or an integer.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING

from backfill.config import Config, HistoryColumn
from backfill.core.entries import VALUE_PRECISION, VALUE_SCALE
from backfill.core.identifiers import (
    check_backfill_id,
    check_identifier,
    decimal_literal,
    int_literal,
    month_literal,
    quote_identifier,
    quote_table,
    string_literal,
)
from backfill.core.months import add_months, parse_month
from backfill.core.states import StagingStatus

if TYPE_CHECKING:
    from backfill.core.entries import Entry

#: The staging status literal every statement filters on.
_PENDING = string_literal(StagingStatus.PENDING.value)

_MAP_SUFFIX = "__updates"

#: Up to this many entries a batch's source is an inline literal table built from the
#: planned entries (no staging scan); above it, the pinned staging snapshot is read, when
#: its pending rows are the planned entries (no series rule changed them). The literal's
#: parsing and analysis grow with its rows: measured with the benchmark's table (one MERGE
#: of 6 partitions, local[2]), 2,400 entries took 5.2 s warm and 15.7 s on a cold JVM as
#: a literal against 4.2 s and 14.0 s from staging; at 1,200 entries the two were even.
LITERAL_SOURCE_MAX_ENTRIES = 1_000
#: Up to this many accounts the ON clause carries ``t.acct IN (<literals>)``: Iceberg
#: projects it through bucket(N, acct) to drop untouched buckets' files, and checks file
#: and row-group min/max. Above it, no account predicate.
ACCT_IN_MAX = 5_000
#: Values per IN list. Iceberg's InclusiveMetricsEvaluator and Parquet row-group filters
#: stop using min/max for an IN of more values (their IN_PREDICATE_LIMIT, 200), so a longer
#: list is split into lists of this size joined with OR, each of which they still check.
IN_BOUNDS_MAX = 200


def _q(name: str) -> str:
    return quote_identifier(name)


def target_table(cfg: Config, branch: str | None = None) -> str:
    """The quoted target, or its branch ``branch`` (Iceberg's ``branch_<name>`` suffix:
    Spark reads and writes that branch instead of main)."""
    parts: tuple[str, ...] = cfg.table_parts("target")
    if branch is not None:
        parts = (*parts, f"branch_{check_identifier(branch, 'branch')}")
    return quote_table(parts)


def _partition_list(partitions: str | Sequence[str]) -> list[str]:
    """Validated, sorted, distinct partition months (one month or several)."""
    ps = [partitions] if isinstance(partitions, str) else list(partitions)
    if not ps:
        raise ValueError("at least one partition is needed")
    for p in ps:
        month_literal(p)  # raises on anything that is not 'YYYY-MM'
    return sorted(set(ps))


def _month_index(expr: str) -> str:
    """SQL month index (year * 12 + month - 1) of a validated 'YYYY-MM' column."""
    return (f"(CAST(substring({expr}, 1, 4) AS INT) * 12 "
            f"+ CAST(substring({expr}, 6, 2) AS INT) - 1)")


def updates_sql(cfg: Config, rows: str, where: str, partitions: str | Sequence[str]) -> str:
    """Per (partition, account) updates from a staging-shaped relation ``rows`` (alias ``s``).

    Each row is paired with every partition of ``partitions`` whose window holds its
    month (offset k = index(P) - index(m) in 0..W-1) and folded into one
    ``map<k, value>`` per history column. The partitions are a literal relation, so one
    MERGE can serve several partitions: its source carries each row's partition.
    """
    ps = _partition_list(partitions)
    t = cfg.tables
    window = t.window
    offset = f"(p.`p_index` - {_month_index('s.`backfill_month`')})"
    maps = []
    for hc in t.history_columns:
        v = f"s.{_q(hc.value_column)}"
        maps.append(
            f"    map_from_entries(collect_list(CASE WHEN {v} IS NOT NULL "
            f"THEN struct({offset} AS k, {v} AS v) END)) AS {_q(hc.array_column + _MAP_SUFFIX)}"
        )
    plist = ", ".join(f"({month_literal(p)}, {int_literal(parse_month(p))})" for p in ps)
    return (
        "SELECT\n"
        f"    s.`acct` AS {_q(t.account_column)},\n"
        f"    p.`p_month` AS {_q(t.month_column)},\n"
        + ",\n".join(maps) + "\n"
        f"  FROM {rows}\n"
        f"  JOIN (VALUES {plist}) AS p(`p_month`, `p_index`)\n"
        f"    ON {offset} BETWEEN 0 AND {int_literal(window - 1)}\n"
        + (f"  WHERE {where}\n" if where else "")
        + "  GROUP BY s.`acct`, p.`p_month`"
    )


def staging_source_sql(
    cfg: Config,
    partitions: str | Sequence[str],
    backfill_ids: Sequence[str],
    staging_snapshot_id: int | None = None,
    months: Sequence[str] | None = None,
) -> str:
    """Updates for ``partitions`` read from staging: one ``map<int, decimal>`` per column.

    Only pending rows of the given backfill ids whose month lies in some partition's
    window are read (``months`` narrows to those months); ``staging_snapshot_id`` pins
    the staging snapshot the driver validated, so the MERGE applies exactly the
    validated rows.
    """
    ps = _partition_list(partitions)
    first = add_months(ps[0], -(cfg.tables.window - 1))
    ids = ", ".join(string_literal(check_backfill_id(b)) for b in sorted(set(backfill_ids)))
    if not ids:
        raise ValueError("at least one backfill id is needed")
    staging = quote_table(cfg.table_parts("staging"))
    if staging_snapshot_id is not None:
        staging += f" VERSION AS OF {int_literal(staging_snapshot_id, 'staging snapshot id')}"
    where = (f"s.`backfill_id` IN ({ids})\n"
             f"    AND s.`status` = {_PENDING}\n"
             f"    AND s.`backfill_month` BETWEEN {month_literal(first)} AND {month_literal(ps[-1])}")
    if months is not None:
        where += f"\n    AND s.`backfill_month` IN ({', '.join(month_literal(m) for m in sorted(set(months)))})"
    return updates_sql(cfg, f"{staging} s", where, ps)


def entries_source_sql(cfg: Config, partitions: str | Sequence[str], entries: Sequence[Entry]) -> str:
    """The same updates as :func:`staging_source_sql`, from planned entries.

    The entries are inlined as a literal table, so a MERGE needs no staging scan
    (Iceberg planning plus a Parquet read) and its source is a tiny local relation Spark
    broadcasts. Every entry must lie in the window of at least one of ``partitions``;
    the planner guarantees that, and it is checked here. Values become typed DECIMAL
    literals.
    """
    window = cfg.tables.window
    ps = _partition_list(partitions)
    indexes = [parse_month(p) for p in ps]
    if not entries:
        raise ValueError("at least one entry is needed")
    cols = cfg.tables.history_columns
    rows = []
    for e in entries:
        if not any(0 <= i - parse_month(e.month) <= window - 1 for i in indexes):
            where = ps[0] if len(ps) == 1 else f"any of {ps[0]}..{ps[-1]}"
            raise ValueError(f"entry acct={e.acct} month={e.month} is outside the window of {where}")
        if len(e.values) != len(cols):
            raise ValueError(f"entry acct={e.acct} month={e.month} has {len(e.values)} values, "
                             f"expected {len(cols)}")
        vals = ", ".join("CAST(NULL AS DECIMAL(18,2))" if v is None else decimal_literal(v)
                         for v in e.values)
        rows.append(f"({int_literal(e.acct, 'account')}, {month_literal(e.month)}, {vals})")
    names = ", ".join(["`acct`", "`backfill_month`"] + [_q(hc.value_column) for hc in cols])
    values = "VALUES\n    " + ",\n    ".join(rows) + f"\n    AS s({names})"
    return updates_sql(cfg, values, "", ps)


def account_predicate(cfg: Config, accounts: Iterable[int] | None, alias: str = "t") -> str:
    """`` AND t.acct IN (...)`` for at most :data:`ACCT_IN_MAX` accounts (lists of
    :data:`IN_BOUNDS_MAX` joined with OR), else ``""``.

    A target-only literal predicate in the ON clause is pushed into the MERGE's scan:
    files of buckets holding none of the accounts are skipped from partition values
    alone, and file and row-group min/max prune further for short lists. It never
    changes which rows match: a row can only match an account of the source.
    """
    if accounts is None:
        return ""
    accts = sorted(set(accounts))
    if not accts or len(accts) > ACCT_IN_MAX:
        return ""
    col = f"{alias}.{_q(cfg.tables.account_column)}"
    lists = [", ".join(int_literal(a, "account") for a in accts[i:i + IN_BOUNDS_MAX])
             for i in range(0, len(accts), IN_BOUNDS_MAX)]
    if len(lists) == 1:
        return f" AND {col} IN ({lists[0]})"
    return " AND (" + " OR ".join(f"{col} IN ({listed})" for listed in lists) + ")"


def updated_array_sql(hc: HistoryColumn, target_alias: str = "t", source_alias: str = "s") -> str:
    """Expression for the new value of one history array.

    With updates map ``u`` and current array ``h``: if ``u`` is empty the array is left
    exactly as it is (a NULL array stays NULL); otherwise the result has length
    ``max(len(h), max(k) + 1)`` and element i is ``u[i]`` when staged, else ``h[i]``
    (NULL past the end of ``h``). Offsets are below the window, so an array never grows
    past W, and an array already longer than W is never made longer.
    """
    h = f"{target_alias}.{_q(hc.array_column)}"
    u = f"{source_alias}.{_q(hc.array_column + _MAP_SUFFIX)}"
    length = f"greatest(CASE WHEN {h} IS NULL THEN 0 ELSE size({h}) END, array_max(map_keys({u})) + 1)"
    return (
        f"CASE WHEN {u} IS NULL OR cardinality({u}) = 0 THEN {h}\n"
        f"         ELSE transform(sequence(0, {length} - 1),\n"
        f"                        i -> CASE WHEN map_contains_key({u}, i) THEN {u}[i] ELSE get({h}, i) END)\n"
        "       END"
    )


def partition_predicate(cfg: Config, partitions: str | Sequence[str], alias: str = "t") -> str:
    """``t.month = 'P'`` for one partition, ``t.month IN (...)`` for several.

    A literal on the partition column in the ON clause lets Iceberg prune to exactly
    these partitions and becomes the commit's conflict filter, so MERGEs of disjoint
    partitions running in parallel never conflict with each other.
    """
    ps = _partition_list(partitions)
    col = f"{alias}.{_q(cfg.tables.month_column)}"
    if len(ps) == 1:
        return f"{col} = {month_literal(ps[0])}"
    return f"{col} IN ({', '.join(month_literal(p) for p in ps)})"


def merge_sql(cfg: Config, partitions: str | Sequence[str], source_sql: str,
              accounts: Iterable[int] | None = None, branch: str | None = None) -> str:
    """MERGE INTO the target for one or several partitions, pinned to their literals.

    The source carries each row's partition (:func:`updates_sql`), so a row only ever
    matches the target row of its own partition and account. Only matched rows are
    updated; missing rows are never created. With ``accounts`` (the source's accounts),
    a literal account predicate is added for pruning (:func:`account_predicate`). With
    ``branch``, the MERGE reads and commits to that branch of the target.
    """
    t = cfg.tables
    target = target_table(cfg, branch)
    acct, month = _q(t.account_column), _q(t.month_column)
    sets = ",\n".join(f"    t.{_q(hc.array_column)} = {updated_array_sql(hc)}" for hc in t.history_columns)
    return (
        f"MERGE INTO {target} t\n"
        f"USING (\n  {source_sql}\n) s\n"
        f"ON {partition_predicate(cfg, partitions)} AND t.{month} = s.{month} AND t.{acct} = s.{acct}"
        f"{account_predicate(cfg, accounts)}\n"
        "WHEN MATCHED THEN UPDATE SET\n"
        f"{sets}"
    )


def matched_rows_sql(cfg: Config, partitions: str | Sequence[str], source_sql: str,
                     accounts: Iterable[int] | None = None, branch: str | None = None) -> str:
    """Per partition, the target rows that have updates (the rows the MERGE rewrites)."""
    t = cfg.tables
    target = target_table(cfg, branch)
    acct, month = _q(t.account_column), _q(t.month_column)
    return (
        f"SELECT t.{month} AS partition, count(*) AS matched\n"
        f"FROM {target} t\n"
        f"LEFT SEMI JOIN ({source_sql}) s ON t.{month} = s.{month} AND t.{acct} = s.{acct}\n"
        f"WHERE {partition_predicate(cfg, partitions)}"
        f"{account_predicate(cfg, accounts)}\n"
        f"GROUP BY t.{month}"
    )


def mark_staging_sql(
    cfg: Config,
    backfill_ids: Sequence[str],
    months: Sequence[str],
    staging_snapshot_id: int | None,
    status: StagingStatus,
    error: str | None = None,
) -> str:
    """Move pending staging rows of the given months to ``status`` (applied or rejected).

    The rows are matched against the pinned staging snapshot, so a row staged after the
    run was planned is never marked by it.
    """
    if status not in (StagingStatus.APPLIED, StagingStatus.REJECTED):
        raise ValueError(f"status must be applied or rejected, got {status!r}")
    staging = quote_table(cfg.table_parts("staging"))
    pinned = staging
    if staging_snapshot_id is not None:
        pinned += f" VERSION AS OF {int_literal(staging_snapshot_id, 'staging snapshot id')}"
    ids = ", ".join(string_literal(check_backfill_id(b)) for b in sorted(set(backfill_ids)))
    ms = ", ".join(month_literal(m) for m in sorted(set(months)))
    err = "CAST(NULL AS STRING)" if error is None else _error_literal(error)
    return (
        f"MERGE INTO {staging} st\n"
        "USING (\n"
        f"  SELECT DISTINCT `backfill_id`, `acct`, `backfill_month` FROM {pinned}\n"
        f"  WHERE `status` = {_PENDING} AND `backfill_id` IN ({ids}) AND `backfill_month` IN ({ms})\n"
        ") p\n"
        "ON st.`backfill_id` = p.`backfill_id` AND st.`acct` = p.`acct`\n"
        f"   AND st.`backfill_month` = p.`backfill_month` AND st.`status` = {_PENDING}\n"
        f"WHEN MATCHED THEN UPDATE SET st.`status` = {string_literal(StagingStatus(status).value)}, "
        f"st.`processed_at` = current_timestamp(), st.`error` = {err}"
    )


def _array_literal(values: Sequence[Decimal | None] | None) -> str:
    typ = f"ARRAY<DECIMAL({VALUE_PRECISION},{VALUE_SCALE})>"
    if values is None:
        return f"CAST(NULL AS {typ})"
    items = ", ".join(f"CAST(NULL AS DECIMAL({VALUE_PRECISION},{VALUE_SCALE}))" if v is None else decimal_literal(v)
                      for v in values)
    return f"CAST(array({items}) AS {typ})"


def restore_sql(cfg: Config, rows: Mapping[tuple[str, int], Mapping[str, Sequence[Decimal | None] | None]],
                branch: str | None = None) -> str:
    """MERGE that sets whole history arrays of the given rows (``rollback``).

    ``rows`` maps (partition, acct) to {array column: new array}; a column a row does not
    name keeps its value (a flag per column says which are set). Arrays are literals of
    validated decimals; identifiers come from the configuration.
    """
    if not rows:
        raise ValueError("at least one row is needed")
    t = cfg.tables
    cols = [hc.array_column for hc in t.history_columns]
    lines = []
    for (partition, account), arrays in sorted(rows.items()):
        unknown = set(arrays) - set(cols)
        if unknown:
            raise ValueError(f"unknown history column(s) {sorted(unknown)}")
        cells = [f"{_array_literal(arrays.get(c))}, {'true' if c in arrays else 'false'}" for c in cols]
        lines.append(f"({int_literal(account, 'account')}, {month_literal(partition)}, {', '.join(cells)})")
    names = ", ".join(["`r_acct`", "`r_month`"] + [f"{_q(c)}, {_q(c + '__set')}" for c in cols])
    acct, month = _q(t.account_column), _q(t.month_column)
    sets = ",\n".join(f"    t.{_q(c)} = CASE WHEN s.{_q(c + '__set')} THEN s.{_q(c)} ELSE t.{_q(c)} END"
                      for c in cols)
    return (
        f"MERGE INTO {target_table(cfg, branch)} t\n"
        f"USING (SELECT * FROM VALUES\n    " + ",\n    ".join(lines) + f"\n    AS s({names})) s\n"
        f"ON {partition_predicate(cfg, sorted({p for p, _ in rows}))} AND t.{month} = s.`r_month` "
        f"AND t.{acct} = s.`r_acct`\n"
        f"WHEN MATCHED THEN UPDATE SET\n{sets}"
    )


#: Rows per statement of :func:`set_status_sql` (a literal source stays small to parse).
STATUS_ROWS_PER_STATEMENT = 5_000


def set_status_sql(cfg: Config, rows: Sequence[tuple[str, int, str, str]], from_status: StagingStatus,
                   to_status: StagingStatus) -> str:
    """Move the named staging rows that are still ``from_status`` to ``to_status``.

    ``rows`` are ``(backfill_id, acct, backfill_month, reason)``: the series rule marks
    single rows (a superseded entry names the ids that replaced it), not whole months.
    Only rows still in ``from_status`` match, so a rerun is idempotent.
    """
    if not rows:
        raise ValueError("at least one staging row is needed")
    if len(rows) > STATUS_ROWS_PER_STATEMENT:
        raise ValueError(f"at most {STATUS_ROWS_PER_STATEMENT} rows per statement, got {len(rows)}")
    staging = quote_table(cfg.table_parts("staging"))
    values = ",\n    ".join(
        f"({string_literal(check_backfill_id(b))}, {int_literal(a, 'account')}, {month_literal(m)}, "
        f"{_error_literal(reason)})" for b, a, m, reason in rows)
    return (
        f"MERGE INTO {staging} st\n"
        f"USING (SELECT * FROM VALUES\n    {values}\n    AS k(`backfill_id`, `acct`, `backfill_month`, `reason`)) k\n"
        "ON st.`backfill_id` = k.`backfill_id` AND st.`acct` = k.`acct`\n"
        f"   AND st.`backfill_month` = k.`backfill_month` AND st.`status` = {string_literal(from_status.value)}\n"
        f"WHEN MATCHED THEN UPDATE SET st.`status` = {string_literal(to_status.value)}, "
        "st.`processed_at` = current_timestamp(), st.`error` = k.`reason`"
    )


def rollback_staging_sql(cfg: Config, backfill_ids: Sequence[str], reason: str) -> str:
    """Every row of ``backfill_ids`` still pending, applied or superseded becomes rolled back."""
    staging = quote_table(cfg.table_parts("staging"))
    ids = ", ".join(string_literal(check_backfill_id(b)) for b in sorted(set(backfill_ids)))
    live = ", ".join(string_literal(s.value) for s in
                     (StagingStatus.PENDING, StagingStatus.APPLIED, StagingStatus.SUPERSEDED))
    return (f"UPDATE {staging} SET `status` = {string_literal(StagingStatus.ROLLED_BACK.value)}, "
            f"`processed_at` = current_timestamp(), `error` = {_error_literal(reason)}\n"
            f"WHERE `backfill_id` IN ({ids}) AND `status` IN ({live})")


def revive_superseded_sql(cfg: Config, backfill_ids: Sequence[str]) -> str:
    """Rows of other ids that were superseded in a cell of ``backfill_ids`` become pending again.

    Run by ``rollback``: once the rolled-back rows no longer compete, an older correction
    may win its cells again, and only its own run (which resolves the series rule anew,
    and is idempotent) can say so and write it.
    """
    staging = quote_table(cfg.table_parts("staging"))
    ids = ", ".join(string_literal(check_backfill_id(b)) for b in sorted(set(backfill_ids)))
    return (
        f"MERGE INTO {staging} st\n"
        f"USING (SELECT DISTINCT `acct`, `backfill_month` FROM {staging} WHERE `backfill_id` IN ({ids})) k\n"
        "ON st.`acct` = k.`acct` AND st.`backfill_month` = k.`backfill_month`\n"
        f"   AND st.`status` = {string_literal(StagingStatus.SUPERSEDED.value)} AND st.`backfill_id` NOT IN ({ids})\n"
        f"WHEN MATCHED THEN UPDATE SET st.`status` = {_PENDING}, st.`processed_at` = CAST(NULL AS TIMESTAMP), "
        "st.`error` = CAST(NULL AS STRING)"
    )


def _error_literal(text: str) -> str:
    """A free-text reason as a SQL literal: only a safe character set survives."""
    safe = "".join(c if (c.isalnum() or c in " .,:;_-()/") else " " for c in text)[:500]
    return f"'{safe}'"
