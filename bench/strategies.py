"""The strategies the benchmark compares, and the SQL of the non-engine ones.

``runner`` says how a strategy applies the staged entries:

- ``baseline``: the seed's way. Copy-on-write, one MERGE per (staged month, partition)
  with a broadcast hint, partitions one after another, source read from staging.
- ``handwritten``: one merge-on-read MERGE per partition applying all staged months,
  source aggregated from staging, nothing else (no pruning predicate, no bookkeeping).
- ``engine``: the project's partition actor code (``PartitionWorker.apply``): resume
  check, matched-row count, tagged MERGE, commit lookup; ``parallel`` partitions at once
  from threads of the one session.

``properties`` are set on the strategy's own copy of the target before it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence

from backfill.config import Config
from backfill.identifiers import check_backfill_id, month_literal, quote_table, string_literal
from backfill.merge_sql import merge_sql, staging_source_sql, updates_select
from backfill.months import parse_month

COW = {"write.merge.mode": "copy-on-write", "write.update.mode": "copy-on-write",
       "write.delete.mode": "copy-on-write"}
MOR = {"write.merge.mode": "merge-on-read", "write.update.mode": "merge-on-read",
       "write.delete.mode": "merge-on-read"}
V3 = {"format-version": "3"}


@dataclass(frozen=True)
class Strategy:
    name: str
    runner: str                      # baseline | handwritten | engine
    description: str
    properties: Mapping[str, str] = field(default_factory=dict)
    parallel: int = 1
    #: Also time `compact` on the touched partitions afterwards (cost of undoing the small files).
    compact: bool = False


STRATEGIES: tuple[Strategy, ...] = (
    Strategy("baseline", "baseline",
             "seed-style: copy-on-write, broadcast join, one MERGE per staged month per partition, serial",
             COW),
    Strategy("handwritten_mor", "handwritten",
             "hand-written consolidated MOR MERGE (format v2), one per partition, staging source", MOR),
    Strategy("engine_cow", "engine",
             "engine (literal source + acct IN pruning) on a copy-on-write v2 table (setup --write-mode copy-on-write)",
             COW),
    Strategy("engine_mor_v2", "engine",
             "engine on the table as setup creates it: merge-on-read, format v2 position deletes; then compact",
             MOR, compact=True),
    Strategy("engine_mor_v3", "engine", "engine, merge-on-read, format v3 deletion vectors",
             {**MOR, **V3}),
    Strategy("engine_mor_v2_par2", "engine",
             "engine, merge-on-read v2, 2 partitions at once in one session (--partitions-per-actor 2)",
             MOR, parallel=2),
)

#: The strategy the project should run by default (chosen from the figures, see README).
DEFAULT = "engine_mor_v2"


def by_name(names: Sequence[str] | None) -> list[Strategy]:
    if not names:
        return list(STRATEGIES)
    known = {s.name: s for s in STRATEGIES}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise SystemExit(f"unknown strategies {unknown}; known: {sorted(known)}")
    out = [known[n] for n in names]
    if "baseline" not in names:
        out.insert(0, known["baseline"])  # ratios are against the baseline
    return out


def baseline_statements(cfg: Config, partition: str, months: Sequence[str], backfill_id: str) -> list[str]:
    """One MERGE per staged month for ``partition`` (oldest month first), seed style.

    The update expression is the project's correct element-wise one (the seed's
    concat/slice splice is wrong for short arrays, and a wrong answer is not a baseline).
    """
    staging = quote_table(cfg.table_parts("staging"))
    out = []
    for m in sorted(months):
        k = parse_month(partition) - parse_month(m)
        if not 0 <= k <= cfg.tables.window - 1:
            continue
        source = (updates_select(cfg, parse_month(partition))
                  + f"  FROM {staging} s\n"
                  f"  WHERE s.`backfill_id` = {string_literal(check_backfill_id(backfill_id))}\n"
                  f"    AND s.`status` = 'pending' AND s.`backfill_month` = {month_literal(m)}\n"
                  "  GROUP BY s.`acct`")
        # a hint without names marks the whole source relation for broadcast
        out.append(merge_sql(cfg, partition, f"SELECT /*+ BROADCAST */ * FROM (\n{source}\n) b"))
    return out


def handwritten_statement(cfg: Config, partition: str, backfill_id: str) -> str:
    """One MERGE for ``partition`` applying every staged month (no pruning predicate)."""
    return merge_sql(cfg, partition, staging_source_sql(cfg, partition, [backfill_id]))
