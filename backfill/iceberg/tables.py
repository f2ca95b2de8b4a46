"""Creating, loading and reading the tables through pyiceberg (no JVM).

The driver plans from Iceberg metadata and a pinned staging snapshot read here; only
the MERGEs themselves need Spark.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from backfill.config import Config
from backfill.core.commit_tags import tagged_work
from backfill.core.names import MAIN_BRANCH
from backfill.core.series import COMPETING
from backfill.core.states import StagingStatus
from backfill.errors import TableError
from backfill.iceberg.filters import equal, one_of
from backfill.iceberg.schema import (
    audit_schema,
    check_staging_schema,
    check_target_schema,
    staging_schema,
    target_schema,
)
from backfill.prepared import MonthFilter

if TYPE_CHECKING:
    import pyarrow as pa
    from pyiceberg.catalog import Catalog
    from pyiceberg.expressions import BooleanExpression
    from pyiceberg.partitioning import PartitionSpec
    from pyiceberg.schema import Schema
    from pyiceberg.table import Table
    from pyiceberg.table.snapshots import Snapshot
    from pyiceberg.table.sorting import SortOrder

#: Target table properties set by ``setup`` (plus write mode and format, from the config).
#: Iceberg's own commit retries are raised because several partition MERGEs commit to one
#: table at once.
TARGET_PROPERTIES = {
    "commit.retry.num-retries": "20",
    "commit.retry.min-wait-ms": "100",
    "write.parquet.compression-codec": "zstd",
}


def target_properties(cfg: Config) -> dict[str, str]:
    """Properties of a new target: the configured write mode for MERGE, UPDATE and DELETE."""
    t = cfg.tables
    modes = {f"write.{op}.mode": t.write_mode for op in ("merge", "update", "delete")}
    return {"format-version": str(t.format_version), **modes, **TARGET_PROPERTIES}
BOOKKEEPING_PROPERTIES = {"format-version": "2", "commit.retry.num-retries": "20"}


def identifier(cfg: Config, which: str) -> str:
    """pyiceberg identifier 'namespace.table' of ``which`` (target, staging, audit)."""
    _, ns, name = cfg.table_parts(which)
    return f"{ns}.{name}"


def display_name(cfg: Config, which: str) -> str:
    return ".".join(cfg.table_parts(which))


def _ensure_namespace(catalog: Catalog, namespace: str) -> None:
    catalog.create_namespace_if_not_exists(namespace)


def create_target(catalog: Catalog, cfg: Config) -> tuple[Table, bool]:
    """Create the history table (month identity + bucket(acct) partitions, sorted by acct)."""
    from pyiceberg.partitioning import PartitionField, PartitionSpec
    from pyiceberg.table.sorting import SortField, SortOrder
    from pyiceberg.transforms import BucketTransform, IdentityTransform

    t = cfg.tables
    schema = target_schema(cfg)
    spec = PartitionSpec(
        PartitionField(source_id=2, field_id=1000, transform=IdentityTransform(), name=t.month_column),
        PartitionField(source_id=1, field_id=1001, transform=BucketTransform(t.buckets),
                       name=f"{t.account_column}_bucket"),
    )
    order = SortOrder(SortField(source_id=1, transform=IdentityTransform()))
    return _create(catalog, cfg, "target", schema, spec, order, target_properties(cfg))


def create_staging(catalog: Catalog, cfg: Config) -> tuple[Table, bool]:
    return _create(catalog, cfg, "staging", staging_schema(cfg), None, None, BOOKKEEPING_PROPERTIES)


def create_audit(catalog: Catalog, cfg: Config) -> tuple[Table, bool]:
    return _create(catalog, cfg, "audit", audit_schema(), None, None, BOOKKEEPING_PROPERTIES)


def _create(catalog: Catalog, cfg: Config, which: str, schema: Schema, spec: PartitionSpec | None,
            order: SortOrder | None, properties: dict[str, str]) -> tuple[Table, bool]:
    from pyiceberg.exceptions import NoSuchTableError

    ident = identifier(cfg, which)
    _ensure_namespace(catalog, ident.split(".")[0])
    try:
        return catalog.load_table(ident), False
    except NoSuchTableError:
        pass
    kwargs: dict[str, Any] = {"schema": schema, "properties": properties}
    if spec is not None:
        kwargs["partition_spec"] = spec
    if order is not None:
        kwargs["sort_order"] = order
    return catalog.create_table(ident, **kwargs), True


def load(catalog: Catalog, cfg: Config, which: str) -> Table:
    """Load ``which`` and check its schema against the configuration (TableError if not)."""
    from pyiceberg.exceptions import NoSuchNamespaceError, NoSuchTableError

    ident = identifier(cfg, which)
    try:
        table = catalog.load_table(ident)
    except (NoSuchTableError, NoSuchNamespaceError):
        hint = " (run `iceberg-backfill setup` to create it)" if which != "target" else ""
        raise TableError(f"{which} table {display_name(cfg, which)} does not exist{hint}") from None
    if which == "target":
        check_target_schema(cfg, table.schema(), display_name(cfg, which))
    elif which == "staging":
        check_staging_schema(cfg, table.schema(), display_name(cfg, which))
    return table


def partitions(table: Table, month_column: str) -> list[str]:
    """Distinct values of the month partition field, from metadata only."""
    if table.current_snapshot() is None:
        return []
    spec_fields = [f.name for f in table.spec().fields]
    if month_column not in spec_fields:
        raise TableError(
            f"target table is not partitioned by {month_column!r} (partition fields: {spec_fields}); "
            "the backfill rewrites one month partition at a time"
        )
    parts = table.inspect.partitions()
    values = parts.column("partition").combine_chunks().field(month_column).to_pylist()
    return sorted({v for v in values if v is not None})


@dataclass(frozen=True)
class StagingRead:
    """Pending staging rows of a run, read from one pinned snapshot.

    Kept as Arrow, not as a list of dicts: a million staged rows as Python dicts take
    gigabytes on the driver, while validation needs them one at a time.
    """

    snapshot_id: int | None
    table: pa.Table | None

    @property
    def count(self) -> int:
        return 0 if self.table is None else self.table.num_rows

    def iter_rows(self) -> Iterator[dict[str, Any]]:
        """The rows one at a time, column lists converted once (no per-row Arrow access)."""
        if self.table is None:
            return
        names = self.table.column_names
        for values in zip(*(self.table.column(n).to_pylist() for n in names), strict=True):
            yield dict(zip(names, values, strict=True))


def read_pending(table: Table, backfill_ids: Sequence[str], month: MonthFilter = None) -> StagingRead:
    """Pending rows of ``backfill_ids`` (optionally restricted by ``month``) from the current snapshot."""
    from pyiceberg.expressions import And

    snap = table.current_snapshot()
    if snap is None:
        return StagingRead(None, None)
    flt: BooleanExpression = And(_ids_filter(backfill_ids, month), equal("status", StagingStatus.PENDING.value))
    return StagingRead(snap.snapshot_id, table.scan(row_filter=flt, snapshot_id=snap.snapshot_id).to_arrow())


def _ids_filter(backfill_ids: Sequence[str], month: MonthFilter) -> BooleanExpression:
    """``backfill_id IN ids`` with the month restriction: one for all ids, or one per id
    (an OR of ``id = b AND month = m``), so several backfills of different months are
    read in one scan of one pinned snapshot."""
    from pyiceberg.expressions import And, Or

    if not isinstance(month, Mapping):
        flt = one_of("backfill_id", set(backfill_ids))
        return flt if month is None else And(flt, equal("backfill_month", month))
    per_id: list[BooleanExpression] = []
    for bid in sorted(set(backfill_ids)):
        m = month.get(bid)
        per_id.append(equal("backfill_id", bid) if m is None
                      else And(equal("backfill_id", bid), equal("backfill_month", m)))
    return per_id[0] if len(per_id) == 1 else Or(*per_id)


def pending_keys(table: Table, backfill_ids: Sequence[str], months: Iterable[str],
                 snapshot_id: int | None) -> set[tuple[str, int | None, str]]:
    """``(backfill_id, acct, backfill_month)`` of the pending rows of ``backfill_ids`` in
    ``months`` at ``snapshot_id``: exactly the rows a run's staging update matches (ids x
    months of the pinned snapshot), so a planner can check that it applies all of them."""
    from pyiceberg.expressions import And

    wanted = set(months)
    if snapshot_id is None or not wanted:
        return set()
    flt = And(And(one_of("backfill_id", set(backfill_ids)), one_of("backfill_month", wanted)),
              equal("status", StagingStatus.PENDING.value))
    scan = table.scan(row_filter=flt, snapshot_id=snapshot_id,
                      selected_fields=("backfill_id", "acct", "backfill_month"))
    return {(r["backfill_id"], r["acct"], r["backfill_month"]) for r in scan.to_arrow().to_pylist()}


#: The columns that say which row a staging row is (and whether it competes).
_ROW_KEYS = ("backfill_id", "acct", "backfill_month", "status")


def read_competing(table: Table, months: Iterable[str], snapshot_id: int | None, accounts: Iterable[int],
                   exclude: pa.Table | None = None) -> list[dict[str, Any]]:
    """Every staging row of ``months`` and ``accounts`` at ``snapshot_id`` that competes for
    cells under the series rule (pending, applied or superseded; any backfill id), minus
    the rows whose ``(backfill_id, acct, backfill_month, status)`` are in ``exclude``
    (the run's own rows).

    Two passes, because the run's own rows are usually nearly all of them: the key columns
    first, then whole rows only of the ids that still compete (none, most of the time), so
    a million staged entries are not read twice with every value column. Accounts and the
    exclusion are applied in Arrow: an IN list of a million accounts in the scan's filter
    is bound against every manifest entry.
    """
    from pyiceberg.expressions import And

    wanted = set(months)
    if snapshot_id is None or not wanted:
        return []
    flt = And(one_of("backfill_month", wanted), one_of("status", {s.value for s in COMPETING}))
    account_set = set(accounts)
    keys = table.scan(row_filter=flt, snapshot_id=snapshot_id, selected_fields=_ROW_KEYS).to_arrow()
    ids = set(competing_rows(keys, account_set, exclude).column("backfill_id").to_pylist())
    if not ids:
        return []
    data = table.scan(row_filter=And(flt, one_of("backfill_id", ids)), snapshot_id=snapshot_id).to_arrow()
    return competing_rows(data, account_set, exclude).to_pylist()


def competing_rows(data: pa.Table, accounts: set[int], exclude: pa.Table | None) -> pa.Table:
    """``data``'s rows of ``accounts`` whose row keys are not in ``exclude``.

    The exclusion's key columns are cast to ``data``'s types first: a scan of selected
    fields returns ``large_string`` where a whole-row scan returned ``string``, and Arrow
    joins only equal types.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted_accounts = pa.array(sorted(accounts), data.schema.field("acct").type)
    data = data.filter(pc.is_in(data["acct"], value_set=wanted_accounts))
    if exclude is None or not data.num_rows:
        return data
    keys = list(_ROW_KEYS)
    own = exclude.select(keys).cast(pa.schema([data.schema.field(k) for k in keys]))
    return data.join(own, keys=keys, join_type="left anti")


def lineage(table: Table, ref: str = MAIN_BRANCH) -> list[Snapshot]:
    """The snapshots of branch ``ref``, newest first: what a reader of that branch sees.

    Commits on other branches (an abandoned run branch, a replay's predecessor) and
    snapshots that a rollback left behind are not in it, so they never count as work done.
    """
    from pyiceberg.table.snapshots import ancestors_of

    head = table.snapshot_by_name(ref)
    return list(ancestors_of(head, table.metadata)) if head is not None else []


def ref_or_main(table: Table, branch: str | None) -> str:
    """``branch`` if the table has it, else main: where a run's commits so far are."""
    return branch if branch is not None and branch in table.metadata.refs else MAIN_BRANCH


def committed_digests(table: Table, ref: str = MAIN_BRANCH) -> dict[tuple[str, str], int]:
    """{(partition, digest): snapshot id} of backfill commits in the lineage of ``ref``."""
    found: dict[tuple[str, str], int] = {}
    for snap in reversed(lineage(table, ref)):
        props = snap.summary.additional_properties if snap.summary else {}
        for part, dig in tagged_work(props).items():
            found[(part, dig)] = snap.snapshot_id
    return found


def to_arrow(rows: Iterable[dict[str, Any]], schema: Schema) -> pa.Table:
    """Arrow table for ``rows`` in the Iceberg ``schema`` (column order and types)."""
    import pyarrow as pa
    from pyiceberg.io.pyarrow import schema_to_pyarrow

    arrow_schema = schema_to_pyarrow(schema, include_field_ids=False)
    rows = list(rows)
    return pa.Table.from_pylist(rows, schema=arrow_schema)
