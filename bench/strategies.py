"""The strategies the benchmark compares, and the SQL of the non-engine ones.

``runner`` says how a strategy applies the staged entries:

- ``baseline``: the seed's way. Copy-on-write, one MERGE per (staged month, partition)
  with a broadcast hint, partitions one after another, source read from staging.
- ``handwritten``: one merge-on-read MERGE per partition applying all staged months,
  source aggregated from staging, nothing else (no pruning predicate, no bookkeeping).
- ``engine``: the project's partition actor code (``PartitionWorker.apply``) on the
  driver's batches (``merge_batches``, ``per_merge`` partitions per MERGE): resume check,
  tagged MERGE, commit lookup, per-partition stats; ``parallel`` MERGEs at once from
  threads of the one session.

``properties`` are set on the strategy's own copy of the target before it runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from backfill.config import DEFAULT_MAX_PARALLEL, Config, RunConfig
from backfill.core.months import parse_month
from backfill.sql.merge import merge_sql, staging_source_sql

COW = {"write.merge.mode": "copy-on-write", "write.update.mode": "copy-on-write",
       "write.delete.mode": "copy-on-write"}
MOR = {"write.merge.mode": "merge-on-read", "write.update.mode": "merge-on-read",
       "write.delete.mode": "merge-on-read"}
V3 = {"format-version": "3"}
#: Small row groups and an account bloom filter (the benchmark's account column is ``acct``):
#: Iceberg's Parquet reader then skips row groups that hold none of the ``acct IN (...)`` values.
#: The filter is written per row group and defaults to 1 MB; 1 KB holds a row group's few
#: hundred accounts at under 1 % false positives.
ROW_GROUP_PRUNING = {"write.parquet.row-group-size-bytes": str(64 * 1024),
                     "write.parquet.bloom-filter-enabled.column.acct": "true",
                     "write.parquet.bloom-filter-max-bytes": "1024"}


@dataclass(frozen=True)
class Strategy:
    name: str
    runner: str                      # baseline | handwritten | engine
    description: str
    properties: Mapping[str, str] = field(default_factory=dict)
    #: MERGEs at once, from threads of the one session: ``--max-parallel`` with as many
    #: ``--partitions-per-actor`` (the shipped defaults: 2 and 2).
    parallel: int = DEFAULT_MAX_PARALLEL
    #: Partitions per MERGE for engine strategies (``[run] partitions_per_merge``).
    per_merge: int = RunConfig().partitions_per_merge
    #: Spark SQL settings for this strategy's run only (restored afterwards).
    session_conf: Mapping[str, str] = field(default_factory=dict)
    #: Run without ``--strategies``; the others were evaluated once and run by name.
    in_default: bool = True
    #: Also time `compact` on the touched partitions afterwards (cost of undoing the small files).
    compact: bool = False
    #: Before timing, rewrite the copy's files sorted by account (and keep new files sorted),
    #: so that file-level ``properties`` (row-group size, bloom filters) hold for every file.
    sort_by_account: bool = False


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("baseline", "baseline",
             "seed-style: copy-on-write, broadcast join, one MERGE per staged month per partition, serial",
             COW, parallel=1),
    Strategy("handwritten_mor", "handwritten",
             "hand-written consolidated MOR MERGE (format v2), one per partition, staging source",
             MOR, parallel=1),
    Strategy("engine_cow", "engine",
             "engine as shipped, on a copy-on-write v2 table (setup --write-mode copy-on-write)", COW),
    Strategy("engine_mor_v2", "engine",
             "engine as shipped on the table setup creates (merge-on-read, format v2): 12 partitions per "
             "MERGE, 2 MERGEs at once in one session; then compact", MOR, compact=True),
    Strategy("engine_mor_v2_serial", "engine",
             "engine, merge-on-read v2, one MERGE at a time (--max-parallel 1)", MOR, parallel=1),
    Strategy("engine_mor_v2_per1", "engine",
             "engine, merge-on-read v2, one MERGE per partition (--partitions-per-merge 1)", MOR, per_merge=1),
    Strategy("engine_mor_v3", "engine",
             "engine as shipped on a format v3 table (setup --format-version 3: deletion vectors)",
             {**MOR, **V3}),
    # evaluated once (figures in the README), run by name
    Strategy("engine_mor_v2_all", "engine",
             "engine, merge-on-read v2, every partition in one MERGE (--partitions-per-merge 36 --max-parallel 1)",
             MOR, per_merge=36, parallel=1, in_default=False),
    Strategy("engine_mor_v2_nocoalesce", "engine",
             "engine, merge-on-read v2, serial, AQE coalescing off for the write", MOR, parallel=1,
             session_conf={"spark.sql.adaptive.coalescePartitions.enabled": "false"}, in_default=False),
    Strategy("engine_mor_v2_rowgroups", "engine",
             "engine, merge-on-read v2, target sorted by account in 64 KB row groups with a bloom filter "
             "on the account column (row groups without an affected account are skipped)",
             {**MOR, **ROW_GROUP_PRUNING}, sort_by_account=True, in_default=False),
    Strategy("engine_mor_v2_distnone", "engine",
             "engine, merge-on-read v2, serial, no write shuffle (distribution-mode none)", MOR, parallel=1,
             session_conf={"spark.sql.iceberg.distribution-mode": "none"}, in_default=False),
)

#: The strategy the project should run by default (chosen from the figures, see README).
DEFAULT = "engine_mor_v2"


def by_name(names: Sequence[str] | None, skip_baseline: bool = False) -> list[Strategy]:
    if not names:
        return [s for s in STRATEGIES if s.in_default]
    known = {s.name: s for s in STRATEGIES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; known: {sorted(known)}")
    out = [known[n] for n in names]
    if "baseline" not in names and not skip_baseline:
        out.insert(0, known["baseline"])  # ratios are against the baseline
    return out


def baseline_statements(cfg: Config, partition: str, months: Sequence[str], backfill_id: str) -> list[str]:
    """One MERGE per staged month for ``partition`` (oldest month first), seed style.

    The update expression is the project's correct element-wise one (the seed's
    concat/slice splice is wrong for short arrays, and a wrong answer is not a baseline).
    """
    out = []
    for m in sorted(months):
        k = parse_month(partition) - parse_month(m)
        if not 0 <= k <= cfg.tables.window - 1:
            continue
        source = staging_source_sql(cfg, partition, [backfill_id], months=[m])
        # a hint without names marks the whole source relation for broadcast
        out.append(merge_sql(cfg, partition, f"SELECT /*+ BROADCAST */ * FROM (\n{source}\n) b"))
    return out


def handwritten_statement(cfg: Config, partition: str, backfill_id: str) -> str:
    """One MERGE for ``partition`` applying every staged month (no pruning predicate)."""
    return merge_sql(cfg, partition, staging_source_sql(cfg, partition, [backfill_id]))
